package rulestest

import (
	"net/netip"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Bytes turns fuzz input into choices: each choice takes the next byte;
// past the end of the input every choice is the first option, so that any
// input, the empty one included, builds something.
type Bytes struct{ data []byte }

// NewBytes returns choices read from data.
func NewBytes(data []byte) *Bytes { return &Bytes{data: data} }

// Byte returns the next byte (0 past the end).
func (b *Bytes) Byte() byte {
	if len(b.data) == 0 {
		return 0
	}
	c := b.data[0]
	b.data = b.data[1:]
	return c
}

// IntN returns a number in [0, n).
func (b *Bytes) IntN(n int) int { return int(b.Byte()) % n }

// Bool returns a choice between false and true.
func (b *Bytes) Bool() bool { return b.Byte()&1 == 1 }

// Left reports whether input is left.
func (b *Bytes) Left() bool { return len(b.data) > 0 }

// Raw returns a string of up to 31 bytes taken as they are from the input:
// whatever the fuzzer puts there, NULs and newlines included.
func (b *Bytes) Raw() string {
	n := min(b.IntN(32), len(b.data))
	s := string(b.data[:n])
	b.data = b.data[n:]
	return s
}

// Pick returns one of of; one time in 16 a raw string instead, so that
// validation sees hostile input too.
func (b *Bytes) Pick(of ...string) string {
	c := b.Byte()
	if c >= 240 {
		return b.Raw()
	}
	return of[int(c)%len(of)]
}

func (b *Bytes) ptr(s string) *string { return &s }

// Address pools: few values, so that services share addresses and ports
// (conflicts), endpoints repeat across slices, and node addresses meet
// service addresses. Each pool holds a few addresses the API refuses.
var (
	v4Pool = []string{"10.96.0.1", "10.96.0.2", "10.96.0.3", "192.168.1.10", "192.168.1.11", "10.244.1.5", "10.244.2.6",
		"203.0.113.7", "0.0.0.0", "127.0.0.1", "010.096.000.001", "::ffff:10.96.0.1", "169.254.1.1"}
	v6Pool = []string{"fd00:96::1", "fd00:96::2", "fd00:1::10", "fd00:244::5", "fd00:244:1::6", "2001:db8::7",
		"fe80::1", "fe80::1%eth0", "::", "::1"}
)

// Addr returns an address string, usually of family fam.
func (b *Bytes) Addr(fam rules.Family) string {
	pool, other := v4Pool, v6Pool
	if fam == rules.IPv6 {
		pool, other = other, pool
	}
	if b.IntN(8) == 0 {
		return b.Pick(other...)
	}
	return b.Pick(pool...)
}

// Family returns IPv4 or IPv6.
func (b *Bytes) Family() rules.Family {
	if b.Bool() {
		return rules.IPv6
	}
	return rules.IPv4
}

// Objects are a cluster as the API server (or a manifest) hands it to
// rulegen, before conversion, and the node-side settings.
type Objects struct {
	Node     *v1.Node
	Services []*v1.Service
	Slices   []*discovery.EndpointSlice
	Config   rules.Config // without Node: see Model
}

// Epoch is the first creation time ObjectsFromBytes gives a service; the
// others are whole hours later, and often equal (ties).
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ObjectsFromBytes builds a node, a few Services and their EndpointSlices
// and a Config from fuzz input. Most values come from small pools (valid
// and invalid ones); some are raw bytes of the input.
func ObjectsFromBytes(b *Bytes) *Objects {
	o := &Objects{Node: nodeFromBytes(b), Config: configFromBytes(b)}
	for n := 1 + b.IntN(5); n > 0; n-- {
		svc := serviceFromBytes(b)
		o.Services = append(o.Services, svc)
		for m := b.IntN(3); m > 0; m-- {
			o.Slices = append(o.Slices, sliceFromBytes(b, svc))
		}
	}
	return o
}

func nodeFromBytes(b *Bytes) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: b.Pick("node-a", "node-a", "node-b", "")}}
	if b.Bool() {
		n.Labels = map[string]string{rules.LabelZone: b.Pick("zone-a", "zone-b", "")}
	}
	for k := b.IntN(4); k > 0; k-- {
		t := v1.NodeInternalIP
		if b.IntN(3) == 0 {
			t = v1.NodeExternalIP
		}
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: t, Address: b.Addr(b.Family())})
	}
	for k := b.IntN(3); k > 0; k-- {
		n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, b.Pick("10.244.1.0/24", "fd00:244:1::/64", "10.244.2.0/24", "10.244.1.5"))
	}
	return n
}

func configFromBytes(b *Bytes) rules.Config {
	var c rules.Config
	if b.Bool() {
		c.ClusterCIDRs = append(c.ClusterCIDRs, netip.MustParsePrefix("10.244.0.0/16"))
	}
	if b.Bool() {
		c.ClusterCIDRs = append(c.ClusterCIDRs, netip.MustParsePrefix("fd00:244::/48"))
	}
	for k := b.IntN(3); k > 0; k-- {
		c.NodePortAddresses = append(c.NodePortAddresses, netip.MustParsePrefix(
			[]string{"192.168.1.0/24", "192.168.1.11/32", "127.0.0.0/8", "127.0.0.1/32", "0.0.0.0/0", "fd00:1::/64", "::/0"}[b.IntN(7)]))
	}
	c.NodePortPrimary = b.IntN(4) == 0
	c.DetectLocalNodeCIDR = b.IntN(4) == 0
	c.MasqueradeAll = b.IntN(4) == 0
	switch b.IntN(4) {
	case 1:
		bit := int32(b.IntN(32))
		c.MasqueradeBit = &bit
	}
	if b.Bool() {
		c.ServiceCIDRs = append(c.ServiceCIDRs, netip.MustParsePrefix("10.96.0.0/16"))
	}
	if b.Bool() {
		c.ServiceCIDRs = append(c.ServiceCIDRs, netip.MustParsePrefix("fd00:96::/112"))
	}
	switch b.IntN(3) {
	case 1:
		t := true
		c.LocalhostNodePorts = &t
	case 2:
		f := false
		c.LocalhostNodePorts = &f
	}
	c.ConntrackTCPBeLiberal = b.Bool()
	return c
}

func serviceFromBytes(b *Bytes) *v1.Service {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{
		Namespace:         b.Pick("default", "default", "kube-system", "ns-1", ""),
		Name:              b.Pick("web", "dns", "db", "a-b", "9x"),
		CreationTimestamp: metav1.NewTime(Epoch.Add(time.Duration(b.IntN(3)) * time.Hour)),
	}}
	if b.IntN(16) == 0 {
		svc.Labels = map[string]string{rules.LabelServiceProxyName: "other"}
	}
	s := &svc.Spec
	s.Type = []v1.ServiceType{v1.ServiceTypeClusterIP, v1.ServiceTypeClusterIP, v1.ServiceTypeNodePort, v1.ServiceTypeLoadBalancer, "", v1.ServiceTypeExternalName, "Other"}[b.IntN(7)]
	switch b.IntN(6) {
	case 0:
		s.ClusterIP = v1.ClusterIPNone
	case 1:
		s.ClusterIP = b.Addr(rules.IPv4)
	}
	for k := 1 + b.IntN(2); k > 0; k-- {
		s.ClusterIPs = append(s.ClusterIPs, b.Addr(b.Family()))
	}
	if b.IntN(8) == 0 {
		s.ClusterIPs = nil
	}
	for k := b.IntN(3); k > 0; k-- {
		s.ExternalIPs = append(s.ExternalIPs, b.Addr(b.Family()))
	}
	for k := b.IntN(3); k > 0; k-- {
		ing := v1.LoadBalancerIngress{IP: b.Addr(b.Family())}
		if b.IntN(4) == 0 {
			ing.IP = ""
		}
		if b.IntN(6) == 0 {
			mode := v1.LoadBalancerIPModeProxy
			ing.IPMode = &mode
		}
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, ing)
	}
	for k := b.IntN(3); k > 0; k-- {
		s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, b.Pick("192.168.1.0/24", " 10.0.0.0/8 ", "0.0.0.0/0", "fd00::/8", "::/0", "203.0.113.0/24", "10.1.2.3"))
	}
	s.ExternalTrafficPolicy = []v1.ServiceExternalTrafficPolicy{"", v1.ServiceExternalTrafficPolicyCluster, v1.ServiceExternalTrafficPolicyLocal, "Nope"}[b.IntN(4)]
	switch b.IntN(4) {
	case 1:
		p := v1.ServiceInternalTrafficPolicyLocal
		s.InternalTrafficPolicy = &p
	case 2:
		p := v1.ServiceInternalTrafficPolicyCluster
		s.InternalTrafficPolicy = &p
	}
	if b.IntN(3) == 0 {
		s.SessionAffinity = v1.ServiceAffinityClientIP
		if b.Bool() {
			t := []int32{1, 10800, 0, 86401, 30}[b.IntN(5)]
			s.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: &t}}
		}
	}
	if b.IntN(4) == 0 {
		s.HealthCheckNodePort = []int32{32000, 32001, -1}[b.IntN(3)]
	}
	if b.IntN(6) == 0 {
		s.TrafficDistribution = b.ptr(b.Pick(v1.ServiceTrafficDistributionPreferClose, v1.ServiceTrafficDistributionPreferSameNode, "Else"))
	}
	for k := 1 + b.IntN(3); k > 0; k-- {
		p := v1.ServicePort{
			Name:     b.Pick("", "http", "dns", "p-1", "Bad_Name"),
			Protocol: v1.Protocol(b.Pick("TCP", "UDP", "SCTP", "", "udp")),
			Port:     []int32{53, 80, 443, 8080, 0, 65535, 70000}[b.IntN(7)],
		}
		if s.Type == v1.ServiceTypeNodePort || s.Type == v1.ServiceTypeLoadBalancer || b.IntN(8) == 0 {
			p.NodePort = []int32{30001, 30002, 30053, 0, 65536}[b.IntN(5)]
		}
		switch b.IntN(4) {
		case 1:
			p.TargetPort = intstr.FromInt32([]int32{8080, 53, 0, 70000}[b.IntN(4)])
		case 2:
			p.TargetPort = intstr.FromString(b.Pick("http", "dns", "Bad_Name", ""))
		}
		s.Ports = append(s.Ports, p)
	}
	return svc
}

func sliceFromBytes(b *Bytes, svc *v1.Service) *discovery.EndpointSlice {
	es := &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: b.Pick("s1", "s2", "s3", "S_4")}}
	switch b.IntN(8) {
	case 0:
	case 1:
		es.Labels = map[string]string{discovery.LabelServiceName: b.Pick("web", "dns", "other")}
	default:
		es.Labels = map[string]string{discovery.LabelServiceName: svc.Name}
	}
	es.AddressType = []discovery.AddressType{discovery.AddressTypeIPv4, discovery.AddressTypeIPv6, discovery.AddressTypeIPv4, discovery.AddressTypeFQDN, "IPv5"}[b.IntN(5)]
	fam := rules.IPv4
	if es.AddressType == discovery.AddressTypeIPv6 {
		fam = rules.IPv6
	}
	for k := b.IntN(3); k > 0; k-- {
		var p discovery.EndpointPort
		if b.IntN(6) != 0 {
			p.Name = b.ptr(b.Pick("", "http", "dns", "p-1", "Bad_Name"))
		}
		if b.IntN(4) != 0 {
			proto := v1.Protocol(b.Pick("TCP", "UDP", "SCTP", "ICMP"))
			p.Protocol = &proto
		}
		if b.IntN(6) != 0 {
			port := []int32{8080, 53, 80, 0, 65536}[b.IntN(5)]
			p.Port = &port
		}
		es.Ports = append(es.Ports, p)
	}
	for k := b.IntN(4); k > 0; k-- {
		var ep discovery.Endpoint
		if b.IntN(10) != 0 {
			ep.Addresses = []string{b.Addr(fam)}
		}
		cond := func() *bool {
			switch b.IntN(3) {
			case 1:
				t := true
				return &t
			case 2:
				f := false
				return &f
			}
			return nil
		}
		ep.Conditions = discovery.EndpointConditions{Ready: cond(), Serving: cond(), Terminating: cond()}
		if b.IntN(4) != 0 {
			ep.NodeName = b.ptr(b.Pick("node-a", "node-b", "node-a", "Node_A"))
		}
		if b.IntN(4) == 0 {
			ep.Zone = b.ptr(b.Pick("zone-a", "zone-b", "-bad-"))
		}
		if b.IntN(4) == 0 {
			ep.Hints = &discovery.EndpointHints{}
			for h := b.IntN(3); h > 0; h-- {
				ep.Hints.ForZones = append(ep.Hints.ForZones, discovery.ForZone{Name: b.Pick("zone-a", "zone-b")})
			}
			for h := b.IntN(3); h > 0; h-- {
				ep.Hints.ForNodes = append(ep.Hints.ForNodes, discovery.ForNode{Name: b.Pick("node-a", "node-b")})
			}
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	return es
}

// Model converts the objects as the daemon does: a Service or slice the
// converters refuse is left out (a slice keeps its valid endpoints), a
// later object of the same name replaces an earlier one, and the Node
// gives what NodeFromObject could use. It returns how many objects or
// parts were refused.
func (o *Objects) Model() (*rules.State, *rules.Config, int) {
	st := rules.NewState()
	refused := 0
	for _, svc := range o.Services {
		ports, err := rules.ConvertService(svc)
		if err != nil {
			refused++
		}
		st.SetService(rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}, ports)
	}
	for _, es := range o.Slices {
		sl, errs := rules.ConvertSlice(es)
		refused += len(errs)
		if sl != nil {
			st.SetSlice(sl)
		}
	}
	cfg := o.Config
	node, err := rules.NodeFromObject(o.Node)
	if err != nil {
		refused++
	}
	cfg.Node = node
	if cfg.Node.Name == "" {
		cfg.Node.Name = "node-a" // the daemon refuses to start without one
	}
	return st, &cfg, refused
}

// Change applies to st a batch of changes as the informers would deliver
// them: about a third of o's Services and EndpointSlices deleted (as b
// draws), then every object of next set. It returns the configuration
// next describes.
func (o *Objects) Change(st *rules.State, b *Bytes, next *Objects) *rules.Config {
	for _, svc := range o.Services {
		if b.IntN(3) == 0 {
			st.DeleteService(rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name})
		}
	}
	for _, es := range o.Slices {
		if b.IntN(3) == 0 {
			if key, ok := rules.ServiceNameOf(es); ok {
				st.DeleteSlice(key, es.Name)
			}
		}
	}
	_, cfg, _ := next.Model()
	for _, svc := range next.Services {
		ports, _ := rules.ConvertService(svc)
		st.SetService(rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}, ports)
	}
	for _, es := range next.Slices {
		if sl, _ := rules.ConvertSlice(es); sl != nil {
			st.SetSlice(sl)
		}
	}
	return cfg
}
