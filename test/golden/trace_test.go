package golden

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/trace"
	"github.com/rulegen/rulegen/pkg/sync"
)

// TestTraceAndExplainGolden pins `rulegen trace` and `rulegen explain` on
// every scenario: for each service port, a connection to its ClusterIP
// from a local pod, from the node and from outside, to its nodePort from
// outside, and to its external and LB IPs from an allowed and a blocked
// outside client; and the explanation of every service.
func TestTraceAndExplainGolden(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			_, desired := renderAll(t, sc, false)
			var traces, explains strings.Builder
			seen := map[rules.ServiceKey]bool{}
			for _, fam := range sc.families {
				d := desired[fileName(sync.NFTables, fam)]
				node := sc.cfg.Node
				pod, outside, blocked := netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("192.168.60.10")
				nodeSrc := netip.MustParseAddr("192.168.1.10")
				if fam == rules.IPv6 {
					pod, outside, blocked = netip.MustParseAddr("fd00:244:1::5"), netip.MustParseAddr("fd00:50::10"), netip.MustParseAddr("fd00:60::10")
					nodeSrc = netip.MustParseAddr("fd00:1::10")
				}
				run := func(src netip.Addr, dst netip.Addr, port int32, proto rules.Protocol, from trace.Origin) {
					res := trace.Trace(d.NFTables, node.IPs, trace.Packet{Src: src, Dst: netip.AddrPortFrom(dst, uint16(port)), Proto: proto, From: from})
					traces.WriteString(res.Summary())
				}
				for _, s := range d.Plan.Services {
					p := s.Name.Protocol
					traces.WriteString("# " + s.Name.String() + "\n")
					run(pod, s.ClusterIP, s.Port, p, trace.FromPod)
					run(nodeSrc, s.ClusterIP, s.Port, p, trace.FromNode)
					run(outside, s.ClusterIP, s.Port, p, trace.FromExternal)
					if s.HasNodePort {
						run(outside, d.Plan.NodePortIPs[0], s.NodePort, p, trace.FromExternal)
					}
					for _, ip := range append(append([]netip.Addr{}, s.ExtIPs...), s.LBIPs...) {
						run(outside, ip, s.Port, p, trace.FromExternal)
						run(blocked, ip, s.Port, p, trace.FromExternal)
					}
					if sc.traceFromInside {
						if s.HasNodePort {
							run(pod, d.Plan.NodePortIPs[0], s.NodePort, p, trace.FromPod)
							run(nodeSrc, d.Plan.NodePortIPs[0], s.NodePort, p, trace.FromNode)
						}
						for _, ip := range append(append([]netip.Addr{}, s.ExtIPs...), s.LBIPs...) {
							run(pod, ip, s.Port, p, trace.FromPod)
							run(nodeSrc, ip, s.Port, p, trace.FromNode)
						}
						for _, ip := range s.LBIPs {
							run(ip, ip, s.Port, p, trace.FromNode)
						}
					}
					if !seen[s.Name.ServiceKey] {
						seen[s.Name.ServiceKey] = true
						var ex []trace.Explanation
						for _, f := range sc.families {
							e := desired[fileName(sync.NFTables, f)]
							ex = append(ex, trace.Explanation{Plan: e.Plan, NFT: e.NFTables})
						}
						text, _ := trace.Explain(s.Name.ServiceKey, node, ex)
						explains.WriteString(text + "\n")
					}
				}
				// A port the service does not have, and an address that is no service.
				if len(d.Plan.Services) > 0 {
					s := d.Plan.Services[0]
					traces.WriteString("# other destinations\n")
					run(pod, s.ClusterIP, 9, rules.TCP, trace.FromPod)
				}
				// An address of each service CIDR that no service holds.
				for _, cidr := range d.Plan.ServiceCIDRs {
					if ip := unallocated(cidr, d.Plan); ip.IsValid() {
						traces.WriteString("# unallocated address of the service CIDR " + cidr.String() + "\n")
						run(pod, ip, 80, rules.TCP, trace.FromPod)
						run(nodeSrc, ip, 80, rules.TCP, trace.FromNode)
					}
				}
			}
			for name, text := range map[string]string{"trace.txt": traces.String(), "explain.txt": explains.String()} {
				path := filepath.Join(sc.dir, name)
				if *update {
					if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%s: %v (run with -update)", name, err)
				}
				if string(want) != text {
					t.Errorf("%s differs (run with -update and review):\n%s", name, diff(string(want), text))
				}
			}
		})
	}
}

// unallocated returns the first address of cidr after its network address
// that is no ClusterIP of the plan (invalid if there is none).
func unallocated(cidr netip.Prefix, p *rules.Plan) netip.Addr {
	held := map[netip.Addr]bool{}
	for _, s := range p.Services {
		held[s.ClusterIP] = true
	}
	for ip := cidr.Addr().Next(); cidr.Contains(ip); ip = ip.Next() {
		if !held[ip] {
			return ip
		}
	}
	return netip.Addr{}
}
