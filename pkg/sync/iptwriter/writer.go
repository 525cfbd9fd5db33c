// Package iptwriter writes rulegen's RG- chains with one
// `iptables-restore --noflush --wait` per family (nat and filter in one
// input, each table committed atomically), and keeps the few jump rules in
// built-in chains with github.com/coreos/go-iptables.
//
// A full update rewrites every RG- chain and deletes RG- chains the kernel
// has that the ruleset does not; an incremental one rewrites only the chains
// whose rules changed and deletes the chains that went away. After a failure
// the writer forgets what it wrote, so the next update is full.
package iptwriter

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
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
	Deleted       int
}

// Writer writes one family's RG- chains. It is not safe for concurrent use.
type Writer struct {
	fam     rules.Family
	mode    Mode
	cmd     string // iptables binary
	save    string // iptables-save binary
	restore string // iptables-restore binary
	ipt     *iptables.IPTables
	applied *ri.Ruleset
}

func binaries(fam rules.Family, m Mode) (cmd, save, restore string) {
	base := "iptables"
	if fam == rules.IPv6 {
		base = "ip6tables"
	}
	if m == Auto {
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
		out, err := exec.Command(save).Output()
		if err != nil {
			return -1
		}
		return bytes.Count(out, []byte("\n-A "))
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

// New returns a writer for one family in the caller's network namespace.
func New(fam rules.Family, mode Mode) (*Writer, error) {
	if mode == Auto || mode == "" {
		var err error
		if mode, err = Detect(fam); err != nil {
			return nil, err
		}
	}
	cmd, save, restore := binaries(fam, mode)
	for _, b := range []string{cmd, save, restore} {
		if lookPath(b) != nil {
			return nil, notInstalled(fam)
		}
	}
	path, _ := exec.LookPath(cmd)
	proto := iptables.ProtocolIPv4
	if fam == rules.IPv6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(path), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("iptables %s: %w", fam, err)
	}
	return &Writer{fam: fam, mode: mode, cmd: path, save: save, restore: restore, ipt: ipt}, nil
}

// Intact checks, cheaply, that the jump into rulegen's chains is still in
// place and that RG-SERVICES still has its rules: false when the rules were
// flushed or deleted by hand.
func (w *Writer) Intact() bool {
	if w.applied == nil {
		return true
	}
	j := ri.Jumps()[0]
	if ok, err := w.ipt.Exists(j.Table, j.Chain, j.Args...); err != nil || !ok {
		return false
	}
	for _, c := range chainsOf(w.applied, "nat") {
		if c.Name == ri.ChainServices && len(c.Rules) > 0 {
			// Its first rule is still there (listing the whole chain would
			// cost a rule per service on every sync).
			out, err := exec.Command(w.cmd, "-w", "-t", "nat", "-S", ri.ChainServices, "1").Output()
			return err == nil && len(bytes.TrimSpace(out)) > 0
		}
	}
	return true
}

// Mode returns the flavour this writer uses.
func (w *Writer) Mode() Mode { return w.mode }

// Invalidate makes the next update full.
func (w *Writer) Invalidate() { w.applied = nil }

// Apply writes r (which must be of the writer's family).
func (w *Writer) Apply(r *ri.Ruleset) (Stats, error) {
	st, err := w.apply(r)
	if err != nil {
		w.applied = nil
		return st, err
	}
	w.applied = r
	return st, nil
}

func (w *Writer) apply(r *ri.Ruleset) (Stats, error) {
	if r.Family != w.fam {
		return Stats{}, fmt.Errorf("iptables writer for %s given a %s ruleset", w.fam, r.Family)
	}
	for _, t := range r.Tables {
		for _, c := range t.Chains {
			if len(c.Name) > ri.MaxChainName {
				return Stats{}, fmt.Errorf("chain %s: name longer than %d characters", c.Name, ri.MaxChainName)
			}
		}
	}
	st := Stats{Full: w.applied == nil}
	stale := map[string][]string{}
	var changed *ri.Ruleset
	if st.Full {
		for _, t := range r.Tables {
			existing, err := w.ipt.ListChains(t.Name)
			if err != nil {
				return st, fmt.Errorf("listing %s chains of table %s: %w", w.fam, t.Name, err)
			}
			want := r.ChainNames(t.Name)
			for _, c := range existing {
				if strings.HasPrefix(c, ri.ChainPrefix) && !slices.Contains(want, c) {
					stale[t.Name] = append(stale[t.Name], c)
				}
			}
		}
		changed = r
	} else {
		changed = &ri.Ruleset{Family: r.Family}
		for _, t := range r.Tables {
			old := map[string][]string{}
			for _, c := range chainsOf(w.applied, t.Name) {
				old[c.Name] = c.Rules
			}
			nt := &ri.Table{Name: t.Name}
			for _, c := range t.Chains {
				if o, ok := old[c.Name]; !ok || !slices.Equal(o, c.Rules) {
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
	if st.Chains > 0 || st.Deleted > 0 {
		if err := w.run(changed.Restore(stale)); err != nil {
			return st, err
		}
	}
	if st.Full {
		if err := w.ensureJumps(); err != nil {
			return st, err
		}
	}
	return st, nil
}

func chainsOf(r *ri.Ruleset, table string) []*ri.Chain {
	for _, t := range r.Tables {
		if t.Name == table {
			return t.Chains
		}
	}
	return nil
}

func (w *Writer) run(input string) error {
	cmd := exec.Command(w.restore, "--noflush", "--wait")
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s --noflush: %w: %s%s", w.restore, err, strings.TrimSpace(stderr.String()), failedLine(input, stderr.String()))
	}
	return nil
}

// failedLine quotes the input line iptables-restore complained about
// ("line N failed"), which names the chain and so the service.
func failedLine(input, stderr string) string {
	var n int
	if i := strings.Index(stderr, "line "); i >= 0 {
		fmt.Sscanf(stderr[i:], "line %d", &n)
	}
	lines := strings.Split(input, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return fmt.Sprintf(" (input line %d: %s)", n, lines[n-1])
}

// ensureJumps puts the jumps from built-in chains to rulegen's chains first
// in their chains, unless they are there already.
func (w *Writer) ensureJumps() error {
	for _, j := range ri.Jumps() {
		ok, err := w.ipt.Exists(j.Table, j.Chain, j.Args...)
		if err != nil {
			return fmt.Errorf("checking jump %s/%s: %w", j.Table, j.Chain, err)
		}
		if !ok {
			if err := w.ipt.Insert(j.Table, j.Chain, 1, j.Args...); err != nil {
				return fmt.Errorf("adding jump %s/%s -> rulegen: %w", j.Table, j.Chain, err)
			}
		}
	}
	return nil
}

// Cleanup removes rulegen's jump rules and every RG- chain, leaving all
// other rules alone.
func (w *Writer) Cleanup() error {
	w.applied = nil
	var errs []error
	for _, j := range ri.Jumps() {
		// A jump to a chain that does not exist cannot exist either (and
		// iptables cannot even check for it).
		if ok, err := w.ipt.ChainExists(j.Table, j.Args[len(j.Args)-1]); err == nil && !ok {
			continue
		}
		if err := w.ipt.DeleteIfExists(j.Table, j.Chain, j.Args...); err != nil {
			errs = append(errs, fmt.Errorf("removing jump %s/%s: %w", j.Table, j.Chain, err))
		}
	}
	stale := map[string][]string{}
	empty := &ri.Ruleset{Family: w.fam}
	for _, table := range []string{"nat", "filter"} {
		chains, err := w.ipt.ListChains(table)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range chains {
			if strings.HasPrefix(c, ri.ChainPrefix) {
				stale[table] = append(stale[table], c)
			}
		}
		empty.Tables = append(empty.Tables, &ri.Table{Name: table})
	}
	if len(stale["nat"])+len(stale["filter"]) > 0 {
		if err := w.run(empty.Restore(stale)); err != nil {
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
