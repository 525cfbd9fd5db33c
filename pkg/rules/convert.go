package rules

import (
	"errors"
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
	ns, name := e.Namespace, e.Name
	if !plainName(ns) || !plainName(name) {
		// An invalid name: quote it, so that its bytes cannot forge a log
		// line and "a/b"+"c" reads differently from "a"+"b/c".
		ns, name = strconv.Quote(ns), strconv.Quote(name)
	}
	obj := name
	if e.Namespace != "" {
		obj = ns + "/" + name
	}
	if e.Name == "" && e.Namespace == "" {
		obj = "(unnamed)"
	}
	if e.Field == "" {
		return fmt.Sprintf("%s %s: %s", e.Kind, obj, e.Reason)
	}
	return fmt.Sprintf("%s %s: %s: %s", e.Kind, obj, e.Field, e.Reason)
}

// plainName reports whether s holds only the characters of valid names:
// letters, digits, '-', '.' and '_'.
func plainName(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
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
// half a service. A service is invalid where the API server would refuse it
// (names, port names, addresses, enumerations; see validate.go), and where
// it lacks what the API server would have filled in (cluster IP, nodePort).
func ConvertService(svc *v1.Service) ([]*ServicePort, error) {
	if err := checkServiceMeta(svc); err != nil {
		return nil, err
	}
	if ServiceIgnored(svc) != "" {
		return nil, nil
	}
	if err := checkServiceEnums(svc); err != nil {
		return nil, err
	}
	clusterIPs, err := parseClusterIPs(svc)
	if err != nil {
		return nil, err
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
			ip, err := parseIP(ing.IP)
			if err != nil {
				return nil, svcErr(svc, fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), "%v", err)
			}
			lbIPs = append(lbIPs, ip)
		}
	}
	var ranges []netip.Prefix
	for i, s := range svc.Spec.LoadBalancerSourceRanges {
		// The API allows spaces around a range (a leftover of the annotation).
		p, err := parseCIDR(strings.TrimSpace(s))
		if err != nil {
			return nil, svcErr(svc, fmt.Sprintf("spec.loadBalancerSourceRanges[%d]", i), "%v", err)
		}
		ranges = append(ranges, p)
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
	switch d := svc.Spec.TrafficDistribution; {
	case d == nil:
	case *d == v1.ServiceTrafficDistributionPreferClose, *d == v1.ServiceTrafficDistributionPreferSameZone, *d == v1.ServiceTrafficDistributionPreferSameNode:
		td = *d
	default:
		// Informational only, and a newer API server may know more values:
		// an unknown one is left out rather than refusing the service.
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, svcErr(svc, "spec.ports", "no ports")
	}
	seen := map[string]bool{}
	ports := make([]*ServicePort, 0, len(svc.Spec.Ports))
	for i, sp := range svc.Spec.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		switch {
		case sp.Name == "" && len(svc.Spec.Ports) > 1:
			return nil, svcErr(svc, field+".name", "missing (a service with more than one port must name each)")
		case sp.Name != "":
			if why := invalidName(dns1123Label, sp.Name); why != "" {
				return nil, svcErr(svc, field+".name", "%s", why)
			}
			if seen[sp.Name] {
				return nil, svcErr(svc, field+".name", "duplicate port name %q", sp.Name)
			}
			seen[sp.Name] = true
		}
		proto, err := parseProtocol(sp.Protocol)
		if err != nil {
			return nil, svcErr(svc, field+".protocol", "%v", err)
		}
		if why := invalidTargetPort(sp.TargetPort); why != "" {
			return nil, svcErr(svc, field+".targetPort", "%s", why)
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
		p := &ServicePort{
			Name:                ServicePortName{ServiceKey: ServiceKey{svc.Namespace, svc.Name}, Port: sp.Name, Protocol: proto},
			Created:             svc.CreationTimestamp.Time,
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

// checkServiceMeta checks the service's namespace and name.
func checkServiceMeta(svc *v1.Service) error {
	if svc.Namespace == "" {
		return svcErr(svc, "metadata.namespace", "missing")
	}
	if why := invalidName(dns1123Label, svc.Namespace); why != "" {
		return svcErr(svc, "metadata.namespace", "%s", why)
	}
	if svc.Name == "" {
		return svcErr(svc, "metadata.name", "missing")
	}
	if why := invalidName(dns1035Label, svc.Name); why != "" {
		return svcErr(svc, "metadata.name", "%s", why)
	}
	return nil
}

// checkServiceEnums checks the fields that take one of a few values, as the
// API does ("" is the unset value, which the API server defaults).
func checkServiceEnums(svc *v1.Service) error {
	switch svc.Spec.Type {
	case "", v1.ServiceTypeClusterIP, v1.ServiceTypeNodePort, v1.ServiceTypeLoadBalancer, v1.ServiceTypeExternalName:
	default:
		return svcErr(svc, "spec.type", "unsupported value %q (want ClusterIP, NodePort, LoadBalancer or ExternalName)", svc.Spec.Type)
	}
	switch svc.Spec.ExternalTrafficPolicy {
	case "", v1.ServiceExternalTrafficPolicyCluster, v1.ServiceExternalTrafficPolicyLocal:
	default:
		return svcErr(svc, "spec.externalTrafficPolicy", "unsupported value %q (want Cluster or Local)", svc.Spec.ExternalTrafficPolicy)
	}
	if p := svc.Spec.InternalTrafficPolicy; p != nil && *p != v1.ServiceInternalTrafficPolicyCluster && *p != v1.ServiceInternalTrafficPolicyLocal {
		return svcErr(svc, "spec.internalTrafficPolicy", "unsupported value %q (want Cluster or Local)", *p)
	}
	if hc := svc.Spec.HealthCheckNodePort; hc < 0 || hc > 65535 {
		return svcErr(svc, "spec.healthCheckNodePort", "%d is out of range (1-65535, or 0 for none)", hc)
	}
	return nil
}

// parseClusterIPs returns the service's cluster IPs, at most one per family.
// spec.clusterIP, when set, must be the first of spec.clusterIPs.
func parseClusterIPs(svc *v1.Service) ([]netip.Addr, error) {
	ipStrs := svc.Spec.ClusterIPs
	switch {
	case len(ipStrs) == 0 && svc.Spec.ClusterIP != "":
		ipStrs = []string{svc.Spec.ClusterIP}
	case len(ipStrs) > 0 && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != ipStrs[0]:
		return nil, svcErr(svc, "spec.clusterIPs[0]", "%q does not match spec.clusterIP %q (the first cluster IP must be the same)", ipStrs[0], svc.Spec.ClusterIP)
	}
	if len(ipStrs) == 0 {
		return nil, svcErr(svc, "spec.clusterIP", "not set (the API server assigns it; a manifest given to --dry-run must set it)")
	}
	var clusterIPs []netip.Addr
	seenFamily := map[Family]bool{}
	for i, s := range ipStrs {
		field := fmt.Sprintf("spec.clusterIPs[%d]", i)
		ip, err := parseIP(s)
		if err != nil {
			return nil, svcErr(svc, field, "%v", err)
		}
		if ip.IsUnspecified() {
			return nil, svcErr(svc, field, "%s may not be unspecified", ip)
		}
		if seenFamily[FamilyOf(ip)] {
			return nil, svcErr(svc, field, "two cluster IPs of family %s", FamilyOf(ip))
		}
		seenFamily[FamilyOf(ip)] = true
		clusterIPs = append(clusterIPs, ip)
	}
	return clusterIPs, nil
}

// parseAddrs parses external IPs: sorted, each once.
func parseAddrs(svc *v1.Service, field string, in []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, s := range in {
		ip, err := parseEndpointIP(s)
		if err != nil {
			return nil, svcErr(svc, fmt.Sprintf("%s[%d]", field, i), "%v", err)
		}
		out = append(out, ip)
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
	Endpoints []Endpoint // Port unset (it comes from Ports) but in a slice of one port, where it is set
	// planned: the slice has one port, and Endpoints hold it and are
	// sorted and unique as State.Endpoints returns a port's endpoints, so
	// that for a service of this one slice it returns them as they are
	// instead of a copy (ConvertSlice sets it; plans never change their
	// endpoints).
	planned bool
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
// nil): they are not proxied. A slice-level problem (an invalid name or
// namespace, no valid service-name label, a bad port, protocol or port
// name, two ports of the same name) rejects the whole slice with an
// *ObjectError; a bad endpoint (its address, nodeName, zone or hints) skips
// only that endpoint, reported in errs.
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
	if es.Namespace == "" {
		return nil, []error{bad("metadata.namespace", "missing")}
	}
	if why := invalidName(dns1123Label, es.Namespace); why != "" {
		return nil, []error{bad("metadata.namespace", "%s", why)}
	}
	if es.Name == "" {
		return nil, []error{bad("metadata.name", "missing")}
	}
	if why := invalidName(dns1123Subdomain, es.Name); why != "" {
		return nil, []error{bad("metadata.name", "%s", why)}
	}
	svc, ok := ServiceNameOf(es)
	if !ok {
		return nil, []error{bad("metadata.labels", "no %s label: the slice belongs to no service", discovery.LabelServiceName)}
	}
	if why := invalidName(labelValue, svc.Name); why != "" {
		return nil, []error{bad("metadata.labels["+discovery.LabelServiceName+"]", "%s", why)}
	}
	s = &Slice{Name: es.Name, Service: svc, Family: fam}
	portNames := make(map[string]bool, len(es.Ports))
	for i, p := range es.Ports {
		field := fmt.Sprintf("ports[%d]", i)
		if p.Name == nil {
			// As kube-proxy ("Ignoring port with nil name",
			// endpointInfoByServicePort in pkg/proxy/endpointslicecache.go):
			// the EndpointSlice controller names every port, "" for a
			// service's single unnamed port, so a nil name matches no
			// service port.
			continue
		}
		name := *p.Name
		if name != "" {
			if why := invalidName(dns1123Label, name); why != "" {
				return nil, []error{bad(field+".name", "%s", why)}
			}
		}
		// The API forbids two ports of one name (two unnamed ports
		// included): a service port would match both.
		if portNames[name] {
			return nil, []error{bad(field+".name", "duplicate port name %q", name)}
		}
		portNames[name] = true
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
		s.Ports = append(s.Ports, SlicePort{Name: name, Protocol: proto, Port: *p.Port})
	}
	s.Endpoints = make([]Endpoint, 0, len(es.Endpoints))
	for i, ep := range es.Endpoints {
		e, field, err := convertEndpoint(ep, fam, es.AddressType)
		if err != nil {
			errs = append(errs, bad(fmt.Sprintf("endpoints[%d]%s", i, field), "%v", err))
			continue
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	if len(s.Endpoints) == 0 {
		s.Endpoints = nil
	} else if len(s.Ports) == 1 {
		// The usual slice: one port. Its endpoints are made what
		// State.Endpoints would make of them (the port set, sorted the
		// same stable way), and, when no two are the same address, handed
		// to the plans as they are.
		for i := range s.Endpoints {
			s.Endpoints[i].Port = s.Ports[0].Port
		}
		if !slices.IsSortedFunc(s.Endpoints, compareEndpoints) {
			slices.SortStableFunc(s.Endpoints, compareEndpoints)
		}
		s.planned = true
		for i := 1; i < len(s.Endpoints); i++ {
			if compareEndpoints(s.Endpoints[i-1], s.Endpoints[i]) == 0 {
				s.planned = false
				break
			}
		}
	}
	return s, errs
}

// convertEndpoint converts one endpoint of a slice of family fam, or
// returns the bad field (relative to the endpoint) and why.
func convertEndpoint(ep discovery.Endpoint, fam Family, at discovery.AddressType) (Endpoint, string, error) {
	if len(ep.Addresses) == 0 {
		return Endpoint{}, ".addresses", fmt.Errorf("empty")
	}
	// Like kube-proxy, only the first address is used: the API requires
	// all addresses of one endpoint to be interchangeable.
	ip, err := parseEndpointIP(ep.Addresses[0])
	if err != nil {
		return Endpoint{}, ".addresses[0]", err
	}
	if FamilyOf(ip) != fam {
		return Endpoint{}, ".addresses[0]", fmt.Errorf("%s is not an %s address, but the slice's addressType is %s", ip, fam, at)
	}
	e := Endpoint{IP: ip, Ready: true}
	if c := ep.Conditions.Ready; c != nil {
		e.Ready = *c
	}
	// An unset serving condition counts as true, whatever ready says, as
	// in kube-proxy (addEndpoints in pkg/proxy/endpointslicecache.go): a
	// not-ready terminating endpoint without it is a terminating fallback.
	e.Serving = true
	if c := ep.Conditions.Serving; c != nil {
		e.Serving = *c
	}
	if c := ep.Conditions.Terminating; c != nil {
		e.Terminating = *c
	}
	if ep.NodeName != nil {
		if why := invalidName(dns1123Subdomain, *ep.NodeName); why != "" {
			return Endpoint{}, ".nodeName", errors.New(why)
		}
		e.NodeName = *ep.NodeName
	}
	if ep.Zone != nil {
		// The API does not check the zone, but it is a node's zone label,
		// so a label value.
		if why := invalidName(labelValue, *ep.Zone); why != "" {
			return Endpoint{}, ".zone", errors.New(why)
		}
		e.Zone = *ep.Zone
	}
	if ep.Hints != nil {
		for j, z := range ep.Hints.ForZones {
			if why := invalidName(labelValue, z.Name); why != "" {
				return Endpoint{}, fmt.Sprintf(".hints.forZones[%d].name", j), errors.New(why)
			}
			e.ZoneHints = append(e.ZoneHints, z.Name)
		}
		for j, n := range ep.Hints.ForNodes {
			if why := invalidName(dns1123Subdomain, n.Name); why != "" {
				return Endpoint{}, fmt.Sprintf(".hints.forNodes[%d].name", j), errors.New(why)
			}
			e.NodeHints = append(e.NodeHints, n.Name)
		}
	}
	return e, "", nil
}

// NodeFromObject extracts the node's name, zone and addresses (InternalIP,
// then ExternalIP, in status order). It always returns what it could use:
// an address that is not an IP (or has an IPv6 zone) and a zone label that
// is not a label value are left out and reported, each as an *ObjectError,
// in the returned error (joined when there are several); the node keeps
// every good address. An invalid node name makes the whole object unusable:
// the node is returned with the name only (its caller chose that name).
func NodeFromObject(n *v1.Node) (Node, error) {
	bad := func(field, format string, args ...any) *ObjectError {
		return &ObjectError{Kind: "Node", Name: n.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	node := Node{Name: n.Name}
	if n.Name == "" {
		return node, bad("metadata.name", "missing")
	}
	if why := invalidName(dns1123Subdomain, n.Name); why != "" {
		return node, bad("metadata.name", "%s", why)
	}
	var errs []error
	if zone := n.Labels[LabelZone]; zone != "" {
		if why := invalidName(labelValue, zone); why != "" {
			errs = append(errs, bad("metadata.labels["+LabelZone+"]", "%s", why))
		} else {
			node.Zone = zone
		}
	}
	for _, want := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for i, a := range n.Status.Addresses {
			if a.Type != want {
				continue
			}
			ip, err := parseIP(a.Address)
			if err != nil {
				errs = append(errs, bad(fmt.Sprintf("status.addresses[%d].address", i), "%v", err))
				continue
			}
			if !slices.Contains(node.IPs, ip) {
				node.IPs = append(node.IPs, ip)
			}
		}
	}
	podCIDRs, field := n.Spec.PodCIDRs, "spec.podCIDRs"
	if len(podCIDRs) == 0 && n.Spec.PodCIDR != "" {
		podCIDRs, field = []string{n.Spec.PodCIDR}, "spec.podCIDR"
	}
	for i, c := range podCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil || p.Addr().Zone() != "" {
			errs = append(errs, bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a CIDR", c))
			continue
		}
		node.PodCIDRs = append(node.PodCIDRs, p.Masked())
	}
	if len(errs) == 1 {
		return node, errs[0]
	}
	return node, errors.Join(errs...)
}
