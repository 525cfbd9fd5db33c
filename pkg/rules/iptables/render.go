package iptables

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Chains rulegen owns. Every name starts with ChainPrefix so that rulegen can
// run beside kube-proxy (whose chains start with KUBE-) and can find its own
// stale chains.
const (
	ChainPrefix = "RG-"
	// ChainServices (nat) dispatches new connections to service chains.
	ChainServices = "RG-SERVICES"
	// ChainNodePorts (nat) dispatches connections to a nodePort.
	ChainNodePorts = "RG-NODEPORTS"
	// ChainPostrouting (nat) masquerades marked packets.
	ChainPostrouting = "RG-POSTROUTING"
	// ChainMarkMasq (nat) marks a packet for masquerading.
	ChainMarkMasq = "RG-MARK-MASQ"
	// ChainHairpin (nat, from RG-POSTROUTING) marks connections DNATed from
	// a pod of this node back to that same pod: one rule per such pod.
	ChainHairpin = "RG-HAIRPIN"
	// ChainFilter (filter) rejects or drops new connections still addressed
	// to a service after NAT.
	ChainFilter = "RG-FILTER"
	// ChainNodePortFilter (filter) does the same for nodePorts.
	ChainNodePortFilter = "RG-NODEPORTS-FILTER"
	// ChainHealthChecks (filter, from INPUT) accepts connections to the
	// services' healthCheckNodePorts, so that a restrictive INPUT policy
	// does not fail the load balancers' health checks (kube-proxy's
	// KUBE-NODEPORTS in its filter table).
	ChainHealthChecks = "RG-HEALTH-CHECKS"
	// ChainForward (filter, from FORWARD) accepts forwarded service
	// traffic (marked for masquerading, or of an established connection)
	// and drops conntrack INVALID packets (kube-proxy's KUBE-FORWARD).
	ChainForward = "RG-FORWARD"
	// ChainBlockLocalnet (filter, from INPUT and OUTPUT) drops packets to
	// 127.0.0.0/8 from other sources when localhost nodePorts are open
	// (the KUBE-FIREWALL rule kubelet and kube-proxy both write); empty
	// otherwise.
	ChainBlockLocalnet = "RG-BLOCK-LOCALNET"
)

// Per-service chain prefixes: RG-SVC (cluster policy), RG-SVL (local
// policy), RG-EXT (external traffic), RG-FW (source ranges), RG-SEP (one
// endpoint, with session affinity only: otherwise the service chain DNATs
// itself). See rules.PortKey for the naming scheme.
const (
	prefixService  = "RG-SVC-"
	prefixLocal    = "RG-SVL-"
	prefixExternal = "RG-EXT-"
	prefixFirewall = "RG-FW-"
	prefixEndpoint = "RG-SEP-"
)

// markString spells a mark as the rules write it ("0x4000").
func markString(mark uint32) string { return "0x" + strconv.FormatUint(uint64(mark), 16) }

// MaxChainName is the longest chain name iptables accepts.
const MaxChainName = 28

// ClusterChain and the functions below name the per-service chains.
func ClusterChain(n rules.ServicePortName) string {
	return prefixService + rules.PortHash(n, 16)
}
func LocalChain(n rules.ServicePortName) string {
	return prefixLocal + rules.PortHash(n, 16)
}
func ExternalChain(n rules.ServicePortName) string {
	return prefixExternal + rules.PortHash(n, 16)
}
func FirewallChain(n rules.ServicePortName) string {
	return prefixFirewall + rules.PortHash(n, 16)
}
func EndpointChain(n rules.ServicePortName, e rules.Endpoint) string {
	return prefixEndpoint + rules.EndpointHash(n, e, 16)
}

// Chain is one chain and its rules, each rule the text after "-A CHAIN "
// exactly as iptables-restore reads it.
type Chain struct {
	Name  string
	Rules []string
}

// Table is the chains rulegen owns in one table.
type Table struct {
	Name   string // "nat" or "filter"
	Chains []*Chain
}

// Ruleset is everything rulegen writes for one family.
type Ruleset struct {
	Family rules.Family
	Tables []*Table // nat, filter
	Jumps  []Jump   // the jumps Restore inserts (see jumps.go)
	// Patches edit chains in place (a writer's incremental update; Render
	// makes none).
	Patches []Patch
}

// Patch edits one chain in place instead of replacing it: the rules Del
// are deleted (by their text: each must be in the chain once), then each
// of Ins is inserted at its position, in order. A chain of one rule per
// service (RG-SERVICES) then costs a commit the few rules that changed,
// not every rule of the chain again.
type Patch struct {
	Table, Chain string
	Del          []string
	Ins          []Insert
}

// Insert is a rule inserted at position At (1-based) of a chain.
type Insert struct {
	At   int
	Rule string
}

// line builds the text of one rule.
type line struct{ b strings.Builder }

// w appends words, separated by spaces.
func (l *line) w(words ...string) *line {
	for _, x := range words {
		if l.b.Len() > 0 {
			l.b.WriteByte(' ')
		}
		l.b.WriteString(x)
	}
	return l
}

// MaxComment is the longest comment the comment match keeps
// (XT_MAX_COMMENT_LEN 256, with the terminating NUL): iptables-nft cuts a
// longer one silently, and a parameter over 1023 bytes makes
// iptables-restore refuse the whole input.
const MaxComment = 255

// commentByte returns how byte c of a comment is written between double
// quotes on an iptables-restore line. Only printable ASCII is kept: a
// newline would end the line (and what follows would be read as a rule of
// its own), a NUL would cut it, and a backslash escapes the next byte for
// iptables-restore. A double quote becomes a single quote (so it cannot
// close the quotes), a backslash becomes a slash, and every other byte
// (control bytes, each byte of a multi-byte character) becomes '?'. Valid
// names and addresses are printable ASCII without quotes or backslashes, so
// they are kept as they are.
func commentByte(c byte) byte {
	switch {
	case c == '"':
		return '\''
	case c == '\\':
		return '/'
	case c < ' ' || c > '~':
		return '?'
	}
	return c
}

// commentSafe reports whether commentByte keeps every byte of t.
func commentSafe(t string) bool {
	for i := 0; i < len(t); i++ {
		if commentByte(t[i]) != t[i] {
			return false
		}
	}
	return true
}

// comment appends a quoted comment match of text (the parts joined), made
// safe by commentByte and cut to MaxComment bytes.
func (l *line) comment(text ...string) *line {
	l.w("-m comment --comment \"")
	n := 0
	for _, t := range text {
		if n+len(t) <= MaxComment && commentSafe(t) {
			l.b.WriteString(t) // the common case, in one piece
			n += len(t)
			continue
		}
		for i := 0; i < len(t) && n < MaxComment; i++ {
			l.b.WriteByte(commentByte(t[i]))
			n++
		}
	}
	l.b.WriteByte('"')
	return l
}

// addr appends an address as a host prefix (/32 or /128).
func (l *line) addr(flag string, a netip.Addr) *line {
	l.w(flag)
	l.b.WriteByte(' ')
	var buf [64]byte
	l.b.Write(netip.PrefixFrom(a, a.BitLen()).AppendTo(buf[:0]))
	return l
}

// port appends a protocol and destination port match.
func (l *line) port(p rules.Protocol, port int32) *line {
	l.w("-p", string(p), "-m", string(p), "--dport", strconv.Itoa(int(port)))
	return l
}

func (l *line) String() string { return l.b.String() }

type builder struct {
	chains []*Chain
	byName map[string]*Chain
}

func newBuilder() *builder { return &builder{byName: map[string]*Chain{}} }

func (b *builder) chain(name string) *Chain {
	if c, ok := b.byName[name]; ok {
		return c
	}
	c := &Chain{Name: name}
	b.byName[name] = c
	b.chains = append(b.chains, c)
	return c
}

func (b *builder) add(chain string, l *line) { b.text(chain, l.String()) }

// text appends a rule given as its text.
func (b *builder) text(chain, rule string) {
	c := b.chain(chain)
	c.Rules = append(c.Rules, rule)
}

// Render turns a plan into rulegen's nat and filter chains for the plan's
// family. It is a pure function: the same plan always gives the same ruleset.
//
// Whatever the plan holds, every line of the output is one the plan asked
// for and one iptables-restore accepts: chain names are hashes, comments are
// restricted to safe bytes (see commentByte), and a service port or address
// no rule can express is left out (see rules.PrintableService: an unknown
// protocol, a port out of range, an address of the other family; an IPv6
// zone is dropped). The converters reject such input with an error; the
// renderer does not rely on them.
func Render(p *rules.Plan) *Ruleset { return NewRenderer().Render(p) }

// Renderer renders plans again and again (the daemon's syncs), reusing what
// it made of every *ServicePlan it sees again (a rules.Planner hands out
// the same *ServicePlan for an unchanged port): a sync then builds the
// rules of the changed ports only, and the chains are assembled from the
// same strings, which the writer compares cheaply. The output is the one
// Render makes. Not safe for concurrent use.
type Renderer struct {
	cache map[*rules.ServicePlan]*fragment
	env   string // what the cached fragments depend on besides their port
	gen   uint64 // the Gen of the last plan rendered
}

// NewRenderer returns a renderer with nothing cached.
func NewRenderer() *Renderer { return &Renderer{} }

// Render renders a plan (see the package's Render).
func (rd *Renderer) Render(p *rules.Plan) *Ruleset {
	p = rules.PrintablePlan(p)
	// A fragment depends on the plan's family, node, pod detection and
	// masquerade-all besides its port.
	if env := fmt.Sprintf("%v|%s|%v|%+v|%v", p.Family, p.NodeName, p.ClusterCIDR, p.PodInterface, p.MasqueradeAll); env != rd.env {
		rd.env, rd.cache = env, nil
	}
	nat, filter := newBuilder(), newBuilder()
	for _, c := range []string{ChainServices, ChainNodePorts, ChainPostrouting, ChainMarkMasq, ChainHairpin} {
		nat.chain(c)
	}
	for _, c := range []string{ChainFilter, ChainNodePortFilter, ChainHealthChecks, ChainForward, ChainBlockLocalnet} {
		filter.chain(c)
	}
	// The mark is --iptables-masquerade-bit's, as kube-proxy's
	// (NewProxier: 1 << MasqueradeBit), so that both proxies agree on what
	// a marked packet means during a migration.
	mark := markString(p.Mark())
	nat.add(ChainMarkMasq, new(line).w("-j MARK --or-mark", mark))
	nat.add(ChainPostrouting, new(line).w("-m conntrack --ctstate DNAT -j", ChainHairpin))
	nat.add(ChainPostrouting, new(line).w("-m mark ! --mark", mark+"/"+mark, "-j RETURN"))
	nat.add(ChainPostrouting, new(line).w("-j MARK --xor-mark", mark))
	nat.add(ChainPostrouting, new(line).w("-j MASQUERADE --random-fully"))
	forwardRules(filter, p, mark)
	localhost := localhostNodePorts(p)
	if len(localhost) > 0 {
		// kube-proxy (syncProxyRules, "block incoming localnet
		// connections"): route_localnet lets packets to 127.0.0.0/8 be
		// routed, so one from another host could reach a localhost
		// nodePort or a service bound to loopback; drop what is not a
		// reply or DNATed.
		filter.add(ChainBlockLocalnet, new(line).comment("block incoming localnet connections").w("-d", rules.IPv4Loopback.String(), "! -s", rules.IPv4Loopback.String(), "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"))
	}
	healthChecks := map[int32]bool{}
	hairpin := map[netip.Addr]bool{}
	var per []*Chain
	next := make(map[*rules.ServicePlan]*fragment, len(p.Services))
	for _, s := range p.Services {
		f := rd.cache[s]
		if f == nil {
			f = renderService(p, s)
		}
		next[s] = f
		for _, r := range f.shared {
			if r.chain == ChainFilter || r.chain == ChainNodePortFilter {
				filter.chain(r.chain).Rules = append(filter.chain(r.chain).Rules, r.rule)
			} else {
				nat.chain(r.chain).Rules = append(nat.chain(r.chain).Rules, r.rule)
			}
		}
		per = append(per, f.per...)
		for _, ip := range f.hairpin {
			hairpin[ip] = true
		}
		if hc := f.healthCheck; hc != 0 && !healthChecks[hc] {
			healthChecks[hc] = true
			filter.chain(ChainHealthChecks).Rules = append(filter.chain(ChainHealthChecks).Rules, f.healthRule)
		}
	}
	rd.cache = next
	pods := slices.SortedFunc(maps.Keys(hairpin), netip.Addr.Compare)
	for _, ip := range pods {
		nat.add(ChainHairpin, new(line).addr("-s", ip).addr("-d", ip).w("-j", ChainMarkMasq))
	}
	for _, ip := range p.NodePortIPs {
		if len(nat.byName[ChainNodePorts].Rules) > 0 {
			nat.add(ChainServices, new(line).comment("rulegen service nodeports").addr("-d", ip).w("-j", ChainNodePorts))
		}
		if len(filter.byName[ChainNodePortFilter].Rules) > 0 {
			filter.add(ChainFilter, new(line).comment("rulegen service nodeports").addr("-d", ip).w("-j", ChainNodePortFilter))
		}
	}
	for _, pr := range localhost {
		if len(nat.byName[ChainNodePorts].Rules) > 0 {
			nat.add(ChainServices, new(line).comment("rulegen service nodeports on localhost").w("-d", pr.String(), "-j", ChainNodePorts))
		}
		if len(filter.byName[ChainNodePortFilter].Rules) > 0 {
			filter.add(ChainFilter, new(line).comment("rulegen service nodeports on localhost").w("-d", pr.String(), "-j", ChainNodePortFilter))
		}
	}
	// Per-service chains stay grouped by service, in service order.
	natTable := &Table{Name: "nat", Chains: append(nat.chains, per...)}
	return &Ruleset{Family: p.Family, Tables: []*Table{natTable, {Name: "filter", Chains: filter.chains}}, Jumps: Jumps()}
}

// fragment is what one service port contributes to the ruleset: rules of
// the shared chains (in order), its own chains, the pods to hairpin and
// its health check port.
type fragment struct {
	shared      []sharedRule
	per         []*Chain
	hairpin     []netip.Addr
	healthCheck int32
	healthRule  string
}

// sharedRule is a rule of a shared chain (RG-SERVICES, RG-NODEPORTS,
// RG-FILTER, RG-NODEPORTS-FILTER).
type sharedRule struct{ chain, rule string }

type sharedRules struct{ f *fragment }

func (b sharedRules) add(chain string, l *line) {
	b.f.shared = append(b.f.shared, sharedRule{chain, l.String()})
}

// renderService renders one service port of a printable plan.
func renderService(p *rules.Plan, s *rules.ServicePlan) *fragment {
	f := &fragment{}
	shared := sharedRules{f}
	per := newBuilder()
	mask := "255.255.255.255"
	if p.Family == rules.IPv6 {
		mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	pod, notPod := podMatch(p)
	// filterRule rejects or drops what is still addressed to a service
	// destination after NAT.
	filterRule := func(chain, desc string, dst netip.Addr, proto rules.Protocol, port int32, v rules.Verdict) {
		l := new(line)
		switch v {
		case rules.Reject:
			l.comment(desc, " has no endpoints")
		case rules.Drop:
			l.comment(desc, " has no usable endpoint for this source")
		default:
			return
		}
		if dst.IsValid() {
			l.addr("-d", dst)
		}
		l.port(proto, port)
		if v == rules.Reject {
			l.w("-j REJECT")
		} else {
			l.w("-j DROP")
		}
		shared.add(chain, l)
	}
	if s = rules.PrintableService(s, p.Family); s == nil {
		return f
	}
	name := s.Name
	desc := name.String()
	proto := name.Protocol
	internal := ClusterChain(name)
	if s.InternalPolicyLocal {
		internal = LocalChain(name)
	}
	ext := ExternalChain(name)
	if s.ClusterIP.IsValid() {
		if len(s.InternalEndpoints()) > 0 {
			shared.add(ChainServices, new(line).comment(desc, " cluster IP").addr("-d", s.ClusterIP).port(proto, s.Port).w("-j", internal))
		}
		filterRule(ChainFilter, desc, s.ClusterIP, proto, s.Port, s.InternalVerdict())
	}
	if s.NeedsExternalChain() {
		for _, ip := range s.ExtIPs {
			shared.add(ChainServices, new(line).comment(desc, " external IP").addr("-d", ip).port(proto, s.Port).w("-j", ext))
		}
		lb := ext
		if s.Firewalled {
			lb = FirewallChain(name)
		}
		for _, ip := range s.LBIPs {
			shared.add(ChainServices, new(line).comment(desc, " loadbalancer IP").addr("-d", ip).port(proto, s.Port).w("-j", lb))
		}
		if s.HasNodePort {
			shared.add(ChainNodePorts, new(line).comment(desc).port(proto, s.NodePort).w("-j", ext))
		}
	}
	for _, ip := range s.ExtIPs {
		filterRule(ChainFilter, desc, ip, proto, s.Port, s.ExternalVerdict())
	}
	for _, ip := range s.LBIPs {
		if s.FirewallRejects() {
			// No endpoints: reject the allowed sources, drop the others.
			for _, rg := range s.Ranges {
				shared.add(ChainFilter, new(line).comment(desc, " has no endpoints").w("-s", rg.String()).addr("-d", ip).port(proto, s.Port).w("-j REJECT"))
			}
			shared.add(ChainFilter, new(line).comment(desc, " source not in loadBalancerSourceRanges").addr("-d", ip).port(proto, s.Port).w("-j DROP"))
			continue // the next LB IP
		}
		filterRule(ChainFilter, desc, ip, proto, s.Port, s.LBVerdict())
	}
	if s.HasNodePort {
		filterRule(ChainNodePortFilter, desc, netip.Addr{}, proto, s.NodePort, s.ExternalVerdict())
	}
	// kube-proxy (syncProxyRules, "Capture healthCheckNodePorts")
	// accepts the health check port whether or not the node has local
	// endpoints; one rule per port here (kube-proxy writes one per
	// service port, the same rule again for each).
	if hc := s.HealthCheckNodePort; hc > 0 && hc <= 65535 {
		f.healthCheck = hc
		f.healthRule = new(line).comment(name.ServiceKey.String(), " health check node port").w("-p tcp -m tcp --dport", strconv.Itoa(int(hc)), "-j ACCEPT").String()
	}

	used := s.UsedEndpoints()
	var seps map[netip.AddrPort]string // endpoint chains: with session affinity only
	if s.AffinitySeconds > 0 {
		seps = make(map[netip.AddrPort]string, len(used))
	}
	for _, e := range used {
		if seps != nil {
			seps[netip.AddrPortFrom(e.IP, uint16(e.Port))] = EndpointChain(name, e)
		}
		if p.MayHairpin(e) {
			f.hairpin = append(f.hairpin, e.IP)
		}
	}
	dnat := func(l *line, e rules.Endpoint) *line {
		return l.w("-p", string(proto), "-m", string(proto), "-j DNAT --to-destination", netip.AddrPortFrom(e.IP, uint16(e.Port)).String())
	}
	dispatch := func(chain string, eps []rules.Endpoint, isInternal bool) {
		per.chain(chain)
		if isInternal && s.ClusterIP.IsValid() {
			switch {
			case p.MasqueradeAll:
				per.add(chain, new(line).comment(desc, " cluster IP").addr("-d", s.ClusterIP).port(proto, s.Port).w("-j", ChainMarkMasq))
			case notPod != "":
				per.add(chain, new(line).comment(desc, " cluster IP").w(notPod).addr("-d", s.ClusterIP).port(proto, s.Port).w("-j", ChainMarkMasq))
			}
		}
		if s.AffinitySeconds > 0 {
			for _, e := range eps {
				sep := seps[netip.AddrPortFrom(e.IP, uint16(e.Port))]
				per.add(chain, new(line).comment(desc, " -> ", e.String()).w("-m recent --name", sep, "--mask", mask, "--rsource --rcheck --seconds", strconv.Itoa(int(s.AffinitySeconds)), "--reap -j", sep))
			}
		}
		for i, e := range eps {
			l := new(line).comment(desc, " -> ", e.String())
			if left := len(eps) - i; left > 1 {
				l.w("-m statistic --mode random --probability", strconv.FormatFloat(1.0/float64(left), 'f', 10, 64))
			}
			if s.AffinitySeconds > 0 {
				per.add(chain, l.w("-j", seps[netip.AddrPortFrom(e.IP, uint16(e.Port))]))
			} else {
				per.add(chain, dnat(l, e))
			}
		}
	}
	if s.NeedsClusterChain() {
		dispatch(ClusterChain(name), s.ClusterEndpoints, !s.InternalPolicyLocal)
	}
	if s.NeedsLocalChain() {
		dispatch(LocalChain(name), s.LocalEndpoints, s.InternalPolicyLocal)
	}
	if s.NeedsExternalChain() {
		per.chain(ext)
		if !s.ExternalPolicyLocal {
			per.add(ext, new(line).comment("masquerade traffic for ", desc, " external destinations").w("-j", ChainMarkMasq))
			per.add(ext, new(line).w("-j", ClusterChain(name)))
		} else {
			if s.ShortCircuit() {
				cluster := ClusterChain(name)
				if pod != "" {
					per.add(ext, new(line).comment("pod traffic for ", desc, " external destinations").w(pod, "-j", cluster))
				}
				per.add(ext, new(line).comment("masquerade LOCAL traffic for ", desc, " external destinations").w("-m addrtype --src-type LOCAL -j", ChainMarkMasq))
				per.add(ext, new(line).comment("route LOCAL traffic for ", desc, " external destinations").w("-m addrtype --src-type LOCAL -j", cluster))
			}
			if len(s.LocalEndpoints) > 0 {
				per.add(ext, new(line).w("-j", LocalChain(name)))
			}
		}
		if s.Firewalled {
			fw := FirewallChain(name)
			per.chain(fw)
			for _, rg := range s.Ranges {
				per.add(fw, new(line).comment(desc, " loadbalancer source range").w("-s", rg.String(), "-j", ext))
			}
		}
	}
	if s.AffinitySeconds > 0 {
		for _, e := range used {
			sep := seps[netip.AddrPortFrom(e.IP, uint16(e.Port))]
			per.add(sep, new(line).comment(desc).w("-m recent --name", sep, "--mask", mask, "--rsource --set"))
			per.add(sep, dnat(new(line).comment(desc), e))
		}
	}
	f.per = per.chains
	return f
}

// podMatch returns the match of pod traffic and that of other traffic, as
// kube-proxy's LocalTrafficDetector (IfLocal, IfNotLocal): "-s CIDR" and
// "! -s CIDR" for the pod range, "-i NAME" and "! -i NAME" for the pod
// interface ("NAME+" for a prefix: iptables' wildcard). Both are empty
// when the plan tells pod traffic in no way. The plan is a printable one
// (see rules.PrintablePlan): the interface name is one word of safe bytes.
func podMatch(p *rules.Plan) (pod, notPod string) {
	switch {
	case p.PodInterface.Name != "":
		name := p.PodInterface.Name
		if p.PodInterface.Prefix {
			name += "+"
		}
		return "-i " + name, "! -i " + name
	case p.ClusterCIDR.IsValid():
		return "-s " + p.ClusterCIDR.String(), "! -s " + p.ClusterCIDR.String()
	}
	return "", ""
}

// localhostNodePorts returns the loopback ranges of the plan on which
// nodePorts open: IPv4 only, as in kube-proxy (localhost nodePorts never
// work for IPv6: the kernel has no route_localnet for it).
func localhostNodePorts(p *rules.Plan) []netip.Prefix {
	if p.Family != rules.IPv4 {
		return nil
	}
	var out []netip.Prefix
	for _, pr := range p.LocalhostNodePorts {
		if pr.IsValid() && pr.Addr().Is4() && rules.IPv4Loopback.Overlaps(pr) {
			out = append(out, pr.Masked())
		}
	}
	return out
}

// forwardRules fills RG-FORWARD as kube-proxy fills KUBE-FORWARD
// (syncProxyRules): drop conntrack INVALID packets, which would otherwise
// reach a pod un-NATed and be answered with a reset (unless
// nf_conntrack_tcp_be_liberal makes conntrack lenient, see
// rules.Config.ConntrackTCPBeLiberal); accept packets marked for
// masquerading (a new connection to a service, DNATed) and packets of
// established connections, so that a FORWARD policy of DROP does not
// break services.
func forwardRules(filter *builder, p *rules.Plan, mark string) {
	if !p.KeepInvalid {
		filter.add(ChainForward, new(line).w("-m conntrack --ctstate INVALID -j DROP"))
	}
	filter.add(ChainForward, new(line).comment("rulegen forwarding rules").w("-m mark --mark", mark+"/"+mark, "-j ACCEPT"))
	filter.add(ChainForward, new(line).comment("rulegen forwarding conntrack rule").w("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"))
}

// Restore returns `iptables-restore --noflush` input that replaces the
// content of every rulegen chain (declaring a chain flushes it), deletes
// the chains named in stale (per table) and inserts r.Jumps, all in one
// commit per table.
func (r *Ruleset) Restore(stale map[string][]string) string {
	var b strings.Builder
	n := 0
	for _, t := range r.Tables {
		for _, c := range t.Chains {
			n += 40 + len(c.Rules)*(len(c.Name)+200)
		}
	}
	b.Grow(n)
	noted := false
	for _, t := range r.Tables {
		b.WriteString("*" + t.Name + "\n")
		for _, c := range t.Chains {
			b.WriteString(":" + c.Name + " - [0:0]\n")
		}
		for _, c := range stale[t.Name] {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, c := range t.Chains {
			for _, rule := range c.Rules {
				b.WriteString("-A ")
				b.WriteString(c.Name)
				b.WriteByte(' ')
				b.WriteString(rule)
				b.WriteByte('\n')
			}
		}
		// Patched chains, after the chains their new rules may jump to
		// were filled, and before the stale ones are deleted.
		for _, p := range r.Patches {
			if p.Table != t.Name {
				continue
			}
			for _, rule := range p.Del {
				b.WriteString("-D " + p.Chain + " " + rule + "\n")
			}
			for _, in := range p.Ins {
				b.WriteString("-I " + p.Chain + " " + strconv.Itoa(in.At) + " " + in.Rule + "\n")
			}
		}
		// A stale chain may still be jumped to by a chain flushed above; the
		// flush comes first in the same commit, so the delete is safe.
		for _, c := range stale[t.Name] {
			b.WriteString("-X " + c + "\n")
		}
		writeJumps(&b, t.Name, r.Jumps, &noted)
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// ChainNames returns the names of rulegen's chains in a table.
func (r *Ruleset) ChainNames(table string) []string {
	for _, t := range r.Tables {
		if t.Name == table {
			out := make([]string, len(t.Chains))
			for i, c := range t.Chains {
				out[i] = c.Name
			}
			return out
		}
	}
	return nil
}
