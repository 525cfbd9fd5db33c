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
	// WithHealthCheck are the Services with a healthCheckNodePort, by name.
	WithHealthCheck []*ServicePlan
	// NoLocalInternal and NoLocalExternal count the services that have
	// endpoints, a Local policy for that traffic and no local endpoint (as
	// kube-proxy counts its sync_proxy_rules_no_local_endpoints_total).
	NoLocalInternal, NoLocalExternal int

	// Gen numbers the plans of one Planner (1, 2, …). Base is the Gen of
	// the plan this one was made after, when Changes lists every
	// difference from it; 0 when the plan was made from scratch (the
	// first, after a configuration change, or by NewPlan), and consumers
	// must then compare Services as a whole. A consumer that remembers
	// the Gen of the last plan it saw can follow the Changes alone: that
	// is how a sync costs what changed and not the number of services.
	Gen, Base uint64
	// Changes are the service ports whose plan differs from plan Base's,
	// by name: added (Old nil), removed (New nil) or planned again.
	Changes []PortChange
}

// PortChange is a service port's plan before and after (see Plan.Changes).
type PortChange struct {
	Name     ServicePortName
	Old, New *ServicePlan
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

// Planner plans one family again and again (the daemon's syncs). It keeps
// what it decided, and plans again only the service ports of the services
// State says changed since its last plan (State.ChangedSince), and the
// ports whose hold on a destination those changes moved. A reused plan is
// the same *ServicePlan, and each plan lists what differs from the
// previous one (Plan.Changes), so the renderers can follow the changes
// too: the cost of a sync grows with what changed, not with the number of
// services. A change of the node configuration plans everything again.
type Planner struct {
	fam    Family
	cfgKey string
	st     *State
	since  uint64 // st.Counter() at the last plan
	gen    uint64 // the last plan's Gen
	ports  map[ServicePortName]*portEntry
	bySvc  map[ServiceKey][]*portEntry
	// claimants are the ports that claim each destination; the oldest
	// (see older) holds it.
	claimants                        map[claimKey][]*portEntry
	conflicted                       map[ServicePortName]*portEntry
	conflicts                        []error // the last plan's Conflicts
	conflictsDirty                   bool
	healthy                          map[ServicePortName]*ServicePlan // ports with a healthCheckNodePort
	services                         []*ServicePlan                   // the last plan's Services
	withHealth                       []*ServicePlan                   // the last plan's WithHealthCheck
	noLocalInternal, noLocalExternal int
}

// portEntry is what the planner knows of one service port.
type portEntry struct {
	sp *ServicePort
	// claims are the destinations the port claims in this family, in the
	// order it claims them (see claimsOf).
	claims    []claimKey
	plan      *ServicePlan // nil: nothing in this family
	conflicts []error
}

// older reports whether a's service port claims a destination before b's:
// the older service first (metadata.creationTimestamp), then by name.
func older(a, b *ServicePort) bool {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c < 0
	}
	return a.Name.Compare(b.Name) < 0
}

// NewPlanner returns a planner for one family.
func NewPlanner(fam Family) *Planner { return &Planner{fam: fam} }

// nodePlan returns a plan holding the node-wide decisions of cfg.
func nodePlan(cfg *Config, fam Family) *Plan {
	p := &Plan{Family: fam, NodeName: cfg.Node.Name, MasqueradeAll: cfg.MasqueradeAll, Settings: cfg.settings(fam)}
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
	return p
}

// maxInPlace is how many changed ports a plan edits into a copy of the
// previous Services; above it the list is collected and sorted anew.
const maxInPlace = 64

// Plan returns the plan for the current state.
func (pl *Planner) Plan(st *State, cfg *Config) *Plan {
	p := nodePlan(cfg, pl.fam)
	key := fmt.Sprintf("%+v|%v|%v|%v|%v|%+v|%v", cfg.Node, cfg.NodePortAddresses, cfg.NodePortPrimary, cfg.ClusterCIDRs, cfg.DetectLocalNodeCIDR, cfg.PodInterface, cfg.MasqueradeAll)
	var keys []ServiceKey
	incremental := false
	if key == pl.cfgKey && st == pl.st {
		keys, incremental = st.ChangedSince(pl.since)
	}
	pl.gen++
	p.Gen = pl.gen
	pl.cfgKey, pl.st, pl.since = key, st, st.Counter()
	if !incremental {
		ports := st.Ports()
		pl.ports, pl.bySvc, pl.claimants = make(map[ServicePortName]*portEntry, len(ports)), make(map[ServiceKey][]*portEntry, len(ports)), make(map[claimKey][]*portEntry, len(ports)*5/4)
		pl.conflicted, pl.healthy, pl.services, pl.withHealth = map[ServicePortName]*portEntry{}, map[ServicePortName]*ServicePlan{}, nil, nil
		pl.noLocalInternal, pl.noLocalExternal = 0, 0
		for i, sp := range ports {
			if i == 0 || sp.Name.ServiceKey != ports[i-1].Name.ServiceKey {
				keys = append(keys, sp.Name.ServiceKey)
			}
		}
	} else {
		p.Base = pl.gen - 1
	}

	// The ports of the changed services leave and come back with their
	// claims; every claimant of a destination they claimed, before or
	// now, is planned again (its hold on it may have changed).
	old := map[ServicePortName]*ServicePlan{}
	dirty := make(map[ServicePortName]*portEntry, len(keys))
	mark := func(e *portEntry) {
		if !incremental {
			return
		}
		if _, ok := old[e.sp.Name]; !ok {
			old[e.sp.Name] = e.plan
		}
	}
	touched := make(map[claimKey]bool, len(keys))
	for _, sk := range keys {
		for _, e := range pl.bySvc[sk] {
			mark(e)
			pl.drop(e, touched)
		}
		delete(pl.bySvc, sk)
		for _, sp := range st.ServicePorts(sk) {
			e := &portEntry{sp: sp, claims: claimsOf(sp, p)}
			if _, ok := old[sp.Name]; !ok && incremental {
				old[sp.Name] = nil
			}
			for _, k := range e.claims {
				pl.claimants[k] = append(pl.claimants[k], e)
				touched[k] = true
			}
			pl.ports[sp.Name] = e
			pl.bySvc[sk] = append(pl.bySvc[sk], e)
			dirty[sp.Name] = e
		}
	}
	for k := range touched {
		for _, e := range pl.claimants[k] {
			if dirty[e.sp.Name] == nil {
				mark(e)
				dirty[e.sp.Name] = e
			}
		}
	}
	for _, e := range dirty {
		pl.unplan(e)
		e.plan, e.conflicts = planService(st, cfg, p, e.sp, pl.holder)
		pl.count(e.plan, 1)
		if len(e.conflicts) > 0 {
			pl.conflicted[e.sp.Name] = e
			pl.conflictsDirty = true
		}
		if e.plan != nil && e.plan.HealthCheckNodePort != 0 {
			pl.healthy[e.sp.Name] = e.plan
		}
	}

	var changes []PortChange
	healthChanged := !incremental
	if incremental {
		changes = make([]PortChange, 0, len(old))
		for name, o := range old {
			var n *ServicePlan
			if e := pl.ports[name]; e != nil {
				n = e.plan
			}
			if o == nil && n == nil {
				continue
			}
			changes = append(changes, PortChange{Name: name, Old: o, New: n})
			healthChanged = healthChanged || (o != nil && o.HealthCheckNodePort != 0) || (n != nil && n.HealthCheckNodePort != 0)
		}
		slices.SortFunc(changes, func(a, b PortChange) int { return a.Name.Compare(b.Name) })
		p.Changes = changes
	}
	p.Services = pl.servicesAfter(changes, incremental)
	if healthChanged {
		pl.withHealth = make([]*ServicePlan, 0, len(pl.healthy))
		for _, s := range pl.healthy {
			pl.withHealth = append(pl.withHealth, s)
		}
		slices.SortFunc(pl.withHealth, func(a, b *ServicePlan) int { return a.Name.Compare(b.Name) })
	}
	p.WithHealthCheck = pl.withHealth
	p.NoLocalInternal, p.NoLocalExternal = pl.noLocalInternal, pl.noLocalExternal
	if pl.conflictsDirty || !incremental {
		// In the order a sequential planner meets them: oldest port first.
		in := make([]*portEntry, 0, len(pl.conflicted))
		for _, e := range pl.conflicted {
			in = append(in, e)
		}
		slices.SortFunc(in, func(a, b *portEntry) int {
			if older(a.sp, b.sp) {
				return -1
			}
			return 1
		})
		pl.conflicts = nil
		for _, e := range in {
			pl.conflicts = append(pl.conflicts, e.conflicts...)
		}
		pl.conflictsDirty = false
	}
	p.Conflicts = pl.conflicts
	return p
}

// drop forgets a port: its claims, its plan's counts, its conflicts.
func (pl *Planner) drop(e *portEntry, touched map[claimKey]bool) {
	for _, k := range e.claims {
		cs := pl.claimants[k]
		if i := slices.Index(cs, e); i >= 0 {
			cs = slices.Delete(cs, i, i+1)
		}
		if len(cs) == 0 {
			delete(pl.claimants, k)
		} else {
			pl.claimants[k] = cs
		}
		touched[k] = true
	}
	pl.unplan(e)
	delete(pl.ports, e.sp.Name)
}

// unplan takes a port's plan out of what the planner keeps of all plans:
// the no-local counts, the conflicts, the ports with a health check.
func (pl *Planner) unplan(e *portEntry) {
	pl.count(e.plan, -1)
	pl.conflictsDirty = pl.conflictsDirty || len(e.conflicts) > 0
	delete(pl.conflicted, e.sp.Name)
	delete(pl.healthy, e.sp.Name)
}

// count adds a plan (by = 1) to the no-local-endpoints counts, or takes it
// away (by = -1).
func (pl *Planner) count(s *ServicePlan, by int) {
	if s == nil {
		return
	}
	if !s.HasEndpoints || len(s.LocalEndpoints) > 0 {
		return
	}
	if s.InternalPolicyLocal {
		pl.noLocalInternal += by
	}
	if s.ExternalPolicyLocal {
		pl.noLocalExternal += by
	}
}

// holder returns the port that holds destination k: its oldest claimant.
func (pl *Planner) holder(k claimKey) *ServicePort {
	var h *ServicePort
	for _, e := range pl.claimants[k] {
		if h == nil || older(e.sp, h) {
			h = e.sp
		}
	}
	return h
}

// servicesAfter returns the previous plan's Services with changes made,
// sorted by name: a copy edited in place when the changes are few, else
// every current plan collected and sorted.
func (pl *Planner) servicesAfter(changes []PortChange, incremental bool) []*ServicePlan {
	byName := func(a *ServicePlan, n ServicePortName) int { return a.Name.Compare(n) }
	if !incremental || len(changes) > maxInPlace {
		out := make([]*ServicePlan, 0, len(pl.ports))
		for _, e := range pl.ports {
			if e.plan != nil {
				out = append(out, e.plan)
			}
		}
		slices.SortFunc(out, func(a, b *ServicePlan) int { return a.Name.Compare(b.Name) })
		pl.services = out
		return out
	}
	if len(changes) == 0 {
		return pl.services
	}
	out := slices.Clone(pl.services)
	for _, c := range changes {
		i, found := slices.BinarySearchFunc(out, c.Name, byName)
		switch {
		case c.New != nil && found:
			out[i] = c.New
		case c.New != nil:
			out = slices.Insert(out, i, c.New)
		case found:
			out = slices.Delete(out, i, i+1)
		}
	}
	pl.services = out
	return out
}

// claimKey is a destination: address (zero for a nodePort), protocol, port.
type claimKey struct {
	addr  netip.Addr
	proto Protocol
	port  int32
}

// claimsOf returns the destinations a service port claims in the family
// of p, in the order it claims them: none without a ClusterIP of the
// family (it is not proxied there), else the ClusterIP, the external IPs
// and LB IPs of the family, and the nodePort when the node has addresses
// for nodePorts. A port claims them all even when it loses its ClusterIP
// to an older one.
func claimsOf(sp *ServicePort, p *Plan) []claimKey {
	var cip netip.Addr
	for _, ip := range sp.ClusterIPs {
		if FamilyOf(ip) == p.Family {
			cip = ip
		}
	}
	if !cip.IsValid() {
		return nil
	}
	out := []claimKey{{cip, sp.Name.Protocol, sp.Port}}
	for _, ips := range [][]netip.Addr{sp.ExternalIPs, sp.LoadBalancerIPs} {
		for _, ip := range ips {
			if FamilyOf(ip) == p.Family {
				out = append(out, claimKey{ip, sp.Name.Protocol, sp.Port})
			}
		}
	}
	if sp.NodePort != 0 && len(p.NodePortIPs) > 0 {
		out = append(out, claimKey{netip.Addr{}, sp.Name.Protocol, sp.NodePort})
	}
	return out
}

// take removes from s the destinations another port holds (holder says
// which port holds each), and reports each as a conflict. A destination
// s lists twice is held by s the first time only.
func take(s *ServicePlan, holder func(claimKey) *ServicePort) []error {
	var errs []error
	var seen []claimKey
	ok := func(field string, addr netip.Addr, port int32) bool {
		k := claimKey{addr, s.Name.Protocol, port}
		h := holder(k)
		if h != nil && h.Name == s.Name && !slices.Contains(seen, k) {
			seen = append(seen, k)
			return true
		}
		o := s.Name
		if h != nil {
			o = h.Name
		}
		dest := fmt.Sprintf("%s %d/%s", addr, port, s.Name.Protocol)
		if !addr.IsValid() {
			dest = fmt.Sprintf("nodePort %d/%s", port, s.Name.Protocol)
		}
		errs = append(errs, &ObjectError{Kind: "Service", Namespace: s.Name.Namespace, Name: s.Name.Name, Field: field,
			Reason: fmt.Sprintf("port %q: %s is already used by %s (the older service keeps it; on a tie, the first by name); this destination is skipped", s.Name.Port, dest, o)})
		return false
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

// planService plans one service port, given which port holds each
// destination, and returns its conflicts (the destinations it lost).
func planService(st *State, cfg *Config, p *Plan, sp *ServicePort, holder func(claimKey) *ServicePort) (*ServicePlan, []error) {
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
		return nil, nil
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
	conflicts := take(s, holder)
	if !s.ClusterIP.IsValid() {
		return nil, conflicts // its cluster IP went to another service: nothing left
	}
	if s.Firewalled = len(s.Ranges) > 0 && len(s.LBIPs) > 0; s.Firewalled && allowFromNode {
		for _, ip := range s.LBIPs {
			s.Ranges = append(s.Ranges, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	s.All = st.Endpoints(sp, fam)
	categorize(s, cfg.Node)
	return s, conflicts
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
