package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// Well-known labels and annotations rulegen reads.
const (
	// LabelServiceProxyName marks a Service as handled by another proxy; rulegen ignores it.
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// LabelHeadless marks a headless Service's EndpointSlices.
	LabelHeadless = "service.kubernetes.io/headless"
	// LabelZone is the node's zone label, used for topology hints.
	LabelZone = "topology.kubernetes.io/zone"
	// defaultAffinitySeconds is the API default for ClientIP affinity (3 hours).
	defaultAffinitySeconds = 10800
)

// ObjectError reports an object (or one part of it) that rulegen cannot use.
// It names the object and the field, so that an operator can find and fix it.
type ObjectError struct {
	Kind      string // "Service", "EndpointSlice", "Node"
	Namespace string
	Name      string
	Field     string // e.g. "spec.ports[1].protocol"
	Reason    string
}

// Error implements error.
func (e *ObjectError) Error() string {
	obj := e.Name
	if e.Namespace != "" {
		obj = e.Namespace + "/" + e.Name
	}
	if obj == "" {
		obj = "(unnamed)"
	}
	if e.Field == "" {
		return fmt.Sprintf("%s %s: %s", e.Kind, obj, e.Reason)
	}
	return fmt.Sprintf("%s %s: %s: %s", e.Kind, obj, e.Field, e.Reason)
}

// Skipped reports whether the whole object was skipped (as opposed to a part
// of it, such as one endpoint).
func (e *ObjectError) Skipped() bool { return !strings.HasPrefix(e.Field, "endpoints[") }

func svcErr(svc *v1.Service, field, format string, args ...any) *ObjectError {
	return &ObjectError{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ServiceIgnored reports why rulegen writes no rules for svc even though it is
// valid ("" when it does): headless and ExternalName services, and services
// that name another proxy.
func ServiceIgnored(svc *v1.Service) string {
	if _, ok := svc.Labels[LabelServiceProxyName]; ok {
		return "labelled " + LabelServiceProxyName + " (handled by another proxy)"
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return "type ExternalName (DNS only)"
	}
	if svc.Spec.ClusterIP == v1.ClusterIPNone {
		return "headless (clusterIP None)"
	}
	return ""
}

// ConvertService turns a Service into its ports. An ignored service (see
// ServiceIgnored) yields no ports and no error. An invalid service yields no
// ports and an *ObjectError naming the first bad field: rulegen never renders
// half a service.
func ConvertService(svc *v1.Service) ([]*ServicePort, error) {
	if svc.Name == "" {
		return nil, svcErr(svc, "metadata.name", "missing")
	}
	if ServiceIgnored(svc) != "" {
		return nil, nil
	}
	ipStrs := svc.Spec.ClusterIPs
	if len(ipStrs) == 0 && svc.Spec.ClusterIP != "" {
		ipStrs = []string{svc.Spec.ClusterIP}
	}
	if len(ipStrs) == 0 {
		return nil, svcErr(svc, "spec.clusterIP", "not set (the API server assigns it; a manifest given to --dry-run must set it)")
	}
	var clusterIPs []netip.Addr
	seenFamily := map[Family]bool{}
	for i, s := range ipStrs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, svcErr(svc, fmt.Sprintf("spec.clusterIPs[%d]", i), "%q is not an IP address", s)
		}
		ip = ip.Unmap()
		if seenFamily[FamilyOf(ip)] {
			return nil, svcErr(svc, fmt.Sprintf("spec.clusterIPs[%d]", i), "two cluster IPs of family %s", FamilyOf(ip))
		}
		seenFamily[FamilyOf(ip)] = true
		clusterIPs = append(clusterIPs, ip)
	}
	externalIPs, err := parseAddrs(svc, "spec.externalIPs", svc.Spec.ExternalIPs)
	if err != nil {
		return nil, err
	}
	var lbIPs []netip.Addr
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" {
				continue // a hostname-only ingress has no IP to program
			}
			if ing.IPMode != nil && *ing.IPMode == v1.LoadBalancerIPModeProxy {
				continue // the load balancer proxies: traffic arrives addressed to the node
			}
			ip, err := netip.ParseAddr(ing.IP)
			if err != nil {
				return nil, svcErr(svc, fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), "%q is not an IP address", ing.IP)
			}
			lbIPs = append(lbIPs, ip.Unmap())
		}
	}
	var ranges []netip.Prefix
	for i, s := range svc.Spec.LoadBalancerSourceRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, svcErr(svc, fmt.Sprintf("spec.loadBalancerSourceRanges[%d]", i), "%q is not a CIDR", s)
		}
		ranges = append(ranges, p.Masked())
	}
	external := svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer
	var affinity int32
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = defaultAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = *c.ClientIP.TimeoutSeconds
			if affinity <= 0 || affinity > 86400 {
				return nil, svcErr(svc, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "%d is out of range (1-86400)", affinity)
			}
		}
	} else if svc.Spec.SessionAffinity != "" && svc.Spec.SessionAffinity != v1.ServiceAffinityNone {
		return nil, svcErr(svc, "spec.sessionAffinity", "unsupported value %q (want None or ClientIP)", svc.Spec.SessionAffinity)
	}
	var td string
	if svc.Spec.TrafficDistribution != nil {
		td = *svc.Spec.TrafficDistribution
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, svcErr(svc, "spec.ports", "no ports")
	}
	seen := map[ServicePortName]bool{}
	ports := make([]*ServicePort, 0, len(svc.Spec.Ports))
	for i, sp := range svc.Spec.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		proto, err := parseProtocol(sp.Protocol)
		if err != nil {
			return nil, svcErr(svc, field+".protocol", "%v", err)
		}
		if sp.Port < 1 || sp.Port > 65535 {
			return nil, svcErr(svc, field+".port", "%d is out of range (1-65535)", sp.Port)
		}
		if sp.NodePort < 0 || sp.NodePort > 65535 {
			return nil, svcErr(svc, field+".nodePort", "%d is out of range (1-65535)", sp.NodePort)
		}
		if sp.NodePort == 0 && svc.Spec.Type == v1.ServiceTypeNodePort {
			return nil, svcErr(svc, field+".nodePort", "not set on a NodePort service (the API server assigns it; a manifest given to --dry-run must set it)")
		}
		name := ServicePortName{ServiceKey: ServiceKey{svc.Namespace, svc.Name}, Port: sp.Name, Protocol: proto}
		if seen[name] {
			return nil, svcErr(svc, field+".name", "duplicate port name %q for protocol %s", sp.Name, proto)
		}
		seen[name] = true
		p := &ServicePort{
			Name:                name,
			ClusterIPs:          clusterIPs,
			Port:                sp.Port,
			TargetPort:          sp.TargetPort.String(),
			ExternalIPs:         externalIPs,
			SourceRanges:        ranges,
			AffinitySeconds:     affinity,
			InternalPolicyLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal,
			TrafficDistribution: td,
		}
		if sp.TargetPort.String() == "0" || sp.TargetPort.String() == "" {
			p.TargetPort = strconv.Itoa(int(sp.Port)) // the API default
		}
		if external {
			p.NodePort = sp.NodePort
			p.ExternalPolicyLocal = svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
		}
		if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
			p.LoadBalancerIPs = lbIPs
			if p.ExternalPolicyLocal {
				p.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
			}
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func parseAddrs(svc *v1.Service, field string, in []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, s := range in {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, svcErr(svc, fmt.Sprintf("%s[%d]", field, i), "%q is not an IP address", s)
		}
		out = append(out, ip.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

func parseProtocol(p v1.Protocol) (Protocol, error) {
	switch p {
	case v1.ProtocolTCP, "":
		return TCP, nil
	case v1.ProtocolUDP:
		return UDP, nil
	case v1.ProtocolSCTP:
		return SCTP, nil
	}
	return "", fmt.Errorf("unsupported protocol %q (want TCP, UDP or SCTP)", p)
}

// SlicePort is one port of an EndpointSlice.
type SlicePort struct {
	Name     string
	Protocol Protocol
	Port     int32
}

// Slice is an EndpointSlice reduced to what rulegen uses.
type Slice struct {
	Name      string
	Service   ServiceKey
	Family    Family
	Ports     []SlicePort
	Endpoints []Endpoint // Port unset: it comes from Ports
}

// ServiceNameOf returns the Service an EndpointSlice belongs to, from its
// kubernetes.io/service-name label.
func ServiceNameOf(es *discovery.EndpointSlice) (ServiceKey, bool) {
	name, ok := es.Labels[discovery.LabelServiceName]
	if !ok || name == "" {
		return ServiceKey{}, false
	}
	return ServiceKey{es.Namespace, name}, true
}

// ConvertSlice turns an EndpointSlice into a Slice. FQDN slices yield (nil,
// nil): they are not proxied. A slice-level problem (no service-name label, a
// bad port or protocol) rejects the whole slice with an *ObjectError; a bad
// endpoint address skips only that endpoint, reported in errs.
func ConvertSlice(es *discovery.EndpointSlice) (s *Slice, errs []error) {
	bad := func(field, format string, args ...any) *ObjectError {
		return &ObjectError{Kind: "EndpointSlice", Namespace: es.Namespace, Name: es.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	var fam Family
	switch es.AddressType {
	case discovery.AddressTypeIPv4:
		fam = IPv4
	case discovery.AddressTypeIPv6:
		fam = IPv6
	case discovery.AddressTypeFQDN:
		return nil, nil
	default:
		return nil, []error{bad("addressType", "unsupported value %q (want IPv4 or IPv6)", es.AddressType)}
	}
	if es.Name == "" {
		return nil, []error{bad("metadata.name", "missing")}
	}
	svc, ok := ServiceNameOf(es)
	if !ok {
		return nil, []error{bad("metadata.labels", "no %s label: the slice belongs to no service", discovery.LabelServiceName)}
	}
	s = &Slice{Name: es.Name, Service: svc, Family: fam}
	for i, p := range es.Ports {
		field := fmt.Sprintf("ports[%d]", i)
		var proto Protocol = TCP
		if p.Protocol != nil {
			var err error
			if proto, err = parseProtocol(*p.Protocol); err != nil {
				return nil, []error{bad(field+".protocol", "%v", err)}
			}
		}
		if p.Port == nil {
			continue // "all ports": not usable for a proxy, as in kube-proxy
		}
		if *p.Port < 1 || *p.Port > 65535 {
			return nil, []error{bad(field+".port", "%d is out of range (1-65535)", *p.Port)}
		}
		var name string
		if p.Name != nil {
			name = *p.Name
		}
		s.Ports = append(s.Ports, SlicePort{Name: name, Protocol: proto, Port: *p.Port})
	}
	for i, ep := range es.Endpoints {
		if len(ep.Addresses) == 0 {
			errs = append(errs, bad(fmt.Sprintf("endpoints[%d].addresses", i), "empty"))
			continue
		}
		// Like kube-proxy, only the first address is used: the API requires
		// all addresses of one endpoint to be interchangeable.
		ip, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil {
			errs = append(errs, bad(fmt.Sprintf("endpoints[%d].addresses[0]", i), "%q is not an IP address", ep.Addresses[0]))
			continue
		}
		ip = ip.Unmap()
		if FamilyOf(ip) != fam {
			errs = append(errs, bad(fmt.Sprintf("endpoints[%d].addresses[0]", i), "%s is not an %s address, but the slice's addressType is %s", ip, fam, es.AddressType))
			continue
		}
		e := Endpoint{IP: ip, Ready: true}
		if c := ep.Conditions.Ready; c != nil {
			e.Ready = *c
		}
		e.Serving = e.Ready
		if c := ep.Conditions.Serving; c != nil {
			e.Serving = *c
		}
		if c := ep.Conditions.Terminating; c != nil {
			e.Terminating = *c
		}
		if ep.NodeName != nil {
			e.NodeName = *ep.NodeName
		}
		if ep.Zone != nil {
			e.Zone = *ep.Zone
		}
		if ep.Hints != nil {
			for _, z := range ep.Hints.ForZones {
				e.ZoneHints = append(e.ZoneHints, z.Name)
			}
			for _, n := range ep.Hints.ForNodes {
				e.NodeHints = append(e.NodeHints, n.Name)
			}
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s, errs
}

// NodeFromObject extracts the node's name, zone and addresses (InternalIP,
// then ExternalIP, in status order).
func NodeFromObject(n *v1.Node) (Node, error) {
	node := Node{Name: n.Name, Zone: n.Labels[LabelZone]}
	for _, want := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for i, a := range n.Status.Addresses {
			if a.Type != want {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				return node, &ObjectError{Kind: "Node", Name: n.Name, Field: fmt.Sprintf("status.addresses[%d].address", i), Reason: fmt.Sprintf("%q is not an IP address", a.Address)}
			}
			if !slices.Contains(node.IPs, ip.Unmap()) {
				node.IPs = append(node.IPs, ip.Unmap())
			}
		}
	}
	return node, nil
}
