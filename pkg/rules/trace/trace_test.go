package trace

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// TestTraceUnallocatedClusterIP: with service CIDRs, a new connection to an
// address in them that no service holds is dropped (kube-proxy nftables),
// and the result says that iptables routes it.
func TestTraceUnallocatedClusterIP(t *testing.T) {
	node := netip.MustParseAddr("192.168.1.10")
	ruleset := func(cidrs ...string) *rn.Ruleset {
		p := rulestest.OnePort(rules.IPv4, "default", "web", "", rules.TCP, "10.96.0.10", "10.244.1.5", node.String())
		for _, c := range cidrs {
			p.ServiceCIDRs = append(p.ServiceCIDRs, netip.MustParsePrefix(c))
		}
		return rn.Render(p)
	}
	pod := netip.MustParseAddr("10.244.1.7")
	tests := []struct {
		name     string
		r        *rn.Ruleset
		src      netip.Addr
		dst      string
		from     Origin
		want     Verdict
		wantWhy  string
		wantNote string
	}{
		{name: "unallocated, from a pod", r: ruleset("10.96.0.0/16"), src: pod, dst: "10.96.0.99:80", from: FromPod, want: Drop,
			wantWhy: "unallocated ClusterIP: 10.96.0.99 is in the service CIDR 10.96.0.0/16 but no service holds it: dropped", wantNote: "not dropped but routed normally"},
		{name: "unallocated, from the node", r: ruleset("10.96.0.0/16"), src: node, dst: "10.96.0.99:443", from: FromNode, want: Drop, wantWhy: "unallocated ClusterIP"},
		{name: "unallocated, from outside", r: ruleset("10.96.0.0/16"), src: netip.MustParseAddr("192.168.50.10"), dst: "10.96.0.99:80", from: FromExternal, want: Drop, wantWhy: "unallocated ClusterIP"},
		{name: "allocated, unknown port: still rejected", r: ruleset("10.96.0.0/16"), src: pod, dst: "10.96.0.10:9", from: FromPod, want: Reject, wantWhy: "unknown port"},
		{name: "allocated, its port: sent to the endpoint", r: ruleset("10.96.0.0/16"), src: pod, dst: "10.96.0.10:80", from: FromPod, want: DNAT},
		{name: "outside the service CIDR: routed", r: ruleset("10.96.0.0/16"), src: pod, dst: "10.97.0.1:80", from: FromPod, want: Pass},
		{name: "no service CIDR: routed", r: ruleset(), src: pod, dst: "10.96.0.99:80", from: FromPod, want: Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Trace(tt.r, []netip.Addr{node}, Packet{Src: tt.src, Dst: netip.MustParseAddrPort(tt.dst), Proto: rules.TCP, From: tt.from})
			if len(res.Outcomes) != 1 {
				t.Fatalf("%d outcomes, want 1: %+v", len(res.Outcomes), res.Outcomes)
			}
			o := res.Outcomes[0]
			if o.Verdict != tt.want || !strings.Contains(o.Why, tt.wantWhy) {
				t.Errorf("%s: %s, want %s: …%s…", o.Verdict, o.Why, tt.want, tt.wantWhy)
			}
			if !strings.Contains(res.Note, tt.wantNote) {
				t.Errorf("note %q, want one containing %q", res.Note, tt.wantNote)
			}
		})
	}
}
