package nftables

import (
	"net/netip"
	"regexp"
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
