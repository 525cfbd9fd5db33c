package iptwriter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
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
// chain; closing the socket ends the dump. A chain or table that is gone
// has no rule.
func chainHasRule(family byte, table, chain string) (bool, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return false, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return false, err
	}
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Sendto(fd, ruleDumpRequest(family, table, chain), 0, kernel); err != nil {
		return false, fmt.Errorf("netlink rule dump of %s %s: %w", table, chain, err)
	}
	buf := make([]byte, 1<<16)
	for range 4 { // the answer is in the first datagram; a few for safety
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("netlink rule dump of %s %s: %w", table, chain, err)
		}
		if has, done, err := ruleDumpAnswer(buf[:n]); err != nil || done {
			return has, err
		}
	}
	return false, errors.New("netlink rule dump: no rule and no end in the first datagrams")
}

const nftNewRule = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE

// ruleDumpRequest is an NFT_MSG_GETRULE dump request for one chain.
func ruleDumpRequest(family byte, table, chain string) []byte {
	attr := func(b []byte, typ uint16, s string) []byte {
		n := unix.SizeofNlAttr + len(s) + 1
		b = binary.NativeEndian.AppendUint16(b, uint16(n))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(append(b, s...), 0)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	b := make([]byte, unix.SizeofNlMsghdr, 128)
	b = append(b, family, unix.NFNETLINK_V0, 0, 0) // nfgenmsg: family, version, resource id
	b = attr(b, unix.NFTA_RULE_TABLE, table)
	b = attr(b, unix.NFTA_RULE_CHAIN, chain)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETRULE)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:], 1) // sequence
	return b
}

// ruleDumpAnswer reads one datagram of a rule dump: has when it holds a
// rule, done when it settles the question (a rule, or the end of the dump:
// a dump of a missing chain or table is an empty one). An error the
// kernel reports, in an error message or at the end of the dump, is an
// error; so is ENOENT, which a dump does not give for a missing chain.
func ruleDumpAnswer(b []byte) (has, done bool, err error) {
	for len(b) >= unix.SizeofNlMsghdr {
		n := int(binary.NativeEndian.Uint32(b[0:]))
		if n < unix.SizeofNlMsghdr || n > len(b) {
			return false, false, fmt.Errorf("netlink rule dump: a message of %d bytes in %d", n, len(b))
		}
		switch typ := binary.NativeEndian.Uint16(b[4:]); typ {
		case nftNewRule:
			return true, true, nil
		case unix.NLMSG_DONE, unix.NLMSG_ERROR:
			errno := unix.Errno(0)
			if n >= unix.SizeofNlMsghdr+4 {
				errno = unix.Errno(-int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:])))
			} else if typ == unix.NLMSG_ERROR {
				return false, false, errors.New("netlink rule dump: a short error message")
			}
			if errno != 0 {
				return false, false, fmt.Errorf("netlink rule dump: %w", errno)
			}
			if typ == unix.NLMSG_DONE {
				return false, true, nil
			}
		}
		b = b[min(len(b), (n+3)&^3):]
	}
	return false, false, nil
}
