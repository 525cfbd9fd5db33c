package nftables

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

var (
	// names are the identifiers a script refers to: declared chains and
	// sets, jump and goto targets, set references.
	names            = regexp.MustCompile(`(?:^|[\t ])(?:chain|set|map|jump|goto) (\S+)|@(\S+)`)
	clusterChainDecl = regexp.MustCompile(`chain service-[A-Z2-7]{8}-`)
	// identifier is nft's identifier grammar.
	identifier = regexp.MustCompile(`^[A-Za-z_.][A-Za-z0-9/_.-]*$`)
)

func TestRenderHostileInput(t *testing.T) {
	tests := []struct {
		name                      string
		fam                       rules.Family
		ns, svc, port             string
		proto                     rules.Protocol
		clusterIP, endpoint, node string
		wantChain                 string // a chain the script must declare ("" to skip)
		wantService               bool   // false: the port is left out
	}{
		{name: "valid names are kept", fam: rules.IPv4, ns: "default", svc: "web", port: "http", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", node: "192.168.1.10", wantService: true,
			wantChain: "service-" + rules.Hash("default/web/tcp/http", 8) + "-default/web/tcp/http"},
		{name: "newline, braces and semicolon in the name", fam: rules.IPv4, ns: "default", svc: "a\n}\nchain x { ; #", port: "", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", node: "192.168.1.10", wantService: true,
			wantChain: "service-" + rules.Hash("default/a\n}\nchain x { ; #/tcp/", 8) + "-default/a___chain_x______/tcp/"},
		{name: "quotes, backslash and unicode", fam: rules.IPv4, ns: `"ns'`, svc: `\é`, port: "ポ", proto: rules.UDP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", node: "192.168.1.10", wantService: true},
		{name: "253-byte name", fam: rules.IPv4, ns: "default", svc: strings.Repeat("n", 253), port: strings.Repeat("p", 63), proto: rules.SCTP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", node: "192.168.1.10", wantService: true},
		{name: "zones on every address", fam: rules.IPv6, ns: "default", svc: "web", port: "", proto: rules.TCP,
			clusterIP: "fd00:96::1%a b", endpoint: "fd00:244::5%x\n}", node: "fd00:1::10%;drop", wantService: true,
			wantChain: "service-" + rules.Hash("default/web/tcp/", 8) + "-default/web/tcp/"},
		{name: "unknown protocol skips the port", fam: rules.IPv4, ns: "default", svc: "web", port: "", proto: "tcp;drop",
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", node: "192.168.1.10", wantService: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := Render(rulestest.OnePort(tt.fam, tt.ns, tt.svc, tt.port, tt.proto, tt.clusterIP, tt.endpoint, tt.node)).Script()
			for _, m := range names.FindAllStringSubmatch(text, -1) {
				n := m[1] + m[2]
				if !identifier.MatchString(n) || len(n) > rules.MaxNFTName {
					t.Errorf("name %q (%d bytes) is not a valid nft name", n, len(n))
				}
			}
			if strings.ContainsRune(text, '%') {
				t.Errorf("script holds a zone:\n%s", text)
			}
			if got := clusterChainDecl.MatchString(text); got != tt.wantService {
				t.Errorf("service chain rendered: %v, want %v\n%s", got, tt.wantService, text)
			}
			if tt.wantChain != "" && !strings.Contains(text, "\tchain "+tt.wantChain+" {\n") {
				t.Errorf("no chain %q in:\n%s", tt.wantChain, text)
			}
		})
	}
}

// TestRenderZoneDuplicates renders two services whose cluster IPs differ
// only by a zone: once the zones are dropped they claim the same map key,
// which the map of endpoints must hold once, whichever order the plan
// lists them in.
func TestRenderZoneDuplicates(t *testing.T) {
	p := &rules.Plan{Family: rules.IPv6}
	for _, n := range []string{"a", "b"} {
		sp := &rules.ServicePort{Name: rules.ServicePortName{ServiceKey: rules.ServiceKey{Namespace: "ns", Name: n}, Protocol: rules.TCP}, Port: 80}
		ep := rules.Endpoint{IP: netip.MustParseAddr("fd00:244::5"), Port: 8080, Ready: true}
		p.Services = append(p.Services, &rules.ServicePlan{ServicePort: sp, ClusterIP: netip.MustParseAddr("fd00:96::1%" + n),
			All: []rules.Endpoint{ep}, ClusterEndpoints: []rules.Endpoint{ep}, HasEndpoints: true})
	}
	endpoints := EndpointMap(PrefixEndpoints, 1)
	elements := func(r *Ruleset) []Element {
		for _, s := range r.Sets {
			if s.Name == endpoints {
				return s.Elements
			}
		}
		return nil
	}
	r := Render(p)
	first := r.Script()
	p.Services[0], p.Services[1] = p.Services[1], p.Services[0]
	if a, b := elements(r), elements(Render(p)); len(a) != 1 || len(b) != 1 || a[0] != b[0] {
		t.Errorf("map %s depends on service order: %v, then %v", endpoints, a, b)
	}
	if n := strings.Count(first, "fd00:96::1 . tcp . 80 . 0 : "); n != 1 {
		t.Errorf("the map holds fd00:96::1 . tcp . 80 . 0 %d times, want once:\n%s", n, first)
	}
}

// TestCountTreeRoutesEveryCount walks the count tree byCount makes for
// many sets of counts in use, as the kernel would for a destination of
// each count (its count sets are the bits of its count): every count
// must reach the dnat rule of its own map, through at most 12 gotos and
// jumps from the root (the kernel's limit is 16 levels, and the root is 3
// deep), counts of 4096 and more included.
func TestCountTreeRoutesEveryCount(t *testing.T) {
	sets := [][]int{{1}, {10}, {1, 2}, {9, 10, 11}, {1, 64}, {4095, 6143, 7167, 7679, 7935, 8063, 8127, 8159, 8175, 8183, 8187, 8189, 8190, 8191},
		{4096}, {1, 4096, 5000}, {2, 3, 4095, 4096}}
	var all []int
	for k := 1; k <= 130; k++ {
		all = append(all, k)
	}
	sets = append(sets, all)
	seed := uint64(1)
	for range 300 { // random sets of counts up to 10,000
		seen := map[int]bool{}
		var ks []int
		for range 1 + seed%20 {
			seed = seed*6364136223846793005 + 1442695040888963407
			k := 1 + int(seed>>33)%10000
			if seed>>40%3 == 0 {
				k = 1 + k%70
			}
			if !seen[k] {
				seen[k] = true
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		sets = append(sets, ks)
	}
	for _, ks := range sets {
		chains := map[string]*Chain{}
		for _, c := range NewRenderer().byCount(PrefixEndpoints, KeyAddrProtoPortSlot, ks) {
			if chains[c.Name] != nil {
				t.Fatalf("counts %v: chain %s made twice", ks, c.Name)
			}
			chains[c.Name] = c
		}
		// walk returns the count of the map whose dnat rule a destination
		// of count k reaches from chain name (0: none), and the deepest
		// level it went.
		var walk func(name string, k, depth int) (int, int)
		walk = func(name string, k, depth int) (int, int) {
			c := chains[name]
			if c == nil {
				t.Fatalf("counts %v: chain %s is referenced but not made", ks, name)
			}
			deepest := depth
			for _, r := range c.Rules {
				switch s := r[0].(type) {
				case DNATLookup:
					if s.Mod == k {
						return k, depth
					}
					return 0, depth // a miss ends the chain
				case KeyInSet:
					var b int
					if _, err := fmt.Sscanf(strings.TrimPrefix(s.Set, PrefixEndpoints), "count-bit-%d", &b); err != nil {
						t.Fatalf("counts %v: rule %v", ks, r)
					}
					if k>>b&1 == 0 {
						continue
					}
					return walk(r[1].(Verdict).Chain, k, depth+1)
				case Verdict:
					if s.Kind == Goto {
						return walk(s.Chain, k, depth+1)
					}
					if got, d := walk(s.Chain, k, depth+1); got != 0 {
						return got, d
					}
					deepest = max(deepest, depth+1)
				}
			}
			return 0, deepest
		}
		for _, k := range ks {
			got, depth := walk(ByCountChain(PrefixEndpoints), k, 0)
			if got != k {
				t.Errorf("counts %v: a destination of %d endpoints reaches the map of %d", ks, k, got)
			}
			if depth > 12 {
				t.Errorf("counts %v: a destination of %d endpoints is %d gotos and jumps below the root", ks, k, depth)
			}
		}
	}
}
