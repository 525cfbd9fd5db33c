package sync

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// TestRendererFollowsChurn drives the daemon's Renderer through 400 rounds
// of random changes to a small dual-stack cluster whose services share
// external and LB IPs and nodePorts (conflicts come and go), use both
// traffic policies, source ranges, session affinity, endpoints in every
// state on this node and others, with counts from 0 to 40. After every
// round each family's ruleset must equal a fresh render of the same state,
// its Delta must turn the previous ruleset's elements into this one's (and
// the iptables renderer, reusing what it rendered, must write what a fresh
// render writes),
// the plan must equal a fresh plan of the same state and list its Changes
// (most rounds follow the previous plan; some change the node
// configuration, which plans everything), and the UDP conntrack cleanup
// worked out from those Changes must be the one from both whole plans.
// FuzzRenderChanges does the same with arbitrary API objects; this test
// makes sure every round exercises the incremental paths.
func TestRendererFollowsChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 14))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v4 := func(a, b byte) netip.Addr { return netip.AddrFrom4([4]byte{10, a, 0, b}) }
	v6 := func(a, b byte) netip.Addr { return netip.AddrFrom16([16]byte{0xfd, 0, 0, a, 15: b}) }
	st := rules.NewState()
	cfg := &rules.Config{Node: rules.Node{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("fd00:1::10")}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9"), netip.MustParsePrefix("fd00:128::/64")}}
	const services = 24
	setService := func(i int) {
		key := rules.ServiceKey{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)}
		if rng.IntN(6) == 0 {
			st.DeleteService(key)
			return
		}
		var ports []*rules.ServicePort
		for j := range 1 + rng.IntN(2) {
			p := &rules.ServicePort{Name: rules.ServicePortName{ServiceKey: key, Port: fmt.Sprintf("p%d", j), Protocol: []rules.Protocol{rules.TCP, rules.UDP}[rng.IntN(2)]},
				Created: t0.Add(time.Duration(rng.IntN(5)) * time.Hour), Port: int32(80 + rng.IntN(2)), TargetPort: fmt.Sprintf("p%d", j),
				ClusterIPs: []netip.Addr{v4(96, byte(i+1))}}
			if rng.IntN(2) == 0 {
				p.ClusterIPs = append(p.ClusterIPs, v6(96, byte(i+1)))
			}
			if rng.IntN(3) == 0 {
				p.NodePort = int32(30000 + rng.IntN(6))
			}
			for range rng.IntN(3) {
				p.ExternalIPs = append(p.ExternalIPs, []netip.Addr{v4(200, byte(rng.IntN(4))), v6(200, byte(rng.IntN(4)))}[rng.IntN(2)])
			}
			for range rng.IntN(2) {
				p.LoadBalancerIPs = append(p.LoadBalancerIPs, v4(201, byte(rng.IntN(4))))
			}
			if rng.IntN(3) == 0 {
				p.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("172.16.0.0/12")}[:1+rng.IntN(2)]
			}
			p.ExternalPolicyLocal = rng.IntN(3) == 0
			p.InternalPolicyLocal = rng.IntN(5) == 0
			if p.ExternalPolicyLocal && rng.IntN(2) == 0 {
				p.HealthCheckNodePort = int32(32000 + i)
			}
			if rng.IntN(6) == 0 {
				p.AffinitySeconds = int32(10 + rng.IntN(2)*10)
			}
			ports = append(ports, p)
		}
		st.SetService(key, ports)
	}
	setSlice := func(i int) {
		key := rules.ServiceKey{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)}
		fam := []rules.Family{rules.IPv4, rules.IPv6}[rng.IntN(2)]
		name := fmt.Sprintf("svc-%d-%s-%d", i, fam, rng.IntN(2))
		if rng.IntN(5) == 0 {
			st.DeleteSlice(key, name)
			return
		}
		sl := &rules.Slice{Name: name, Service: key, Family: fam}
		for j := range 2 {
			sl.Ports = append(sl.Ports, rules.SlicePort{Name: fmt.Sprintf("p%d", j), Protocol: []rules.Protocol{rules.TCP, rules.UDP}[rng.IntN(2)], Port: 8080})
		}
		n := []int{0, 1, 2, 3, 10, 40}[rng.IntN(6)]
		for range n {
			e := rules.Endpoint{Ready: rng.IntN(4) > 0, NodeName: []string{"node-a", "node-b", ""}[rng.IntN(3)]}
			e.Serving = e.Ready || rng.IntN(2) == 0
			e.Terminating = !e.Ready && rng.IntN(2) == 0
			b := byte(rng.IntN(60))
			if fam == rules.IPv4 {
				e.IP = v4(128, b)
			} else {
				e.IP = v6(128, b)
			}
			sl.Endpoints = append(sl.Endpoints, e)
		}
		st.SetSlice(sl)
	}
	for i := range services {
		setService(i)
		setSlice(i)
		setSlice(i)
	}
	r := NewRenderer(NFTables)
	ri := NewRenderer(IPTables)
	prev := map[rules.Family]map[string][]rn.Element{}
	plans := map[rules.Family]*rules.Plan{}
	followed := 0
	for round := range 400 {
		if round > 0 {
			for range 1 + rng.IntN(3) {
				if i := rng.IntN(services); rng.IntN(2) == 0 {
					setService(i)
				} else {
					setSlice(i)
				}
			}
			// Configuration changes (everything planned again): what a
			// fragment depends on besides its port (masquerade-all, the
			// node's name for hairpin), and where nodePorts open.
			switch rng.IntN(120) {
			case 0:
				cfg.MasqueradeAll = !cfg.MasqueradeAll
			case 1:
				cfg.Node.Name = map[string]string{"node-a": "node-b", "node-b": "node-a"}[cfg.Node.Name]
			case 2:
				if cfg.NodePortAddresses == nil {
					cfg.NodePortAddresses = []netip.Prefix{netip.MustParsePrefix("fd00:1::/64")} // IPv6 only: IPv4 keeps every address
				} else {
					cfg.NodePortAddresses = nil
				}
			}
		}
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			d := r.Render(st, cfg, fam)
			old := plans[fam]
			plans[fam] = d.Plan
			if d.Plan.Base != 0 {
				followed++
				if d.Plan.Base != old.Gen {
					t.Fatalf("round %d, %s: plan %d follows %d, but the previous plan was %d", round, fam, d.Plan.Gen, d.Plan.Base, old.Gen)
				}
				// The UDP conntrack cleanup from the Changes is the one from
				// both whole plans.
				if a, b := specSet(udpStaleSpecs(old, d.Plan, true)), specSet(udpStaleSpecs(old, d.Plan, false)); !reflect.DeepEqual(a, b) {
					t.Fatalf("round %d, %s: stale UDP specs from the changes %v, from the whole plans %v", round, fam, a, b)
				}
			}
			// What the planner kept between plans is what it decides from
			// scratch.
			if got, want := withoutHistory(d.Plan), withoutHistory(rules.NewPlan(st, cfg, fam)); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, %s: the planner's plan differs from a fresh one:\n%+v\n%+v", round, fam, got, want)
			}
			prev[fam] = checkRound(t, round, fam, d, st, cfg, prev[fam])
			if g, w := ri.Render(st, cfg, fam).IPTables.Restore(nil), Render(st, cfg, IPTables, fam).IPTables.Restore(nil); g != w {
				t.Fatalf("round %d, %s: the daemon's iptables rules differ from a fresh render:\n%s\n----\n%s", round, fam, g, w)
			}
		}
	}
	if followed < 650 {
		t.Errorf("only %d of 800 plans followed the previous one: the incremental path is not exercised", followed)
	}
}

// withoutHistory returns p without what tells one plan from the next of
// the same Planner (Gen, Base, Changes).
func withoutHistory(p *rules.Plan) *rules.Plan {
	c := *p
	c.Gen, c.Base, c.Changes = 0, 0, nil
	return &c
}

// specSet returns specs as a set.
func specSet(specs []ConntrackSpec) map[ConntrackSpec]bool {
	out := map[ConntrackSpec]bool{}
	for _, s := range specs {
		out[s] = true
	}
	return out
}
