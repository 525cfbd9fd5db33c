package nftables

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"

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
	// ChainServices dispatches new connections: source checks and
	// masquerade marks first, then the per-service chains of services
	// with session affinity, then ChainDispatch.
	ChainServices = "services"
	// ChainDispatch sends a new connection to an endpoint: it jumps to
	// the count tree of each kind (ByCountChain), which goes to the chain
	// of the destination's endpoint count, whose rule looks it up in the
	// map of that count.
	ChainDispatch = "dispatch"
	// ChainShortCircuit does the same for connections from pods and from
	// the node itself to external destinations of services under
	// externalTrafficPolicy Local, which go to the cluster-wide endpoints.
	ChainShortCircuit = "short-circuit"
	// ChainServiceFilter rejects or drops new connections that are still
	// addressed to a service after NAT (no usable endpoint, source not allowed,
	// unknown port on a ClusterIP).
	ChainServiceFilter = "service-filter"
	// ChainMarkMasq marks a packet for masquerading.
	ChainMarkMasq = "mark-for-masquerade"
	// ChainMasquerading masquerades marked packets on the way out.
	ChainMasquerading = "masquerading"
)

// Sets and maps. Destinations are keyed "daddr . l4proto . dport" (ClusterIPs,
// external IPs, load-balancer IPs: the …-ips sets) or "l4proto . dport"
// (nodePorts, on any address of nodeport-ips: the …-nodeports sets).
const (
	SetClusterIPs  = "cluster-ips"
	SetNodePortIPs = "nodeport-ips"
	// MapServiceIPs and MapServiceNodePort send the destinations of
	// services with session affinity to their chains (verdict maps: the
	// only per-service verdicts in the table).
	MapServiceIPs      = "service-ips"
	MapServiceNodePort = "service-nodeports"
	// SetFirewallIPs are the load-balancer destinations restricted by
	// loadBalancerSourceRanges; SetFirewallAllow pairs each with the
	// source ranges allowed to reach it.
	SetFirewallIPs   = "firewall-ips"
	SetFirewallAllow = "firewall-allow"
	// SetMasqIPs and SetMasqNodePorts are the external destinations under
	// externalTrafficPolicy Cluster: connections to them are masqueraded.
	SetMasqIPs       = "external-masq-ips"
	SetMasqNodePorts = "external-masq-nodeports"
	// SetShortCircuitIPs and SetShortCircuitNodePorts are the external
	// destinations under externalTrafficPolicy Local that pods and the
	// node send to the cluster-wide endpoints.
	SetShortCircuitIPs       = "short-circuit-ips"
	SetShortCircuitNodePorts = "short-circuit-nodeports"
	// The filter's verdicts for destinations still addressed after NAT.
	SetRejectIPs       = "reject-ips"
	SetRejectNodePorts = "reject-nodeports"
	SetDropIPs         = "drop-ips"
	SetDropNodePorts   = "drop-nodeports"
	// SetHairpin pairs every endpoint on this node (or on an unknown node)
	// with itself: a connection from a pod DNATed back to that same pod is
	// masqueraded, or the pod would answer itself directly and the reply
	// would not match the connection it opened.
	SetHairpin = "hairpin-endpoints"
)

// Maps of endpoints: one map of each kind per endpoint count K in use,
// named PREFIX-K, keyed by destination and slot 0..K-1 (see EndpointMap).
const (
	PrefixEndpoints             = "endpoints-"
	PrefixNodePortEndpoints     = "nodeport-endpoints-"
	PrefixShortCircuitEndpoints = "short-circuit-endpoints-"
	PrefixShortCircuitNodePorts = "short-circuit-nodeport-endpoints-"
)

// EndpointMap names the map of endpoints of a kind for services with k
// endpoints: prefix is one of the prefix… constants. The chain of the
// same name holds the one rule that looks the map up.
func EndpointMap(prefix string, k int) string { return prefix + strconv.Itoa(k) }

// CountSet names the set of the destinations of a kind whose endpoint
// count has bit b set (b = 3: the counts 8-15, 24-31, …).
func CountSet(prefix string, b int) string { return prefix + "count-bit-" + strconv.Itoa(b) }

// ByCountChain names the chain that sends a destination of a kind to the
// chain of its endpoint count (see Renderer.byCount).
func ByCountChain(prefix string) string { return prefix + "by-count" }

// MaxTreeCount is the smallest endpoint count left out of the count tree
// (see Renderer.byCount): 2^12, so that no path through the tree takes
// more than 12 gotos.
const MaxTreeCount = 1 << 12

// countRangeChain names a chain of the tree below ByCountChain: the one
// for the counts lo to hi.
func countRangeChain(prefix string, lo, hi int) string {
	return prefix + "by-count-" + strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
}

// destKey is the key of a destination of a map of endpoints of key k (k
// without its slot).
func destKey(k KeyType) KeyType {
	if k == KeyProtoPortSlot {
		return KeyProtoPort
	}
	return KeyAddrProtoPort
}

// Hook priorities (the numbers nft spells dstnat, srcnat and filter).
const (
	PriorityDstNAT = -100
	PrioritySrcNAT = 100
	PriorityFilter = 0
)

// Per-service object name prefixes; see rules.PortKey for the scheme.
const (
	prefixService  = "service-"
	prefixLocal    = "local-"
	prefixExternal = "external-"
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

// ClusterChain, LocalChain, ExternalChain and EndpointChain
// name the per-service chains (exported for trace and tests). Whatever the
// names in n hold, the result is a valid nft identifier of at most
// rules.MaxNFTName bytes (see rules.Readable), so neither the text script
// nor the netlink writer can be refused for a name.
func ClusterChain(n rules.ServicePortName) string  { return serviceChain(prefixService, n) }
func LocalChain(n rules.ServicePortName) string    { return serviceChain(prefixLocal, n) }
func ExternalChain(n rules.ServicePortName) string { return serviceChain(prefixExternal, n) }
func EndpointChain(n rules.ServicePortName, e rules.Endpoint) string {
	return endpointName(prefixEndpoint, n, e)
}

// AffinitySet names the session-affinity set of one endpoint.
func AffinitySet(n rules.ServicePortName, e rules.Endpoint) string {
	return endpointName(prefixAffinity, n, e)
}

// Render turns a plan into rulegen's table for the plan's family. It is a
// pure function: the same plan always gives the same ruleset, complete
// (Materialize is not needed) and without a Delta.
func Render(p *rules.Plan) *Ruleset {
	r := NewRenderer().Render(p)
	r.Materialize()
	r.Delta = nil
	return r
}

// Renderer renders plans again and again (the daemon's syncs). It keeps
// what each service port contributed to the table (its fragment) and the
// element store (store.go), so that after a plan that lists its Changes
// from the plan rendered before (rules.Plan.Base) it renders those ports
// alone, and says which elements changed (Ruleset.Delta): the cost of a
// render grows with what changed, not with the number of services. Any
// other plan is compared with the previous one port by port (by plan
// pointer: a rules.Planner hands out the same *ServicePlan for an
// unchanged port). The table is the one Render makes of the same plan.
// Not safe for concurrent use.
type Renderer struct {
	gen     uint64 // the Gen of the last plan rendered
	version uint64 // renders made (see Materialize)
	frags   map[*rules.ServicePlan]*fragment
	stores  map[string]*setStore
	// counts holds, per kind of map of endpoints, how many destinations
	// have each endpoint count (the maps that exist).
	counts  map[string]map[int]int
	touched map[touchKey]before
	// tracking: this render notes what it changes (there is a ruleset
	// before it to make a Delta from).
	tracking bool
	nodeIPs  []netip.Addr // the nodeport-ips set's addresses
	// The fragments with session affinity, and the sets and chains they
	// make, sorted (rebuilt when one of them changed).
	affinity       map[*rules.ServicePlan]*fragment
	affinityDirty  bool
	affinitySets   []*Set
	affinityChains []*Chain
	// trees keeps, per kind of map of endpoints, the counts in use and
	// the chains byCount made for them, until the counts change.
	trees map[string]countTree
	last  *Ruleset
}

type countTree struct {
	ks     []int
	chains []*Chain
}

// NewRenderer returns a renderer that has rendered nothing yet.
func NewRenderer() *Renderer {
	rd := &Renderer{frags: map[*rules.ServicePlan]*fragment{}, stores: map[string]*setStore{}, counts: map[string]map[int]int{},
		touched: map[touchKey]before{}, affinity: map[*rules.ServicePlan]*fragment{}, trees: map[string]countTree{}}
	for _, d := range shared {
		rd.stores[d.name] = &setStore{key: d.key, isMap: d.isMap, entries: map[elemKey][]contrib{}}
	}
	for _, k := range endpointKinds {
		rd.stores[k.prefix] = &setStore{key: k.key, isMap: true, entries: map[elemKey][]contrib{}}
		rd.counts[k.prefix] = map[int]int{}
	}
	return rd
}

// fragment is what one service port contributes to the table: items of
// shared sets and maps and, for session affinity only, chains and sets of
// its own.
type fragment struct {
	owner    rules.ServicePortName
	items    []item
	affinity []*Set
	chains   []*Chain
}

// shared describes every shared set but the maps of endpoints, in the
// order the table lists them.
var shared = []struct {
	name  string
	key   KeyType
	isMap bool
}{
	{SetClusterIPs, KeyAddr, false},
	{SetNodePortIPs, KeyAddr, false},
	{SetFirewallIPs, KeyAddrProtoPort, false},
	{SetFirewallAllow, KeyAddrProtoPortSource, false},
	{SetMasqIPs, KeyAddrProtoPort, false},
	{SetMasqNodePorts, KeyProtoPort, false},
	{SetShortCircuitIPs, KeyAddrProtoPort, false},
	{SetShortCircuitNodePorts, KeyProtoPort, false},
	{SetRejectIPs, KeyAddrProtoPort, false},
	{SetRejectNodePorts, KeyProtoPort, false},
	{SetDropIPs, KeyAddrProtoPort, false},
	{SetDropNodePorts, KeyProtoPort, false},
	{MapServiceIPs, KeyAddrProtoPort, true},
	{MapServiceNodePort, KeyProtoPort, true},
	{SetHairpin, KeyAddrPair, false},
}

// endpointKinds are the kinds of maps of endpoints, in the order the
// table lists them, with the chain whose rules look them up.
var endpointKinds = []struct {
	prefix   string
	key      KeyType
	nodePort bool
	chain    string
}{
	{PrefixEndpoints, KeyAddrProtoPortSlot, false, ChainDispatch},
	{PrefixNodePortEndpoints, KeyProtoPortSlot, true, ChainDispatch},
	{PrefixShortCircuitEndpoints, KeyAddrProtoPortSlot, false, ChainShortCircuit},
	{PrefixShortCircuitNodePorts, KeyProtoPortSlot, true, ChainShortCircuit},
}

// update replaces the fragment of plan old (nil: none) by one of plan s
// (nil: none).
func (rd *Renderer) update(p *rules.Plan, old, s *rules.ServicePlan) {
	if f := rd.frags[old]; old != nil && f != nil {
		rd.edit(f.owner, f.items, false)
		delete(rd.frags, old)
		if rd.affinity[old] != nil {
			delete(rd.affinity, old)
			rd.affinityDirty = true
		}
	}
	if s == nil {
		return
	}
	f := &fragment{owner: s.Name}
	if c := rules.PrintableService(s, p.Family); c != nil {
		f = renderService(p, c)
	}
	rd.edit(f.owner, f.items, true)
	rd.frags[s] = f
	if len(f.chains) > 0 || len(f.affinity) > 0 {
		rd.affinity[s] = f
		rd.affinityDirty = true
	}
}

// Render renders a plan. Whatever the plan holds, the ruleset is one nft
// accepts and says nothing the plan did not: names are made safe (see
// ClusterChain), and a service port or address no rule can express is left
// out (see rules.PrintableService: an unknown protocol, a port out of
// range, an address of the other family; an IPv6 zone is dropped). The
// converters reject such input with an error; the renderer does not rely
// on them.
//
// The ruleset's sets have no Elements until Materialize is called (before
// the next Render); its Delta lists what changed since the ruleset
// rendered before (nil for the first).
func (rd *Renderer) Render(p *rules.Plan) *Ruleset {
	p = rules.PrintablePlan(p)
	rd.version++
	rd.tracking = rd.last != nil
	if p.Base != 0 && p.Base == rd.gen && rd.last != nil {
		for _, c := range p.Changes {
			rd.update(p, c.Old, c.New)
		}
	} else {
		now := make(map[*rules.ServicePlan]bool, len(p.Services))
		for _, s := range p.Services {
			now[s] = true
		}
		for s := range rd.frags {
			if !now[s] {
				rd.update(p, s, nil)
			}
		}
		for _, s := range p.Services {
			if rd.frags[s] == nil {
				rd.update(p, nil, s)
			}
		}
	}
	rd.gen = p.Gen
	if !slices.Equal(rd.nodeIPs, p.NodePortIPs) {
		ips := func(in []netip.Addr) []item {
			var out []item
			for _, ip := range in {
				out = append(out, item{set: SetNodePortIPs, key: elemKey{addr: ip}})
			}
			return out
		}
		rd.edit(rules.ServicePortName{}, ips(rd.nodeIPs), false)
		rd.edit(rules.ServicePortName{}, ips(p.NodePortIPs), true)
		rd.nodeIPs = slices.Clone(p.NodePortIPs)
	}
	r := &Ruleset{Family: p.Family, src: rd, version: rd.version}
	if rd.tracking {
		rd.last.Delta = nil // only the newest ruleset keeps its delta (and the one before)
		r.Delta = &Delta{Base: rd.last, Sets: rd.delta()}
	} else {
		rd.recount()
	}
	rd.last = r
	for _, d := range shared {
		r.Sets = append(r.Sets, &Set{Name: d.name, Key: d.key, IsMap: d.isMap})
	}
	// The maps of endpoints, by kind, then endpoint count, and each kind's
	// count sets; the chains that pick a map by count (see byCount).
	var dispatch, shortCircuit []Rule
	var countChains []*Chain
	for _, kind := range endpointKinds {
		ks := make([]int, 0, len(rd.counts[kind.prefix]))
		bitsUsed := 0
		for k := range rd.counts[kind.prefix] {
			ks = append(ks, k)
			bitsUsed |= k
		}
		if len(ks) == 0 {
			continue
		}
		slices.Sort(ks)
		for _, k := range ks {
			r.Sets = append(r.Sets, &Set{Name: EndpointMap(kind.prefix, k), Key: kind.key, IsMap: true})
		}
		for b := 0; bitsUsed>>b != 0; b++ {
			if bitsUsed>>b&1 != 0 {
				r.Sets = append(r.Sets, &Set{Name: CountSet(kind.prefix, b), Key: destKey(kind.key)})
			}
		}
		countChains = append(countChains, rd.byCount(kind.prefix, kind.key, ks)...)
		var rule Rule
		if kind.nodePort {
			rule = Rule{AddrInSet{Set: SetNodePortIPs}}
		}
		rule = append(rule, Verdict{Kind: Jump, Chain: ByCountChain(kind.prefix)})
		if kind.chain == ChainDispatch {
			dispatch = append(dispatch, rule)
		} else {
			shortCircuit = append(shortCircuit, rule)
		}
	}
	if rd.affinityDirty {
		// Per-service chains (session affinity only) stay grouped by
		// service, in service order: stable, and a reader finds all of a
		// service's chains together.
		fs := make([]*fragment, 0, len(rd.affinity))
		for _, f := range rd.affinity {
			fs = append(fs, f)
		}
		slices.SortStableFunc(fs, func(a, b *fragment) int { return a.owner.Compare(b.owner) })
		rd.affinitySets, rd.affinityChains = nil, nil
		for _, f := range fs {
			rd.affinitySets = append(rd.affinitySets, f.affinity...)
			rd.affinityChains = append(rd.affinityChains, f.chains...)
		}
		slices.SortFunc(rd.affinitySets, func(a, b *Set) int { return cmp.Compare(a.Name, b.Name) })
		rd.affinityDirty = false
	}
	r.Sets = append(r.Sets, rd.affinitySets...)

	newConn := func(chain string) Rule { return Rule{CtStateNew{}, Verdict{Kind: Jump, Chain: chain}} }
	// The mark meaning "masquerade" is --iptables-masquerade-bit's, like
	// kube-proxy's (NewProxier: 1 << MasqueradeBit), so that both proxies
	// agree on what a marked packet means during a migration.
	mark := p.Mark()
	unallocated := dropUnallocated(p)
	ips := func(set string) Stmt { return KeyInSet{Key: KeyAddrProtoPort, Set: set} }
	nodePorts := func(set string) []Stmt {
		return []Stmt{AddrInSet{Set: SetNodePortIPs}, KeyInSet{Key: KeyProtoPort, Set: set}}
	}
	toMasq := Verdict{Kind: Jump, Chain: ChainMarkMasq}
	services := []Rule{
		// A source outside a load-balancer IP's loadBalancerSourceRanges
		// is not sent anywhere: the filter drops it.
		{ips(SetFirewallIPs), KeyInSet{Key: KeyAddrProtoPortSource, Set: SetFirewallAllow, Negate: true}, Verdict{Kind: Return}},
	}
	services = append(services, masqueradeClusterIPs(p)...)
	services = append(services,
		Rule{ips(SetMasqIPs), toMasq},
		append(Rule(nodePorts(SetMasqNodePorts)), toMasq),
		Rule{FibLocal{Src: true}, ips(SetShortCircuitIPs), toMasq},
		append(append(Rule{FibLocal{Src: true}}, nodePorts(SetShortCircuitNodePorts)...), toMasq),
	)
	if pod := podMatch(p, false); pod != nil {
		services = append(services, Rule{pod, Verdict{Kind: Jump, Chain: ChainShortCircuit}})
	}
	services = append(services,
		Rule{FibLocal{Src: true}, Verdict{Kind: Jump, Chain: ChainShortCircuit}},
		Rule{VmapLookup{Key: KeyAddrProtoPort, Map: MapServiceIPs}},
		Rule{AddrInSet{Set: SetNodePortIPs}, VmapLookup{Key: KeyProtoPort, Map: MapServiceNodePort}},
		Rule{Verdict{Kind: Goto, Chain: ChainDispatch}},
	)
	r.Chains = []*Chain{
		{Name: ChainNatPrerouting, Hook: &Hook{"nat", "prerouting", PriorityDstNAT}, Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainServices}}}},
		{Name: ChainNatOutput, Hook: &Hook{"nat", "output", PriorityDstNAT}, Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainServices}}}},
		{Name: ChainNatPostrouting, Hook: &Hook{"nat", "postrouting", PrioritySrcNAT}, Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainMasquerading}}}},
		{Name: ChainFilterInput, Hook: &Hook{"filter", "input", PriorityFilter}, Rules: []Rule{newConn(ChainServiceFilter)}},
		{Name: ChainFilterForward, Hook: &Hook{"filter", "forward", PriorityFilter}, Rules: append([]Rule{newConn(ChainServiceFilter)}, unallocated...)},
		{Name: ChainFilterOutput, Hook: &Hook{"filter", "output", PriorityFilter}, Rules: append([]Rule{newConn(ChainServiceFilter)}, unallocated...)},
		{Name: ChainServices, Rules: services},
		{Name: ChainShortCircuit, Rules: shortCircuit},
		{Name: ChainDispatch, Rules: dispatch},
		{Name: ChainServiceFilter, Rules: []Rule{
			{ips(SetFirewallIPs), KeyInSet{Key: KeyAddrProtoPortSource, Set: SetFirewallAllow, Negate: true}, Verdict{Kind: Drop}},
			{ips(SetRejectIPs), Reject{}},
			{ips(SetDropIPs), Verdict{Kind: Drop}},
			append(Rule(nodePorts(SetRejectNodePorts)), Reject{}),
			append(Rule(nodePorts(SetDropNodePorts)), Verdict{Kind: Drop}),
			{AddrInSet{Set: SetClusterIPs}, Reject{}},
		}},
		{Name: ChainMarkMasq, Rules: []Rule{{MarkOr{Mark: mark}}}},
		{Name: ChainMasquerading, Rules: []Rule{
			{CtDNAT{}, AddrPairInSet{Set: SetHairpin}, Verdict{Kind: Jump, Chain: ChainMarkMasq}},
			{MarkUnset{Mark: mark}, Verdict{Kind: Return}},
			{MarkXor{Mark: mark}},
			{Masquerade{}},
		}},
	}
	r.Chains = append(r.Chains, countChains...)
	r.Chains = append(r.Chains, rd.affinityChains...)
	return r
}

// byCount returns the chains that send a destination of a kind to the
// map of its endpoint count ks (sorted, in use), without trying each
// map: a binary tree on the bits of the count. ByCountChain(prefix) is
// the root; where the counts below a chain differ first, at bit b from
// the top, one rule looks the destination up in the count set of bit b
// and goes to the chain of the counts with that bit (countRangeChain),
// and the chain goes on with those without it; one count left is a goto
// to its chain (named as its map), whose one rule is the dnat lookup. A
// first packet thus makes at most one set lookup per bit of the largest
// count, then one map lookup (7 and 1 for counts from 1 to 64; with one
// count in use, only the map lookup), and a destination's place in the
// tree is data: its count's bits in the count sets. The count chains
// change only when a count comes into use or goes out of it, and the
// dnat rule of a count never moves, so that a map is bound by a rule
// once, when it is made (binding a map makes the kernel check every
// element of it).
//
// The kernel refuses a table in which a packet can pass 16 jumps and
// gotos (NFT_JUMP_STACK_SIZE), and the root is 3 deep (nat-prerouting,
// services, dispatch): counts of MaxTreeCount or more, which the tree
// would take 13 gotos to reach, are not in it but tried first, one
// `jump` to the count's chain each (a miss comes back and the next is
// tried), as every count was before the tree.
func (rd *Renderer) byCount(prefix string, key KeyType, ks []int) []*Chain {
	if t, ok := rd.trees[prefix]; ok && slices.Equal(t.ks, ks) {
		return t.chains
	}
	dk := destKey(key)
	root := &Chain{Name: ByCountChain(prefix)}
	chains := []*Chain{root}
	small, _ := slices.BinarySearch(ks, MaxTreeCount)
	for _, k := range ks[small:] {
		root.Rules = append(root.Rules, Rule{Verdict{Kind: Jump, Chain: EndpointMap(prefix, k)}})
	}
	var fill func(c *Chain, ks []int)
	fill = func(c *Chain, ks []int) {
		for len(ks) > 1 {
			// Sorted counts share their bits above the highest bit in
			// which the smallest and the largest differ.
			b := bits.Len(uint(ks[0]^ks[len(ks)-1])) - 1
			split, _ := slices.BinarySearchFunc(ks, 1<<b, func(k, bit int) int {
				if k&bit != 0 {
					return 1
				}
				return -1
			})
			zeros, ones := ks[:split], ks[split:]
			target := EndpointMap(prefix, ones[0])
			if len(ones) > 1 {
				lo := ones[0] >> b << b
				sub := &Chain{Name: countRangeChain(prefix, lo, lo+1<<b-1)}
				chains = append(chains, sub)
				fill(sub, ones)
				target = sub.Name
			}
			c.Rules = append(c.Rules, Rule{KeyInSet{Key: dk, Set: CountSet(prefix, b)}, Verdict{Kind: Goto, Chain: target}})
			ks = zeros
		}
		c.Rules = append(c.Rules, Rule{Verdict{Kind: Goto, Chain: EndpointMap(prefix, ks[0])}})
	}
	if small > 0 {
		fill(root, ks[:small])
	}
	for _, k := range ks {
		m := EndpointMap(prefix, k)
		chains = append(chains, &Chain{Name: m, Rules: []Rule{{DNATLookup{Key: key, Mod: k, Map: m}}}})
	}
	rd.trees[prefix] = countTree{slices.Clone(ks), chains}
	return chains
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
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Slot, b.Slot); c != 0 {
		return c
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// renderService renders one service port's elements (and, with session
// affinity, its chains).
func renderService(p *rules.Plan, s *rules.ServicePlan) *fragment {
	f := &fragment{owner: s.Name}
	add := func(set string, _ KeyType, e Element) {
		f.items = append(f.items, item{set: set, key: elemKey{addr: e.Addr, prefix: e.Prefix, proto: e.Proto, port: e.Port}, value: value{verdict: e.Verdict}})
	}
	proto := s.Name.Protocol
	dst := func(ip netip.Addr, port int32) Element { return Element{Addr: ip, Proto: proto, Port: uint16(port)} }
	nodePort := func() Element { return Element{Proto: proto, Port: uint16(s.NodePort)} }
	// endpoints adds the slots of a destination to the map of its kind for
	// len(eps) endpoints.
	endpoints := func(prefix string, _ KeyType, at Element, eps []rules.Endpoint) {
		if len(eps) == 0 {
			return
		}
		targets := make([]netip.AddrPort, len(eps))
		for i, e := range eps {
			targets[i] = netip.AddrPortFrom(e.IP, uint16(e.Port))
		}
		f.items = append(f.items, item{set: prefix, key: elemKey{addr: at.Addr, proto: at.Proto, port: at.Port}, value: value{targets: targets}})
	}
	verdictSets := func(v rules.Verdict) (ipSet, npSet string) {
		switch v {
		case rules.Reject:
			return SetRejectIPs, SetRejectNodePorts
		case rules.Drop:
			return SetDropIPs, SetDropNodePorts
		}
		return "", ""
	}
	filterIP := func(ip netip.Addr, v rules.Verdict) {
		if set, _ := verdictSets(v); set != "" {
			add(set, KeyAddrProtoPort, dst(ip, s.Port))
		}
	}

	// What the filter does with a connection that was not sent to an
	// endpoint, for every service alike.
	if s.ClusterIP.IsValid() {
		add(SetClusterIPs, KeyAddr, Element{Addr: s.ClusterIP})
		filterIP(s.ClusterIP, s.InternalVerdict())
	}
	for _, ip := range s.ExtIPs {
		filterIP(ip, s.ExternalVerdict())
	}
	for _, ip := range s.LBIPs {
		filterIP(ip, s.LBVerdict())
	}
	if s.HasNodePort {
		if _, set := verdictSets(s.ExternalVerdict()); set != "" {
			add(set, KeyProtoPort, nodePort())
		}
	}
	// loadBalancerSourceRanges: checked before NAT (a source outside them
	// is not sent anywhere) and again in the filter (which drops it).
	if s.Firewalled {
		for _, ip := range s.LBIPs {
			add(SetFirewallIPs, KeyAddrProtoPort, dst(ip, s.Port))
			for _, rg := range s.Ranges {
				e := dst(ip, s.Port)
				e.Prefix = rg.Masked()
				add(SetFirewallAllow, KeyAddrProtoPortSource, e)
			}
		}
	}
	for _, e := range s.UsedEndpoints() {
		if p.MayHairpin(e) {
			add(SetHairpin, KeyAddrPair, Element{Addr: e.IP})
		}
	}

	if s.AffinitySeconds > 0 {
		affinityChains(p, s, f, add)
	} else {
		// Sending to an endpoint: elements only.
		if s.ClusterIP.IsValid() {
			endpoints(PrefixEndpoints, KeyAddrProtoPortSlot, dst(s.ClusterIP, s.Port), s.InternalEndpoints())
		}
		if s.NeedsExternalChain() {
			var externals []Element
			for _, ip := range s.ExtIPs {
				externals = append(externals, dst(ip, s.Port))
			}
			for _, ip := range s.LBIPs {
				externals = append(externals, dst(ip, s.Port))
			}
			for _, at := range externals {
				endpoints(PrefixEndpoints, KeyAddrProtoPortSlot, at, s.ExternalEndpoints())
				switch {
				case !s.ExternalPolicyLocal:
					add(SetMasqIPs, KeyAddrProtoPort, at)
				case s.ShortCircuit():
					add(SetShortCircuitIPs, KeyAddrProtoPort, at)
					endpoints(PrefixShortCircuitEndpoints, KeyAddrProtoPortSlot, at, s.ClusterEndpoints)
				}
			}
			if s.HasNodePort {
				endpoints(PrefixNodePortEndpoints, KeyProtoPortSlot, nodePort(), s.ExternalEndpoints())
				switch {
				case !s.ExternalPolicyLocal:
					add(SetMasqNodePorts, KeyProtoPort, nodePort())
				case s.ShortCircuit():
					add(SetShortCircuitNodePorts, KeyProtoPort, nodePort())
					endpoints(PrefixShortCircuitNodePorts, KeyProtoPortSlot, nodePort(), s.ClusterEndpoints)
				}
			}
		}
	}
	return f
}

// affinityChains renders a service with session affinity as chains, the
// one exception to the data-driven layout: each endpoint has a chain that
// records the client in the endpoint's affinity set (a dynamic set per
// endpoint), which no map lookup can do. The service's destinations are
// elements of the verdict maps service-ips and service-nodeports, so
// adding, changing or deleting such a service makes the kernel validate
// the table (see README.md).
func affinityChains(p *rules.Plan, s *rules.ServicePlan, f *fragment, add func(string, KeyType, Element)) {
	name := s.Name
	proto := name.Protocol
	masq := Rule{Verdict{Kind: Jump, Chain: ChainMarkMasq}}
	internal := ClusterChain(name)
	if s.InternalPolicyLocal {
		internal = LocalChain(name)
	}
	vmap := func(set string, key KeyType, ip netip.Addr, port int32, chain string) {
		add(set, key, Element{Addr: ip, Proto: proto, Port: uint16(port), Verdict: Verdict{Kind: Goto, Chain: chain}})
	}
	if s.ClusterIP.IsValid() && len(s.InternalEndpoints()) > 0 {
		vmap(MapServiceIPs, KeyAddrProtoPort, s.ClusterIP, s.Port, internal)
	}
	if s.NeedsExternalChain() {
		ext := ExternalChain(name)
		for _, ip := range s.ExtIPs {
			vmap(MapServiceIPs, KeyAddrProtoPort, ip, s.Port, ext)
		}
		for _, ip := range s.LBIPs {
			vmap(MapServiceIPs, KeyAddrProtoPort, ip, s.Port, ext)
		}
		if s.HasNodePort {
			vmap(MapServiceNodePort, KeyProtoPort, netip.Addr{}, s.NodePort, ext)
		}
	}
	dnat := func(e rules.Endpoint) Rule {
		return Rule{L4Proto{Proto: proto}, DNAT{Addr: e.IP, Port: uint16(e.Port)}}
	}
	// Clients already pinned go to their endpoint; a new one is sent to
	// each endpoint with probability 1/n by a cascade of "numgen random
	// mod k == 0" rules (k = n, n-1, …, 2, then the last endpoint).
	dispatch := func(chain string, eps []rules.Endpoint) *Chain {
		c := &Chain{Name: chain}
		for _, e := range eps {
			c.Rules = append(c.Rules, Rule{AddrInSet{Src: true, Set: AffinitySet(name, e)}, Verdict{Kind: Goto, Chain: EndpointChain(name, e)}})
		}
		for i, e := range eps {
			var pick Rule
			if left := len(eps) - i; left > 1 {
				pick = Rule{NumgenZero{Mod: left}}
			}
			c.Rules = append(c.Rules, append(pick, Verdict{Kind: Goto, Chain: EndpointChain(name, e)}))
		}
		return c
	}
	if s.NeedsClusterChain() {
		f.chains = append(f.chains, dispatch(ClusterChain(name), s.ClusterEndpoints))
	}
	if s.NeedsLocalChain() {
		f.chains = append(f.chains, dispatch(LocalChain(name), s.LocalEndpoints))
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
		f.chains = append(f.chains, c)
	}
	for _, e := range s.UsedEndpoints() {
		set := AffinitySet(name, e)
		f.affinity = append(f.affinity, &Set{Name: set, Key: KeyAddr, Timeout: s.AffinitySeconds})
		f.chains = append(f.chains, &Chain{Name: EndpointChain(name, e), Rules: []Rule{{UpdateSet{Set: set}}, dnat(e)}})
	}
}
