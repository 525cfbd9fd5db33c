package iptwriter

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestIntact: the canary says intact on the rules just written (also
// beside another program's rule, and with RG-SERVICES longer than one
// netlink datagram), and not after each kind of damage; for iptables-nft
// its netlink reading agrees with iptables' every time.
func TestIntact(t *testing.T) {
	netnstest.Require(t, "iptables-nft-restore", "iptables-legacy-restore", "nft")
	cases := []struct {
		name    string
		damage  [][]string // commands run in the node after the apply; {"iptables", ...} runs the writer's flavour
		intact  bool
		nftOnly bool
	}{
		{name: "untouched", intact: true},
		{name: "another program's rule first in PREROUTING", intact: true,
			damage: [][]string{{"iptables", "-t", "nat", "-I", "PREROUTING", "-s", "172.31.254.1/32", "-j", "RETURN"}}},
		{name: "RG-SERVICES flushed", damage: [][]string{{"iptables", "-t", "nat", "-F", "RG-SERVICES"}}},
		{name: "the PREROUTING jump deleted", damage: [][]string{{"iptables", "-t", "nat", "-D", "PREROUTING",
			"-m", "comment", "--comment", "rulegen service portals", "-j", "RG-SERVICES"}}},
		{name: "the nat table flushed", damage: [][]string{{"iptables", "-t", "nat", "-F"}}},
		{name: "the filter table flushed (iptables -F)", damage: [][]string{{"iptables", "-F"}}},
		{name: "the nat table flushed and its chains deleted", damage: [][]string{{"iptables", "-t", "nat", "-F"}, {"iptables", "-t", "nat", "-X"}}},
		{name: "nft flush ruleset (nft only)", nftOnly: true, damage: [][]string{{"nft", "flush", "ruleset"}}},
	}
	for _, mode := range []Mode{NFT, Legacy} {
		for _, size := range []int{3, 1000} {
			for _, tc := range cases {
				if tc.nftOnly && mode != NFT || size > 3 && tc.name != "untouched" && tc.name != "RG-SERVICES flushed" {
					continue
				}
				t.Run(string(mode)+"/"+tc.name+"/"+strconv.Itoa(size), func(t *testing.T) {
					ns := netnstest.New(t, "iptok")
					var w *Writer
					if err := ns.Do(func() (err error) { w, err = New(rules.IPv4, mode); return }); err != nil {
						t.Fatal(err)
					}
					if err := ns.Do(func() error { _, err := w.Apply(ruleset(size, 2)); return err }); err != nil {
						t.Fatal(err)
					}
					if cheap := w.CheapIntact(); cheap != (mode == NFT) {
						t.Fatalf("CheapIntact %v after the write (the netlink reading must see what was written with iptables-nft)", cheap)
					}
					for _, d := range tc.damage {
						if d[0] == "iptables" {
							d = append([]string{"iptables-" + string(mode)}, d[1:]...)
						}
						ns.MustRun(nil, d[0], d[1:]...)
					}
					var got, byTools bool
					ns.Do(func() error {
						got = w.Intact()
						w.netlink = false // iptables alone
						byTools = w.Intact()
						w.netlink = true
						return nil
					})
					if got != tc.intact {
						t.Errorf("Intact = %v, want %v", got, tc.intact)
					}
					if byTools != got {
						t.Errorf("iptables says %v, the netlink reading %v", byTools, got)
					}
					if mode == NFT {
						var err error
						ns.Do(func() error { _, err = w.intactNetlink(); return nil })
						if err != nil {
							t.Errorf("netlink could not tell: %v", err)
						}
					}
				})
			}
		}
	}
}

// TestRuleDumpAnswer: the first datagram of a rule dump settles the
// question on a rule or on the end of the dump, whatever precedes them,
// and every error the kernel reports is an error.
func TestRuleDumpAnswer(t *testing.T) {
	msg := func(typ uint16, payload ...byte) []byte {
		b := binary.NativeEndian.AppendUint32(nil, uint32(unix.SizeofNlMsghdr+len(payload)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, make([]byte, 10)...) // flags, sequence, port
		b = append(b, payload...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	errno := func(e int32) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(-e)) }
	rule := msg(nftNewRule, make([]byte, 21)...) // an unaligned length
	cases := []struct {
		name      string
		datagram  []byte
		has, done bool
		err       bool
	}{
		{name: "a rule", datagram: rule, has: true, done: true},
		{name: "an ack, then a rule", datagram: append(msg(unix.NLMSG_ERROR, errno(0)...), rule...), has: true, done: true},
		{name: "the end: no rule", datagram: msg(unix.NLMSG_DONE, errno(0)...), done: true},
		{name: "the end without a payload", datagram: msg(unix.NLMSG_DONE), done: true},
		{name: "a noop, then the end", datagram: append(msg(unix.NLMSG_NOOP), msg(unix.NLMSG_DONE, errno(0)...)...), done: true},
		{name: "an error", datagram: msg(unix.NLMSG_ERROR, errno(int32(unix.EPERM))...), err: true},
		{name: "ENOENT", datagram: msg(unix.NLMSG_ERROR, errno(int32(unix.ENOENT))...), err: true},
		{name: "an interrupted dump", datagram: msg(unix.NLMSG_DONE, errno(int32(unix.EINTR))...), err: true},
		{name: "a short error", datagram: msg(unix.NLMSG_ERROR), err: true},
		{name: "a length beyond the datagram", datagram: rule[:20], err: true},
		{name: "nothing", datagram: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			has, done, err := ruleDumpAnswer(tc.datagram)
			if has != tc.has || done != tc.done || (err != nil) != tc.err {
				t.Errorf("has %v, done %v, err %v; want %v, %v, error %v", has, done, err, tc.has, tc.done, tc.err)
			}
		})
	}
}

// TestRuleDumpRequest spells out the request: a netlink header asking for
// a dump of nf_tables rules, the nfgenmsg, and the table and chain as
// NUL-terminated, 4-aligned attributes.
func TestRuleDumpRequest(t *testing.T) {
	m, err := ruleDumpRequest(unix.NFPROTO_IPV4, "nat", "RG-SERVICES")
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Length = uint32(unix.SizeofNlMsghdr + len(m.Data)) // as Send sets it
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.NativeEndian
	if len(b) != 16+4+8+16 {
		t.Fatalf("%d bytes, want 44", len(b))
	}
	if typ, flags := le.Uint16(b[4:]), le.Uint16(b[6:]); typ != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETRULE || flags != unix.NLM_F_REQUEST|unix.NLM_F_DUMP {
		t.Errorf("type %#x, flags %#x", typ, flags)
	}
	if !bytes.Equal(b[16:20], []byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}) {
		t.Errorf("nfgenmsg % x", b[16:20])
	}
	if le.Uint16(b[20:]) != 8 || le.Uint16(b[22:]) != unix.NFTA_RULE_TABLE || string(b[24:28]) != "nat\x00" {
		t.Errorf("table attribute % x", b[20:28])
	}
	if le.Uint16(b[28:]) != 16 || le.Uint16(b[30:]) != unix.NFTA_RULE_CHAIN || string(b[32:44]) != "RG-SERVICES\x00" {
		t.Errorf("chain attribute % x", b[28:44])
	}
}
