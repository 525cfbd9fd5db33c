package trace

import (
	"net/netip"
	"slices"
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

// TestTraceFollowsEndpointMaps: a trace finds a destination in the map of
// endpoints of its service's endpoint count, among maps of several
// counts, and sends it to each endpoint with probability 1/count; a
// nodePort goes through the nodePort maps, masqueraded under the Cluster
// policy.
func TestTraceFollowsEndpointMaps(t *testing.T) {
	st, cfg := rulestest.Scale(4, 3)
	rulestest.AddEndpoint(st, 1)  // svc-1: 4 endpoints
	rulestest.DropEndpoint(st, 2) // svc-2: 2 endpoints
	p := rules.NewPlan(st, cfg, rules.IPv4)
	r := rn.Render(p)
	node := cfg.Node.IPs[0]
	byName := map[string]*rules.ServicePlan{}
	for _, s := range p.Services {
		byName[s.Name.Name] = s
	}
	tests := []struct {
		name     string
		svc      string
		src      netip.Addr
		dst      netip.AddrPort
		from     Origin
		wantMasq bool
	}{
		{name: "ClusterIP of a 4-endpoint service", svc: "svc-1", src: netip.MustParseAddr("10.128.0.1"), dst: netip.AddrPortFrom(byName["svc-1"].ClusterIP, 80), from: FromPod},
		{name: "ClusterIP of a 2-endpoint service", svc: "svc-2", src: netip.MustParseAddr("10.128.0.1"), dst: netip.AddrPortFrom(byName["svc-2"].ClusterIP, 80), from: FromPod},
		{name: "nodePort of a 3-endpoint service", svc: "svc-0", src: netip.MustParseAddr("192.168.50.10"), dst: netip.AddrPortFrom(node, uint16(byName["svc-0"].NodePort)), from: FromExternal, wantMasq: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := byName[tt.svc].ClusterEndpoints
			res := Trace(r, cfg.Node.IPs, Packet{Src: tt.src, Dst: tt.dst, Proto: rules.TCP, From: tt.from})
			if len(res.Outcomes) != len(eps) {
				t.Fatalf("%d outcomes, want one per endpoint (%d): %+v", len(res.Outcomes), len(eps), res.Outcomes)
			}
			for _, o := range res.Outcomes {
				if o.Verdict != DNAT || o.Probability != 1/float64(len(eps)) || o.Masquerade != tt.wantMasq {
					t.Errorf("%s to %s with probability %g, masquerade %v; want dnat, %g, %v", o.Verdict, o.Endpoint, o.Probability, o.Masquerade, 1/float64(len(eps)), tt.wantMasq)
				}
				if !slices.ContainsFunc(eps, func(e rules.Endpoint) bool { return netip.AddrPortFrom(e.IP, uint16(e.Port)) == o.Endpoint }) {
					t.Errorf("sent to %s, not an endpoint of %s", o.Endpoint, tt.svc)
				}
			}
		})
	}
}
