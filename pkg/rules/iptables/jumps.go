package iptables

import "strings"

// Jump is a rule rulegen keeps in a built-in chain: the only way packets
// reach its chains. Built-in chains are shared with the node's other
// components, so rulegen never declares (and so never flushes) one: each
// jump is inserted and deleted by itself.
type Jump struct {
	Table, Chain string
	// Args are the rule's words as a command line gives them (unquoted),
	// for `iptables -C/-D`; Rule renders them for iptables-restore.
	Args []string
}

// Jumps are the rules in built-in chains that send packets to rulegen's
// chains, in the order they are written.
func Jumps() []Jump {
	portals := []string{"-m", "comment", "--comment", "rulegen service portals", "-j", ChainServices}
	filter := []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "rulegen service filter", "-j", ChainFilter}
	localnet := []string{"-m", "comment", "--comment", "rulegen block incoming localnet connections", "-j", ChainBlockLocalnet}
	// Each jump is inserted first in its chain, so in a chain the last one
	// listed comes first, in kube-proxy's order (syncProxyRules prepends
	// its jumps the same way): in INPUT the localnet drop, then the
	// health-check accept, then the service filter; in FORWARD the
	// forwarding accept, then the service filter.
	return []Jump{
		{"nat", "PREROUTING", portals},
		{"nat", "OUTPUT", portals},
		{"nat", "POSTROUTING", []string{"-m", "comment", "--comment", "rulegen masquerading", "-j", ChainPostrouting}},
		{"filter", "INPUT", filter},
		{"filter", "FORWARD", filter},
		{"filter", "OUTPUT", filter},
		{"filter", "INPUT", []string{"-m", "comment", "--comment", "rulegen health check node ports", "-j", ChainHealthChecks}},
		{"filter", "FORWARD", []string{"-m", "comment", "--comment", "rulegen forwarding rules", "-j", ChainForward}},
		{"filter", "INPUT", localnet},
		{"filter", "OUTPUT", localnet},
	}
}

// Target is the rulegen chain the jump leads to.
func (j Jump) Target() string { return j.Args[len(j.Args)-1] }

// Rule is the jump as iptables-restore reads it after "-I " or "-D ": the
// chain, then the arguments, an argument with a space in double quotes (the
// jumps' comments are constants without quotes).
func (j Jump) Rule() string {
	var b strings.Builder
	b.WriteString(j.Chain)
	for _, a := range j.Args {
		b.WriteByte(' ')
		if strings.ContainsAny(a, " \t") {
			b.WriteString(`"` + a + `"`)
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// JumpNote is the comment Restore writes above the jumps (iptables-restore
// skips lines that start with #).
const JumpNote = `# The jumps into rulegen's chains from the built-in chains, each inserted
# first in its chain (-I). Built-in chains are shared: they are not declared
# here, so they are not flushed. iptables-restore cannot test whether a rule
# exists, so before each full write the daemon checks every jump with
# "iptables -C" and leaves out of this input the ones already in place;
# loading this text a second time by hand would insert them a second time
# ("rulegen --cleanup" removes them all).
`

// writeJumps writes the jumps of one table, under JumpNote the first time
// (*noted says whether it was written already).
func writeJumps(b *strings.Builder, table string, jumps []Jump, noted *bool) {
	for _, j := range jumps {
		if j.Table != table {
			continue
		}
		if !*noted {
			b.WriteString(JumpNote)
			*noted = true
		}
		b.WriteString("-I " + j.Rule() + "\n")
	}
}
