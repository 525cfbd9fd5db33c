package rules

import (
	"fmt"
	"net/netip"
	"slices"
)

// Verdict is what happens to a new connection to a service destination that
// the NAT rules did not send to an endpoint.
type Verdict int

const (
	// Pass means every connection is sent to an endpoint; nothing to filter.
	Pass Verdict = iota
	// Reject answers with ICMP port unreachable: the service has no endpoints.
	Reject
	// Drop silently discards: endpoints exist elsewhere but none may be used
	// from here (a Local traffic policy), or the source is not allowed.
	Drop
)

// String returns "pass", "reject" or "drop".
func (v Verdict) String() string {
	return [...]string{"pass", "reject", "drop"}[v]
}

// Plan is the whole desired state for one address family, with every policy
// decision made: the backends only spell it out.
type Plan struct {
	Family Family
	// NodeName is the node the plan is for (its endpoints are local).
	NodeName string
	// NodeIP is the node's primary address in this family: the first of
	// Config.Node.IPs (invalid if it has none). As kube-proxy's nodeIP, it
	// decides whether LB IPs are implicitly allowed sources (see
	// ServicePlan.Ranges).
	NodeIP netip.Addr
	// NodePortIPs are the node addresses that accept nodePorts.
	NodePortIPs []netip.Addr
	// ClusterCIDR is the pod range of this family (invalid if not set, or
	// when PodInterface tells pod traffic instead).
	ClusterCIDR netip.Prefix
	// PodInterface tells pod traffic by its input interface (see
	// Config.PodInterface); its Name is empty when ClusterCIDR, or
	// nothing, does.
	PodInterface  PodInterface
	MasqueradeAll bool
	// Settings are the node-wide settings the renderers spell out as they
	// are (see Config.settings).
	Settings
	// Services holds every service port that has at least one destination
	// in this family, sorted by name.
	Services []*ServicePlan
	// Conflicts reports destinations two service ports claim: as in
	// kube-proxy, the port of the older service (metadata.creationTimestamp;
	// on a tie, the first by namespace, name and port) keeps it, the other
	// loses that destination only.
	Conflicts []error
}

// MayHairpin reports whether a connection from endpoint e could reach this
// node's rules and be sent back to e itself, so that it must be
// masqueraded: e runs on this node, or its node is not known. A pod on
// another node reaches services through that node's proxy (kube-proxy
// decides the same way).
func (p *Plan) MayHairpin(e Endpoint) bool { return e.NodeName == "" || e.NodeName == p.NodeName }

// ServicePlan is one service port in one family, with its endpoints chosen.
type ServicePlan struct {
	*ServicePort
	// ClusterIP is the ClusterIP of this family (invalid if none).
	ClusterIP netip.Addr
	// ExtIPs and LBIPs are the port's external IPs and load-balancer IPs
	// of this family.
	ExtIPs []netip.Addr
	LBIPs  []netip.Addr
	// Ranges are the sources allowed to reach the LB IPs: the
	// loadBalancerSourceRanges of this family and, when one of them holds
	// the node's primary IP (Plan.NodeIP), each LB IP itself — a node that
	// holds the LB IP as a local address reaches it with that address as
	// source (kube-proxy's "allowFromNode" in syncProxyRules, both modes).
	Ranges []netip.Prefix
	// Firewalled is true when loadBalancerSourceRanges restrict the LB IPs
	// in this family. As kube-proxy (newBaseServiceInfo in
	// pkg/proxy/serviceport.go), ranges of the other family only, or a
	// range of length 0 (all addresses), do not restrict.
	Firewalled bool
	// HasNodePort is true when the nodePort is open on this node in this family.
	HasNodePort bool
	// All is every endpoint of this family, whatever its state.
	All []Endpoint
	// ClusterEndpoints are used under the Cluster policy (nil when no
	// traffic uses that policy). LocalEndpoints are used under the Local
	// policy (nil when none does).
	ClusterEndpoints []Endpoint
	LocalEndpoints   []Endpoint
	// HasEndpoints is true when the service has a usable endpoint anywhere
	// in the cluster (even if none may be used from this node).
	HasEndpoints bool
	// Topology is "PreferSameZone" or "PreferSameNode" when topology hints
	// narrowed the cluster endpoints, "" otherwise.
	Topology string
}

// InternalEndpoints are the endpoints for traffic to the ClusterIP.
func (s *ServicePlan) InternalEndpoints() []Endpoint {
	if s.InternalPolicyLocal {
		return s.LocalEndpoints
	}
	return s.ClusterEndpoints
}

// ExternalEndpoints are the endpoints for external traffic (nodePort, external
// and LB IPs) from outside the node.
func (s *ServicePlan) ExternalEndpoints() []Endpoint {
	if s.ExternalPolicyLocal {
		return s.LocalEndpoints
	}
	return s.ClusterEndpoints
}

// HasExternal reports whether the port has any external destination in this family.
func (s *ServicePlan) HasExternal() bool {
	return s.HasNodePort || len(s.ExtIPs) > 0 || len(s.LBIPs) > 0
}

// InternalVerdict is the fallback for the ClusterIP: reject without
// endpoints, drop when only remote endpoints exist under internalTrafficPolicy
// Local.
func (s *ServicePlan) InternalVerdict() Verdict {
	switch {
	case !s.HasEndpoints:
		return Reject
	case len(s.InternalEndpoints()) == 0:
		return Drop
	}
	return Pass
}

// ExternalVerdict is the fallback for nodePorts and external IPs; LBVerdict
// for load-balancer IPs, which also drop sources outside the source ranges.
func (s *ServicePlan) ExternalVerdict() Verdict {
	switch {
	case !s.HasEndpoints:
		return Reject
	case len(s.ExternalEndpoints()) == 0:
		return Drop
	}
	return Pass
}

// LBVerdict is the fallback verdict for the load-balancer IPs. For a
// firewalled service without endpoints it is Reject, but only for the
// sources inside Ranges: see FirewallRejects.
func (s *ServicePlan) LBVerdict() Verdict {
	v := s.ExternalVerdict()
	if v == Pass && s.Firewalled {
		return Drop
	}
	return v
}

// FirewallRejects reports whether the LB IPs' filter must check the source
// itself: a firewalled service with no endpoints rejects the sources inside
// Ranges and drops the others. kube-proxy's nftables mode checks the source
// ranges before anything else, endpoints or not (its firewall-check chain
// and usesFWChain in syncProxyRules), so a source outside them never learns
// that the service exists. (kube-proxy's iptables mode writes its firewall
// only when the service has endpoints, and rejects every source; rulegen
// follows the nftables mode in both backends.)
func (s *ServicePlan) FirewallRejects() bool {
	return s.Firewalled && !s.HasEndpoints
}

// ShortCircuit reports whether traffic from pods and from the node itself to
// an external destination bypasses externalTrafficPolicy Local and goes to
// the cluster-policy endpoints, whatever internalTrafficPolicy says (as if
// it had left the cluster and come back through the load balancer). This is
// kube-proxy's "short-circuit pod traffic" / "short-circuit local traffic"
// (syncProxyRules in both modes), which jumps to the cluster-policy chain.
func (s *ServicePlan) ShortCircuit() bool {
	return s.ExternalPolicyLocal && len(s.ClusterEndpoints) > 0
}

// NeedsClusterChain reports whether the cluster-policy chain is referenced.
func (s *ServicePlan) NeedsClusterChain() bool {
	if len(s.ClusterEndpoints) == 0 {
		return false
	}
	return (s.ClusterIP.IsValid() && !s.InternalPolicyLocal) ||
		(s.HasExternal() && (!s.ExternalPolicyLocal || s.ShortCircuit()))
}

// NeedsLocalChain reports whether the local-policy chain is referenced.
func (s *ServicePlan) NeedsLocalChain() bool {
	if len(s.LocalEndpoints) == 0 {
		return false
	}
	return (s.ClusterIP.IsValid() && s.InternalPolicyLocal) || (s.HasExternal() && s.ExternalPolicyLocal)
}

// NeedsExternalChain reports whether the external chain is referenced.
func (s *ServicePlan) NeedsExternalChain() bool {
	return s.HasExternal() && s.HasEndpoints && (len(s.ExternalEndpoints()) > 0 || s.ShortCircuit())
}

// NewPlan decides everything for one family: which service ports have rules,
// which endpoints each policy uses, and where nodePorts open.
func NewPlan(st *State, cfg *Config, fam Family) *Plan {
	return NewPlanner(fam).Plan(st, cfg)
}

// Planner plans one family again and again (the daemon's syncs), reusing
// the plan of every service port that did not change since the previous
// call: same State generation for its service, same node configuration,
// and no destination conflict. A reused plan is the same *ServicePlan, so
// the renderers can reuse what they made of it too; the cost of a sync then
// grows with what changed, not with the number of services.
type Planner struct {
	fam    Family
	cfgKey string
	cache  map[ServicePortName]planEntry
	// byAge is the order in which the ports of agePorts claim their
	// destinations: indexes into agePorts, oldest service first. It is
	// kept while State.Ports returns the same slice (the set of ports did
	// not change), so that a sync that changed only endpoints does not
	// sort again.
	agePorts []*ServicePort
	byAge    []int
}

type planEntry struct {
	gen     uint64
	plan    *ServicePlan // nil: the port has nothing in this family
	trimmed bool         // lost a destination to a conflict: always re-plan
}

// NewPlanner returns a planner for one family.
func NewPlanner(fam Family) *Planner { return &Planner{fam: fam} }

// Plan returns the plan for the current state.
func (pl *Planner) Plan(st *State, cfg *Config) *Plan {
	fam := pl.fam
	if key := fmt.Sprintf("%+v|%v|%v|%v|%v|%+v|%v", cfg.Node, cfg.NodePortAddresses, cfg.NodePortPrimary, cfg.ClusterCIDRs, cfg.DetectLocalNodeCIDR, cfg.PodInterface, cfg.MasqueradeAll); key != pl.cfgKey {
		pl.cfgKey, pl.cache = key, nil
	}
	p := &Plan{Family: fam, NodeName: cfg.Node.Name, MasqueradeAll: cfg.MasqueradeAll, Settings: cfg.settings(fam), Services: make([]*ServicePlan, 0, len(pl.cache))}
	podCIDRs := cfg.ClusterCIDRs
	switch {
	case cfg.PodInterface.Name != "":
		// kube-proxy's interface modes ignore every pod range.
		p.PodInterface, podCIDRs = cfg.PodInterface, nil
	case cfg.DetectLocalNodeCIDR:
		podCIDRs = cfg.Node.PodCIDRs
	}
	for _, c := range podCIDRs {
		if FamilyOf(c.Addr()) == fam {
			p.ClusterCIDR = c.Masked()
			if cfg.DetectLocalNodeCIDR {
				break // kube-proxy takes the first of the family
			}
		}
	}
	// As kube-proxy's NewNodePortAddresses (pkg/proxy/util), the
	// --nodeport-addresses ranges of the other family do not restrict this
	// one: with no range of this family, every node IP of it accepts
	// nodePorts.
	for _, ip := range cfg.Node.IPs {
		if FamilyOf(ip) == fam {
			p.NodeIP = ip
			break
		}
	}
	var npRanges []netip.Prefix
	for _, pr := range cfg.NodePortAddresses {
		if FamilyOf(pr.Addr()) == fam {
			npRanges = append(npRanges, pr)
		}
	}
	// The keyword primary is the primary IP's host route, as kube-proxy's
	// expandNodePortAddressKeywords; a family without one gets no range.
	if cfg.NodePortPrimary && p.NodeIP.IsValid() {
		npRanges = append(npRanges, netip.PrefixFrom(p.NodeIP, p.NodeIP.BitLen()))
	}
	for _, ip := range cfg.Node.IPs {
		if FamilyOf(ip) != fam || slices.Contains(p.NodePortIPs, ip) {
			continue
		}
		if len(npRanges) > 0 && !slices.ContainsFunc(npRanges, func(pr netip.Prefix) bool { return pr.Contains(ip) }) {
			continue
		}
		p.NodePortIPs = append(p.NodePortIPs, ip)
	}
	slices.SortFunc(p.NodePortIPs, netip.Addr.Compare)
	ports := st.Ports()
	claims := claims{owner: make(map[claimKey]ServicePortName, len(ports)+len(ports)/4)}
	next := make(map[ServicePortName]planEntry, len(ports))
	// Ports claim their destinations oldest first, so that the older
	// service wins a conflict; the plan lists them by name.
	planned := make([]*ServicePlan, len(ports))
	for _, i := range pl.ageOrder(ports) {
		sp := ports[i]
		gen := st.Gen(sp.Name.ServiceKey)
		if e, ok := pl.cache[sp.Name]; ok && e.gen == gen && !e.trimmed && (e.plan == nil || claims.free(e.plan)) {
			if e.plan != nil {
				claims.claim(e.plan)
				planned[i] = e.plan
			}
			next[sp.Name] = e
			continue
		}
		before := len(p.Conflicts)
		s := planService(st, cfg, p, sp, claims)
		next[sp.Name] = planEntry{gen: gen, plan: s, trimmed: len(p.Conflicts) > before}
		planned[i] = s
	}
	for _, s := range planned {
		if s != nil {
			p.Services = append(p.Services, s)
		}
	}
	pl.cache = next
	return p
}

// ageOrder returns the indexes of ports (sorted by name), oldest service
// first; ports of the same age keep their name order.
func (pl *Planner) ageOrder(ports []*ServicePort) []int {
	if len(ports) == 0 {
		return nil
	}
	if len(pl.agePorts) == len(ports) && &pl.agePorts[0] == &ports[0] {
		return pl.byAge
	}
	order := make([]int, len(ports))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return ports[a].Created.Compare(ports[b].Created) })
	pl.agePorts, pl.byAge = ports, order
	return order
}

// claimKey is a destination: address (zero for a nodePort), protocol, port.
type claimKey struct {
	addr  netip.Addr
	proto Protocol
	port  int32
}

type claims struct{ owner map[claimKey]ServicePortName }

// eachDest calls f with each of a plan's destinations as a claim key,
// until f returns false.
func (s *ServicePlan) eachDest(f func(claimKey) bool) {
	if s.ClusterIP.IsValid() && !f(claimKey{s.ClusterIP, s.Name.Protocol, s.Port}) {
		return
	}
	for _, ip := range s.ExtIPs {
		if !f(claimKey{ip, s.Name.Protocol, s.Port}) {
			return
		}
	}
	for _, ip := range s.LBIPs {
		if !f(claimKey{ip, s.Name.Protocol, s.Port}) {
			return
		}
	}
	if s.HasNodePort {
		f(claimKey{netip.Addr{}, s.Name.Protocol, s.NodePort})
	}
}

// free reports whether none of a plan's destinations is taken yet.
func (c claims) free(s *ServicePlan) bool {
	free := true
	s.eachDest(func(k claimKey) bool {
		_, taken := c.owner[k]
		free = !taken
		return free
	})
	return free
}

// claim takes every destination of a plan (known to be free).
func (c claims) claim(s *ServicePlan) {
	s.eachDest(func(k claimKey) bool { c.owner[k] = s.Name; return true })
}

// take claims the destinations of s, removing from s those another port
// already holds, and reports each as a conflict.
func (c claims) take(s *ServicePlan) []error {
	var errs []error
	ok := func(field string, addr netip.Addr, port int32) bool {
		k := claimKey{addr, s.Name.Protocol, port}
		if o, taken := c.owner[k]; taken {
			dest := fmt.Sprintf("%s %d/%s", addr, port, s.Name.Protocol)
			if !addr.IsValid() {
				dest = fmt.Sprintf("nodePort %d/%s", port, s.Name.Protocol)
			}
			errs = append(errs, &ObjectError{Kind: "Service", Namespace: s.Name.Namespace, Name: s.Name.Name, Field: field,
				Reason: fmt.Sprintf("port %q: %s is already used by %s (the older service keeps it; on a tie, the first by name); this destination is skipped", s.Name.Port, dest, o)})
			return false
		}
		c.owner[k] = s.Name
		return true
	}
	if s.ClusterIP.IsValid() && !ok("spec.clusterIPs", s.ClusterIP, s.Port) {
		s.ClusterIP = netip.Addr{}
	}
	keep := func(field string, ips []netip.Addr) []netip.Addr {
		var out []netip.Addr
		for _, ip := range ips {
			if ok(field, ip, s.Port) {
				out = append(out, ip)
			}
		}
		return out
	}
	s.ExtIPs = keep("spec.externalIPs", s.ExtIPs)
	s.LBIPs = keep("status.loadBalancer.ingress", s.LBIPs)
	if s.HasNodePort && !ok("spec.ports.nodePort", netip.Addr{}, s.NodePort) {
		s.HasNodePort = false
	}
	return errs
}

func planService(st *State, cfg *Config, p *Plan, sp *ServicePort, c claims) *ServicePlan {
	fam := p.Family
	s := &ServicePlan{ServicePort: sp}
	for _, ip := range sp.ClusterIPs {
		if FamilyOf(ip) == fam {
			s.ClusterIP = ip
		}
	}
	if !s.ClusterIP.IsValid() {
		// Like kube-proxy, a service is proxied in the families of its
		// cluster IPs only: a single-stack IPv4 service gets no IPv6
		// nodePort, external or LB rules.
		return nil
	}
	s.ExtIPs = ofFamily(sp.ExternalIPs, fam)
	s.LBIPs = ofFamily(sp.LoadBalancerIPs, fam)
	allowFromNode := false
	for _, r := range sp.SourceRanges {
		if FamilyOf(r.Addr()) != fam {
			continue
		}
		if r.Bits() == 0 {
			s.Ranges, allowFromNode = nil, false
			break
		}
		s.Ranges = append(s.Ranges, r)
		allowFromNode = allowFromNode || r.Contains(p.NodeIP)
	}
	s.HasNodePort = sp.NodePort != 0 && len(p.NodePortIPs) > 0
	p.Conflicts = append(p.Conflicts, c.take(s)...)
	if !s.ClusterIP.IsValid() {
		return nil // its cluster IP went to another service: nothing left
	}
	if s.Firewalled = len(s.Ranges) > 0 && len(s.LBIPs) > 0; s.Firewalled && allowFromNode {
		for _, ip := range s.LBIPs {
			s.Ranges = append(s.Ranges, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	s.All = st.Endpoints(sp, fam)
	categorize(s, cfg.Node)
	return s
}

func ofFamily(in []netip.Addr, fam Family) []netip.Addr {
	var out []netip.Addr
	for _, ip := range in {
		if FamilyOf(ip) == fam {
			out = append(out, ip)
		}
	}
	return out
}

// categorize picks the endpoints each traffic policy uses, as kube-proxy does
// (CategorizeEndpoints in pkg/proxy/topology.go): ready endpoints (narrowed
// by topology hints when every ready endpoint has hints and some are for
// this node or zone); serving-but-terminating ones only when no ready
// endpoint exists, decided separately for the Cluster and the Local policy.
// The Cluster policy is in use when internalTrafficPolicy is Cluster or the
// port has an external destination: even under externalTrafficPolicy Local,
// traffic from pods and from the node goes to the cluster endpoints (see
// ShortCircuit; kube-proxy's UsesClusterEndpoints).
func categorize(s *ServicePlan, node Node) {
	usesCluster := !s.InternalPolicyLocal || s.HasExternal()
	usesLocal := s.InternalPolicyLocal || (s.HasExternal() && s.ExternalPolicyLocal)
	if usesCluster {
		s.Topology = topologyMode(s.All, node)
		s.ClusterEndpoints = filter(s.All, func(e Endpoint) bool { return e.Ready && forTopology(e, s.Topology, node) })
		if len(s.ClusterEndpoints) == 0 {
			s.ClusterEndpoints = filter(s.All, func(e Endpoint) bool { return e.Serving && e.Terminating })
		}
		if len(s.ClusterEndpoints) > 0 {
			s.HasEndpoints = true
		}
	}
	if !usesLocal {
		return
	}
	var localReady, localTerminating bool
	for _, e := range s.All {
		switch {
		case e.Ready:
			s.HasEndpoints = true
			localReady = localReady || e.NodeName == node.Name
		case e.Serving && e.Terminating:
			s.HasEndpoints = true
			localTerminating = localTerminating || e.NodeName == node.Name
		}
	}
	switch {
	case localReady:
		s.LocalEndpoints = filter(s.All, func(e Endpoint) bool { return e.NodeName == node.Name && e.Ready })
	case localTerminating:
		s.LocalEndpoints = filter(s.All, func(e Endpoint) bool { return e.NodeName == node.Name && e.Serving && e.Terminating })
	}
}

// filter returns the endpoints keep accepts. When it accepts all of them
// (the common case) the input is returned as is: plans only read it.
func filter(in []Endpoint, keep func(Endpoint) bool) []Endpoint {
	n := 0
	for i := range in {
		if keep(in[i]) {
			n++
		}
	}
	if n == len(in) {
		return in
	}
	if n == 0 {
		return nil
	}
	out := make([]Endpoint, 0, n)
	for i := range in {
		if keep(in[i]) {
			out = append(out, in[i])
		}
	}
	return out
}

// topologyMode returns which hints to honour: node hints when every ready
// endpoint has them and one is for this node, else zone hints when every
// ready endpoint has them and one is for this node's zone, else none.
func topologyMode(eps []Endpoint, node Node) string {
	anyReady := false
	allNode, forNode := true, false
	allZone, forZone := true, false
	for _, e := range eps {
		if !e.Ready {
			continue
		}
		anyReady = true
		if len(e.NodeHints) == 0 {
			allNode = false
		} else if slices.Contains(e.NodeHints, node.Name) {
			forNode = true
		}
		if len(e.ZoneHints) == 0 {
			allZone = false
		} else if node.Zone != "" && slices.Contains(e.ZoneHints, node.Zone) {
			forZone = true
		}
	}
	switch {
	case !anyReady:
		return ""
	case allNode && forNode:
		return "PreferSameNode"
	case allZone && forZone:
		return "PreferSameZone"
	}
	return ""
}

func forTopology(e Endpoint, mode string, node Node) bool {
	switch mode {
	case "PreferSameNode":
		return slices.Contains(e.NodeHints, node.Name)
	case "PreferSameZone":
		return slices.Contains(e.ZoneHints, node.Zone)
	}
	return true
}

// UsedEndpoints returns the union of the endpoints the port's chains use,
// each once, in address order.
func (s *ServicePlan) UsedEndpoints() []Endpoint {
	var out []Endpoint
	if s.NeedsClusterChain() {
		out = append(out, s.ClusterEndpoints...)
	}
	if s.NeedsLocalChain() {
		out = append(out, s.LocalEndpoints...)
	}
	slices.SortFunc(out, compareEndpoints)
	return slices.CompactFunc(out, func(a, b Endpoint) bool { return a.IP == b.IP && a.Port == b.Port })
}
