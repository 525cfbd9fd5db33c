package nftwriter

import (
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
		// The kernel must hold exactly the elements of every map.
		for _, set := range r.Sets {
			if !set.IsMap {
				continue
			}
			out := ns.MustRun(nil, "nft", "list", "map", "ip", "rulegen", set.Name)
			if got := strings.Count(out, " : ") - 1; got != len(set.Elements) { // minus the "type … : verdict" line
				t.Errorf("%s: map %s holds %d elements in the kernel, %d written", what, set.Name, got, len(set.Elements))
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

// TestNewEndpointCountPatchesDispatch: when a service's endpoint count
// becomes one no other service has, the writer adds the new map and one
// rule to the dispatch chain, without writing the chain's other rules
// again (each would bind its map anew, and the kernel checks every
// element of a map it binds); the kernel's chain is then the rendered one,
// in order.
func TestNewEndpointCountPatchesDispatch(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t, "patch")
	w := New(ns.Fd())
	st, cfg := rulestest.Scale(40, 10)
	if _, err := w.Apply(rn.Render(rules.NewPlan(st, cfg, rules.IPv4))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		change    func()
		wantRules int
	}{
		{name: "10 to 9 endpoints: a rule for the new map", change: func() { rulestest.DropEndpoint(st, 3) }, wantRules: 1},
		{name: "another service 10 to 11: one more", change: func() { rulestest.AddEndpoint(st, 9) }, wantRules: 1},
		{name: "back to 10: the 9-endpoint rule goes, none added", change: func() { rulestest.AddEndpoint(st, 3) }, wantRules: 0},
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
			var want []string
			for _, c := range r.Chains {
				if c.Name == rn.ChainDispatch {
					for _, rule := range c.Rules {
						want = append(want, rule.String(rules.IPv4))
					}
				}
			}
			out := ns.MustRun(nil, "nft", "list", "chain", "ip", "rulegen", rn.ChainDispatch)
			var got []string
			for _, l := range strings.Split(out, "\n") {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "dnat") || strings.HasPrefix(l, "ip daddr") {
					got = append(got, l)
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("kernel's dispatch chain:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
