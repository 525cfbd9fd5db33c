package rules

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"
)

// Family is an IP address family. rulegen renders one ruleset per family.
type Family int

const (
	// IPv4 is the IPv4 address family.
	IPv4 Family = 4
	// IPv6 is the IPv6 address family.
	IPv6 Family = 6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// FamilyOf returns the family of addr (an IPv4-mapped IPv6 address counts as IPv6).
func FamilyOf(addr netip.Addr) Family {
	if addr.Is4() {
		return IPv4
	}
	return IPv6
}

// ParseFamily parses "ipv4"/"ipv6" (also "4"/"6").
func ParseFamily(s string) (Family, error) {
	switch s {
	case "ipv4", "4", "IPv4":
		return IPv4, nil
	case "ipv6", "6", "IPv6":
		return IPv6, nil
	}
	return 0, fmt.Errorf("unknown IP family %q (want ipv4 or ipv6)", s)
}

// Protocol is a transport protocol, spelled in lower case as nft and iptables spell it.
type Protocol string

// The protocols a Service port may use.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// ServiceKey names a Service.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String returns "namespace/name".
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// ServicePortName names one port of a Service. Port is the port's name, which
// is empty for a Service with a single unnamed port.
type ServicePortName struct {
	ServiceKey
	Port     string
	Protocol Protocol
}

// String returns "namespace/name:port" (without ":port" for an unnamed port),
// the form used in logs and rule comments.
func (n ServicePortName) String() string {
	if n.Port == "" {
		return n.ServiceKey.String()
	}
	return n.ServiceKey.String() + ":" + n.Port
}

// Compare orders ServicePortNames by namespace, name, port name and
// protocol: -1, 0 or +1.
func (n ServicePortName) Compare(o ServicePortName) int {
	return cmp.Or(cmp.Compare(n.Namespace, o.Namespace), cmp.Compare(n.Name, o.Name), cmp.Compare(n.Port, o.Port), cmp.Compare(n.Protocol, o.Protocol))
}

// Less reports whether n comes before o (see Compare).
func (n ServicePortName) Less(o ServicePortName) bool { return n.Compare(o) < 0 }

// ServicePort is everything rulegen needs to know about one port of a Service,
// taken from the Service object. All address lists are sorted; they hold both
// families, and the planner picks the family it renders.
type ServicePort struct {
	Name ServicePortName

	// Created is the Service's metadata.creationTimestamp (zero if unset).
	// When two services claim the same destination, the older keeps it.
	Created time.Time

	// ClusterIPs are the Service's virtual IPs (one per family at most).
	ClusterIPs []netip.Addr
	// Port is the Service port clients connect to on the ClusterIP.
	Port int32
	// TargetPort is the Service's targetPort as written (a number or a
	// container port name). The endpoint port comes from the EndpointSlice;
	// this is kept for explanations.
	TargetPort string
	// NodePort is the port opened on the node addresses, or 0.
	NodePort int32
	// ExternalIPs are spec.externalIPs.
	ExternalIPs []netip.Addr
	// LoadBalancerIPs are status.loadBalancer.ingress IPs (ipMode VIP).
	LoadBalancerIPs []netip.Addr
	// SourceRanges are spec.loadBalancerSourceRanges; empty means all sources.
	SourceRanges []netip.Prefix
	// AffinitySeconds is the ClientIP session affinity timeout, 0 for no affinity.
	AffinitySeconds int32
	// ExternalPolicyLocal is externalTrafficPolicy: Local.
	ExternalPolicyLocal bool
	// InternalPolicyLocal is internalTrafficPolicy: Local.
	InternalPolicyLocal bool
	// HealthCheckNodePort is spec.healthCheckNodePort, or 0.
	HealthCheckNodePort int32
	// TrafficDistribution is spec.trafficDistribution (informational: like
	// kube-proxy, rulegen acts on the hints the EndpointSlice controller
	// derives from it).
	TrafficDistribution string
}

// Externally reports whether the port has destinations reachable from outside
// the cluster (a nodePort, external IPs or load-balancer IPs).
func (p *ServicePort) Externally() bool {
	return p.NodePort != 0 || len(p.ExternalIPs) > 0 || len(p.LoadBalancerIPs) > 0
}

// Endpoint is one backend of a Service port, taken from an EndpointSlice.
type Endpoint struct {
	IP   netip.Addr
	Port int32
	// Ready, Serving and Terminating are the EndpointSlice conditions, with
	// kube-proxy's defaults applied (nil ready means ready; nil serving
	// means serving, even when not ready; nil terminating means false).
	Ready       bool
	Serving     bool
	Terminating bool
	NodeName    string
	Zone        string
	// ZoneHints and NodeHints are the topology hints (hints.forZones /
	// hints.forNodes).
	ZoneHints []string
	NodeHints []string
}

// String returns "ip:port" (with brackets for IPv6).
func (e Endpoint) String() string {
	return netip.AddrPortFrom(e.IP, uint16(e.Port)).String()
}

// Node is what rulegen knows about the node it runs on.
type Node struct {
	Name string
	// Zone is the topology.kubernetes.io/zone label.
	Zone string
	// IPs are the node's addresses (status.addresses InternalIP and
	// ExternalIP, or --node-ip).
	IPs []netip.Addr
	// PodCIDRs are the node's pod ranges (spec.podCIDRs), which tell pod
	// traffic with Config.DetectLocalNodeCIDR.
	PodCIDRs []netip.Prefix
}
