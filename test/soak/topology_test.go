package soak

import (
	"path/filepath"

	"github.com/rulegen/rulegen/test/netnstest"
	"github.com/rulegen/rulegen/test/scale"
)

// The address plan. test/scale's topology (client, node, pods) plus a pod
// client: a namespace whose address is inside the cluster CIDR but outside
// the range the pods answer on, so that its traffic is pod traffic.
//
//	client 192.168.1.100 --- 192.168.1.10 node 10.100.0.1 --- 10.100.0.2 pods (10.128.0.0/13 local)
//	                                      node 10.143.255.253 --- 10.143.255.254 pod client
//
// The node routes the service CIDR towards the client, as a real node's
// default route would take it away (the neighbour's host firewall drops
// such packets before they leave): a packet to a ClusterIP that no rule
// rewrote is lost, not refused at once by routing, so that TCP retransmits.
// No namespace has a route out of the machine.
const (
	nodeName     = "node-a"
	otherNode    = "node-b"
	nodeIP       = scale.NodeIP
	clientIP     = scale.ClientIP
	secondNodeIP = "192.168.1.11" // the Node address the churn adds and removes
	clusterCIDR  = "10.128.0.0/12"
	podRange     = "10.128.0.0/13"
	podClientIP  = "10.143.255.254"
	podClientGW  = "10.143.255.253"
	serviceCIDR  = "10.96.0.0/16" // test/cluster's --service-cluster-ip-range
	tcpPort      = 8080           // every pod's TCP port
	udpPort      = 5353           // every pod's UDP port
	svcTCPPort   = 80
	svcUDPPort   = 53
	namespace    = "default"
)

// newTopology builds the namespaces and starts the pod servers (TCP and
// UDP, each for at most lifetime).
func (h *harness) newTopology(lifetime string) {
	t := h.t
	tp := scale.NewTopology(t, bins.server, podRange, "8080", lifetime, filepath.Join(h.logDir, "pods-tcp.log"))
	h.node, h.client, h.pods = tp.Node, tp.Client, tp.Pods
	h.pods.StartLogged(filepath.Join(h.logDir, "pods-udp.log"), bins.server, "-serve", "@local", "-udp", "5353", "-lifetime", lifetime)
	h.podc = netnstest.New(t, "skpodc")
	n := h.node
	n.IP("link", "add", "vpodc", "type", "veth", "peer", "name", "eth0", "netns", h.podc.Name)
	n.IP("addr", "add", podClientGW+"/30", "dev", "vpodc")
	n.IP("link", "set", "vpodc", "up")
	h.podc.IP("addr", "add", podClientIP+"/30", "dev", "eth0")
	h.podc.IP("link", "set", "eth0", "up")
	h.podc.IP("route", "add", "default", "via", podClientGW)
	n.IP("route", "add", serviceCIDR, "via", clientIP)
}
