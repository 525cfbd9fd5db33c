package e2e

import (
	"cmp"
	"fmt"
	"strings"
)

// Ep is one endpoint of a test service.
type Ep struct {
	IP, Node    string
	Port        int
	NotReady    bool
	Terminating bool // serving but terminating
	// ServingUnset leaves conditions.serving out (the API: unset means
	// serving; kube-proxy uses such a terminating endpoint as a fallback).
	ServingUnset bool
}

// Local pods (on node-a) and the remote one (on node-b), on TCP 8080.
var (
	EpA = Ep{IP: PodA, Node: "node-a", Port: 8080}
	EpB = Ep{IP: PodB, Node: "node-a", Port: 8080}
	EpR = Ep{IP: PodR, Node: "node-b", Port: 8080}
)

// Svc describes a test Service and its EndpointSlice compactly.
type Svc struct {
	Name        string
	Type        string // ClusterIP (default), NodePort, LoadBalancer
	ClusterIP   string
	Port        int
	TargetPort  string // default: the endpoints' port
	PortName    string // default "p"
	Protocol    string // default TCP
	NodePort    int
	ExternalIPs []string
	LBIP        string
	Ranges      []string
	ETPLocal    bool
	ITPLocal    bool
	Affinity    bool
	Family      string // IPv4 (default) or IPv6
	// Unnamed: the service's one port has no name, and the slice's port a
	// nil name (which kube-proxy ignores: the service has no endpoints).
	Unnamed bool
	// Slices: each inner list is one slice; a slice's port is its first
	// endpoint's port (so that a named targetPort can differ per slice).
	Slices [][]Ep
}

// YAML returns the Service and its EndpointSlices as manifests.
func (s Svc) YAML() string {
	var b strings.Builder
	typ, proto := cmp.Or(s.Type, "ClusterIP"), cmp.Or(s.Protocol, "TCP")
	pname, fam := cmp.Or(s.PortName, "p"), cmp.Or(s.Family, "IPv4")
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: e2e}\nspec:\n  type: %s\n  clusterIP: %q\n  clusterIPs: [%q]\n", s.Name, typ, s.ClusterIP, s.ClusterIP)
	if s.Unnamed {
		fmt.Fprintf(&b, "  ports:\n  - protocol: %s\n    port: %d\n", proto, s.Port)
	} else {
		fmt.Fprintf(&b, "  ports:\n  - name: %s\n    protocol: %s\n    port: %d\n", pname, proto, s.Port)
	}
	if s.TargetPort != "" {
		fmt.Fprintf(&b, "    targetPort: %s\n", s.TargetPort)
	}
	if s.NodePort != 0 {
		fmt.Fprintf(&b, "    nodePort: %d\n", s.NodePort)
	}
	if len(s.ExternalIPs) > 0 {
		fmt.Fprintf(&b, "  externalIPs: [%s]\n", strings.Join(s.ExternalIPs, ", "))
	}
	if len(s.Ranges) > 0 {
		fmt.Fprintf(&b, "  loadBalancerSourceRanges: [%s]\n", strings.Join(s.Ranges, ", "))
	}
	if s.ETPLocal {
		b.WriteString("  externalTrafficPolicy: Local\n")
	}
	if s.ITPLocal {
		b.WriteString("  internalTrafficPolicy: Local\n")
	}
	if s.Affinity {
		b.WriteString("  sessionAffinity: ClientIP\n")
	}
	if s.LBIP != "" {
		fmt.Fprintf(&b, "status:\n  loadBalancer:\n    ingress: [{ip: %q}]\n", s.LBIP)
	}
	for i, eps := range s.Slices {
		port := 8080
		if len(eps) > 0 {
			port = eps[0].Port
		}
		fmt.Fprintf(&b, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: %s-%d\n  namespace: e2e\n  labels: {kubernetes.io/service-name: %s}\naddressType: %s\n", s.Name, i, s.Name, fam)
		if s.Unnamed {
			fmt.Fprintf(&b, "ports: [{protocol: %s, port: %d}]\n", proto, port)
		} else {
			fmt.Fprintf(&b, "ports: [{name: %s, protocol: %s, port: %d}]\n", pname, proto, port)
		}
		if len(eps) == 0 {
			b.WriteString("endpoints: []\n")
		} else {
			b.WriteString("endpoints:\n")
		}
		for _, e := range eps {
			ready, serving, term := !e.NotReady && !e.Terminating, !e.NotReady, e.Terminating
			if e.ServingUnset {
				fmt.Fprintf(&b, "- addresses: [%q]\n  nodeName: %s\n  conditions: {ready: %v, terminating: %v}\n", e.IP, e.Node, ready, term)
				continue
			}
			fmt.Fprintf(&b, "- addresses: [%q]\n  nodeName: %s\n  conditions: {ready: %v, serving: %v, terminating: %v}\n", e.IP, e.Node, ready, serving, term)
		}
	}
	return b.String()
}

// Manifests joins services into one multi-document manifest.
func Manifests(svcs ...Svc) string {
	docs := make([]string, len(svcs))
	for i, s := range svcs {
		docs[i] = s.YAML()
	}
	return strings.Join(docs, "---\n")
}

// At returns a copy of e on another port.
func (e Ep) At(port int) Ep { e.Port = port; return e }
