package nftables

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/rulegen/rulegen/pkg/rules"
)

// TableName is the name of rulegen's table in each family. rulegen owns this
// table and nothing else.
const TableName = "rulegen"

// Ruleset is rulegen's whole table for one family, as typed objects. The
// text renderer (Script) and the netlink writer both consume it, so the two
// cannot drift apart.
//
// In a Ruleset made by Render every set and chain name (and every jump,
// goto and set reference) is a valid nft identifier of at most
// rules.MaxNFTName bytes, and every address is of the ruleset's family and
// has no zone, whatever the plan held: the text is always parsed as
// written, and the netlink writer's name-length check on apply is a second
// line of defence, never the first.
type Ruleset struct {
	Family rules.Family
	Sets   []*Set
	Chains []*Chain
	// Delta, when set, is what changed in the elements since the ruleset
	// its Renderer made before (see Renderer.Render).
	Delta *Delta
	// src is the Renderer whose store holds the elements until
	// Materialize lists them (nil when they are listed); version is its
	// render count at this ruleset.
	src     *Renderer
	version uint64
}

// TableFamily returns the nft family keyword: "ip" or "ip6".
func (r *Ruleset) TableFamily() string { return familyWord(r.Family) }

func familyWord(f rules.Family) string {
	if f == rules.IPv6 {
		return "ip6"
	}
	return "ip"
}

// KeyType is the key of a set or map.
type KeyType int

const (
	// KeyAddr is an address of the table's family.
	KeyAddr KeyType = iota
	// KeyAddrProtoPort is "daddr . l4proto . dport".
	KeyAddrProtoPort
	// KeyProtoPort is "l4proto . dport".
	KeyProtoPort
	// KeyAddrPair is "saddr . daddr"; rulegen's only set of this type holds
	// each local endpoint paired with itself (hairpin connections).
	KeyAddrPair
	// KeyAddrProtoPortSlot is "daddr . l4proto . dport . slot": the key of
	// a map of endpoints, whose value is an endpoint's "addr . port" (a
	// data map: Element.Target).
	KeyAddrProtoPortSlot
	// KeyProtoPortSlot is "l4proto . dport . slot" (nodePorts' endpoints).
	KeyProtoPortSlot
	// KeyAddrProtoPortSource is "daddr . l4proto . dport . saddr" with the
	// source a range (an interval set: Element.Prefix): the sources
	// loadBalancerSourceRanges allow to each load-balancer destination.
	KeyAddrProtoPortSource
)

// Slotted reports whether a key ends with a slot: a map of endpoints.
func (k KeyType) Slotted() bool { return k == KeyAddrProtoPortSlot || k == KeyProtoPortSlot }

// Interval reports whether sets of this key hold ranges.
func (k KeyType) Interval() bool { return k == KeyAddrProtoPortSource }

// Set is a named set, or a map when IsMap: a verdict map, or for a slotted
// key (KeyAddrProtoPortSlot, KeyProtoPortSlot) a data map from slot to
// endpoint.
type Set struct {
	Name  string
	Key   KeyType
	IsMap bool
	// Timeout, when non-zero, makes a dynamic set whose elements expire
	// (session affinity).
	Timeout  int32
	Elements []Element
}

// Element is one element of a set or map; which fields count depends on the
// set's KeyType.
type Element struct {
	Addr    netip.Addr // for KeyAddrPair: both addresses (an endpoint and itself)
	Prefix  netip.Prefix
	Proto   rules.Protocol
	Port    uint16
	Verdict Verdict
	// Slot and Target are a slotted map's: the slot numgen picks (0 to
	// K-1 for a map of services with K endpoints) and the endpoint it
	// stands for.
	Slot   uint32
	Target netip.AddrPort
}

// VerdictKind is the kind of a verdict.
type VerdictKind int

// The verdicts rulegen uses.
const (
	Jump VerdictKind = iota
	Goto
	Return
	Drop
)

// Verdict is a verdict, with its target chain for Jump and Goto.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

// String returns the verdict as nft writes it.
func (v Verdict) String() string {
	switch v.Kind {
	case Jump:
		return "jump " + v.Chain
	case Goto:
		return "goto " + v.Chain
	case Return:
		return "return"
	}
	return "drop"
}

// Hook makes a chain a base chain.
type Hook struct {
	Type     string // "nat" or "filter"
	Hook     string // "prerouting", "input", "forward", "output", "postrouting"
	Priority int
}

// Chain is a chain and its rules.
type Chain struct {
	Name  string
	Hook  *Hook // nil for a regular chain
	Rules []Rule
}

// Rule is a sequence of statements: matches, then at most one action or verdict.
type Rule []Stmt

// Stmt is one statement of a rule. Every statement type is defined in this
// file; the netlink writer compiles each of them to kernel expressions.
type Stmt interface {
	write(b *strings.Builder, f rules.Family)
}

// CtStateNew matches the first packet of a connection ("ct state new").
type CtStateNew struct{}

// AddrMatch matches the source or destination address against one prefix
// (a single address when the prefix is full length).
type AddrMatch struct {
	Src    bool
	Prefix netip.Prefix
	Negate bool
}

// Iifname matches the name of the interface the packet arrived on
// ("iifname "br0"", or with Prefix "iifname "veth*"": every name that
// begins with Name). A packet sent by the node itself has no input
// interface: its name is empty, and only a Negate match holds. Name is
// written between double quotes as it is: it must pass
// rules.InvalidInterfaceName (the renderer makes sure of that), so it
// holds no quote, wildcard or backslash.
type Iifname struct {
	Name   string
	Prefix bool
	Negate bool
}

// AddrInSet matches the source or destination address against a named set.
type AddrInSet struct {
	Src bool
	Set string
}

// FibLocal matches packets whose source (or destination) is an address of
// this host ("fib saddr type local").
type FibLocal struct{ Src bool }

// CtDNAT matches packets of a connection whose destination was rewritten
// ("ct status dnat").
type CtDNAT struct{}

// AddrPairInSet matches "saddr . daddr" against a named set of address pairs.
type AddrPairInSet struct{ Set string }

// MarkUnset matches packets without the mark bit ("meta mark & bit == 0").
type MarkUnset struct{ Mark uint32 }

// L4Proto matches the transport protocol.
type L4Proto struct{ Proto rules.Protocol }

// VmapLookup looks the packet up in a verdict map and takes the verdict found.
type VmapLookup struct {
	Key KeyType // KeyAddrProtoPort or KeyProtoPort
	Map string
}

// NumgenZero matches with probability 1/Mod ("numgen random mod N == 0").
// A chain of such rules with Mod = n, n-1, …, 2 and a final rule without it
// picks each of n endpoints with probability 1/n (session affinity, where
// each endpoint has a chain of its own, uses it).
type NumgenZero struct{ Mod int }

// MarkOr sets a mark bit; MarkXor flips it.
type MarkOr struct{ Mark uint32 }

// MarkXor flips a mark bit.
type MarkXor struct{ Mark uint32 }

// Masquerade rewrites the source to the outgoing interface's address, with a
// fully random source port.
type Masquerade struct{}

// DNAT rewrites the destination to Addr:Port.
type DNAT struct {
	Addr netip.Addr
	Port uint16
}

// KeyInSet matches the key Key of the packet (a concatenation of its
// destination, protocol, port and for KeyAddrProtoPortSource its source)
// against a named set: "ip daddr . meta l4proto . th dport @SET", or "!=
// @SET" when Negate.
type KeyInSet struct {
	Key    KeyType // KeyAddrProtoPort, KeyProtoPort or KeyAddrProtoPortSource
	Set    string
	Negate bool
}

// DNATLookup rewrites the destination to the endpoint a map of endpoints
// holds for the packet's destination and a slot picked at random among
// Mod: "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod
// K map @MAP". When the map has no such key (the destination is not one of
// a service with K endpoints) the rule does nothing and the next is tried.
type DNATLookup struct {
	Key KeyType // KeyAddrProtoPortSlot or KeyProtoPortSlot
	Mod int
	Map string
}

// UpdateSet adds the packet's source address to a dynamic set, refreshing its
// timeout (session affinity).
type UpdateSet struct{ Set string }

// Reject answers with ICMP port unreachable.
type Reject struct{}

// Verdict ends a rule with a verdict.
func (v Verdict) write(b *strings.Builder, _ rules.Family) {
	switch v.Kind {
	case Jump:
		b.WriteString("jump ")
		b.WriteString(v.Chain)
	case Goto:
		b.WriteString("goto ")
		b.WriteString(v.Chain)
	default:
		b.WriteString(v.String())
	}
}

func dir(src bool) string {
	if src {
		return "saddr"
	}
	return "daddr"
}

func (CtStateNew) write(b *strings.Builder, _ rules.Family) { b.WriteString("ct state new") }

func (s AddrMatch) write(b *strings.Builder, f rules.Family) {
	b.WriteString(familyWord(f))
	b.WriteByte(' ')
	b.WriteString(dir(s.Src))
	b.WriteByte(' ')
	if s.Negate {
		b.WriteString("!= ")
	}
	var buf [64]byte
	if s.Prefix.IsSingleIP() {
		b.Write(s.Prefix.Addr().AppendTo(buf[:0]))
	} else {
		b.Write(s.Prefix.AppendTo(buf[:0]))
	}
}

func (s Iifname) write(b *strings.Builder, _ rules.Family) {
	b.WriteString("iifname ")
	if s.Negate {
		b.WriteString("!= ")
	}
	b.WriteByte('"')
	b.WriteString(s.Name)
	if s.Prefix {
		b.WriteByte('*')
	}
	b.WriteByte('"')
}

func (CtDNAT) write(b *strings.Builder, _ rules.Family) { b.WriteString("ct status dnat") }

func (s AddrPairInSet) write(b *strings.Builder, f rules.Family) {
	w := familyWord(f)
	b.WriteString(w + " saddr . " + w + " daddr @" + s.Set)
}

func (s AddrInSet) write(b *strings.Builder, f rules.Family) {
	b.WriteString(familyWord(f) + " " + dir(s.Src) + " @" + s.Set)
}

func (s FibLocal) write(b *strings.Builder, _ rules.Family) {
	b.WriteString("fib " + dir(s.Src) + " type local")
}

func (s MarkUnset) write(b *strings.Builder, _ rules.Family) {
	fmt.Fprintf(b, "meta mark & 0x%08x == 0x00000000", s.Mark)
}

func (s L4Proto) write(b *strings.Builder, _ rules.Family) {
	b.WriteString("meta l4proto " + string(s.Proto))
}

func (s VmapLookup) write(b *strings.Builder, f rules.Family) {
	if s.Key == KeyAddrProtoPort {
		b.WriteString(familyWord(f) + " daddr . ")
	}
	b.WriteString("meta l4proto . th dport vmap @" + s.Map)
}

// keyExpr writes the packet fields that make a key of type k (without a
// slot).
func keyExpr(b *strings.Builder, k KeyType, f rules.Family) {
	w := familyWord(f)
	switch k {
	case KeyAddrProtoPort, KeyAddrProtoPortSlot:
		b.WriteString(w + " daddr . meta l4proto . th dport")
	case KeyProtoPort, KeyProtoPortSlot:
		b.WriteString("meta l4proto . th dport")
	case KeyAddrProtoPortSource:
		b.WriteString(w + " daddr . meta l4proto . th dport . " + w + " saddr")
	}
}

func (s KeyInSet) write(b *strings.Builder, f rules.Family) {
	keyExpr(b, s.Key, f)
	if s.Negate {
		b.WriteString(" !=")
	}
	b.WriteString(" @" + s.Set)
}

func (s DNATLookup) write(b *strings.Builder, f rules.Family) {
	b.WriteString("dnat " + familyWord(f) + " to ")
	keyExpr(b, s.Key, f)
	b.WriteString(" . numgen random mod " + strconv.Itoa(s.Mod) + " map @" + s.Map)
}

func (s NumgenZero) write(b *strings.Builder, _ rules.Family) {
	b.WriteString("numgen random mod ")
	b.WriteString(strconv.Itoa(s.Mod))
	b.WriteString(" == 0")
}

func (s MarkOr) write(b *strings.Builder, _ rules.Family) {
	fmt.Fprintf(b, "meta mark set meta mark | 0x%08x", s.Mark)
}

func (s MarkXor) write(b *strings.Builder, _ rules.Family) {
	fmt.Fprintf(b, "meta mark set meta mark ^ 0x%08x", s.Mark)
}

func (Masquerade) write(b *strings.Builder, _ rules.Family) { b.WriteString("masquerade fully-random") }

func (s DNAT) write(b *strings.Builder, _ rules.Family) {
	b.WriteString("dnat to ")
	var buf [64]byte
	b.Write(netip.AddrPortFrom(s.Addr, s.Port).AppendTo(buf[:0]))
}

// SameStmt reports whether two statements are the same (every statement
// type is a comparable value).
func SameStmt(a, b Stmt) bool { return a == b }

// SameRule reports whether two rules are the same, statement by statement.
func SameRule(a, b Rule) bool { return slices.EqualFunc(a, b, SameStmt) }

func (s UpdateSet) write(b *strings.Builder, f rules.Family) {
	b.WriteString("update @" + s.Set + " { " + familyWord(f) + " saddr }")
}

func (Reject) write(b *strings.Builder, _ rules.Family) { b.WriteString("reject") }

// String returns the rule as nft writes it.
func (r Rule) String(f rules.Family) string {
	var b strings.Builder
	r.write(&b, f)
	return b.String()
}

func (r Rule) write(b *strings.Builder, f rules.Family) {
	for i, s := range r {
		if i > 0 {
			b.WriteByte(' ')
		}
		s.write(b, f)
	}
}

func (s *Set) typeString(f rules.Family) string {
	addr := "ipv4_addr"
	if f == rules.IPv6 {
		addr = "ipv6_addr"
	}
	var t string
	switch s.Key {
	case KeyAddr:
		t = addr
	case KeyAddrProtoPort:
		t = addr + " . inet_proto . inet_service"
	case KeyProtoPort:
		t = "inet_proto . inet_service"
	case KeyAddrPair:
		t = addr + " . " + addr
	case KeyAddrProtoPortSource:
		t = addr + " . inet_proto . inet_service . " + addr
	case KeyAddrProtoPortSlot, KeyProtoPortSlot:
		// numgen yields a plain integer, which no "type" can name: the
		// map is declared by the expressions that make its key and value.
		var b strings.Builder
		b.WriteString("typeof ")
		keyExpr(&b, s.Key, f)
		b.WriteString(" . numgen random mod 1 : " + familyWord(f) + " daddr . th dport")
		return b.String()
	}
	if s.IsMap {
		t += " : verdict"
	}
	return t
}

func (e *Element) write(b *strings.Builder, key KeyType, isMap bool) {
	switch key {
	case KeyAddr:
		var buf [64]byte
		b.Write(e.Addr.AppendTo(buf[:0]))
	case KeyAddrPair:
		var buf [64]byte
		a := e.Addr.AppendTo(buf[:0])
		b.Write(a)
		b.WriteString(" . ")
		b.Write(a)
	case KeyAddrProtoPortSlot, KeyProtoPortSlot, KeyAddrProtoPortSource:
		var buf [64]byte
		if key != KeyProtoPortSlot {
			b.Write(e.Addr.AppendTo(buf[:0]))
			b.WriteString(" . ")
		}
		b.WriteString(string(e.Proto))
		b.WriteString(" . ")
		b.Write(strconv.AppendUint(buf[:0], uint64(e.Port), 10))
		b.WriteString(" . ")
		if key == KeyAddrProtoPortSource {
			if e.Prefix.IsSingleIP() {
				b.Write(e.Prefix.Addr().AppendTo(buf[:0]))
			} else {
				b.Write(e.Prefix.AppendTo(buf[:0]))
			}
			return
		}
		b.Write(strconv.AppendUint(buf[:0], uint64(e.Slot), 10))
		b.WriteString(" : ")
		b.Write(e.Target.Addr().AppendTo(buf[:0]))
		b.WriteString(" . ")
		b.Write(strconv.AppendUint(buf[:0], uint64(e.Target.Port()), 10))
		return
	case KeyAddrProtoPort:
		var buf [64]byte
		b.Write(e.Addr.AppendTo(buf[:0]))
		b.WriteString(" . ")
		fallthrough
	case KeyProtoPort:
		var buf [8]byte
		b.WriteString(string(e.Proto))
		b.WriteString(" . ")
		b.Write(strconv.AppendUint(buf[:0], uint64(e.Port), 10))
	}
	if isMap {
		b.WriteString(" : ")
		e.Verdict.write(b, 0)
	}
}

// Script returns an `nft -f` script that replaces rulegen's table of this
// family atomically: the table is created if missing, deleted and created
// anew in one transaction, so no packet ever sees a half-written table.
func (r *Ruleset) Script() string {
	r.Materialize()
	var b strings.Builder
	b.Grow(256 + 100*r.size())
	fam := r.TableFamily()
	fmt.Fprintf(&b, "add table %s %s\ndelete table %s %s\n", fam, TableName, fam, TableName)
	r.writeTable(&b)
	return b.String()
}

func (r *Ruleset) size() int {
	n := 0
	for _, s := range r.Sets {
		n += len(s.Elements)
	}
	for _, c := range r.Chains {
		n += len(c.Rules) + 1
	}
	return n
}

func (r *Ruleset) writeTable(b *strings.Builder) {
	fmt.Fprintf(b, "table %s %s {\n", r.TableFamily(), TableName)
	for _, s := range r.Sets {
		kind := "set"
		if s.IsMap {
			kind = "map"
		}
		decl := "type " + s.typeString(r.Family)
		if s.Key.Slotted() {
			decl = s.typeString(r.Family) // "typeof …"
		}
		fmt.Fprintf(b, "\t%s %s {\n\t\t%s\n", kind, s.Name, decl)
		switch {
		case s.Key.Interval():
			b.WriteString("\t\tflags interval\n")
		case s.Timeout > 0:
			fmt.Fprintf(b, "\t\tflags dynamic,timeout\n\t\ttimeout %ds\n", s.Timeout)
		}
		if len(s.Elements) > 0 {
			els := s.Elements
			if s.Key.Slotted() {
				// A map of endpoints is kept in service order (cheap to
				// build again and again); the text lists it by key, so
				// that it does not depend on the services' names.
				els = slices.Clone(els)
				slices.SortFunc(els, func(a, b Element) int {
					return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Slot, b.Slot))
				})
			}
			b.WriteString("\t\telements = { ")
			for i := range els {
				if i > 0 {
					b.WriteString(",\n\t\t\t     ")
				}
				els[i].write(b, s.Key, s.IsMap)
			}
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range r.Chains {
		fmt.Fprintf(b, "\tchain %s {\n", c.Name)
		if h := c.Hook; h != nil {
			fmt.Fprintf(b, "\t\ttype %s hook %s priority %d; policy accept;\n", h.Type, h.Hook, h.Priority)
		}
		for _, rule := range c.Rules {
			b.WriteString("\t\t")
			rule.write(b, r.Family)
			b.WriteByte('\n')
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
}

// DeleteScript returns an `nft -f` script that removes rulegen's table of
// this family if it exists.
func DeleteScript(f rules.Family) string {
	w := familyWord(f)
	return fmt.Sprintf("add table %s %s\ndelete table %s %s\n", w, TableName, w, TableName)
}

// ElementString returns element e of s as nft writes it in the set's
// elements (key, and for a map " : " and the value).
func (s *Set) ElementString(e *Element) string {
	var b strings.Builder
	e.write(&b, s.Key, s.IsMap)
	return b.String()
}
