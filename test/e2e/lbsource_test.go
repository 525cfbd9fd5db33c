package e2e

import (
	"testing"

	"github.com/rulegen/rulegen/test/netnstest"
)

// TestLBIPAsSource: when a LoadBalancer's loadBalancerSourceRanges hold one
// of the node's IPs, packets whose source is the load-balancer IP itself are
// let through too, as kube-proxy does (issue 12 item 3). Some load balancers
// deliver with the LB IP as source, and a node that holds the LB IP on an
// interface (as with MetalLB's layer 2 mode) sources its own connections to
// it from there. The node here holds 192.168.100.5 on lo; svcLB's ranges
// (192.168.1.0/24) hold the node IP but not 192.168.100.5. A connection
// from the node bound to the LB IP is served; the same one bound to another
// node address outside the ranges is dropped, so the first is let through
// by the LB IP rule and not by anything broader.
func TestLBIPAsSource(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-restore")
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			tp := NewTopology(t, bins.server)
			tp.Apply(t, backend, Manifests(svcLB))
			tp.Node.MustRun(nil, "ip", "addr", "add", svcLB.LBIP+"/32", "dev", "lo")
			for _, c := range []Check{
				{Name: "from-the-lb-ip-allowed", From: "node", Bind: svcLB.LBIP, Addr: svcLB.LBIP + ":80", Tries: 5, Pods: podsA},
				{Name: "from-another-node-address-dropped", From: "node", Bind: RemoteLink, Addr: svcLB.LBIP + ":80", Outcome: "timeout"},
			} {
				t.Run(c.Name, func(t *testing.T) { c.Run(t, tp) })
			}
		})
	}
}
