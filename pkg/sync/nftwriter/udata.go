package nftwriter

import (
	"encoding/binary"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// A map of endpoints is keyed by numgen's number, a plain integer that no
// "type" can name, so nft declares it with "typeof" and keeps the
// expressions in the set's user data (libnftnl's udata: one byte of type,
// one of length, then the value; numbers in host order), from which it
// prints the declaration and the elements. rulegen writes the same bytes
// nft 1.0.6 writes for the declarations the renderer prints (see
// Set.typeString), so that `nft list` shows the same table whichever way
// it was written; TestNetlinkMatchesScript compares them.

// Set user data attributes (libnftnl include/udata.h).
const (
	udataSetKeyByteOrder  = 0
	udataSetDataByteOrder = 1
	udataSetKeyTypeof     = 3
	udataSetDataTypeof    = 4
	udataSetDataInterval  = 6
)

// nft's expression types (enum expr_types in nftables' expression.h)
// and the payload protocol and field numbers it records.
const (
	exprPayload = 7
	exprMeta    = 9
	exprConcat  = 13
	exprNumgen  = 23

	protoIP, ipDaddr   = 12, 12 // proto_ip, IPHDR_DADDR
	protoIP6, ip6Daddr = 13, 9  // proto_ip6, IP6HDR_DST
	protoTH, thDport   = 11, 2  // proto_th, THDR_DPORT
	metaL4Proto        = 16     // NFT_META_L4PROTO
	numgenRandom       = 1      // NFT_NG_RANDOM
)

func tlv(typ byte, val []byte) []byte { return append([]byte{typ, byte(len(val))}, val...) }

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// typeofExpr is one expression of a typeof: its type and its own data.
func typeofExpr(etype uint32, data ...[]byte) []byte {
	var d []byte
	for i, x := range data {
		d = append(d, tlv(byte(i), x)...)
	}
	return append(tlv(0, u32(etype)), tlv(1, d)...)
}

func concat(fields ...[]byte) []byte {
	var d []byte
	for i, x := range fields {
		d = append(d, tlv(byte(i), x)...)
	}
	return append(tlv(0, u32(exprConcat)), tlv(1, d)...)
}

// typeofUserData returns the user data of a set of key k, or nil when
// google/nftables' own is right (every key type but the maps of
// endpoints).
func typeofUserData(f rules.Family, k rn.KeyType) []byte {
	if !k.Slotted() {
		return nil
	}
	daddr := typeofExpr(exprPayload, u32(protoIP), u32(ipDaddr))
	if f == rules.IPv6 {
		daddr = typeofExpr(exprPayload, u32(protoIP6), u32(ip6Daddr))
	}
	l4proto := typeofExpr(exprMeta, u32(metaL4Proto))
	dport := typeofExpr(exprPayload, u32(protoTH), u32(thDport))
	// "numgen random mod 1": the modulus does not matter to the key.
	slot := typeofExpr(exprNumgen, u32(numgenRandom), u32(1), u32(0))
	key := concat(l4proto, dport, slot)
	if k == rn.KeyAddrProtoPortSlot {
		key = concat(daddr, l4proto, dport, slot)
	}
	var b []byte
	b = append(b, tlv(udataSetKeyByteOrder, u32(0))...)
	b = append(b, tlv(udataSetDataByteOrder, u32(0))...)
	b = append(b, tlv(udataSetKeyTypeof, key)...)
	b = append(b, tlv(udataSetDataTypeof, concat(daddr, dport))...)
	b = append(b, tlv(udataSetDataInterval, u32(0))...)
	return b
}
