package iptwriter

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	gnft "github.com/google/nftables"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
)

// Mode is the iptables flavour the node uses.
type Mode string

// The flavours. Auto picks the one that holds more rules (so that rulegen
// writes where the node's other components already do), nft on a tie.
const (
	Auto   Mode = "auto"
	NFT    Mode = "nft"
	Legacy Mode = "legacy"
)

// ErrNotInstalled is returned (wrapped) when the iptables tools are missing.
var ErrNotInstalled = errors.New("iptables tools not installed")

// Stats describes one update.
type Stats struct {
	Full          bool
	Chains, Rules int
	Deleted       int // stale chains deleted
	Jumps         int // jump rules inserted into built-in chains
}

// Options configure a writer; zero fields take the defaults.
type Options struct {
	// Mode is the flavour; "" or Auto detects it.
	Mode Mode
	// LockWait bounds the wait for the xtables lock (DefaultLockWait),
	// Timeout every command (DefaultTimeout).
	LockWait, Timeout time.Duration
	// Runner runs iptables-restore, iptables-save and `iptables -S`; nil
	// runs them as child processes. A Runner given here is trusted to find
	// them: New then neither detects the flavour (Auto means the unversioned
	// tools) nor looks at PATH.
	Runner Runner
	// Jumps checks for and deletes the jump rules in built-in chains; nil
	// means go-iptables for the flavour's iptables binary, unless Runner is
	// given: then an empty FakeJumps, so that a fake Runner never lets the
	// writer touch the real tables.
	Jumps JumpRules
}

// Writer writes one family's RG- chains. It is not safe for concurrent use.
type Writer struct {
	fam      rules.Family
	mode     Mode
	cmd      string // iptables binary
	save     string // iptables-save binary
	restore  string // iptables-restore binary
	runner   Runner
	jumps    JumpRules
	lockWait time.Duration
	timeout  time.Duration
	applied  *ri.Ruleset
	netlink  bool // the tools are the real ones: the kernel may be read directly
}

func binaries(fam rules.Family, m Mode) (cmd, save, restore string) {
	base := "iptables"
	if fam == rules.IPv6 {
		base = "ip6tables"
	}
	if m == Auto || m == "" {
		return base, base + "-save", base + "-restore"
	}
	return base + "-" + string(m), base + "-" + string(m) + "-save", base + "-" + string(m) + "-restore"
}

// Detect picks the flavour for a family: the one with more rules when both
// are installed, else whichever is installed.
func Detect(fam rules.Family) (Mode, error) {
	count := func(m Mode) int {
		_, save, _ := binaries(fam, m)
		if _, err := exec.LookPath(save); err != nil {
			return -1
		}
		out, err := runBounded(ExecRunner{}, DefaultTimeout, "", save)
		if err != nil {
			return -1
		}
		return strings.Count(string(out), "\n-A ")
	}
	nft, legacy := count(NFT), count(Legacy)
	switch {
	case legacy > nft:
		return Legacy, nil
	case nft >= 0:
		return NFT, nil
	}
	if _, _, restore := binaries(fam, Auto); lookPath(restore) == nil {
		return Auto, nil // only the unversioned tools
	}
	return "", notInstalled(fam)
}

func lookPath(name string) error { _, err := exec.LookPath(name); return err }

func notInstalled(fam rules.Family) error {
	_, _, restore := binaries(fam, Auto)
	return fmt.Errorf("%w: %s not found; install the iptables package (apt-get install iptables) or use --backend nftables", ErrNotInstalled, restore)
}

// New returns a writer for one family in the caller's network namespace,
// with the default options.
func New(fam rules.Family, mode Mode) (*Writer, error) {
	return NewWithOptions(fam, Options{Mode: mode})
}

// NewWithOptions returns a writer for one family in the caller's network
// namespace. It fails with ErrNotInstalled when the tools are missing, and
// when go-iptables cannot run the iptables binary (`iptables --version`).
func NewWithOptions(fam rules.Family, o Options) (*Writer, error) {
	w := &Writer{fam: fam, mode: o.Mode, runner: o.Runner, jumps: o.Jumps, lockWait: o.LockWait, timeout: o.Timeout}
	if w.lockWait <= 0 {
		w.lockWait = DefaultLockWait
	}
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	if w.jumps == nil && w.runner != nil {
		w.jumps = &FakeJumps{}
	}
	if w.runner == nil {
		w.runner, w.netlink = ExecRunner{}, true
		if w.mode == Auto || w.mode == "" {
			var err error
			if w.mode, err = Detect(fam); err != nil {
				return nil, err
			}
		}
		cmd, save, restore := binaries(fam, w.mode)
		for _, b := range []string{cmd, save, restore} {
			if lookPath(b) != nil {
				return nil, notInstalled(fam)
			}
		}
	}
	w.cmd, w.save, w.restore = binaries(fam, w.mode)
	if w.jumps == nil {
		ipt, err := newJumpRules(fam, w.mode, w.lockWait, w.timeout)
		if err != nil {
			return nil, err
		}
		w.jumps = ipt
	}
	return w, nil
}

// run runs one tool, bounded by the writer's timeout.
func (w *Writer) run(stdin, name string, args ...string) ([]byte, error) {
	return runBounded(w.runner, w.timeout, stdin, name, args...)
}

// waitArgs prepends the lock wait to a command's arguments.
func (w *Writer) waitArgs(args ...string) []string {
	return append([]string{"--wait", strconv.Itoa(waitSeconds(w.lockWait))}, args...)
}

// saved is what iptables-save says of one table.
type saved struct {
	chains []string // every chain, built-in ones included
}

func (w *Writer) list(table string) (saved, error) {
	out, err := w.run("", w.save, "-t", table)
	if err != nil {
		return saved{}, fmt.Errorf("listing %s table %s: %w", w.fam, table, err)
	}
	var s saved
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			s.chains = append(s.chains, name)
		}
	}
	return s, nil
}

// Mode returns the flavour this writer uses.
func (w *Writer) Mode() Mode { return w.mode }

// Invalidate makes the next update full.
func (w *Writer) Invalidate() { w.applied = nil }

// Apply writes r (which must be of the writer's family). On failure the
// writer forgets what it wrote, so that the next Apply is full.
func (w *Writer) Apply(r *ri.Ruleset) (Stats, error) {
	st, err := w.apply(r)
	if err != nil {
		w.applied = nil
		return st, err
	}
	w.applied = r
	if st.Full && w.CheapIntact() {
		// The netlink reading must see what was just written; if it does
		// not (an iptables-nft that encodes its rules otherwise), it
		// would find rulegen's rules gone at every check: the tools
		// decide from now on.
		if ok, err := w.intactNetlink(); err != nil || !ok {
			w.netlink = false
		}
	}
	return st, nil
}

func (w *Writer) apply(r *ri.Ruleset) (Stats, error) {
	st, input, err := w.plan(r)
	if err != nil || input == "" {
		return st, err
	}
	return st, w.restoreInput(input)
}

// plan computes the restore input of an update: for a full one, r less the
// jumps already in place, plus the deletion of every RG- chain the kernel
// has that r does not; for an incremental one, the chains that differ from
// what was applied last and the deletion of those that went away.
func (w *Writer) plan(r *ri.Ruleset) (Stats, string, error) {
	if r.Family != w.fam {
		return Stats{}, "", fmt.Errorf("iptables writer for %s given a %s ruleset", w.fam, r.Family)
	}
	for _, t := range r.Tables {
		for _, c := range t.Chains {
			if len(c.Name) > ri.MaxChainName {
				return Stats{}, "", fmt.Errorf("chain %s: name longer than %d characters", c.Name, ri.MaxChainName)
			}
		}
	}
	st := Stats{Full: w.applied == nil}
	stale := map[string][]string{}
	var changed *ri.Ruleset
	if st.Full {
		changed = &ri.Ruleset{Family: r.Family, Tables: r.Tables}
		have := map[string][]string{}
		for _, t := range r.Tables {
			s, err := w.list(t.Name)
			if err != nil {
				return st, "", err
			}
			have[t.Name] = s.chains
			want := r.ChainNames(t.Name)
			for _, c := range s.chains {
				if strings.HasPrefix(c, ri.ChainPrefix) && !slices.Contains(want, c) {
					stale[t.Name] = append(stale[t.Name], c)
				}
			}
		}
		for _, j := range r.Jumps {
			// A jump to a chain that does not exist yet cannot be there.
			if slices.Contains(have[j.Table], j.Target()) {
				ok, err := w.jumpExists(j)
				if err != nil {
					return st, "", err
				}
				if ok {
					continue
				}
			}
			changed.Jumps = append(changed.Jumps, j)
		}
	} else {
		changed = &ri.Ruleset{Family: r.Family}
		for _, t := range r.Tables {
			old := map[string][]string{}
			for _, c := range chainsOf(w.applied, t.Name) {
				old[c.Name] = c.Rules
			}
			nt := &ri.Table{Name: t.Name}
			for _, c := range t.Chains {
				o, ok := old[c.Name]
				if ok && slices.Equal(o, c.Rules) {
					delete(old, c.Name)
					continue
				}
				if p, patch := patchOf(t.Name, c.Name, o, c.Rules); ok && patch {
					changed.Patches = append(changed.Patches, p)
				} else {
					nt.Chains = append(nt.Chains, c)
				}
				delete(old, c.Name)
			}
			for name := range old {
				stale[t.Name] = append(stale[t.Name], name)
			}
			slices.Sort(stale[t.Name])
			changed.Tables = append(changed.Tables, nt)
		}
	}
	for _, t := range changed.Tables {
		st.Chains += len(t.Chains)
		for _, c := range t.Chains {
			st.Rules += len(c.Rules)
		}
		st.Deleted += len(stale[t.Name])
	}
	for _, p := range changed.Patches {
		st.Chains++
		st.Rules += len(p.Del) + len(p.Ins)
	}
	st.Jumps = len(changed.Jumps)
	if st.Chains == 0 && st.Deleted == 0 && st.Jumps == 0 && len(changed.Patches) == 0 {
		return st, "", nil
	}
	return st, changed.Restore(stale), nil
}

// minPatch is the length from which a changed chain is patched in place
// (see ri.Patch) rather than replaced, when few of its rules changed.
const minPatch = 64

// patchOf returns the patch that turns chain o into n, or false when the
// chain is better replaced: it is short, many of its rules changed, a rule
// is in it twice (a rule is deleted by its text), or the rules kept are
// not in the same order on both sides (chains of one rule per service
// are in service order, so they are). Deleting the rules gone, then
// inserting each new rule at its place in n, in order, gives n.
func patchOf(table, chain string, o, n []string) (ri.Patch, bool) {
	p := ri.Patch{Table: table, Chain: chain}
	if len(o) < minPatch {
		return p, false
	}
	limit := max(8, len(o)/16)
	inOld := make(map[string]bool, len(o))
	for _, r := range o {
		if inOld[r] {
			return p, false
		}
		inOld[r] = true
	}
	inNew := make(map[string]bool, len(n))
	for i, r := range n {
		if inNew[r] {
			return p, false
		}
		inNew[r] = true
		if !inOld[r] {
			p.Ins = append(p.Ins, ri.Insert{At: i + 1, Rule: r})
		}
	}
	for _, r := range o {
		if !inNew[r] {
			p.Del = append(p.Del, r)
		}
	}
	if len(p.Del)+len(p.Ins) > limit {
		return p, false
	}
	// The rules kept, in order, must be the same on both sides.
	i, j := 0, 0
	for {
		for i < len(o) && !inNew[o[i]] {
			i++
		}
		for j < len(n) && !inOld[n[j]] {
			j++
		}
		if i == len(o) || j == len(n) {
			return p, i == len(o) && j == len(n)
		}
		if o[i] != n[j] {
			return p, false
		}
		i, j = i+1, j+1
	}
}

func chainsOf(r *ri.Ruleset, table string) []*ri.Chain {
	for _, t := range r.Tables {
		if t.Name == table {
			return t.Chains
		}
	}
	return nil
}

// restoreInput runs `iptables-restore --noflush` with input. Its error
// quotes the input line the tool complained about.
func (w *Writer) restoreInput(input string) error {
	_, err := w.run(input, w.restore, w.waitArgs("--noflush")...)
	if err != nil {
		var stderr string
		var ce *CommandError
		if errors.As(err, &ce) {
			stderr = ce.Stderr
		}
		return fmt.Errorf("%w%s", err, failedLine(input, stderr))
	}
	return nil
}

// failedLine quotes the input line iptables-restore complained about
// ("line N failed", "Error occurred at line: N"), which names the chain and
// so the service.
func failedLine(input, stderr string) string {
	var n int
	if i := strings.LastIndex(stderr, "line"); i >= 0 {
		rest := strings.TrimLeft(stderr[i+len("line"):], ": ")
		fmt.Sscanf(rest, "%d", &n)
	}
	lines := strings.Split(input, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return fmt.Sprintf(" (input line %d: %s)", n, lines[n-1])
}

// Cleanup removes rulegen's jump rules and every RG- chain of this family,
// leaving all other rules alone. The jumps are deleted first, one by one
// with go-iptables (every copy: the dry-run text loaded twice by hand
// inserts each twice), then the chains with one iptables-restore for both
// tables (each committed on its own). When a jump cannot be deleted the
// chains are left (a chain still jumped to cannot be deleted) and the
// error says which.
func (w *Writer) Cleanup() error {
	w.applied = nil
	var errs []error
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		s, err := w.list(table)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, j := range ri.Jumps() {
			if j.Table == table && slices.Contains(s.chains, j.Target()) {
				if _, err := w.deleteJump(j); err != nil {
					errs = append(errs, err)
				}
			}
		}
		var ours []string
		for _, c := range s.chains {
			if strings.HasPrefix(c, ri.ChainPrefix) {
				ours = append(ours, c)
			}
		}
		if len(ours) == 0 {
			continue
		}
		b.WriteString("*" + table + "\n")
		for _, c := range ours {
			b.WriteString(":" + c + " - [0:0]\n") // flushes it
		}
		for _, c := range ours {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() > 0 && len(errs) == 0 {
		if err := w.restoreInput(b.String()); err != nil {
			errs = append(errs, err)
		}
	}
	if w.mode == NFT && len(errs) == 0 {
		errs = append(errs, pruneBuiltins(w.fam))
	}
	return errors.Join(errs...)
}

// pruneBuiltins undoes what iptables-nft did on rulegen's behalf: adding a
// jump makes it create the built-in chain (and its table) as an nftables base
// chain. A built-in chain rulegen jumped from that is now empty with policy
// accept has no effect on any packet; it is deleted, and so is its table if
// nothing is left in it (iptables-nft recreates both on demand).
func pruneBuiltins(fam rules.Family) error {
	c, err := gnft.New()
	if err != nil {
		return err
	}
	tf := gnft.TableFamilyIPv4
	if fam == rules.IPv6 {
		tf = gnft.TableFamilyIPv6
	}
	chains, err := c.ListChainsOfTableFamily(tf)
	if err != nil {
		return fmt.Errorf("listing nftables chains: %w", err)
	}
	ours := map[string]bool{}
	for _, j := range ri.Jumps() {
		ours[j.Table+"/"+j.Chain] = true
	}
	left := map[string]int{}
	for _, ch := range chains {
		if ch.Table.Name != "nat" && ch.Table.Name != "filter" {
			continue
		}
		left[ch.Table.Name]++
		if !ours[ch.Table.Name+"/"+ch.Name] || ch.Policy == nil || *ch.Policy != gnft.ChainPolicyAccept {
			continue
		}
		rs, err := c.GetRules(ch.Table, ch)
		if err != nil || len(rs) > 0 {
			continue
		}
		c.DelChain(ch)
		left[ch.Table.Name]--
	}
	for name, n := range left {
		if n == 0 {
			c.DelTable(&gnft.Table{Name: name, Family: tf})
		}
	}
	return c.Flush()
}
