package iptwriter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
)

// Intact reports whether the kernel still holds what was last applied, by
// a canary: the jumps into rulegen's chains from nat PREROUTING and from
// filter INPUT are in place (a flush of either table, or of those chains,
// removes them), and RG-SERVICES still has a rule when rulegen wrote one.
// It is true before anything was applied. iptables-nft's chains are read
// through netlink (CheapIntact), in the caller's network namespace, as the
// tools would be; iptables-legacy's with iptables, which reads the whole
// table from the kernel, so its cost grows with the table. When netlink
// cannot tell (an error other than a missing table or chain), the tools
// decide, now and from then on: the writer stops saying its check is cheap.
func (w *Writer) Intact() bool {
	if w.applied == nil {
		return true
	}
	if w.CheapIntact() {
		ok, err := w.intactNetlink()
		if err == nil {
			return ok
		}
		w.netlink = false
	}
	for _, j := range canaryJumps() {
		if ok, err := w.jumpExists(j); err != nil || !ok {
			return false
		}
	}
	if w.servicesRules() {
		// Its first rule is still there (listing the whole chain would
		// cost a rule per service on every sync).
		out, err := w.run("", w.cmd, w.waitArgs("-t", "nat", "-S", ri.ChainServices, "1")...)
		return err == nil && len(strings.TrimSpace(string(out))) > 0
	}
	return true
}

// canaryJumps are the jumps Intact looks for: the first of the nat table
// (PREROUTING to RG-SERVICES) and the first of the filter table.
func canaryJumps() []ri.Jump {
	var out []ri.Jump
	for _, j := range ri.Jumps() {
		if !slices.ContainsFunc(out, func(o ri.Jump) bool { return o.Table == j.Table }) {
			out = append(out, j)
		}
	}
	return out
}

// CheapIntact says whether Intact costs the same at any number of services:
// for a writer of iptables-nft that runs the real tools, until netlink
// failed to answer.
func (w *Writer) CheapIntact() bool { return w.mode == NFT && w.netlink }

// servicesRules says whether rulegen wrote a rule into RG-SERVICES.
func (w *Writer) servicesRules() bool {
	for _, c := range chainsOf(w.applied, "nat") {
		if c.Name == ri.ChainServices && len(c.Rules) > 0 {
			return true
		}
	}
	return false
}

// intactNetlink is Intact for iptables-nft, whose tables are nftables
// tables: each canary jump is an nftables jump verdict to its target in
// its built-in chain (a short chain, read whole; any jump to the target
// counts, whatever else the rule matches), and RG-SERVICES is asked for
// its rules, of which only the first batch is read. An error means
// netlink could not tell; a missing table or chain is an answer.
func (w *Writer) intactNetlink() (bool, error) {
	tf := gnft.TableFamilyIPv4
	if w.fam == rules.IPv6 {
		tf = gnft.TableFamilyIPv6
	}
	c, err := gnft.New()
	if err != nil {
		return false, err
	}
	for _, j := range canaryJumps() {
		t := &gnft.Table{Name: j.Table, Family: tf}
		rs, err := c.GetRules(t, &gnft.Chain{Name: j.Chain, Table: t})
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !slices.ContainsFunc(rs, func(r *gnft.Rule) bool { return jumpsTo(r, j.Target()) }) {
			return false, nil
		}
	}
	if !w.servicesRules() {
		return true, nil
	}
	return chainHasRule(byte(tf), "nat", ri.ChainServices)
}

// jumpsTo says whether a rule has a jump verdict to chain.
func jumpsTo(r *gnft.Rule, chain string) bool {
	for _, e := range r.Exprs {
		if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump && v.Chain == chain {
			return true
		}
	}
	return false
}

// chainHasRule reports whether an nftables chain holds a rule. It asks the
// kernel for a dump of the chain's rules and reads only the first datagram
// (a few dozen rules at most), so that its cost does not grow with the
// chain; closing the socket ends the dump. (netlink.Conn.Receive would
// read the whole dump.) A chain or table that is gone has no rule.
func chainHasRule(family byte, table, chain string) (bool, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return false, fmt.Errorf("opening netlink: %w", err)
	}
	defer c.Close()
	req, err := ruleDumpRequest(family, table, chain)
	if err != nil {
		return false, err
	}
	if _, err := c.Send(req); err != nil {
		return false, fmt.Errorf("netlink rule dump of %s %s: %w", table, chain, err)
	}
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return false, err
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return false, err
	}
	buf := make([]byte, 1<<16)
	for range 4 { // the answer is in the first datagram; a few for safety
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return !errors.Is(rerr, unix.EAGAIN) && !errors.Is(rerr, unix.EINTR)
		}); err != nil {
			return false, fmt.Errorf("netlink rule dump of %s %s: %w", table, chain, err)
		}
		if rerr != nil {
			return false, fmt.Errorf("netlink rule dump of %s %s: %w", table, chain, rerr)
		}
		if has, done, err := ruleDumpAnswer(buf[:n]); err != nil || done {
			return has, err
		}
	}
	return false, errors.New("netlink rule dump: no rule and no end in the first datagrams")
}

const nftNewRule = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE

// ruleDumpRequest is an NFT_MSG_GETRULE dump request for one chain (Send
// fills in its length, sequence and port).
func ruleDumpRequest(family byte, table, chain string) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, table)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...), // nfgenmsg: family, version, resource id
	}, nil
}

// ruleDumpAnswer reads one datagram of a rule dump: has when it holds a
// rule, done when it settles the question (a rule, or the end of the dump:
// a dump of a missing chain or table is an empty one). An error the
// kernel reports, in an error message or at the end of the dump, is an
// error; so is ENOENT, which a dump does not give for a missing chain.
func ruleDumpAnswer(b []byte) (has, done bool, err error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return false, false, fmt.Errorf("netlink rule dump: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case nftNewRule:
			return true, true, nil
		case unix.NLMSG_DONE, unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				if m.Header.Type == unix.NLMSG_ERROR {
					return false, false, errors.New("netlink rule dump: a short error message")
				}
				return false, true, nil
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return false, false, fmt.Errorf("netlink rule dump: %w", syscall.Errno(-code))
			}
			if m.Header.Type == unix.NLMSG_DONE {
				return false, true, nil
			}
		}
	}
	return false, false, nil
}
