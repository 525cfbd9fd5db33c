package iptwriter

import (
	"strconv"
	"testing"

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
