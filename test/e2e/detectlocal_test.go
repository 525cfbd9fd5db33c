package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/test/netnstest"
)

// Services of the detect-local test: a ClusterIP of each family whose only
// endpoint is the remote pod, so that whether a client was masqueraded is
// what pod-r sees; and np-nolocal (externalTrafficPolicy Local, only
// pod-r), which only pod traffic may reach (kube-proxy's short-circuit of
// pods to external destinations).
var (
	svcRemoteOnly   = Svc{Name: "remote-only", ClusterIP: "10.96.0.40", Port: 80, Slices: [][]Ep{{EpR}}}
	svcRemoteOnly6  = Svc{Name: "remote-only-v6", ClusterIP: "fd00:96::40", Port: 80, Family: "IPv6", Slices: [][]Ep{{{IP: PodR6, Node: "node-b", Port: 8080}}}}
	detectLocalSvcs = []Svc{svcRemoteOnly, svcRemoteOnly6, svcNPNoLocal}
)

// TestDetectLocalInterface: with --detect-local-mode BridgeInterface or
// InterfaceNamePrefix, a connection is pod traffic when it arrives on the
// node through the named interface (the local pods sit behind the bridge
// br0), whatever its source address: a pod reaching a ClusterIP keeps its
// address and a client on another interface is masqueraded, and only pod
// traffic to a nodePort of an externalTrafficPolicy Local service
// short-circuits to a remote endpoint. The last case names the clients'
// interface instead (prefix "vclient"): client1 is then the one that keeps
// its address and pod-a, inside --cluster-cidr, is masqueraded — the
// cluster CIDR tells nothing in these modes, as in kube-proxy. Each case
// runs against the rules each backend writes and against the iptables dry
// run loaded by hand, and rulegen trace must predict every answer.
func TestDetectLocalInterface(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-restore", "ip6tables-restore")
	podsLocal := []Check{
		{Name: "pod-keeps-its-address", From: "pod-a", Addr: "10.96.0.40:80", Pods: []string{"pod-r"}, Src: PodA},
		{Name: "client-on-another-interface-masqueraded", From: "client1", Addr: "10.96.0.40:80", Pods: []string{"pod-r"}, SrcNot: Client1},
		{Name: "ipv6-pod-keeps-its-address", From: "pod-a", Addr: "[fd00:96::40]:80", Pods: []string{"pod-r"}, Src: PodA6},
		{Name: "ipv6-client-on-another-interface-masqueraded", From: "client1", Addr: "[fd00:96::40]:80", Pods: []string{"pod-r"}, SrcNot: Client16},
		{Name: "pod-to-local-policy-nodeport-short-circuits", From: "pod-a", Addr: NodeIP + ":30082", Pods: []string{"pod-r"}},
		{Name: "client-to-local-policy-nodeport-dropped", From: "client1", Addr: NodeIP + ":30082", Outcome: "timeout"},
	}
	cases := []struct {
		name   string
		flags  []string
		checks []Check
	}{
		{name: "BridgeInterface", flags: []string{"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "br0"}, checks: podsLocal},
		{name: "InterfaceNamePrefix", flags: []string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "br"}, checks: podsLocal},
		{name: "InterfaceNamePrefix-of-the-clients", flags: []string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "vclient"}, checks: []Check{
			{Name: "client-on-the-interface-keeps-its-address", From: "client1", Iif: "vclient1", Addr: "10.96.0.40:80", Pods: []string{"pod-r"}, Src: Client1},
			{Name: "pod-in-the-cluster-cidr-masqueraded", From: "pod-a", Iif: "br0", Addr: "10.96.0.40:80", Pods: []string{"pod-r"}, SrcNot: PodA},
		}},
	}
	for _, mode := range []string{"nftables", "iptables", "iptables-dry-run"} {
		backend, dryRun := strings.CutSuffix(mode, "-dry-run")
		t.Run(mode, func(t *testing.T) {
			tp := NewTopology(t, bins.server)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tp.Flags = append(slices.Clone(nodeFlags), tc.flags...)
					if dryRun {
						tp.Node.MustRun(nil, bins.rulegen, "--cleanup") // LoadDryRun adds to what is there
						tp.LoadDryRun(t, Manifests(detectLocalSvcs...))
					} else {
						tp.Apply(t, backend, Manifests(detectLocalSvcs...))
					}
					tp.Node.MustRun(nil, "conntrack", "-F") // each case's connections start afresh
					for _, c := range tc.checks {
						t.Run(c.Name, func(t *testing.T) { c.Run(t, tp) })
					}
				})
			}
		})
	}
}
