package nftwriter

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// Set elements are marshaled here, straight into the sender's buffer,
// instead of through google/nftables: the library builds half a dozen
// slices for every element and then copies its messages again, which was
// most of a full write's time in user space (and of the garbage collection
// during a cold start). The messages are the ones the library writes for
// the same elements, byte for byte (TestElementMessagesMatchLibrary), and
// the library still marshals everything else.

// maxElementBytes bounds the element list of one message: an attribute's
// length is 16 bits (the kernel would read a longer list wrapped around, as
// only part of it), so a long list is split over several messages of the
// same transaction.
const maxElementBytes = 60000

// nftaSetElemKeyEnd is NFTA_SET_ELEM_KEY_END: the last key of an element
// of a concatenated interval set.
const nftaSetElemKeyEnd = 0x0a

// setElements writes els as elements of s: added, or deleted (del). What
// the library holds is handed to the sender first, to keep the order of the
// transaction.
func (b *batch) setElements(del bool, s *rn.Set, els []rn.Element) {
	if len(els) == 0 || b.err != nil {
		return
	}
	b.fail(b.conn.Flush())
	b.pending = 0
	typ := uint16(unix.NFT_MSG_NEWSETELEM)
	if del {
		typ = unix.NFT_MSG_DELSETELEM
	}
	b.snd.elements(typ, b.fam, b.table.Name, s, b.sets[s.Name].ID, els)
	b.stats.Elements += len(els)
}

// elements appends messages of type typ carrying els as elements of set s
// of table (set ID id), each with an element list of at most about
// maxElementBytes.
func (s *sender) elements(typ uint16, f rules.Family, table string, set *rn.Set, id uint32, els []rn.Element) {
	for len(els) > 0 {
		msg := s.beginMessage(typ, byte(family(f)))
		s.stringAttr(unix.NFTA_SET_ELEM_LIST_SET, set.Name)
		s.u32Attr(unix.NFTA_SET_ELEM_LIST_SET_ID, id)
		s.stringAttr(unix.NFTA_SET_ELEM_LIST_TABLE, table)
		list := s.open(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		n := 0
		// An element is at most a few hundred bytes (a chain name is at
		// most 255), so the list stays well under an attribute's 64 KiB.
		for n < len(els) && len(s.buf)-list < maxElementBytes {
			s.element(set, &els[n], uint16(n+1))
			n++
		}
		s.close(list)
		s.endMessage(msg)
		els = els[n:]
	}
}

// element appends one element as the list item of type item: its key (and
// last key), and its value or verdict.
func (s *sender) element(set *rn.Set, e *rn.Element, item uint16) {
	it := s.open(item)
	key := s.open(unix.NFTA_SET_ELEM_KEY)
	v := s.openValue(unix.NFTA_DATA_VALUE)
	from := len(s.buf)
	s.buf = appendElementKey(s.buf, set.Key, e)
	to := len(s.buf)
	s.closeValue(v)
	s.close(key)
	switch {
	case set.Key == rn.KeyAddrProtoPortSource:
		// The key again, with the source range's last address.
		end := s.open(nftaSetElemKeyEnd)
		v := s.openValue(unix.NFTA_DATA_VALUE)
		s.buf = append(s.buf, s.buf[from:to-e.Prefix.Addr().BitLen()/8]...)
		s.buf = appendLast(s.buf, e.Prefix)
		s.closeValue(v)
		s.close(end)
	case set.Key.Slotted():
		data := s.open(unix.NFTA_SET_ELEM_DATA)
		v := s.openValue(unix.NFTA_DATA_VALUE)
		s.buf = appendEndpoint(s.buf, e.Target)
		s.closeValue(v)
		s.close(data)
	case set.IsMap:
		vx := verdictExpr(e.Verdict)
		data := s.open(unix.NFTA_SET_ELEM_DATA)
		verdict := s.open(unix.NFTA_DATA_VERDICT)
		s.u32Attr(unix.NFTA_VERDICT_CODE, uint32(vx.Kind))
		if vx.Chain != "" {
			s.stringAttr(unix.NFTA_VERDICT_CHAIN, vx.Chain)
		}
		s.close(verdict)
		s.close(data)
	}
	s.close(it)
}

// beginMessage starts a netlink message of nf_tables type typ for family
// fam (the flags and sequence the sender gives every message) and returns
// where it starts.
func (s *sender) beginMessage(typ uint16, fam byte) int {
	at := len(s.buf)
	s.offs = append(s.offs, at)
	var h [unix.SizeofNlMsghdr + 4]byte
	binary.NativeEndian.PutUint16(h[4:], unix.NFNL_SUBSYS_NFTABLES<<8|typ)
	binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST|unix.NLM_F_CREATE)
	binary.NativeEndian.PutUint32(h[8:], uint32(len(s.offs))) // the batch begin is 0
	h[unix.SizeofNlMsghdr] = fam
	h[unix.SizeofNlMsghdr+1] = unix.NFNETLINK_V0
	s.buf = append(s.buf, h[:]...)
	return at
}

// endMessage writes the length of the message begun at at.
func (s *sender) endMessage(at int) {
	binary.NativeEndian.PutUint32(s.buf[at:], uint32(len(s.buf)-at))
}

// open starts a nested attribute of type typ and returns where it starts.
func (s *sender) open(typ uint16) int {
	return s.openValue(typ | unix.NLA_F_NESTED)
}

// openValue starts an attribute of type typ whose value is appended next,
// and returns where it starts.
func (s *sender) openValue(typ uint16) int {
	at := len(s.buf)
	s.buf = binary.NativeEndian.AppendUint16(s.buf, 0)
	s.buf = binary.NativeEndian.AppendUint16(s.buf, typ)
	return at
}

// close writes the length of the nested attribute opened at at (its
// contents are whole attributes, already padded).
func (s *sender) close(at int) {
	binary.NativeEndian.PutUint16(s.buf[at:], uint16(len(s.buf)-at))
}

// closeValue writes the length of the attribute opened at at by openValue
// and pads it to 4 bytes.
func (s *sender) closeValue(at int) {
	s.close(at)
	s.buf = pad(s.buf)
}

// stringAttr appends a NUL-terminated string attribute.
func (s *sender) stringAttr(typ uint16, v string) {
	at := s.openValue(typ)
	s.buf = append(append(s.buf, v...), 0)
	s.closeValue(at)
}

// u32Attr appends a 32-bit attribute, in network order.
func (s *sender) u32Attr(typ uint16, v uint32) {
	at := s.openValue(typ)
	s.buf = binary.BigEndian.AppendUint32(s.buf, v)
	s.closeValue(at)
}

func pad(b []byte) []byte {
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// appendAddr appends an address as the kernel compares it: 4 bytes for
// IPv4, 16 for IPv6.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		a4 := a.As4()
		return append(b, a4[:]...)
	}
	a16 := a.As16()
	return append(b, a16[:]...)
}

// appendElementKey appends an element's key as the kernel stores it:
// addresses and ports in network order, each field of a concatenation
// padded to 4 bytes, a slot in host order (numgen's number).
func appendElementKey(b []byte, k rn.KeyType, e *rn.Element) []byte {
	switch k {
	case rn.KeyAddrPair:
		return appendAddr(appendAddr(b, e.Addr), e.Addr)
	case rn.KeyAddr, rn.KeyAddrProtoPort, rn.KeyAddrProtoPortSlot, rn.KeyAddrProtoPortSource:
		b = appendAddr(b, e.Addr)
	}
	if k != rn.KeyAddr {
		b = append(b, protoNum(e.Proto), 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, e.Port)
		b = append(b, 0, 0)
	}
	switch k {
	case rn.KeyAddrProtoPortSlot, rn.KeyProtoPortSlot:
		b = binary.NativeEndian.AppendUint32(b, e.Slot)
	case rn.KeyAddrProtoPortSource:
		b = appendAddr(b, e.Prefix.Masked().Addr())
	}
	return b
}

// appendLast appends the last address of prefix p.
func appendLast(b []byte, p netip.Prefix) []byte {
	at := len(b)
	b = appendAddr(b, p.Masked().Addr())
	for i := at; i < len(b); i++ {
		bits := p.Bits() - 8*(i-at)
		switch {
		case bits >= 8:
		case bits <= 0:
			b[i] = 0xff
		default:
			b[i] |= byte(0xff >> bits)
		}
	}
	return b
}

// appendEndpoint appends a value of a map of endpoints: "addr . port", the
// port in the next 32-bit register.
func appendEndpoint(b []byte, t netip.AddrPort) []byte {
	b = appendAddr(b, t.Addr())
	b = binary.BigEndian.AppendUint16(b, t.Port())
	return append(b, 0, 0)
}
