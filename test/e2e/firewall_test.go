package e2e

import (
	"testing"

	"github.com/rulegen/rulegen/test/netnstest"
)

// TestRestrictiveFirewall: a node whose FORWARD policy is DROP (a host
// firewall) still serves nodePorts with the iptables backend, because
// rulegen writes kube-proxy's forward rules (RG-FORWARD, as KUBE-FORWARD:
// accept marked service traffic and established connections). Issue 12
// item 11. The nftables backend, like kube-proxy's nftables mode, writes no
// such rules: a firewall there must let service traffic through itself.
func TestRestrictiveFirewall(t *testing.T) {
	netnstest.Require(t, "iptables-restore", "iptables")
	tp := NewTopology(t, bins.server)
	tp.Apply(t, "iptables", Manifests(svcNPCluster))
	tp.Node.MustRun(nil, "iptables", "-P", "FORWARD", "DROP")
	for _, c := range []Check{
		{Name: "nodeport-through-a-forward-drop-policy", From: "client1", Addr: NodeIP + ":30080", Tries: 20, Pods: []string{"pod-a", "pod-r"}, All: true, SrcNot: Client1},
	} {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, tp) })
	}
}
