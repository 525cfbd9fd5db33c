package nftables

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Base chains: one per hook rulegen needs. See README.md in this folder for
// why each hook and priority.
const (
	ChainNatPrerouting  = "nat-prerouting"
	ChainNatOutput      = "nat-output"
	ChainNatPostrouting = "nat-postrouting"
	ChainFilterInput    = "filter-input"
	ChainFilterForward  = "filter-forward"
	ChainFilterOutput   = "filter-output"
)

// Shared regular chains.
const (
	// ChainServices dispatches new connections to service chains.
	ChainServices = "services"
	// ChainServiceFilter rejects or drops new connections that are still
	// addressed to a service after NAT (no usable endpoint, source not allowed,
	// unknown port on a ClusterIP).
	ChainServiceFilter = "service-filter"
	// ChainReject rejects (a verdict map cannot hold "reject").
	ChainReject = "reject-chain"
	// ChainMarkMasq marks a packet for masquerading.
	ChainMarkMasq = "mark-for-masquerade"
	// ChainMasquerading masquerades marked packets on the way out.
	ChainMasquerading = "masquerading"
)

// Sets and maps.
const (
	SetClusterIPs      = "cluster-ips"
	SetNodePortIPs     = "nodeport-ips"
	MapServiceIPs      = "service-ips"
	MapServiceNodePort = "service-nodeports"
	MapFilterIPs       = "filter-service-ips"
	MapFilterNodePorts = "filter-service-nodeports"
	// SetHairpin pairs every endpoint on this node (or on an unknown node)
	// with itself: a connection from a pod DNATed back to that same pod is
	// masqueraded, or the pod would answer itself directly and the reply
	// would not match the connection it opened.
	SetHairpin = "hairpin-endpoints"
)

// Hook priorities (the numbers nft spells dstnat, srcnat and filter).
const (
	PriorityDstNAT = -100
	PrioritySrcNAT = 100
	PriorityFilter = 0
)

// MaxCascade is the most endpoints a service chain picks from with a
// cascade of numgen rules; more use one anonymous DNAT map. The cascade
// costs the first packet of a connection up to n comparisons, the map one
// lookup; but every map is a set in the kernel, and this kernel finds a
// table's sets by walking a list, so a map per service would make a
// 5,000-service table quadratic to write (measured: 4,000 services x 10
// endpoints took 6.1 s with maps, 0.9 s as cascades). Services with many
// endpoints are few: they get maps.
const MaxCascade = 32

// Per-service object name prefixes; see rules.PortKey for the scheme.
const (
	prefixService  = "service-"
	prefixLocal    = "local-"
	prefixExternal = "external-"
	prefixFirewall = "firewall-"
	prefixEndpoint = "endpoint-"
	prefixAffinity = "affinity-"
)

// serviceChain returns the name of a per-service chain of the given prefix.
func serviceChain(prefix string, n rules.ServicePortName) string {
	return rules.ReadablePort(prefix, n)
}

func endpointName(prefix string, n rules.ServicePortName, e rules.Endpoint) string {
	return rules.ReadableEndpoint(prefix, n, e)
}

// ClusterChain, LocalChain, ExternalChain, FirewallChain and EndpointChain
// name the per-service chains (exported for trace and tests). Whatever the
// names in n hold, the result is a valid nft identifier of at most
// rules.MaxNFTName bytes (see rules.Readable), so neither the text script
// nor the netlink writer can be refused for a name.
func ClusterChain(n rules.ServicePortName) string  { return serviceChain(prefixService, n) }
func LocalChain(n rules.ServicePortName) string    { return serviceChain(prefixLocal, n) }
func ExternalChain(n rules.ServicePortName) string { return serviceChain(prefixExternal, n) }
func FirewallChain(n rules.ServicePortName) string { return serviceChain(prefixFirewall, n) }
func EndpointChain(n rules.ServicePortName, e rules.Endpoint) string {
	return endpointName(prefixEndpoint, n, e)
}

// AffinitySet names the session-affinity set of one endpoint.
func AffinitySet(n rules.ServicePortName, e rules.Endpoint) string {
	return endpointName(prefixAffinity, n, e)
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// Render turns a plan into rulegen's table for the plan's family. It is a
// pure function: the same plan always gives the same ruleset.
func Render(p *rules.Plan) *Ruleset { return NewRenderer().Render(p) }

// Renderer renders plans again and again (the daemon's syncs), reusing the
// chains and elements it made for every *ServicePlan it sees again (a
// rules.Planner hands out the same *ServicePlan for an unchanged service).
// The output is identical to Render's.
type Renderer struct {
	cache  map[*rules.ServicePlan]*fragment
	chains int // how many chains the last render had (to size the next)
}

// NewRenderer returns a renderer with an empty cache.
func NewRenderer() *Renderer { return &Renderer{} }

// fragment is what one service port contributes to the table.
type fragment struct {
	clusterIPs, serviceIPs, nodePorts, filterIPs, filterNodePorts, hairpin *Set
	affinity                                                               []*Set
	chains                                                                 []*Chain
}

// Render renders a plan. Whatever the plan holds, the ruleset is one nft
// accepts and says nothing the plan did not: names are made safe (see
// ClusterChain), and a service port or address no rule can express is left
// out (see rules.PrintableService: an unknown protocol, a port out of
// range, an address of the other family; an IPv6 zone is dropped). The
// converters reject such input with an error; the renderer does not rely
// on them.
func (rd *Renderer) Render(p *rules.Plan) *Ruleset {
	p = rules.PrintablePlan(p)
	next := make(map[*rules.ServicePlan]*fragment, len(p.Services))
	r := &Ruleset{Family: p.Family}
	clusterIPs := &Set{Name: SetClusterIPs, Key: KeyAddr}
	nodePortIPs := &Set{Name: SetNodePortIPs, Key: KeyAddr}
	serviceIPs := &Set{Name: MapServiceIPs, Key: KeyAddrProtoPort, IsMap: true}
	nodePorts := &Set{Name: MapServiceNodePort, Key: KeyProtoPort, IsMap: true}
	filterIPs := &Set{Name: MapFilterIPs, Key: KeyAddrProtoPort, IsMap: true}
	filterNodePorts := &Set{Name: MapFilterNodePorts, Key: KeyProtoPort, IsMap: true}
	hairpin := &Set{Name: SetHairpin, Key: KeyAddrPair}
	for _, ip := range p.NodePortIPs {
		nodePortIPs.Elements = append(nodePortIPs.Elements, Element{Addr: ip})
	}
	var affinity []*Set
	var svcChains []*Chain

	for _, s := range p.Services {
		f := rd.cache[s]
		if f == nil {
			if c := rules.PrintableService(s, p.Family); c != nil {
				f = renderService(p, c)
			} else {
				f = &fragment{clusterIPs: &Set{}, serviceIPs: &Set{}, nodePorts: &Set{}, filterIPs: &Set{}, filterNodePorts: &Set{}, hairpin: &Set{}}
			}
		}
		next[s] = f
		clusterIPs.Elements = append(clusterIPs.Elements, f.clusterIPs.Elements...)
		serviceIPs.Elements = append(serviceIPs.Elements, f.serviceIPs.Elements...)
		nodePorts.Elements = append(nodePorts.Elements, f.nodePorts.Elements...)
		filterIPs.Elements = append(filterIPs.Elements, f.filterIPs.Elements...)
		filterNodePorts.Elements = append(filterNodePorts.Elements, f.filterNodePorts.Elements...)
		hairpin.Elements = append(hairpin.Elements, f.hairpin.Elements...)
		affinity = append(affinity, f.affinity...)
		svcChains = append(svcChains, f.chains...)
	}
	rd.cache = next
	rd.chains = len(svcChains)

	for _, s := range []*Set{clusterIPs, serviceIPs, nodePorts, filterIPs, filterNodePorts, hairpin} {
		// Sorted by key, then verdict: when two elements share a key (two
		// services whose addresses differed only by a zone), the one kept
		// does not depend on the input order.
		slices.SortFunc(s.Elements, func(a, b Element) int {
			if c := compareElements(a, b); c != 0 {
				return c
			}
			return cmp.Or(cmp.Compare(a.Verdict.Kind, b.Verdict.Kind), cmp.Compare(a.Verdict.Chain, b.Verdict.Chain))
		})
		s.Elements = slices.CompactFunc(s.Elements, func(a, b Element) bool { return compareElements(a, b) == 0 })
	}
	r.Sets = append(r.Sets, clusterIPs, nodePortIPs, serviceIPs, nodePorts, filterIPs, filterNodePorts, hairpin)
	slices.SortFunc(affinity, func(a, b *Set) int { return cmp.Compare(a.Name, b.Name) })
	r.Sets = append(r.Sets, affinity...)

	newConn := func(chain string) Rule { return Rule{CtStateNew{}, Verdict{Kind: Jump, Chain: chain}} }
	// The mark meaning "masquerade" is --iptables-masquerade-bit's, like
	// kube-proxy's (NewProxier: 1 << MasqueradeBit), so that both proxies
	// agree on what a marked packet means during a migration.
	mark := p.Mark()
	unallocated := dropUnallocated(p)
	r.Chains = []*Chain{
		{Name: ChainNatPrerouting, Hook: &Hook{"nat", "prerouting", PriorityDstNAT}, Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainServices}}}},
		{Name: ChainNatOutput, Hook: &Hook{"nat", "output", PriorityDstNAT}, Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainServices}}}},
		{Name: ChainNatPostrouting, Hook: &Hook{"nat", "postrouting", PrioritySrcNAT}, Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainMasquerading}}}},
		{Name: ChainFilterInput, Hook: &Hook{"filter", "input", PriorityFilter}, Rules: []Rule{newConn(ChainServiceFilter)}},
		{Name: ChainFilterForward, Hook: &Hook{"filter", "forward", PriorityFilter}, Rules: append([]Rule{newConn(ChainServiceFilter)}, unallocated...)},
		{Name: ChainFilterOutput, Hook: &Hook{"filter", "output", PriorityFilter}, Rules: append([]Rule{newConn(ChainServiceFilter)}, unallocated...)},
		{Name: ChainServices, Rules: append(masqueradeClusterIPs(p),
			Rule{VmapLookup{Key: KeyAddrProtoPort, Map: MapServiceIPs}},
			Rule{AddrInSet{Set: SetNodePortIPs}, VmapLookup{Key: KeyProtoPort, Map: MapServiceNodePort}},
		)},
		{Name: ChainServiceFilter, Rules: []Rule{
			{VmapLookup{Key: KeyAddrProtoPort, Map: MapFilterIPs}},
			{AddrInSet{Set: SetNodePortIPs}, VmapLookup{Key: KeyProtoPort, Map: MapFilterNodePorts}},
			{AddrInSet{Set: SetClusterIPs}, Reject{}},
		}},
		{Name: ChainReject, Rules: []Rule{{Reject{}}}},
		{Name: ChainMarkMasq, Rules: []Rule{{MarkOr{Mark: mark}}}},
		{Name: ChainMasquerading, Rules: []Rule{
			{CtDNAT{}, AddrPairInSet{Set: SetHairpin}, Verdict{Kind: Jump, Chain: ChainMarkMasq}},
			{MarkUnset{Mark: mark}, Verdict{Kind: Return}},
			{MarkXor{Mark: mark}},
			{Masquerade{}},
		}},
	}
	// Per-service chains stay grouped by service, in service order: stable,
	// and a reader finds all of a service's chains together.
	r.Chains = append(r.Chains, svcChains...)
	return r
}

// dropUnallocated returns the rules that drop new connections to an
// address of the service CIDRs that no service holds, as kube-proxy's
// nftables mode does (setupNFTables: "Drop traffic to unallocated
// ClusterIPs", in the cluster-ips-check chain that filter-forward and
// filter-output jump to for new connections). They follow the jump to
// service-filter, which has already rejected what is addressed to a held
// ClusterIP on a port it does not serve (kube-proxy's rule before the
// drop) and decided what is addressed to a held one with no endpoints; a
// connection DNATed to an endpoint no longer has a service address. Like
// kube-proxy, nothing is dropped on the input hook: an address in the
// service CIDR is not the node's. One rule per range (kube-proxy writes
// one anonymous set; the ranges are one or two).
func dropUnallocated(p *rules.Plan) []Rule {
	var out []Rule
	for _, c := range p.ServiceCIDRs {
		if c.IsValid() && rules.FamilyOf(c.Addr()) == p.Family && c.Addr().Zone() == "" {
			out = append(out, Rule{CtStateNew{}, AddrMatch{Prefix: c.Masked()}, Verdict{Kind: Drop}})
		}
	}
	return out
}

// masqueradeClusterIPs marks for masquerading every new connection to a
// ClusterIP that is not pod traffic (see podMatch), or every one with
// --masquerade-all, before dispatch: the endpoint must answer through this
// node. One rule for all services instead of one per service; a connection
// that is not sent to an endpoint after all is rejected by the filter, so
// its mark never matters.
func masqueradeClusterIPs(p *rules.Plan) []Rule {
	daddr := AddrInSet{Set: SetClusterIPs}
	if p.MasqueradeAll {
		return []Rule{{daddr, Verdict{Kind: Jump, Chain: ChainMarkMasq}}}
	}
	if notPod := podMatch(p, true); notPod != nil {
		return []Rule{{daddr, notPod, Verdict{Kind: Jump, Chain: ChainMarkMasq}}}
	}
	return nil
}

// podMatch returns the statement that matches pod traffic (or, with
// negate, traffic that is not from a pod), as kube-proxy's
// LocalTrafficDetector: the source in the pod range, or the packet
// arriving on the pod interface. It returns nil when the plan tells pod
// traffic in no way. The plan is a printable one (see rules.PrintablePlan).
func podMatch(p *rules.Plan, negate bool) Stmt {
	switch {
	case p.PodInterface.Name != "":
		return Iifname{Name: p.PodInterface.Name, Prefix: p.PodInterface.Prefix, Negate: negate}
	case p.ClusterCIDR.IsValid():
		return AddrMatch{Src: true, Prefix: p.ClusterCIDR, Negate: negate}
	}
	return nil
}

func compareElements(a, b Element) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// renderService renders one service port's chains and elements.
func renderService(p *rules.Plan, s *rules.ServicePlan) *fragment {
	clusterIPs, serviceIPs, nodePorts, filterIPs, filterNodePorts, hairpin := &Set{}, &Set{}, &Set{}, &Set{}, &Set{}, &Set{}
	var affinity []*Set
	var svcChains []*Chain
	masq := Rule{Verdict{Kind: Jump, Chain: ChainMarkMasq}}
	name := s.Name
	proto := name.Protocol
	internal := ClusterChain(name)
	if s.InternalPolicyLocal {
		internal = LocalChain(name)
	}
	add := func(m *Set, ip netip.Addr, port int32, v Verdict) {
		m.Elements = append(m.Elements, Element{Addr: ip, Proto: proto, Port: uint16(port), Verdict: v})
	}
	addFilter := func(m *Set, ip netip.Addr, port int32, v rules.Verdict) {
		switch v {
		case rules.Reject:
			add(m, ip, port, Verdict{Kind: Goto, Chain: ChainReject})
		case rules.Drop:
			add(m, ip, port, Verdict{Kind: Drop})
		}
	}

	// Destinations.
	if s.ClusterIP.IsValid() {
		clusterIPs.Elements = append(clusterIPs.Elements, Element{Addr: s.ClusterIP})
		if len(s.InternalEndpoints()) > 0 {
			add(serviceIPs, s.ClusterIP, s.Port, Verdict{Kind: Goto, Chain: internal})
		}
		addFilter(filterIPs, s.ClusterIP, s.Port, s.InternalVerdict())
	}
	ext := Verdict{Kind: Goto, Chain: ExternalChain(name)}
	if s.NeedsExternalChain() {
		for _, ip := range s.ExtIPs {
			add(serviceIPs, ip, s.Port, ext)
		}
		lb := ext
		if s.Firewalled {
			lb = Verdict{Kind: Goto, Chain: FirewallChain(name)}
		}
		for _, ip := range s.LBIPs {
			add(serviceIPs, ip, s.Port, lb)
		}
		if s.HasNodePort {
			add(nodePorts, netip.Addr{}, s.NodePort, ext)
		}
	}
	for _, ip := range s.ExtIPs {
		addFilter(filterIPs, ip, s.Port, s.ExternalVerdict())
	}
	if s.FirewallRejects() {
		// No endpoints: the filter sends the LB IPs to the firewall
		// chain, which rejects the allowed sources and drops the others.
		fw := &Chain{Name: FirewallChain(name)}
		for _, rg := range s.Ranges {
			fw.Rules = append(fw.Rules, Rule{AddrMatch{Src: true, Prefix: rg}, Verdict{Kind: Goto, Chain: ChainReject}})
		}
		fw.Rules = append(fw.Rules, Rule{Verdict{Kind: Drop}})
		svcChains = append(svcChains, fw)
		for _, ip := range s.LBIPs {
			add(filterIPs, ip, s.Port, Verdict{Kind: Goto, Chain: fw.Name})
		}
	} else {
		for _, ip := range s.LBIPs {
			addFilter(filterIPs, ip, s.Port, s.LBVerdict())
		}
	}
	if s.HasNodePort {
		addFilter(filterNodePorts, netip.Addr{}, s.NodePort, s.ExternalVerdict())
	}

	// Chains.
	used := s.UsedEndpoints()
	for _, e := range used {
		if p.MayHairpin(e) {
			hairpin.Elements = append(hairpin.Elements, Element{Addr: e.IP})
		}
	}
	// Without session affinity a service chain sends each new connection
	// straight to an endpoint: up to MaxCascade endpoints by a cascade of
	// "numgen random mod k == 0 … dnat to POD" rules (k = n, n-1, …, 2, then
	// the last endpoint), beyond that by one "dnat ip to numgen random mod n
	// map { … }" rule. No chain per endpoint: few kernel objects, and no
	// jumps for the kernel to validate below the service chain. With
	// affinity, each endpoint keeps a chain that records the client in the
	// endpoint's affinity set, chosen by the same cascade with gotos.
	dnat := func(e rules.Endpoint) Rule {
		return Rule{L4Proto{Proto: proto}, DNAT{Addr: e.IP, Port: uint16(e.Port)}}
	}
	dispatch := func(chain string, eps []rules.Endpoint) *Chain {
		c := &Chain{Name: chain}
		if s.AffinitySeconds > 0 {
			for _, e := range eps {
				c.Rules = append(c.Rules, Rule{AddrInSet{Src: true, Set: AffinitySet(name, e)}, Verdict{Kind: Goto, Chain: EndpointChain(name, e)}})
			}
		}
		switch {
		case s.AffinitySeconds > 0:
			for i, e := range eps {
				var pick Rule
				if left := len(eps) - i; left > 1 {
					pick = Rule{NumgenZero{Mod: left}}
				}
				c.Rules = append(c.Rules, append(pick, Verdict{Kind: Goto, Chain: EndpointChain(name, e)}))
			}
		case len(eps) <= MaxCascade:
			for i, e := range eps {
				var pick Rule
				if left := len(eps) - i; left > 1 {
					pick = Rule{NumgenZero{Mod: left}}
				}
				c.Rules = append(c.Rules, append(pick, dnat(e)...))
			}
		default:
			targets := make([]netip.AddrPort, len(eps))
			for i, e := range eps {
				targets[i] = netip.AddrPortFrom(e.IP, uint16(e.Port))
			}
			c.Rules = append(c.Rules, Rule{L4Proto{Proto: proto}, DNATMap{Targets: targets}})
		}
		return c
	}
	if s.NeedsClusterChain() {
		svcChains = append(svcChains, dispatch(ClusterChain(name), s.ClusterEndpoints))
	}
	if s.NeedsLocalChain() {
		svcChains = append(svcChains, dispatch(LocalChain(name), s.LocalEndpoints))
	}
	if s.NeedsExternalChain() {
		c := &Chain{Name: ExternalChain(name)}
		if !s.ExternalPolicyLocal {
			c.Rules = append(c.Rules, masq, Rule{Verdict{Kind: Goto, Chain: ClusterChain(name)}})
		} else {
			if s.ShortCircuit() {
				cluster := ClusterChain(name)
				if pod := podMatch(p, false); pod != nil {
					c.Rules = append(c.Rules, Rule{pod, Verdict{Kind: Goto, Chain: cluster}})
				}
				c.Rules = append(c.Rules,
					Rule{FibLocal{Src: true}, Verdict{Kind: Jump, Chain: ChainMarkMasq}},
					Rule{FibLocal{Src: true}, Verdict{Kind: Goto, Chain: cluster}})
			}
			if len(s.LocalEndpoints) > 0 {
				c.Rules = append(c.Rules, Rule{Verdict{Kind: Goto, Chain: LocalChain(name)}})
			}
		}
		svcChains = append(svcChains, c)
		if s.Firewalled {
			fw := &Chain{Name: FirewallChain(name)}
			for _, rg := range s.Ranges {
				fw.Rules = append(fw.Rules, Rule{AddrMatch{Src: true, Prefix: rg}, Verdict{Kind: Goto, Chain: ExternalChain(name)}})
			}
			svcChains = append(svcChains, fw)
		}
	}
	// With session affinity, a chain per endpoint used by any policy.
	if s.AffinitySeconds > 0 {
		for _, e := range used {
			set := AffinitySet(name, e)
			affinity = append(affinity, &Set{Name: set, Key: KeyAddr, Timeout: s.AffinitySeconds})
			svcChains = append(svcChains, &Chain{Name: EndpointChain(name, e), Rules: []Rule{{UpdateSet{Set: set}}, dnat(e)}})
		}
	}
	return &fragment{clusterIPs: clusterIPs, serviceIPs: serviceIPs, nodePorts: nodePorts, filterIPs: filterIPs,
		filterNodePorts: filterNodePorts, hairpin: hairpin, affinity: affinity, chains: svcChains}
}
