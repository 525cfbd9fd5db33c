package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// neighbour is another program's firewall on the node, beside rulegen's
// table: an iptables host firewall (the filter table's INPUT, FORWARD and
// OUTPUT jump to SOAK-HOSTFW, which drops what no service rule rewrote:
// packets still addressed to the service CIDR, and nodePorts the node
// itself would answer; SOAK-OTHER, jumped to from INPUT, gains and loses
// rules) and an nftables table "inet soakother" whose set gains and loses
// elements. Its drops are why a connection that meets a hand-flushed table
// is retransmitted instead of refused. At the end its rules must be exactly
// what it wrote.
type neighbour struct {
	h       *harness
	mu      sync.Mutex
	static  []string // SOAK-HOSTFW's rules and the jumps, as iptables-save prints them
	rules   []int    // SOAK-OTHER: -s 172.31.254.K/32 -j DROP, in order
	elems   []int    // soakother's set: 172.31.255.K
	changes int
}

const neighbourNFT = `table inet soakother {
	set blocked { type ipv4_addr; }
	chain input {
		type filter hook input priority 10; policy accept;
		ip saddr @blocked drop
	}
}
`

func (h *harness) startNeighbour() *neighbour {
	nb := &neighbour{h: h}
	n := h.node
	for _, args := range [][]string{
		{"-N", "SOAK-HOSTFW"},
		{"-A", "SOAK-HOSTFW", "-d", serviceCIDR, "-j", "DROP"},
		{"-A", "SOAK-HOSTFW", "-d", nodeIP, "-p", "tcp", "--dport", "30000:32767", "-j", "DROP"},
		{"-A", "SOAK-HOSTFW", "-d", nodeIP, "-p", "udp", "--dport", "30000:32767", "-j", "DROP"},
		{"-N", "SOAK-OTHER"},
		{"-I", "INPUT", "-j", "SOAK-HOSTFW"},
		{"-I", "INPUT", "-j", "SOAK-OTHER"},
		{"-I", "FORWARD", "-j", "SOAK-HOSTFW"},
		{"-I", "OUTPUT", "-j", "SOAK-HOSTFW"},
	} {
		n.MustRun(nil, "iptables", args...)
	}
	n.MustRun([]byte(neighbourNFT), "nft", "-f", "-")
	nb.static = nb.iptables()
	return nb
}

// iptables returns the neighbour's lines of iptables-save: its chains and
// every rule that mentions them, in order.
func (nb *neighbour) iptables() []string {
	out, err := nb.h.node.Run(nil, "iptables-save", "-t", "filter")
	if err != nil {
		return []string{"iptables-save: " + err.Error()}
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "SOAK-") {
			if strings.HasPrefix(l, ":") { // ":CHAIN POLICY [packets:bytes]"
				l = strings.Fields(l)[0]
			}
			lines = append(lines, l)
		}
	}
	return lines
}

// run changes one rule and one element every period until ctx ends.
func (nb *neighbour) run(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for k := 1; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r, e := k%7+1, k%11+1
		nb.mu.Lock()
		if i := slices.Index(nb.rules, r); i >= 0 {
			if _, err := nb.h.node.Run(nil, "iptables", "-D", "SOAK-OTHER", "-s", fmt.Sprintf("172.31.254.%d/32", r), "-j", "DROP"); err == nil {
				nb.rules = slices.Delete(nb.rules, i, i+1)
			}
		} else if _, err := nb.h.node.Run(nil, "iptables", "-A", "SOAK-OTHER", "-s", fmt.Sprintf("172.31.254.%d/32", r), "-j", "DROP"); err == nil {
			nb.rules = append(nb.rules, r)
		}
		verb := "add"
		i := slices.Index(nb.elems, e)
		if i >= 0 {
			verb = "delete"
		}
		if _, err := nb.h.node.Run(nil, "nft", verb, "element", "inet", "soakother", "blocked", fmt.Sprintf("{ 172.31.255.%d }", e)); err == nil {
			if i >= 0 {
				nb.elems = slices.Delete(nb.elems, i, i+1)
			} else {
				nb.elems = append(nb.elems, e)
			}
		}
		nb.changes++
		nb.mu.Unlock()
	}
}

// intact compares the neighbour's rules in the kernel with what it wrote
// and returns the differences (none: intact).
func (nb *neighbour) intact() []string {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	want := slices.Clone(nb.static)
	for _, r := range nb.rules {
		want = append(want, fmt.Sprintf("-A SOAK-OTHER -s 172.31.254.%d/32 -j DROP", r))
	}
	var wantElems []string
	for _, e := range nb.elems {
		wantElems = append(wantElems, fmt.Sprintf("172.31.255.%d", e))
	}
	var diffs []string
	if got := nb.iptables(); !slices.Equal(got, want) {
		diffs = append(diffs, fmt.Sprintf("iptables: have %q, want %q", got, want))
	}
	out, err := nb.h.node.Run(nil, "nft", "-j", "list", "table", "inet", "soakother")
	if err != nil {
		return append(diffs, "nft list table inet soakother: "+strings.TrimSpace(out))
	}
	got, rules := neighbourNFTState([]byte(out))
	slices.Sort(got)
	slices.Sort(wantElems)
	if !slices.Equal(got, wantElems) {
		diffs = append(diffs, fmt.Sprintf("nftables set blocked: have %q, want %q", got, wantElems))
	}
	if rules != 1 {
		diffs = append(diffs, fmt.Sprintf("nftables chain input: %d rules, want 1", rules))
	}
	return diffs
}

// neighbourNFTState returns the elements of soakother's set and the
// number of its rules from `nft -j list table`.
func neighbourNFTState(b []byte) (elems []string, rules int) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return nil, -1
	}
	for _, o := range doc.Nftables {
		if _, ok := o["rule"]; ok {
			rules++
		}
		if raw, ok := o["set"]; ok {
			var s struct {
				Elem []any `json:"elem"`
			}
			json.Unmarshal(raw, &s)
			for _, e := range s.Elem {
				elems = append(elems, fmt.Sprint(e))
			}
		}
	}
	return elems, rules
}
