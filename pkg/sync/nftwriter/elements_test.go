package nftwriter

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	gnft "github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// TestElementMessagesMatchLibrary: the element messages rulegen marshals
// itself are the bytes google/nftables writes for the same elements, for
// every kind of set rulegen writes, in both families, added and deleted,
// long lists split over several messages.
func TestElementMessagesMatchLibrary(t *testing.T) {
	sets := []*rn.Set{
		{Name: "addrs", Key: rn.KeyAddr},
		{Name: "destinations", Key: rn.KeyAddrProtoPort},
		{Name: "ports", Key: rn.KeyProtoPort},
		{Name: "hairpin", Key: rn.KeyAddrPair},
		{Name: "dispatch", Key: rn.KeyAddrProtoPort, IsMap: true},
		{Name: "endpoints-3", Key: rn.KeyAddrProtoPortSlot},
		{Name: "nodeport-endpoints-3", Key: rn.KeyProtoPortSlot},
		{Name: "source-ranges", Key: rn.KeyAddrProtoPortSource},
	}
	verdicts := []rn.Verdict{
		{Kind: rn.Jump, Chain: "svc-default-web-http"},
		{Kind: rn.Goto, Chain: "a-rather-longer-chain-name-of-a-service-" + string(bytes.Repeat([]byte("x"), 150))},
		{Kind: rn.Return},
		{Kind: rn.Drop},
	}
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, set := range sets {
			for _, del := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/del=%v", f, set.Name, del), func(t *testing.T) {
					els := sampleElements(f, 4000, verdicts)
					typ := uint16(unix.NFT_MSG_NEWSETELEM)
					if del {
						typ = unix.NFT_MSG_DELSETELEM
					}
					ours := newSender(0, 0)
					ours.elements(typ, f, rn.TableName, set, 7, els)
					counts := elementCounts(t, ours.buf)
					sent := 0
					for _, n := range counts {
						sent += n
					}
					if sent != len(els) {
						t.Fatalf("%d of %d elements sent", sent, len(els))
					}
					if len(counts) < 2 {
						t.Fatalf("4,000 elements in %d message(s): the test should split them", len(counts))
					}

					// The library, given the same runs of elements.
					lib := newSender(0, 0)
					c, err := lib.conn()
					if err != nil {
						t.Fatal(err)
					}
					gs := newSet(&gnft.Table{Name: rn.TableName, Family: family(f)}, f, set)
					gs.ID = 7
					rest := els
					for _, n := range counts {
						add := c.SetAddElements
						if del {
							add = c.SetDeleteElements
						}
						if err := add(gs, libraryElements(f, set, rest[:n])); err != nil {
							t.Fatal(err)
						}
						rest = rest[n:]
					}
					if err := c.Flush(); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(ours.buf, lib.buf) || !slices.Equal(ours.offs, lib.offs) {
						at := 0
						for at < min(len(ours.buf), len(lib.buf)) && ours.buf[at] == lib.buf[at] {
							at++
						}
						t.Fatalf("%d bytes in %d messages, the library's %d in %d; first difference at byte %d",
							len(ours.buf), len(ours.offs), len(lib.buf), len(lib.offs), at)
					}
				})
			}
		}
	}
}

// TestElementBytes: the keys, last keys and values as the kernel compares
// them, written out by hand for one element of each kind of key (the
// library comparison above shares these encoders).
func TestElementBytes(t *testing.T) {
	slot := hex.EncodeToString(binary.NativeEndian.AppendUint32(nil, 2)) // numgen's number, in host order
	v4 := rn.Element{Addr: netip.MustParseAddr("10.96.0.1"), Proto: rules.TCP, Port: 80, Slot: 2,
		Prefix: netip.MustParsePrefix("192.168.4.0/22"), Target: netip.MustParseAddrPort("10.244.1.5:8080")}
	v6 := rn.Element{Addr: netip.MustParseAddr("fd00::1"), Proto: rules.UDP, Port: 53, Slot: 2,
		Prefix: netip.MustParsePrefix("fd00:c0a8::/30"), Target: netip.MustParseAddrPort("[fd00:244::5]:8080")}
	for _, tc := range []struct {
		e        rn.Element
		key      rn.KeyType
		want     string
		wantLast string // KeyAddrProtoPortSource
	}{
		{v4, rn.KeyAddr, "0a600001", ""},
		{v4, rn.KeyAddrProtoPort, "0a600001" + "06000000" + "00500000", ""},
		{v4, rn.KeyProtoPort, "06000000" + "00500000", ""},
		{v4, rn.KeyAddrPair, "0a600001" + "0a600001", ""},
		{v4, rn.KeyAddrProtoPortSlot, "0a600001" + "06000000" + "00500000" + slot, ""},
		{v4, rn.KeyProtoPortSlot, "06000000" + "00500000" + slot, ""},
		{v4, rn.KeyAddrProtoPortSource, "0a600001" + "06000000" + "00500000" + "c0a80400", "c0a807ff"},
		{v6, rn.KeyAddrProtoPort, "fd000000000000000000000000000001" + "11000000" + "00350000", ""},
		{v6, rn.KeyAddrProtoPortSource, "fd000000000000000000000000000001" + "11000000" + "00350000" + "fd00c0a8000000000000000000000000",
			"fd00c0abffffffffffffffffffffffff"},
	} {
		if got := hex.EncodeToString(appendElementKey(nil, tc.key, &tc.e)); got != tc.want {
			t.Errorf("%v key of %v: %s, want %s", tc.key, tc.e.Addr, got, tc.want)
		}
		if tc.wantLast != "" {
			if got := hex.EncodeToString(appendLast(nil, tc.e.Prefix)); got != tc.wantLast {
				t.Errorf("last address of %v: %s, want %s", tc.e.Prefix, got, tc.wantLast)
			}
		}
	}
	for e, want := range map[*rn.Element]string{&v4: "0af40105" + "1f900000", &v6: "fd000244000000000000000000000005" + "1f900000"} {
		if got := hex.EncodeToString(appendEndpoint(nil, e.Target)); got != want {
			t.Errorf("endpoint %v: %s, want %s", e.Target, got, want)
		}
	}
}

// sampleElements returns n elements with every field set, varied.
func sampleElements(f rules.Family, n int, verdicts []rn.Verdict) []rn.Element {
	base := netip.MustParseAddr("10.96.0.0")
	src := netip.MustParsePrefix("192.168.0.0/16")
	if f == rules.IPv6 {
		base = netip.MustParseAddr("fd00:96::")
		src = netip.MustParsePrefix("fd00:c0a8::/32")
	}
	protos := []rules.Protocol{rules.TCP, rules.UDP, rules.SCTP}
	out := make([]rn.Element, n)
	a := base
	for i := range out {
		a = a.Next()
		p := netip.PrefixFrom(src.Addr(), src.Bits()+i%9)
		out[i] = rn.Element{
			Addr: a, Prefix: p, Proto: protos[i%3], Port: uint16(80 + i),
			Verdict: verdicts[i%len(verdicts)],
			Slot:    uint32(i % 5), Target: netip.AddrPortFrom(a, uint16(8000+i)),
		}
	}
	return out
}

// libraryElements are els as google/nftables elements, their bytes
// from rulegen's encoders.
func libraryElements(f rules.Family, s *rn.Set, els []rn.Element) []gnft.SetElement {
	out := make([]gnft.SetElement, len(els))
	for i := range els {
		e := &els[i]
		el := gnft.SetElement{Key: appendElementKey(nil, s.Key, e)}
		switch {
		case s.Key == rn.KeyAddrProtoPortSource:
			k := slices.Clone(el.Key[:len(el.Key)-e.Prefix.Addr().BitLen()/8])
			el.KeyEnd = appendLast(k, e.Prefix)
		case s.Key.Slotted():
			el.Val = appendEndpoint(nil, e.Target)
		case s.IsMap:
			el.VerdictData = verdictExpr(e.Verdict)
		}
		out[i] = el
	}
	return out
}

// elementCounts reads the messages of a sender's buffer (after its batch
// begin) and returns how many elements each carries, checking that every
// message's length and its element list's length are the true ones.
func elementCounts(t *testing.T, buf []byte) []int {
	t.Helper()
	var counts []int
	b := buf[unix.SizeofNlMsghdr+4:]
	for len(b) > 0 {
		n := int(binary.NativeEndian.Uint32(b))
		if n < unix.SizeofNlMsghdr+4 || n > len(b) {
			t.Fatalf("a message of length %d with %d bytes left", n, len(b))
		}
		ad, err := netlink.NewAttributeDecoder(b[unix.SizeofNlMsghdr+4 : n])
		if err != nil {
			t.Fatal(err)
		}
		lists := 0
		for ad.Next() {
			if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			lists++
			items, err := netlink.NewAttributeDecoder(ad.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			for items.Next() {
				k++
			}
			if err := items.Err(); err != nil {
				t.Fatal(err)
			}
			counts = append(counts, k)
		}
		if err := ad.Err(); err != nil {
			t.Fatal(err)
		}
		if lists != 1 {
			t.Fatalf("a message with %d element lists", lists)
		}
		b = b[n:]
	}
	return counts
}
