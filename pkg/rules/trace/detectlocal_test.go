package trace

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// TestTraceDetectLocalInterface: with the detect-local modes
// BridgeInterface and InterfaceNamePrefix, the trace tells pod traffic by
// the interface the packet arrives on (Packet.Iif; by default a pod's
// packet arrives on the pod interface, an external one elsewhere, the
// node's on none): a ClusterIP client that does not arrive there is
// masqueraded, and only pod traffic to a nodePort of an
// externalTrafficPolicy Local service short-circuits to every endpoint.
func TestTraceDetectLocalInterface(t *testing.T) {
	node := netip.MustParseAddr("192.168.1.10")
	bridge := rn.Render(rulestest.ETPLocal("10.244.0.0/16", rules.PodInterface{Name: "cni0"}))
	prefix := rn.Render(rulestest.ETPLocal("", rules.PodInterface{Name: "veth", Prefix: true}))
	pod, outside := netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("192.168.50.10")
	clusterIP, nodePort := "10.96.0.10:80", "192.168.1.10:30080"
	tests := []struct {
		name      string
		r         *rn.Ruleset
		src       netip.Addr
		dst       string
		from      Origin
		iif       string
		outcomes  int // how many endpoints may answer
		masq      bool
		wantWhy   string
		wantPrint string // in Packet.String
	}{
		{name: "pod on the bridge keeps its address", r: bridge, src: pod, dst: clusterIP, from: FromPod, outcomes: 2},
		{name: "outside client masqueraded", r: bridge, src: outside, dst: clusterIP, from: FromExternal, outcomes: 2, masq: true,
			wantWhy: "masqueraded (client not arriving on the pod bridge cni0)"},
		{name: "the source address does not matter, the interface does", r: bridge, src: outside, dst: clusterIP, from: FromExternal, iif: "cni0", outcomes: 2,
			wantPrint: "(from external, in on cni0)"},
		{name: "a pod address on another interface is masqueraded", r: bridge, src: pod, dst: clusterIP, from: FromPod, iif: "eth1", outcomes: 2, masq: true},
		{name: "the node is masqueraded", r: bridge, src: node, dst: clusterIP, from: FromNode, outcomes: 2, masq: true},
		{name: "prefix: a veth keeps its address", r: prefix, src: pod, dst: clusterIP, from: FromPod, iif: "veth1a2b", outcomes: 2},
		{name: "prefix: another name is masqueraded", r: prefix, src: pod, dst: clusterIP, from: FromPod, iif: "eth0", outcomes: 2, masq: true,
			wantWhy: "client not arriving on an interface named veth*"},
		{name: "prefix: a pod to a Local nodePort short-circuits to every endpoint", r: prefix, src: pod, dst: nodePort, from: FromPod, outcomes: 2},
		{name: "prefix: an outside client to a Local nodePort gets the local endpoint", r: prefix, src: outside, dst: nodePort, from: FromExternal, outcomes: 1},
		{name: "bridge: an outside client arriving on the bridge short-circuits", r: bridge, src: outside, dst: nodePort, from: FromExternal, iif: "cni0", outcomes: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := Packet{Src: tt.src, Dst: netip.MustParseAddrPort(tt.dst), Proto: rules.TCP, From: tt.from, Iif: tt.iif}
			res := Trace(tt.r, []netip.Addr{node}, pkt)
			if len(res.Outcomes) != tt.outcomes {
				t.Fatalf("%d outcomes, want %d: %+v", len(res.Outcomes), tt.outcomes, res.Outcomes)
			}
			for _, o := range res.Outcomes {
				if o.Verdict != DNAT || o.Masquerade != tt.masq || !strings.Contains(o.Why, tt.wantWhy) {
					t.Errorf("%s masquerade=%v (%s), want dnat masquerade=%v …%s…", o.Verdict, o.Masquerade, o.Why, tt.masq, tt.wantWhy)
				}
			}
			if !strings.Contains(pkt.String(), tt.wantPrint) {
				t.Errorf("packet %q, want …%s…", pkt, tt.wantPrint)
			}
		})
	}
}
