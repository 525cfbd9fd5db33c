// Package trace answers "what happens to this packet?" offline: it runs a
// packet through rulegen's nftables ruleset — the same typed rules the
// renderer prints and the netlink writer installs, interpreted statement by
// statement, not matched as text — and reports every path it can take with
// its probability: the hooks and chains it crosses, the rule that decided,
// the endpoint it is sent to, and whether it is masqueraded, rejected or
// dropped.
//
// The iptables backend writes the same decisions (both backends render one
// rules.Plan); the differences are noted in the result: a new connection
// to a ClusterIP on a port the service does not have is rejected by
// nftables but routed normally by iptables, and one to an unallocated
// address of the service CIDRs is dropped by nftables but routed normally
// by iptables (as in kube-proxy's two modes).
package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// Origin is where a packet starts.
type Origin string

// The origins.
const (
	FromPod      Origin = "pod"      // a pod on this node, or routed through it
	FromNode     Origin = "node"     // a process on the node itself
	FromExternal Origin = "external" // a client outside the cluster, arriving at the node
)

// Packet is the first packet of a connection.
type Packet struct {
	Src   netip.Addr
	Dst   netip.AddrPort
	Proto rules.Protocol
	From  Origin
	// Iif is the name of the interface the packet arrives on, for the
	// detect-local modes that tell pod traffic by it. Empty means the
	// usual one: a pod's packet arrives on a pod interface (any name the
	// rules take for one), an external client's on another, and the
	// node's own packet on none.
	Iif string
}

// String returns "tcp 10.0.0.1 -> 10.96.0.10:80 (from pod)", or with an
// input interface "(from pod, in on br0)".
func (p Packet) String() string {
	if p.Iif != "" && p.From != FromNode {
		return fmt.Sprintf("%s %s -> %s (from %s, in on %s)", p.Proto, p.Src, p.Dst, p.From, p.Iif)
	}
	return fmt.Sprintf("%s %s -> %s (from %s)", p.Proto, p.Src, p.Dst, p.From)
}

// arrivesOn reports whether the packet's input interface matches m's name
// (before m's negation). A packet from the node has no input interface.
func (p Packet) arrivesOn(m rn.Iifname) bool {
	switch {
	case p.From == FromNode:
		return false
	case p.Iif == "":
		return p.From == FromPod
	case m.Prefix:
		return strings.HasPrefix(p.Iif, m.Name)
	}
	return p.Iif == m.Name
}

// Verdict is what finally happens to the packet.
type Verdict string

// The verdicts.
const (
	DNAT   Verdict = "dnat"   // sent to an endpoint
	Reject Verdict = "reject" // refused at once (ICMP port unreachable)
	Drop   Verdict = "drop"   // silently discarded
	Pass   Verdict = "pass"   // not a service address rulegen handles: routed normally
)

// Outcome is one way the packet can go.
type Outcome struct {
	Probability float64        `json:"probability"`
	Verdict     Verdict        `json:"verdict"`
	Endpoint    netip.AddrPort `json:"endpoint,omitzero"`
	// Masquerade: the endpoint sees the node's address, not the client's.
	Masquerade bool     `json:"masquerade"`
	Why        string   `json:"why"`
	Steps      []string `json:"steps"`
}

// Result is every outcome of one packet, most likely first.
type Result struct {
	Packet   Packet    `json:"-"`
	Outcomes []Outcome `json:"outcomes"`
	// Affinity is set when the service pins a client to the endpoint it
	// first reached (sessionAffinity ClientIP): the probabilities are for
	// the first connection only.
	Affinity bool   `json:"affinity,omitempty"`
	Note     string `json:"note,omitempty"`
}

// path is one branch of the interpretation.
type path struct {
	prob     float64
	dst      netip.AddrPort // after DNAT
	dnat     bool
	mark     uint32
	masq     bool
	masqWhy  string
	steps    []string
	verdict  Verdict
	why      string
	affinity bool
}

type tracer struct {
	r     *rn.Ruleset
	pkt   Packet
	local []netip.Addr // the node's addresses
	chain map[string]*rn.Chain
	sets  map[string]*rn.Set
}

// Trace runs pkt through r. nodeIPs are the node's addresses (for "fib
// saddr type local" and to tell a packet for the node from one to forward).
func Trace(r *rn.Ruleset, nodeIPs []netip.Addr, pkt Packet) *Result {
	t := &tracer{r: r, pkt: pkt, local: nodeIPs, chain: map[string]*rn.Chain{}, sets: map[string]*rn.Set{}}
	for _, c := range r.Chains {
		t.chain[c.Name] = c
	}
	for _, s := range r.Sets {
		t.sets[s.Name] = s
	}
	natHook, filterIn := rn.ChainNatPrerouting, ""
	if pkt.From == FromNode {
		natHook = rn.ChainNatOutput
	}
	start := &path{prob: 1, dst: pkt.Dst}
	res := &Result{Packet: pkt}
	for _, p := range t.run(start, natHook) {
		if p.verdict == Reject || p.verdict == Drop {
			res.add(p)
			continue
		}
		// Routing: a packet still for one of the node's addresses goes up
		// to input; anything else is forwarded (or sent, from the node).
		filterIn = rn.ChainFilterForward
		switch {
		case pkt.From == FromNode:
			filterIn = rn.ChainFilterOutput
		case slices.Contains(t.local, p.dst.Addr()):
			filterIn = rn.ChainFilterInput
		}
		for _, q := range t.run(p, filterIn) {
			if q.verdict == Reject || q.verdict == Drop {
				res.add(q)
				continue
			}
			for _, r := range t.run(q, rn.ChainNatPostrouting) {
				if r.verdict == "" {
					r.verdict = Pass
					if r.dnat {
						r.verdict = DNAT
					}
				}
				res.add(r)
			}
		}
	}
	slices.SortStableFunc(res.Outcomes, func(a, b Outcome) int {
		switch {
		case a.Probability > b.Probability:
			return -1
		case a.Probability < b.Probability:
			return 1
		}
		return a.Endpoint.Compare(b.Endpoint)
	})
	for _, o := range res.Outcomes {
		switch {
		case o.Verdict == Reject && strings.Contains(o.Why, "unknown port"):
			res.Note = "with --backend iptables this packet is not rejected but routed normally (iptables has no per-packet ClusterIP set)"
		case o.Verdict == Drop && strings.Contains(o.Why, unallocatedWhy):
			res.Note = "with --backend iptables this packet is not dropped but routed normally (kube-proxy's iptables mode does not drop unallocated ClusterIPs either)"
		}
	}
	return res
}

func (res *Result) add(p *path) {
	o := Outcome{Probability: p.prob, Verdict: p.verdict, Why: p.why, Steps: p.steps, Masquerade: p.masq}
	if p.verdict == DNAT {
		o.Endpoint = p.dst
	}
	if p.affinity {
		res.Affinity = true
	}
	if o.Why == "" {
		switch o.Verdict {
		case DNAT:
			o.Why = "sent to an endpoint"
		case Pass:
			o.Why = "not a service address on this node: the packet is routed normally"
		}
	}
	if o.Masquerade {
		o.Why += "; masqueraded (" + p.masqWhy + "): the endpoint sees the node's address"
	} else if o.Verdict == DNAT {
		o.Why += "; the client's source address is kept"
	}
	res.Outcomes = append(res.Outcomes, o)
}

func (p *path) clone() *path {
	q := *p
	q.steps = slices.Clone(p.steps)
	return &q
}

func (p *path) step(format string, a ...any) { p.steps = append(p.steps, fmt.Sprintf(format, a...)) }

// run evaluates a chain (a base chain: its verdicts end the hook) and
// returns the paths that leave it; paths with a verdict of their own
// (reject, drop) are final.
func (t *tracer) run(p *path, name string) []*path {
	c := t.chain[name]
	if c == nil {
		return []*path{p}
	}
	if c.Hook != nil {
		p = p.clone()
		p.step("hook %s %s (priority %d): chain %s", c.Hook.Type, c.Hook.Hook, c.Hook.Priority, c.Name)
	}
	var out []*path
	for _, q := range t.chainRules(p, c, 0) {
		out = append(out, q.p)
	}
	return out
}

// result of evaluating a chain: a path and whether it ended with a verdict
// that leaves the hook (drop, reject, or accept by reaching the end).
type leave struct{ p *path }

// chainRules evaluates c's rules from index i on. A goto or jump continues
// in the target; "return" and the end of a jumped-to chain come back.
func (t *tracer) chainRules(p *path, c *rn.Chain, i int) []leave {
	for ; i < len(c.Rules); i++ {
		r := c.Rules[i]
		branches := t.rule(p, c, r)
		if len(branches) == 1 && branches[0].next == nil && !branches[0].stop {
			p = branches[0].p // no match or no verdict: next rule
			continue
		}
		var out []leave
		for _, b := range branches {
			switch {
			case b.stop:
				out = append(out, leave{b.p})
			case b.next == nil:
				out = append(out, t.chainRules(b.p, c, i+1)...)
			case b.next.Kind == rn.Return:
				out = append(out, leave{b.p}) // back to the caller (handled by the jump)
			case b.next.Kind == rn.Goto:
				out = append(out, t.chainRules(b.p, t.chain[b.next.Chain], 0)...)
			case b.next.Kind == rn.Jump:
				for _, l := range t.chainRules(b.p, t.chain[b.next.Chain], 0) {
					if l.p.verdict != "" {
						out = append(out, l)
					} else {
						out = append(out, t.chainRules(l.p, c, i+1)...)
					}
				}
			}
		}
		return out
	}
	return []leave{{p}}
}

// branch is a way out of one rule: no verdict (next is nil, stop false: go
// on with the next rule), a chain verdict (next), or a final one (stop).
type branch struct {
	p    *path
	next *rn.Verdict
	stop bool
}

func (t *tracer) addrOf(src bool, p *path) netip.Addr {
	if src {
		return t.pkt.Src
	}
	return p.dst.Addr()
}

// rule evaluates one rule against a path.
func (t *tracer) rule(p *path, c *rn.Chain, r rn.Rule) []branch {
	desc := r.String(t.r.Family)
	cur := []*path{p}
	var missed []*path // paths on which a match failed: they go on with the next rule
	for _, s := range r {
		var next []*path
		for _, q := range cur {
			switch s := s.(type) {
			case rn.CtStateNew:
				next = append(next, q) // a trace is always of a new connection
			case rn.AddrMatch:
				a := t.addrOf(s.Src, q)
				if s.Prefix.Contains(a) != s.Negate {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.Iifname:
				if t.pkt.arrivesOn(s) != s.Negate {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.CtDNAT:
				if q.dnat {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.AddrPairInSet:
				set := t.sets[s.Set]
				src, dst := t.pkt.Src, q.dst.Addr()
				if set != nil && src == dst && slices.ContainsFunc(set.Elements, func(e rn.Element) bool { return e.Addr == src }) {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.AddrInSet:
				set := t.sets[s.Set]
				if set != nil && set.Timeout > 0 {
					// An affinity set: empty for a client's first
					// connection, which the trace describes.
					q.affinity = true
					missed = append(missed, q)
					continue
				}
				a := t.addrOf(s.Src, q)
				if set != nil && slices.ContainsFunc(set.Elements, func(e rn.Element) bool { return e.Addr == a }) {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.FibLocal:
				a := t.addrOf(s.Src, q)
				if slices.Contains(t.local, a) || (s.Src && t.pkt.From == FromNode) {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.MarkUnset:
				if q.mark&s.Mark == 0 {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.L4Proto:
				if s.Proto == t.pkt.Proto {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.NumgenZero:
				hit, miss := q.clone(), q.clone()
				hit.prob *= 1 / float64(s.Mod)
				miss.prob *= 1 - 1/float64(s.Mod)
				next = append(next, hit)
				missed = append(missed, miss)
			case rn.VmapLookup:
				set := t.sets[s.Map]
				var found *rn.Element
				for i := range set.Elements {
					e := &set.Elements[i]
					if e.Proto == t.pkt.Proto && e.Port == q.dst.Port() && (s.Key == rn.KeyProtoPort || e.Addr == q.dst.Addr()) {
						found = e
						break
					}
				}
				if found == nil {
					missed = append(missed, q)
					continue
				}
				q = q.clone()
				q.step("  %s: %s -> %s", c.Name, desc, found.Verdict)
				return append(branchesOf(missed), t.verdictBranch(q, found.Verdict, r)...)
			case rn.KeyInSet:
				if t.keyInSet(s, q) != s.Negate {
					next = append(next, q)
				} else {
					missed = append(missed, q)
				}
			case rn.DNATLookup:
				// The map holds the destination's endpoints under slots
				// 0..Mod-1 when it is a service of Mod endpoints; numgen
				// picks each slot with probability 1/Mod.
				set := t.sets[s.Map]
				var slots []rn.Element
				if set != nil {
					for _, e := range set.Elements {
						if t.keyMatches(s.Key, &e, q) {
							slots = append(slots, e)
						}
					}
				}
				if len(slots) == 0 {
					missed = append(missed, q)
					continue
				}
				out := branchesOf(missed)
				for i := range s.Mod {
					idx := slices.IndexFunc(slots, func(e rn.Element) bool { return e.Slot == uint32(i) })
					b := q.clone()
					b.prob *= 1 / float64(s.Mod)
					if idx < 0 { // a hole: the rule does nothing, the next is tried
						out = append(out, branch{p: b})
						continue
					}
					b.dst = slots[idx].Target
					b.dnat = true
					b.step("  %s: %s (slot %d: %s)", c.Name, desc, i, b.dst)
					out = append(out, branch{p: b, stop: true})
				}
				return out // dnat accepts: the hook ends
			case rn.MarkOr:
				q.mark |= s.Mark
				next = append(next, q)
			case rn.MarkXor:
				q.mark ^= s.Mark
				next = append(next, q)
			case rn.Masquerade:
				q = q.clone()
				q.masq = true
				q.step("  %s: %s", c.Name, desc)
				return append(branchesOf(missed), branch{p: q, stop: true}) // masquerade accepts
			case rn.DNAT:
				q = q.clone()
				q.dst = netip.AddrPortFrom(s.Addr, s.Port)
				q.dnat = true
				q.step("  %s: %s", c.Name, desc)
				return append(branchesOf(missed), branch{p: q, stop: true}) // dnat accepts: the hook ends
			case rn.UpdateSet:
				q.affinity = true
				next = append(next, q)
			case rn.Reject:
				q = q.clone()
				q.step("  %s: %s", c.Name, desc)
				q.verdict, q.why = Reject, t.rejectWhy(r)
				return append(branchesOf(missed), branch{p: q, stop: true})
			case rn.Verdict:
				q = q.clone()
				q.step("  %s: %s", c.Name, desc)
				if s.Chain == rn.ChainMarkMasq && q.masqWhy == "" {
					q.masqWhy = masqReason(c, r)
				}
				if s.Kind == rn.Drop && c.Hook != nil && !inSet(r, rn.SetFirewallAllow) {
					// The only drop in a base chain: an address of a
					// service CIDR that no service holds.
					q.verdict, q.why = Drop, unallocatedReason(r, q.dst.Addr())
					return append(branchesOf(missed), branch{p: q, stop: true})
				}
				return append(branchesOf(missed), t.verdictBranch(q, s, r)...)
			}
		}
		cur = next
	}
	var out []branch
	for _, q := range cur {
		if len(r) > 0 {
			q.step("  %s: %s", c.Name, desc)
		}
		out = append(out, branch{p: q})
	}
	return append(branchesOf(missed), out...)
}

func branchesOf(ps []*path) []branch {
	out := make([]branch, len(ps))
	for i, p := range ps {
		out[i] = branch{p: p}
	}
	return out
}

func (t *tracer) verdictBranch(q *path, v rn.Verdict, r rn.Rule) []branch {
	if v.Kind == rn.Drop {
		q.verdict, q.why = Drop, t.dropWhy(q, r)
		return []branch{{p: q, stop: true}}
	}
	return []branch{{p: q, next: &v}}
}

// keyMatches reports whether element e of a set of key k holds the
// packet's destination (and, for a source key, its source).
func (t *tracer) keyMatches(k rn.KeyType, e *rn.Element, p *path) bool {
	if e.Proto != t.pkt.Proto || e.Port != p.dst.Port() {
		return false
	}
	switch k {
	case rn.KeyProtoPort, rn.KeyProtoPortSlot:
		return true
	case rn.KeyAddrProtoPortSource:
		return e.Addr == p.dst.Addr() && e.Prefix.Contains(t.pkt.Src)
	}
	return e.Addr == p.dst.Addr()
}

func (t *tracer) keyInSet(s rn.KeyInSet, p *path) bool {
	set := t.sets[s.Set]
	return set != nil && slices.ContainsFunc(set.Elements, func(e rn.Element) bool { return t.keyMatches(s.Key, &e, p) })
}

// inSet reports whether rule r looks the packet up in the named set.
func inSet(r rn.Rule, set string) bool {
	return slices.ContainsFunc(r, func(s rn.Stmt) bool { k, ok := s.(rn.KeyInSet); return ok && k.Set == set })
}

func (t *tracer) rejectWhy(r rn.Rule) string {
	if inSet(r, rn.SetRejectIPs) || inSet(r, rn.SetRejectNodePorts) {
		return "the service has no endpoints: rejected"
	}
	return "unknown port on a ClusterIP: rejected"
}

func (t *tracer) dropWhy(p *path, r rn.Rule) string {
	if inSet(r, rn.SetFirewallAllow) {
		return "source not in loadBalancerSourceRanges: dropped"
	}
	if p.affinity {
		return "dropped"
	}
	return "no usable endpoint for this source (only remote endpoints under a Local traffic policy, or a source outside loadBalancerSourceRanges): dropped"
}

// unallocatedWhy is the start of the reason for the drop of a packet to an
// unallocated ClusterIP.
const unallocatedWhy = "unallocated ClusterIP"

// unallocatedReason explains the drop of a packet to dst by rule r, which
// matches a service CIDR.
func unallocatedReason(r rn.Rule, dst netip.Addr) string {
	cidr := ""
	for _, s := range r {
		if m, ok := s.(rn.AddrMatch); ok && !m.Src {
			cidr = " " + m.Prefix.String()
		}
	}
	return fmt.Sprintf("%s: %s is in the service CIDR%s but no service holds it: dropped", unallocatedWhy, dst, cidr)
}

// masqReason says why a rule marked the packet for masquerading.
func masqReason(c *rn.Chain, r rn.Rule) string {
	for _, s := range r {
		if _, ok := s.(rn.AddrPairInSet); ok {
			return "hairpin: the pod reaches itself through its service"
		}
	}
	if inSet(r, rn.SetMasqIPs) || inSet(r, rn.SetMasqNodePorts) {
		return "external traffic under externalTrafficPolicy Cluster"
	}
	if inSet(r, rn.SetShortCircuitIPs) || inSet(r, rn.SetShortCircuitNodePorts) {
		return "from the node itself"
	}
	switch {
	case strings.HasPrefix(c.Name, "external-"):
		for _, s := range r {
			if _, ok := s.(rn.FibLocal); ok {
				return "from the node itself"
			}
		}
		return "external traffic under externalTrafficPolicy Cluster"
	}
	for _, s := range r {
		if m, ok := s.(rn.AddrMatch); ok && m.Src && m.Negate {
			return "client outside the pod range " + m.Prefix.String()
		}
		if m, ok := s.(rn.Iifname); ok && m.Negate {
			return "client not arriving on " + interfaceText(m)
		}
	}
	return "--masquerade-all"
}

// ruleSummary shortens a long rule for a trace step: a DNAT map of many
// endpoints is cut after its first few.
func ruleSummary(desc string) string {
	const max = 160
	if len(desc) <= max {
		return desc
	}
	return desc[:max] + " …}"
}

// interfaceText describes the pod interface of a match: "the pod bridge
// br0" or "an interface named veth*".
func interfaceText(m rn.Iifname) string {
	if m.Prefix {
		return "an interface named " + m.Name + "*"
	}
	return "the pod bridge " + m.Name
}
