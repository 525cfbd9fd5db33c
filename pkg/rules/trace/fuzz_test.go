package trace

import (
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// FuzzTrace traces arbitrary packets through the nftables rulesets of
// arbitrary converted clusters (rulestest.ObjectsFromBytes). It must not
// panic, and every result must be well formed: at least one outcome, each
// with a known verdict, a probability in (0, 1], the probabilities summing
// to 1, a reason, and an endpoint exactly when the verdict is dnat — one of
// the endpoints the plan uses for the packet's destination (so a packet to
// no service destination is never DNATed). Packets are of the
// ruleset's family; their addresses are the plan's own destinations, the
// node's addresses, pods and strangers, their ports the plan's ports or
// others.
func FuzzTrace(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, cluster, packets []byte) {
		st, cfg, _ := rulestest.ObjectsFromBytes(rulestest.NewBytes(cluster)).Model()
		pb := rulestest.NewBytes(packets)
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			plan := rules.NewPlan(st, cfg, fam)
			rs := rn.Render(plan)
			var addrs []netip.Addr
			var ports []uint16
			// used holds, per service destination, the endpoints its port uses.
			used := map[dest]map[netip.AddrPort]bool{}
			for _, s := range plan.Services {
				addrs = append(append(append(addrs, s.ClusterIP), s.ExtIPs...), s.LBIPs...)
				ports = append(ports, uint16(s.Port), uint16(s.NodePort))
				dsts := []netip.Addr{s.ClusterIP}
				dsts = append(append(dsts, s.ExtIPs...), s.LBIPs...)
				var keys []dest
				for _, a := range dsts {
					keys = append(keys, dest{netip.AddrPortFrom(a, uint16(s.Port)), s.Name.Protocol})
				}
				if s.HasNodePort {
					for _, a := range plan.NodePortIPs {
						keys = append(keys, dest{netip.AddrPortFrom(a, uint16(s.NodePort)), s.Name.Protocol})
					}
				}
				for _, k := range keys {
					if used[k] == nil {
						used[k] = map[netip.AddrPort]bool{}
					}
					for _, e := range s.UsedEndpoints() {
						used[k][netip.AddrPortFrom(e.IP, uint16(e.Port))] = true
					}
				}
			}
			for _, ip := range cfg.Node.IPs {
				if rules.FamilyOf(ip) == fam {
					addrs = append(addrs, ip)
				}
			}
			others := []netip.Addr{netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("203.0.113.50"), netip.MustParseAddr("10.96.0.99"), netip.MustParseAddr("127.0.0.1")}
			if fam == rules.IPv6 {
				others = []netip.Addr{netip.MustParseAddr("fd00:244::7"), netip.MustParseAddr("2001:db8::50"), netip.MustParseAddr("fd00:96::99"), netip.MustParseAddr("::1")}
			}
			addrs = append(addrs, others...)
			ports = append(ports, 1, 9, 65535)
			for n := 1 + pb.IntN(4); n > 0; n-- {
				pkt := Packet{
					Src:   addrs[pb.IntN(len(addrs))],
					Dst:   netip.AddrPortFrom(addrs[pb.IntN(len(addrs))], ports[pb.IntN(len(ports))]),
					Proto: []rules.Protocol{rules.TCP, rules.UDP, rules.SCTP}[pb.IntN(3)],
					From:  []Origin{FromPod, FromNode, FromExternal}[pb.IntN(3)],
				}
				res := Trace(rs, cfg.Node.IPs, pkt)
				checkResult(t, res, used[dest{pkt.Dst, pkt.Proto}])
				_, _ = res.Text(), res.Summary()
			}
		}
	})
}

// dest is a service destination: address, port and protocol.
type dest struct {
	addr  netip.AddrPort
	proto rules.Protocol
}

// checkResult checks that a result is well formed, and that it sends the
// packet only to an endpoint of used: the endpoints the plan uses for the
// packet's destination (none when it is no service destination).
func checkResult(t *testing.T, res *Result, used map[netip.AddrPort]bool) {
	t.Helper()
	if len(res.Outcomes) == 0 {
		t.Errorf("%s: no outcome", res.Packet)
		return
	}
	sum := 0.0
	for _, o := range res.Outcomes {
		sum += o.Probability
		if !(o.Probability > 0 && o.Probability <= 1) {
			t.Errorf("%s: outcome %s with probability %v", res.Packet, o.Verdict, o.Probability)
		}
		if !slices.Contains([]Verdict{DNAT, Reject, Drop, Pass}, o.Verdict) {
			t.Errorf("%s: unknown verdict %q", res.Packet, o.Verdict)
		}
		if o.Why == "" {
			t.Errorf("%s: outcome %s without a reason", res.Packet, o.Verdict)
		}
		if (o.Verdict == DNAT) != o.Endpoint.IsValid() {
			t.Errorf("%s: verdict %s with endpoint %v", res.Packet, o.Verdict, o.Endpoint)
		}
		if o.Verdict == DNAT && !used[o.Endpoint] {
			t.Errorf("%s: sent to %s, which the plan does not use for this destination:\n%s", res.Packet, o.Endpoint, res.Text())
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("%s: probabilities sum to %v:\n%s", res.Packet, sum, res.Text())
	}
}
