package iptwriter

import (
	"fmt"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
)

// JumpRules tests for and deletes single rules in built-in chains: the
// jumps into rulegen's chains, which iptables-restore can insert but cannot
// test for. The real one is go-iptables' *iptables.IPTables (see
// newJumpRules); FakeJumps keeps them in memory.
type JumpRules interface {
	// Exists reports whether the rule is in table/chain. It fails (rather
	// than saying false) when the rule cannot be checked, for instance
	// because its target chain does not exist or the xtables lock is held.
	Exists(table, chain string, rulespec ...string) (bool, error)
	// Delete deletes one copy of the rule; it fails when there is none.
	Delete(table, chain string, rulespec ...string) error
}

var _ JumpRules = (*iptables.IPTables)(nil)

// maxJumpCopies bounds how many copies of one jump Cleanup deletes: one per
// time the dry-run text was loaded by hand, far fewer than this.
const maxJumpCopies = 64

// newJumpRules returns go-iptables for the iptables binary of a family and
// flavour (iptables-nft, ip6tables-legacy, ..., or the unversioned one for
// Auto), found on PATH. go-iptables runs the binary with the process's
// environment (so XTABLES_LOCKFILE applies) and `--wait SECONDS`, but with
// no context: it cannot kill a command. So the lock wait it is given is the
// smaller of lockWait and timeout, which bounds how long a check waits for
// a held lock; iptables -C and -D do nothing else that can take long.
func newJumpRules(fam rules.Family, mode Mode, lockWait, timeout time.Duration) (*iptables.IPTables, error) {
	cmd, _, _ := binaries(fam, mode)
	proto := iptables.ProtocolIPv4
	if fam == rules.IPv6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.Path(cmd), iptables.IPFamily(proto), iptables.Timeout(waitSeconds(min(lockWait, timeout))))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return ipt, nil
}

// waitSeconds is d in whole seconds for `--wait`, rounded up and at least
// 1: `--wait 0` (and go-iptables' Timeout(0)) waits for ever.
func waitSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// jumpExists reports whether a jump is in its built-in chain. The jump's
// target chain must exist: iptables cannot check a rule that jumps nowhere.
func (w *Writer) jumpExists(j ri.Jump) (bool, error) {
	ok, err := w.jumps.Exists(j.Table, j.Chain, j.Args...)
	if err != nil {
		return false, fmt.Errorf("checking %s jump %s/%s -> %s: %w", w.fam, j.Table, j.Chain, j.Target(), err)
	}
	return ok, nil
}

// deleteJump deletes every copy of a jump (the dry-run text loaded twice by
// hand inserts it twice) and returns how many it deleted. The jump's target
// chain must exist.
func (w *Writer) deleteJump(j ri.Jump) (int, error) {
	for n := 0; ; n++ {
		ok, err := w.jumpExists(j)
		if err != nil || !ok {
			return n, err
		}
		if n == maxJumpCopies {
			return n, fmt.Errorf("deleting %s jump %s/%s -> %s: still there after %d deletions", w.fam, j.Table, j.Chain, j.Target(), n)
		}
		if err := w.jumps.Delete(j.Table, j.Chain, j.Args...); err != nil {
			return n, fmt.Errorf("deleting %s jump %s/%s -> %s: %w", w.fam, j.Table, j.Chain, j.Target(), err)
		}
	}
}
