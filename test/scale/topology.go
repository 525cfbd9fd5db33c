package scale

import (
	"testing"

	"github.com/rulegen/rulegen/test/netnstest"
)

// Addresses of the scale topology.
const (
	NodeIP   = "192.168.1.10"
	ClientIP = "192.168.1.100"
)

// Topology is a node between an outside client and a namespace that holds
// every pod: a local route for PodRange makes each of its addresses answer,
// so one server (testserver -serve @local, which answers with the address
// it was reached at) stands for any number of pods.
//
//	client 192.168.1.100 --- 192.168.1.10 node 10.100.0.1 --- 10.100.0.2 pods (PodRange local)
//
// No namespace has a route out of the machine.
type Topology struct {
	Node, Client, Pods *netnstest.NS
}

// NewTopology builds the three namespaces and starts the pod server (the
// test server binary at server) on TCP port, for at most lifetime.
func NewTopology(t testing.TB, server, podRange, port, lifetime, logFile string) *Topology {
	t.Helper()
	tp := &Topology{Node: netnstest.New(t, "scnode"), Client: netnstest.New(t, "scclient"), Pods: netnstest.New(t, "scpods")}
	n := tp.Node
	n.Sysctl("net.ipv4.ip_forward", "1")
	n.Sysctl("net.ipv4.icmp_ratelimit", "0")
	n.IP("link", "add", "vclient", "type", "veth", "peer", "name", "eth0", "netns", tp.Client.Name)
	n.IP("addr", "add", NodeIP+"/24", "dev", "vclient")
	n.IP("link", "set", "vclient", "up")
	tp.Client.IP("addr", "add", ClientIP+"/24", "dev", "eth0")
	tp.Client.IP("link", "set", "eth0", "up")
	tp.Client.IP("route", "add", "default", "via", NodeIP)
	n.IP("link", "add", "vpods", "type", "veth", "peer", "name", "eth0", "netns", tp.Pods.Name)
	n.IP("addr", "add", "10.100.0.1/30", "dev", "vpods")
	n.IP("link", "set", "vpods", "up")
	n.IP("route", "add", podRange, "via", "10.100.0.2")
	tp.Pods.IP("addr", "add", "10.100.0.2/30", "dev", "eth0")
	tp.Pods.IP("link", "set", "eth0", "up")
	tp.Pods.IP("route", "add", "default", "via", "10.100.0.1")
	tp.Pods.IP("route", "add", "local", podRange, "dev", "lo")
	tp.Pods.StartLogged(logFile, server, "-serve", "@local", "-tcp", port, "-lifetime", lifetime)
	return tp
}
