package nftwriter

import (
	"encoding/json"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestIncrementalAtScale: on a large table, adding a service (first without
// endpoints, then with) and changing an endpoint are incremental updates the
// kernel accepts, and after each the kernel's maps hold exactly the
// elements written (large element lists must be split over several netlink
// messages). RULEGEN_SCALE_SERVICES sets the size (default 1000).
func TestIncrementalAtScale(t *testing.T) {
	netnstest.Require(t, "nft")
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("RULEGEN_SCALE_SERVICES")); err == nil {
		n = v
	}
	ns := netnstest.New(t, "scale")
	w := New(ns.Fd())
	st, cfg := rulestest.Scale(n, 10)
	apply := func(what string, wantFull bool) {
		t.Helper()
		r := rn.Render(rules.NewPlan(st, cfg, rules.IPv4))
		s, err := w.Apply(r)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s.Full != wantFull {
			t.Errorf("%s: full=%v", what, s.Full)
		}
		// The kernel must hold exactly the elements of every set and map.
		for _, set := range r.Sets {
			kind := "set"
			if set.IsMap {
				kind = "map"
			}
			out := ns.MustRun(nil, "nft", "-j", "list", kind, "ip", "rulegen", set.Name)
			var listing struct {
				Nftables []map[string]struct {
					Elem []json.RawMessage `json:"elem"`
				} `json:"nftables"`
			}
			if err := json.Unmarshal([]byte(out), &listing); err != nil {
				t.Fatalf("%s: nft -j list %s %s: %v", what, kind, set.Name, err)
			}
			got := -1
			for _, o := range listing.Nftables {
				if s, ok := o[kind]; ok {
					got = len(s.Elem)
				}
			}
			if got != len(set.Elements) {
				t.Errorf("%s: %s %s holds %d elements in the kernel, %d written", what, kind, set.Name, got, len(set.Elements))
			}
		}
	}
	apply("initial", true)
	key := rules.ServiceKey{Namespace: "default", Name: "probe"}
	st.SetService(key, []*rules.ServicePort{{Name: rules.ServicePortName{ServiceKey: key, Port: "http", Protocol: rules.TCP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.111.0.1")}, Port: 80}})
	apply("new service without endpoints", false)
	st.SetSlice(&rules.Slice{Name: "probe-1", Service: key, Family: rules.IPv4, Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}},
		Endpoints: []rules.Endpoint{{IP: netip.MustParseAddr("10.244.1.5"), Ready: true, Serving: true, NodeName: "node-0"}}})
	apply("its endpoints", false)
	rulestest.DropEndpoint(st, n/2)
	apply("one endpoint less elsewhere", false)
	key2 := rules.ServiceKey{Namespace: "default", Name: "probe2"}
	st.SetService(key2, []*rules.ServicePort{{Name: rules.ServicePortName{ServiceKey: key2, Port: "http", Protocol: rules.TCP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.111.0.2")}, Port: 80}})
	st.SetSlice(&rules.Slice{Name: "probe2-1", Service: key2, Family: rules.IPv4, Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}},
		Endpoints: []rules.Endpoint{{IP: netip.MustParseAddr("10.244.1.5"), Ready: true, Serving: true, NodeName: "node-0"}}})
	apply("a service with its endpoints at once", false)
	st.SetSlice(&rules.Slice{Name: "probe2-1", Service: key2, Family: rules.IPv4, Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}},
		Endpoints: []rules.Endpoint{{IP: netip.MustParseAddr("10.244.1.6"), Ready: true, Serving: true, NodeName: "node-0"}}})
	apply("its endpoint replaced", false)

	// A service of 5,000 endpoints: its elements are far more than one
	// netlink attribute can hold, and the kernel must still get all of it.
	big := &rules.Slice{Name: "probe2-1", Service: key2, Family: rules.IPv4, Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}}}
	for i := range 5000 {
		big.Endpoints = append(big.Endpoints, rules.Endpoint{IP: netip.AddrFrom4([4]byte{10, 250, byte(i >> 8), byte(i)}), Ready: true, Serving: true, NodeName: "node-1"})
	}
	st.SetSlice(big)
	apply("5,000 endpoints in one service", false)
	out := ns.MustRun(nil, "nft", "list", "map", "ip", "rulegen", rn.EndpointMap(rn.PrefixEndpoints, 5000))
	if !strings.Contains(out, "10.111.0.2 . tcp . 80 . 4999 : 10.250.19.135 . 8080") || strings.Count(out, " . 8080") != 5000 {
		t.Errorf("the kernel's map of the 5,000-endpoint service is not complete:\n%.2000s", out)
	}
}

// TestNewEndpointCountKeepsMapRules: when a service's endpoint count
// becomes one no other service has, the writer adds the new map, its
// chain and the count tree's new rules without writing any other count's
// dnat rule again (each would bind its map anew, and the kernel checks
// every element of a map it binds): every dnat rule that was in the
// kernel before keeps its handle. After each step the kernel's chains of
// the count tree are the rendered ones, in order.
func TestNewEndpointCountKeepsMapRules(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t, "patch")
	w := New(ns.Fd())
	st, cfg := rulestest.Scale(40, 10)
	if _, err := w.Apply(rn.Render(rules.NewPlan(st, cfg, rules.IPv4))); err != nil {
		t.Fatal(err)
	}
	// kernelChain lists a chain's rules and their handles.
	kernelChain := func(name string) (rules []string, handles []string) {
		out := ns.MustRun(nil, "nft", "-a", "list", "chain", "ip", "rulegen", name)
		for _, l := range strings.Split(out, "\n") {
			rule, handle, ok := strings.Cut(strings.TrimSpace(l), " # handle ")
			if !ok || strings.HasPrefix(rule, "chain ") {
				continue
			}
			rules, handles = append(rules, rule), append(handles, handle)
		}
		return rules, handles
	}
	dnatHandles := map[string]string{} // a count's chain: the handle of its dnat rule
	tests := []struct {
		name      string
		change    func()
		wantRules int
	}{
		// 10 and 9 differ first in bit 1: one lookup, a goto for 9, the
		// 9-count chain's dnat rule; the root's "goto 10" is kept.
		{name: "10 to 9 endpoints", change: func() { rulestest.DropEndpoint(st, 3) }, wantRules: 3},
		// 11 joins 10 below bit 1 set: the root's "goto 10" goes to the
		// 10-11 chain, which tests bit 0; the 11-count dnat rule.
		{name: "another service 10 to 11", change: func() { rulestest.AddEndpoint(st, 9) }, wantRules: 4},
		// 10 and 11 left: the root tests bit 0 itself (two rules) and
		// the 10-11 chain and the 9-count chain go.
		{name: "back to 10: the 9 count goes", change: func() { rulestest.AddEndpoint(st, 3) }, wantRules: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change()
			r := rn.Render(rules.NewPlan(st, cfg, rules.IPv4))
			s, err := w.Apply(r)
			if err != nil || s.Full {
				t.Fatalf("apply: %+v %v", s, err)
			}
			if s.Rules != tt.wantRules {
				t.Errorf("%d rules sent, want %d", s.Rules, tt.wantRules)
			}
			seen := map[string]bool{}
			for _, c := range r.Chains {
				if !strings.HasPrefix(c.Name, rn.PrefixEndpoints) && !strings.HasPrefix(c.Name, rn.PrefixNodePortEndpoints) && c.Name != rn.ChainDispatch {
					continue
				}
				var want []string
				for _, rule := range c.Rules {
					want = append(want, rule.String(rules.IPv4))
				}
				got, handles := kernelChain(c.Name)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("kernel's chain %s:\n%s\nwant:\n%s", c.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if len(got) == 1 && strings.HasPrefix(got[0], "dnat") {
					seen[c.Name] = true
					if h, ok := dnatHandles[c.Name]; ok && h != handles[0] {
						t.Errorf("chain %s: its dnat rule was written again (handle %s, was %s)", c.Name, handles[0], h)
					}
					dnatHandles[c.Name] = handles[0]
				}
			}
			for name := range dnatHandles {
				if !seen[name] {
					delete(dnatHandles, name)
				}
			}
		})
	}
	if len(dnatHandles) < 2 {
		t.Errorf("only %d count chains checked: %v", len(dnatHandles), dnatHandles)
	}
}

// TestLargeCountsLoad: counts whose bits would make the count tree deeper
// than the kernel allows (16 levels of jumps and gotos; the tree's root is
// 3 deep) load, because counts of rn.MaxTreeCount and more are left out
// of the tree (see Renderer.byCount); and a count that comes and goes
// beside them is written incrementally.
func TestLargeCountsLoad(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t, "deep")
	w := New(ns.Fd())
	st, cfg := rulestest.Scale(0, 0)
	counts := []int{4095, 6143, 7167, 7679, 7935, 8063, 8127, 8159, 8175, 8183, 8187, 8189, 8190, 8191}
	for i, k := range counts {
		rulestest.Restore(st, i, k)
	}
	r := rn.NewRenderer()
	if _, err := w.Apply(r.Render(rules.NewPlan(st, cfg, rules.IPv4))); err != nil {
		t.Fatalf("full write: %v", err)
	}
	rulestest.Restore(st, len(counts), 3)
	if s, err := w.Apply(r.Render(rules.NewPlan(st, cfg, rules.IPv4))); err != nil || s.Full {
		t.Fatalf("a count of 3 beside them: %+v %v", s, err)
	}
	out := ns.MustRun(nil, "nft", "list", "chain", "ip", "rulegen", rn.ByCountChain(rn.PrefixEndpoints))
	if !strings.Contains(out, "jump endpoints-8191") || !strings.Contains(out, "goto endpoints-3") {
		t.Errorf("the root of the count tree:\n%s", out)
	}
}
