package nftwriter

import (
	"fmt"
	"time"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// This file compiles rulegen's typed ruleset into google/nftables objects
// and expressions: the bytecode `nft -f` would produce for the same text, so
// that `nft list table` shows the same ruleset whichever way it was written.

// Registers: nft addresses 128-bit registers 1..4 and 32-bit registers 8..23
// (register 1 is 32-bit registers 8..11). A concatenated key is loaded into
// consecutive 32-bit registers, each field padded to 4 bytes.
const (
	reg1   = 1
	reg2   = 2
	reg32  = 8 // first 32-bit register
	rtnLoc = 2 // RTN_LOCAL, the fib address type "local"

	ipsDstNAT = 1 << 5 // IPS_DST_NAT, the "dnat" bit of ct status
)

func family(f rules.Family) gnft.TableFamily {
	if f == rules.IPv6 {
		return gnft.TableFamilyIPv6
	}
	return gnft.TableFamilyIPv4
}

func addrType(f rules.Family) gnft.SetDatatype {
	if f == rules.IPv6 {
		return gnft.TypeIP6Addr
	}
	return gnft.TypeIPAddr
}

// nfProto is the netfilter protocol family of a table family (for NAT).
func nfProto(f rules.Family) uint32 {
	if f == rules.IPv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

func addrLen(f rules.Family) uint32 {
	if f == rules.IPv6 {
		return 16
	}
	return 4
}

// addrOffset is where the source or destination address starts in the
// network header.
func addrOffset(f rules.Family, src bool) uint32 {
	switch {
	case f == rules.IPv6 && src:
		return 8
	case f == rules.IPv6:
		return 24
	case src:
		return 12
	}
	return 16
}

func protoNum(p rules.Protocol) byte {
	switch p {
	case rules.UDP:
		return unix.IPPROTO_UDP
	case rules.SCTP:
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

func hookOf(h string) *gnft.ChainHook {
	switch h {
	case "prerouting":
		return gnft.ChainHookPrerouting
	case "input":
		return gnft.ChainHookInput
	case "forward":
		return gnft.ChainHookForward
	case "output":
		return gnft.ChainHookOutput
	}
	return gnft.ChainHookPostrouting
}

// setKey returns the key type of a set or map.
func setKey(f rules.Family, k rn.KeyType) (gnft.SetDatatype, bool) {
	switch k {
	case rn.KeyAddrProtoPort:
		return gnft.MustConcatSetType(addrType(f), gnft.TypeInetProto, gnft.TypeInetService), true
	case rn.KeyProtoPort:
		return gnft.MustConcatSetType(gnft.TypeInetProto, gnft.TypeInetService), true
	case rn.KeyAddrPair:
		return gnft.MustConcatSetType(addrType(f), addrType(f)), true
	case rn.KeyAddrProtoPortSlot:
		return gnft.MustConcatSetType(addrType(f), gnft.TypeInetProto, gnft.TypeInetService, gnft.TypeInteger), true
	case rn.KeyProtoPortSlot:
		return gnft.MustConcatSetType(gnft.TypeInetProto, gnft.TypeInetService, gnft.TypeInteger), true
	case rn.KeyAddrProtoPortSource:
		return gnft.MustConcatSetType(addrType(f), gnft.TypeInetProto, gnft.TypeInetService, addrType(f)), true
	}
	return addrType(f), false
}

// newSet returns the google/nftables description of a named set or map.
func newSet(t *gnft.Table, f rules.Family, s *rn.Set) *gnft.Set {
	key, concat := setKey(f, s.Key)
	gs := &gnft.Set{Table: t, Name: s.Name, KeyType: key, Concatenation: concat, Interval: s.Key.Interval()}
	switch {
	case s.Key.Slotted():
		gs.IsMap = true
		gs.DataType = gnft.MustConcatSetType(addrType(f), gnft.TypeInetService)
	case s.IsMap:
		gs.IsMap = true
		gs.DataType = gnft.TypeVerdict
	}
	if s.Timeout > 0 {
		gs.HasTimeout = true
		gs.Dynamic = true
		gs.Timeout = time.Duration(s.Timeout) * time.Second
	}
	return gs
}

func verdictExpr(v rn.Verdict) *expr.Verdict {
	switch v.Kind {
	case rn.Jump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}
	case rn.Goto:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}
	case rn.Return:
		return &expr.Verdict{Kind: expr.VerdictReturn}
	}
	return &expr.Verdict{Kind: expr.VerdictDrop}
}

// compiler turns statements into expressions.
type compiler struct {
	table *gnft.Table
	fam   rules.Family
	sets  map[string]*gnft.Set // named sets added in this batch, for their IDs
	err   error
}

func (c *compiler) setID(name string) uint32 {
	if s, ok := c.sets[name]; ok {
		return s.ID
	}
	return 0
}

func cmpEq(reg uint32, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}

func (c *compiler) rule(chain *gnft.Chain, r rn.Rule) *gnft.Rule {
	var ex []expr.Any
	for _, s := range r {
		ex = append(ex, c.stmt(s)...)
	}
	return &gnft.Rule{Table: c.table, Chain: chain, Exprs: ex}
}

func (c *compiler) stmt(s rn.Stmt) []expr.Any {
	f := c.fam
	switch s := s.(type) {
	case rn.CtStateNew:
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		}
	case rn.AddrMatch:
		return c.addrMatch(s)
	case rn.Iifname:
		return iifname(s)
	case rn.CtDNAT:
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		}
	case rn.AddrPairInSet:
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, true), Len: addrLen(f)},
			&expr.Payload{DestRegister: reg32 + addrLen(f)/4, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, false), Len: addrLen(f)},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Set, SetID: c.setID(s.Set)},
		}
	case rn.AddrInSet:
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, s.Src), Len: addrLen(f)},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Set, SetID: c.setID(s.Set)},
		}
	case rn.FibLocal:
		return []expr.Any{
			&expr.Fib{Register: reg1, ResultADDRTYPE: true, FlagSADDR: s.Src, FlagDADDR: !s.Src},
			cmpEq(reg1, binaryutil.NativeEndian.PutUint32(rtnLoc)),
		}
	case rn.MarkUnset:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(s.Mark), Xor: make([]byte, 4)},
			cmpEq(reg1, make([]byte, 4)),
		}
	case rn.L4Proto:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			cmpEq(reg1, []byte{protoNum(s.Proto)}),
		}
	case rn.VmapLookup:
		var ex []expr.Any
		next := uint32(reg32)
		if s.Key == rn.KeyAddrProtoPort {
			ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, false), Len: addrLen(f)})
			next += addrLen(f) / 4
		}
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
			&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		)
		src := uint32(reg1)
		if s.Key == rn.KeyProtoPort {
			src = next // the key starts at the l4proto register
		}
		return append(ex, &expr.Lookup{SourceRegister: src, SetName: s.Map, SetID: c.setID(s.Map), IsDestRegSet: true, DestRegister: 0})
	case rn.KeyInSet:
		ex, _ := c.key(s.Key)
		return append(ex, &expr.Lookup{SourceRegister: reg1, SetName: s.Set, SetID: c.setID(s.Set), Invert: s.Negate})
	case rn.DNATLookup:
		// The slot follows the key's fields, in the next free register.
		ex, slot := c.key(s.Key)
		return append(ex,
			&expr.Numgen{Register: slot, Modulus: uint32(s.Mod), Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Map, SetID: c.setID(s.Map), IsDestRegSet: true, DestRegister: reg1},
			// The address fills register 1 from its start; the port is
			// in the 32-bit register after it.
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: nfProto(f), RegAddrMin: reg1, RegProtoMin: reg32 + addrLen(f)/4, Specified: true},
		)
	case rn.NumgenZero:
		return []expr.Any{
			&expr.Numgen{Register: reg1, Modulus: uint32(s.Mod), Type: unix.NFT_NG_RANDOM},
			cmpEq(reg1, make([]byte, 4)),
		}
	case rn.MarkOr:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(^s.Mark), Xor: binaryutil.NativeEndian.PutUint32(s.Mark)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1, SourceRegister: true},
		}
	case rn.MarkXor:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(0xffffffff), Xor: binaryutil.NativeEndian.PutUint32(s.Mark)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1, SourceRegister: true},
		}
	case rn.Masquerade:
		return []expr.Any{&expr.Masq{FullyRandom: true}}
	case rn.DNAT:
		return []expr.Any{
			&expr.Immediate{Register: reg1, Data: s.Addr.AsSlice()},
			&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(s.Port)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: nfProto(f), RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
		}
	case rn.UpdateSet:
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, true), Len: addrLen(f)},
			&expr.Dynset{SrcRegKey: reg1, SetName: s.Set, SetID: c.setID(s.Set), Operation: uint32(unix.NFT_DYNSET_OP_UPDATE)},
		}
	case rn.Reject:
		code := uint8(3) // ICMP port unreachable
		if f == rules.IPv6 {
			code = 4 // ICMPv6 port unreachable
		}
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}
	case rn.Verdict:
		return []expr.Any{verdictExpr(s)}
	}
	if c.err == nil {
		c.err = fmt.Errorf("nftwriter: no compilation for statement %T", s)
	}
	return nil
}

// iifname compiles "iifname [!=] "NAME"" as nft does: the input
// interface's name (IFNAMSIZ bytes, zero-padded) compared with NAME padded
// the same way; a prefix ("NAME*") compares only its own bytes.
func iifname(s rn.Iifname) []expr.Any {
	op := expr.CmpOpEq
	if s.Negate {
		op = expr.CmpOpNeq
	}
	data := []byte(s.Name)
	if !s.Prefix && len(data) < unix.IFNAMSIZ { // a longer name never reaches here (the renderer drops it)
		data = append(data, make([]byte, unix.IFNAMSIZ-len(data))...)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: data},
	}
}

// addrMatch compiles "ip saddr [!=] PREFIX". Like nft, a prefix whose length
// is a whole number of bytes loads only those bytes; any other prefix is
// loaded whole and masked.
func (c *compiler) addrMatch(s rn.AddrMatch) []expr.Any {
	f := c.fam
	op := expr.CmpOpEq
	if s.Negate {
		op = expr.CmpOpNeq
	}
	bits := s.Prefix.Bits()
	addr := s.Prefix.Addr().AsSlice()
	off := addrOffset(f, s.Src)
	if bits%8 == 0 {
		n := uint32(bits / 8)
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: op, Register: reg1, Data: addr[:n]},
		}
	}
	mask := make([]byte, len(addr))
	for i := 0; i < bits; i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: addrLen(f)},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: addrLen(f), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: op, Register: reg1, Data: addr},
	}
}

// key loads a concatenated key of type k into consecutive 32-bit
// registers from register 1, as nft does, and returns the expressions and
// the first 32-bit register after the key.
func (c *compiler) key(k rn.KeyType) ([]expr.Any, uint32) {
	f := c.fam
	var ex []expr.Any
	next := uint32(reg32)
	if k != rn.KeyProtoPort && k != rn.KeyProtoPortSlot {
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, false), Len: addrLen(f)})
		next += addrLen(f) / 4
	}
	proto := next
	if next == reg32 {
		proto = reg1
	}
	ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: proto})
	if k == rn.KeyAddrProtoPortSource {
		// In a key of ranges every field is compared as a big-endian
		// number: nft converts the protocol (one byte: a no-op it
		// writes all the same).
		ex = append(ex, &expr.Byteorder{SourceRegister: next, DestRegister: next, Op: expr.ByteorderHton, Len: 1, Size: 2})
	}
	ex = append(ex, &expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if k == rn.KeyAddrProtoPortSource {
		ex = append(ex, &expr.Payload{DestRegister: next + 2, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset(f, true), Len: addrLen(f)})
		return ex, next + 2 + addrLen(f)/4
	}
	return ex, next + 2
}
