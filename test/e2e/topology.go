// Package e2e holds the kernel end-to-end suite: a node, pods and outside
// clients as network namespaces, rulegen's rules applied in the node, and
// real TCP and UDP connections.
//
// Address plan (the same as test/golden/testdata/README.md):
//
//	node  "node-a"   192.168.1.10  fd00:1::10   toward client1   (the node IP)
//	                 192.168.2.1   fd00:2::1    toward client2
//	                 10.244.1.1    fd00:244:1::1  bridge br0, the local pods' gateway
//	                 10.100.0.1    fd00:100::1  toward "remote" (another node)
//	pod-a (local)    10.244.1.5    fd00:244:1::5  on br0
//	pod-b (local)    10.244.1.6    fd00:244:1::6  on br0
//	pod-r (remote)   10.244.2.7    fd00:244:2::7  in "remote", nodeName node-b
//	client1          192.168.1.100 fd00:1::100  outside the cluster
//	client2          192.168.2.100 fd00:2::100  outside, not in any source range
//
// The node routes ClusterIPs (10.96.0.0/16), external IPs (172.16.0.0/24)
// and LB IPs (192.168.100.0/24) to "remote", which does not forward: a
// packet rulegen does not rewrite is silently lost there, and one that must
// be rejected is routed first (a reject needs a route). No namespace has a
// route out of the machine.
//
// The local pods share a bridge, as with the CNI bridge plugin: br_netfilter
// (on by default in a new namespace) makes bridged packets pass the IP
// hooks, so replies between pods on the bridge are un-NATed, and the ports
// are in hairpin mode, so that a pod can reach itself through its service.
package e2e

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/test/netnstest"
)

// Addresses of the topology.
const (
	NodeIP       = "192.168.1.10"
	NodeIP6      = "fd00:1::10"
	PodA         = "10.244.1.5"
	PodB         = "10.244.1.6"
	PodR         = "10.244.2.7"
	PodA6        = "fd00:244:1::5"
	PodB6        = "fd00:244:1::6"
	PodR6        = "fd00:244:2::7"
	Client1      = "192.168.1.100"
	Client2      = "192.168.2.100"
	Client16     = "fd00:1::100"
	BridgeGW     = "10.244.1.1"
	RemoteLink   = "10.100.0.1"
	ClusterCIDR  = "10.244.0.0/16"
	ClusterCIDR6 = "fd00:244::/32"
)

// Topology is the set of namespaces of one test.
type Topology struct {
	Node, PodA, PodB, Remote, Client1, Client2 *netnstest.NS
	// manifests and backend of the last Apply (for trace checks).
	manifests, backend string
	// Flags describe the node to rulegen for Apply, LoadDryRun and trace
	// (nil: nodeFlags).
	Flags []string
}

// Pods lists the namespaces that run a test server, by pod name.
func (tp *Topology) Pods() map[string]*netnstest.NS {
	return map[string]*netnstest.NS{"pod-a": tp.PodA, "pod-b": tp.PodB, "pod-r": tp.Remote}
}

// NewTopology builds the namespaces and starts a test server (the binary at
// server) in every pod: TCP 8080 on all, TCP 9090 on pod-a and pod-r, TCP
// 9091 on pod-b, UDP 5353 on all.
func NewTopology(t testing.TB, server string) *Topology {
	t.Helper()
	tp := &Topology{
		Node:    netnstest.New(t, "node"),
		PodA:    netnstest.New(t, "poda"),
		PodB:    netnstest.New(t, "podb"),
		Remote:  netnstest.New(t, "remote"),
		Client1: netnstest.New(t, "client1"),
		Client2: netnstest.New(t, "client2"),
	}
	// No duplicate address detection anywhere, link-local addresses
	// included (set before any link exists, so every device inherits it):
	// a tentative address delays a namespace's first IPv6 packets by a
	// second or two, and the first IPv6 check of a fresh topology timed out.
	for _, ns := range []*netnstest.NS{tp.Node, tp.PodA, tp.PodB, tp.Remote, tp.Client1, tp.Client2} {
		ns.Sysctl("net.ipv6.conf.all.accept_dad", "0")
		ns.Sysctl("net.ipv6.conf.default.accept_dad", "0")
	}
	n := tp.Node
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv4.icmp_ratelimit", "0"},
		{"net.ipv6.icmp.ratelimit", "0"},
		{"net.bridge.bridge-nf-call-iptables", "1"},
		{"net.bridge.bridge-nf-call-ip6tables", "1"},
		{"net.ipv4.conf.all.route_localnet", "1"}, // localhost nodePorts (iptables)
	} {
		n.Sysctl(kv[0], kv[1])
	}
	n.IP("link", "add", "br0", "type", "bridge")
	n.IP("addr", "add", "10.244.1.1/24", "dev", "br0")
	n.IP("addr", "add", "fd00:244:1::1/64", "dev", "br0", "nodad")
	n.IP("link", "set", "br0", "up")

	// link makes a veth pair node:local <-> peer:eth0 and addresses both ends.
	link := func(local string, peer *netnstest.NS, nodeAddrs, peerAddrs []string) {
		n.IP("link", "add", local, "type", "veth", "peer", "name", "eth0", "netns", peer.Name)
		for _, a := range nodeAddrs {
			args := []string{"addr", "add", a, "dev", local}
			if strings.Contains(a, ":") {
				args = append(args, "nodad")
			}
			n.IP(args...)
		}
		n.IP("link", "set", local, "up")
		for _, a := range peerAddrs {
			args := []string{"addr", "add", a, "dev", "eth0"}
			if strings.Contains(a, ":") {
				args = append(args, "nodad")
			}
			peer.IP(args...)
		}
		peer.IP("link", "set", "eth0", "up")
	}
	for _, p := range []struct {
		dev string
		ns  *netnstest.NS
		v4  string
		v6  string
	}{{"vpoda", tp.PodA, PodA, PodA6}, {"vpodb", tp.PodB, PodB, PodB6}} {
		link(p.dev, p.ns, nil, []string{p.v4 + "/24", p.v6 + "/64"})
		n.IP("link", "set", p.dev, "master", "br0")
		// As kubelet's hairpin mode does: let the bridge send a packet back
		// out of the port it came in on, so that a pod can reach itself
		// through its service.
		n.IP("link", "set", p.dev, "type", "bridge_slave", "hairpin", "on")
		p.ns.IP("route", "add", "default", "via", BridgeGW)
		p.ns.IP("-6", "route", "add", "default", "via", "fd00:244:1::1")
	}
	link("vremote", tp.Remote, []string{"10.100.0.1/30", "fd00:100::1/64"}, []string{"10.100.0.2/30", "fd00:100::2/64"})
	tp.Remote.IP("addr", "add", PodR+"/32", "dev", "lo")
	tp.Remote.IP("addr", "add", "fd00:244:2::7/128", "dev", "lo", "nodad")
	// Traffic from the remote pod leaves with the pod's address, as from a pod.
	tp.Remote.IP("route", "add", "default", "via", "10.100.0.1", "src", PodR)
	tp.Remote.IP("-6", "route", "add", "default", "via", "fd00:100::1", "src", PodR6)
	link("vclient1", tp.Client1, []string{NodeIP + "/24", NodeIP6 + "/64"}, []string{Client1 + "/24", Client16 + "/64"})
	tp.Client1.IP("route", "add", "default", "via", NodeIP)
	tp.Client1.IP("-6", "route", "add", "default", "via", NodeIP6)
	link("vclient2", tp.Client2, []string{"192.168.2.1/24", "fd00:2::1/64"}, []string{Client2 + "/24", "fd00:2::100/64"})
	tp.Client2.IP("route", "add", "default", "via", "192.168.2.1")
	tp.Client2.IP("-6", "route", "add", "default", "via", "fd00:2::1")
	for _, r := range []string{"10.244.2.0/24", "10.96.0.0/16", "172.16.0.0/24", "192.168.100.0/24"} {
		n.IP("route", "add", r, "via", "10.100.0.2")
	}
	for _, r := range []string{"fd00:244:2::/64", "fd00:96::/112", "fd00:172::/64", "fd00:100:1::/64"} {
		n.IP("-6", "route", "add", r, "via", "fd00:100::2")
	}

	for name, ns := range tp.Pods() {
		tcp := "8080,9090"
		if name == "pod-b" {
			tcp = "8080,9091"
		}
		startServer(t, ns, server, name, tcp, "5353")
	}
	return tp
}

// startServer starts a test server and waits (at most 5 s) until it listens.
func startServer(t testing.TB, ns *netnstest.NS, bin, name, tcp, udp string) {
	t.Helper()
	cmd := ns.Start(bin, "-serve", name, "-tcp", tcp, "-udp", udp)
	_ = cmd
	// The server prints "ready" once listening; poll with a bounded loop
	// by connecting locally instead of sharing a pipe with Start.
	for i := 0; i < 50; i++ {
		out, _ := ns.Run(nil, bin, "-probe", "tcp", "-addr", "127.0.0.1:8080", "-timeout", "200ms")
		if strings.HasPrefix(out, "ok ") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("test server %s in %s did not start", name, ns.Name)
}

// firstLine reads one line from r.
func firstLine(r io.Reader) string {
	s, _ := bufio.NewReader(r).ReadString('\n')
	return strings.TrimSpace(s)
}
