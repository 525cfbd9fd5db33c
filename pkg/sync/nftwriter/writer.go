// Package nftwriter writes rulegen's nftables table to the kernel through
// netlink (github.com/google/nftables), each update as one transaction.
//
// A full update deletes and recreates the table inside the transaction, so
// packets see either the old table or the new one, never none. An
// incremental update sends only the difference from the table this writer
// last wrote: new and changed chains, set and map elements added or removed,
// and stale chains deleted after every reference to them is gone. After any
// failure the writer forgets what it wrote, so the next update is full.
package nftwriter

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	gnft "github.com/google/nftables"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// MaxNameLen is the longest chain or set name the kernel accepts
// (NFT_NAME_MAXLEN - 1).
const MaxNameLen = 255

// Stats describes one update.
type Stats struct {
	Full bool
	// Chains and Rules count the chains (re)written and rules sent;
	// Elements the set and map elements added or deleted.
	Chains, Rules, Elements int
}

// Writer writes rulegen's table of each family. It is not safe for
// concurrent use.
type Writer struct {
	netns   int
	applied map[rules.Family]*rn.Ruleset
}

// New returns a writer for the network namespace given by the file
// descriptor netnsFd, or for the caller's namespace when netnsFd is 0.
func New(netnsFd int) *Writer {
	return &Writer{netns: netnsFd, applied: map[rules.Family]*rn.Ruleset{}}
}

// conn is a plain google/nftables connection, for the small requests
// (the canary, deleting a table); updates go through a sender (send.go).
func (w *Writer) conn() (*gnft.Conn, error) {
	var opts []gnft.ConnOption
	if w.netns != 0 {
		opts = append(opts, gnft.WithNetNSFd(w.netns))
	}
	return gnft.New(opts...)
}

// Invalidate makes the next update of every family a full one (after a
// failure elsewhere, or when the table was changed behind rulegen's back).
func (w *Writer) Invalidate() { clear(w.applied) }

// Intact checks, cheaply, that every table this writer wrote still exists
// with its dispatch chain holding the rules written there: a table deleted
// or flushed by hand fails the check. One small netlink dump per family.
func (w *Writer) Intact() bool {
	if len(w.applied) == 0 {
		return true
	}
	c, err := w.conn()
	if err != nil {
		return false
	}
	for f, r := range w.applied {
		t := &gnft.Table{Name: rn.TableName, Family: family(f)}
		rs, err := c.GetRules(t, &gnft.Chain{Name: rn.ChainServices, Table: t})
		if err != nil {
			return false
		}
		for _, ch := range r.Chains {
			if ch.Name == rn.ChainServices && len(ch.Rules) != len(rs) {
				return false
			}
		}
	}
	return true
}

// Applied returns the ruleset last written for a family, or nil.
func (w *Writer) Applied(f rules.Family) *rn.Ruleset { return w.applied[f] }

// Validate checks limits the kernel would refuse, naming the object, so that
// a bad name is reported before anything is sent.
func Validate(r *rn.Ruleset) error {
	for _, s := range r.Sets {
		if len(s.Name) > MaxNameLen {
			return fmt.Errorf("set %q: name is %d bytes, the kernel allows %d", s.Name, len(s.Name), MaxNameLen)
		}
	}
	for _, c := range r.Chains {
		if len(c.Name) > MaxNameLen {
			return fmt.Errorf("chain %q: name is %d bytes, the kernel allows %d", c.Name, len(c.Name), MaxNameLen)
		}
	}
	return nil
}

// Apply writes r. It is incremental when this writer wrote the family's
// table before and nothing failed since; otherwise it replaces the table.
// On error nothing changed in the kernel (the transaction is atomic) and the
// next Apply is full.
func (w *Writer) Apply(r *rn.Ruleset) (Stats, error) {
	if err := Validate(r); err != nil {
		delete(w.applied, r.Family)
		return Stats{}, err
	}
	prev := w.applied[r.Family]
	// A ruleset whose Delta starts from the one written last is written
	// by its Delta; otherwise both element lists are compared, which
	// needs both listed (a ruleset of a Renderer that has moved on since
	// cannot be: then the table is replaced).
	byDelta := prev != nil && r.Delta != nil && r.Delta.Base == prev
	full := prev == nil || !sameBase(prev, r) || !sameSetTypes(prev, r) || (!byDelta && (!prev.Materialized() || !r.Materialized()))
	size := 64 << 10
	if full {
		size = estimate(r)
	}
	snd := newSender(w.netns, size)
	c, err := snd.conn()
	if err != nil {
		delete(w.applied, r.Family)
		return Stats{}, fmt.Errorf("opening netlink: %w", err)
	}
	b := &batch{conn: c, snd: snd, read: w.conn, fam: r.Family, table: &gnft.Table{Name: rn.TableName, Family: family(r.Family)}, sets: map[string]*gnft.Set{}}
	switch {
	case full:
		b.full(r)
	case byDelta:
		b.diff(prev, r, r.Delta)
	default:
		b.diff(prev, r, nil)
	}
	if b.err == nil {
		b.err = c.Flush() // the last chunk
	}
	if b.err == nil {
		b.err = snd.commit()
	}
	if b.err != nil {
		delete(w.applied, r.Family)
		return b.stats, explain(b.err, r.Family)
	}
	w.applied[r.Family] = r
	return b.stats, nil
}

// estimate is roughly how many bytes of netlink messages a full write of r
// takes (measured: about 420 per rule of rulegen's and 40 per element),
// to size the sender's buffer once.
func estimate(r *rn.Ruleset) int {
	n := 4096
	for _, c := range r.Chains {
		n += 200 + 420*len(c.Rules)
	}
	return n + 200*len(r.Sets) + 40*r.Elements()
}

// Delete removes rulegen's table of a family, if it exists.
func (w *Writer) Delete(f rules.Family) error {
	delete(w.applied, f)
	c, err := w.conn()
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	t := &gnft.Table{Name: rn.TableName, Family: family(f)}
	c.AddTable(t) // so that the delete cannot fail for a missing table
	c.DelTable(t)
	return explain(c.Flush(), f)
}

// explain adds what the kernel refused and the likely cause.
func explain(err error, f rules.Family) error {
	if err == nil {
		return nil
	}
	var hint string
	switch {
	case errors.Is(err, syscall.EPERM):
		hint = " (needs CAP_NET_ADMIN)"
	case errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EAFNOSUPPORT):
		hint = " (the kernel has no nf_tables support: load the nf_tables module or use --backend iptables)"
	case errors.Is(err, syscall.ENOENT):
		hint = " (a rule names a chain, set or kernel module that does not exist)"
	}
	return fmt.Errorf("nftables %s table %s: kernel refused the transaction%s: %w", f, rn.TableName, hint, err)
}

// sameBase reports whether the base chains are identical, the condition for
// an incremental update.
func sameBase(a, b *rn.Ruleset) bool {
	base := func(r *rn.Ruleset) []string {
		var out []string
		for _, c := range r.Chains {
			if c.Hook != nil {
				out = append(out, fmt.Sprintf("%s %+v", c.Name, *c.Hook))
			}
		}
		return out
	}
	return slices.Equal(base(a), base(b))
}

// sameSetTypes reports whether every set on both sides kept its type (a
// changed affinity timeout, say, needs the set recreated: a full update).
func sameSetTypes(a, b *rn.Ruleset) bool {
	old := map[string]*rn.Set{}
	for _, s := range a.Sets {
		old[s.Name] = s
	}
	for _, s := range b.Sets {
		if o, ok := old[s.Name]; ok && (o.Key != s.Key || o.IsMap != s.IsMap || o.Timeout != s.Timeout) {
			return false
		}
	}
	return true
}

type batch struct {
	// conn hands every flush to a sender, which keeps the bytes and sends
	// them all in one batch at the end (see send.go).
	conn *gnft.Conn
	snd  *sender
	// read opens a connection that talks to the kernel at once (for
	// reading rule handles), unlike conn.
	read    func() (*gnft.Conn, error)
	pending int // rules google/nftables holds (since the last flush)
	fam     rules.Family
	table   *gnft.Table
	sets    map[string]*gnft.Set
	stats   Stats
	err     error
}

func (b *batch) fail(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

func (b *batch) chainObj(c *rn.Chain) *gnft.Chain {
	ch := &gnft.Chain{Name: c.Name, Table: b.table}
	if c.Hook != nil {
		accept := gnft.ChainPolicyAccept
		prio := gnft.ChainPriority(c.Hook.Priority)
		ch.Hooknum = hookOf(c.Hook.Hook)
		ch.Priority = &prio
		ch.Type = gnft.ChainType(c.Hook.Type)
		ch.Policy = &accept
	}
	return ch
}

// addSet declares a set, empty: map elements name chains, so they are added
// (setElements) once every chain exists.
func (b *batch) addSet(s *rn.Set) {
	gs := newSet(b.table, b.fam, s)
	if u := typeofUserData(b.fam, s.Key); u != nil {
		if b.snd.udata == nil {
			b.snd.udata = map[string][]byte{}
		}
		b.snd.udata[s.Name] = u
	}
	b.fail(b.conn.AddSet(gs, nil))
	b.sets[s.Name] = gs
}

// streamWindow is how many elements of one set a full write takes from
// the renderer's store at a time (a window per set is held meanwhile: a
// table with every endpoint count from 1 to 64 has a few hundred sets).
const streamWindow = 512

// flushChunk is how many rules google/nftables holds before the batch code
// hands them to the sender as bytes (the library's garbage for that many
// rules is a few megabytes).
const flushChunk = 2048

// flushSome hands what google/nftables holds to the sender once it is a
// chunk's worth: the transaction is unchanged (the sender sends everything
// at once), only the memory held meanwhile is smaller.
func (b *batch) flushSome() {
	if b.pending >= flushChunk && b.err == nil {
		b.fail(b.conn.Flush())
		b.pending = 0
	}
}

func (b *batch) addRules(c *rn.Chain, ch *gnft.Chain) {
	comp := &compiler{table: b.table, fam: b.fam, sets: b.sets}
	for _, r := range c.Rules {
		b.conn.AddRule(comp.rule(ch, r))
	}
	b.fail(comp.err)
	b.stats.Rules += len(c.Rules)
	b.stats.Chains++
	b.pending += len(c.Rules)
	b.flushSome()
}

// full replaces the table: create (so delete cannot fail), delete, create.
func (b *batch) full(r *rn.Ruleset) {
	b.stats.Full = true
	b.conn.AddTable(b.table)
	b.conn.DelTable(b.table)
	b.conn.AddTable(b.table)
	for _, s := range r.Sets {
		b.addSet(s)
	}
	chains := make([]*gnft.Chain, len(r.Chains))
	for i, c := range r.Chains { // every chain first: rules may jump forward
		chains[i] = b.conn.AddChain(b.chainObj(c))
	}
	// The elements streamed from the renderer's store (or the lists of a
	// listed ruleset), a window at a time, each marshaled into the
	// sender's buffer before the next is taken: the table's elements are
	// never all held at once but as bytes.
	byName := make(map[string]*rn.Set, len(r.Sets))
	for _, s := range r.Sets {
		byName[s.Name] = s
	}
	r.Stream(streamWindow, func(set string, els []rn.Element) {
		b.setElements(false, byName[set], els)
	})
	for i, c := range r.Chains {
		b.addRules(c, chains[i])
	}
}

// sameRules compares two chains' rules statement by statement (every
// statement type is a comparable value), without printing them.
func sameRules(a, b *rn.Chain) bool {
	return slices.EqualFunc(a.Rules, b.Rules, rn.SameRule)
}

// diff sends what changed from prev to next, ordered so that nothing is
// deleted while the transaction still references it. The elements that
// changed are delta's when it is set, else found by comparing the two
// element lists.
func (b *batch) diff(prev, next *rn.Ruleset, delta *rn.Delta) {
	f := next.Family
	oldSets := map[string]*rn.Set{}
	for _, s := range prev.Sets {
		oldSets[s.Name] = s
	}
	// Chains come grouped by service in service order, and the renderer
	// reuses the *Chain of every unchanged service: the runs at both ends
	// where the two lists hold the same pointers are unchanged, and only
	// the window between them needs comparing by name. One changed service
	// makes that window a handful of chains, whatever the table's size.
	prevWin, nextWin := changedWindow(prev.Chains, next.Chains)
	oldChains := make(map[string]*rn.Chain, len(prevWin))
	for _, c := range prevWin {
		oldChains[c.Name] = c
	}
	// 1. New sets (their elements come after the new chains).
	var created []*rn.Set
	newSets := map[string]bool{}
	for _, s := range next.Sets {
		newSets[s.Name] = true
		if _, ok := oldSets[s.Name]; !ok {
			b.addSet(s)
			created = append(created, s)
		} else {
			b.sets[s.Name] = newSet(b.table, f, s)
		}
	}
	// 2. New chains, empty, then 3. rules of new and changed chains.
	type todo struct {
		c  *rn.Chain
		ch *gnft.Chain
	}
	var write []todo
	newChains := make(map[string]bool, len(nextWin))
	for _, c := range nextWin {
		newChains[c.Name] = true
		if _, ok := oldChains[c.Name]; !ok {
			write = append(write, todo{c, b.conn.AddChain(b.chainObj(c))})
		}
	}
	// Every new chain exists before a patched rule may jump to it.
	for _, c := range nextWin {
		o, ok := oldChains[c.Name]
		switch {
		case !ok:
		case o != c && !sameRules(o, c): // a chain reused by the renderer is unchanged
			if b.patchRules(o, c) {
				continue
			}
			ch := b.chainObj(c)
			b.conn.FlushChain(ch)
			write = append(write, todo{c, ch})
		}
	}
	// The rules of new chains before the elements of new sets: a new
	// count's map is bound by its dnat rule while it is still empty (the
	// kernel checks every element of a map a rule binds; elements added
	// after are checked one by one as they come).
	for _, t := range write {
		b.addRules(t.c, t.ch)
	}
	for _, s := range created {
		els := s.Elements
		if delta != nil {
			els = nil
			if d := delta.Sets[s.Name]; d != nil {
				els = d.Add
			}
		}
		b.setElements(false, s, els)
	}
	// 4. Elements of sets that exist on both sides: deletions, then additions.
	for _, s := range next.Sets {
		o, ok := oldSets[s.Name]
		if !ok {
			continue
		}
		var del, add []rn.Element
		switch {
		case delta == nil:
			del, add = elementDiff(o, s)
		case delta.Sets[s.Name] != nil:
			del, add = delta.Sets[s.Name].Del, delta.Sets[s.Name].Add
		}
		b.setElements(true, s, del)
		b.setElements(false, s, add)
	}
	// 5. Stale chains: flush all, then delete all (they may jump to each other).
	var stale []*gnft.Chain
	for _, c := range prevWin {
		if !newChains[c.Name] {
			ch := b.chainObj(c)
			b.conn.FlushChain(ch)
			stale = append(stale, ch)
		}
	}
	for _, ch := range stale {
		b.conn.DelChain(ch)
	}
	// 6. Stale sets.
	for _, s := range prev.Sets {
		if !newSets[s.Name] {
			b.conn.DelSet(newSet(b.table, f, s))
		}
	}
}

// maxPatchRules bounds the chains patchRules edits rule by rule (its
// matching is quadratic in the number of rules).
const maxPatchRules = 512

// patchRules turns chain o into c by deleting and adding single rules, and
// reports whether it did (false: the caller rewrites the chain). Rewriting
// a chain adds back every rule it holds, and a rule that looks up a set
// or map binds it again, which for a map of endpoints makes the kernel
// check each of its elements; patching adds only the rules that changed
// (in the count tree: the lookups and gotos of a count that came or
// went). The rules' handles are read from the kernel (one small dump);
// when they do not match the chain this writer wrote, the chain is
// rewritten.
func (b *batch) patchRules(o, c *rn.Chain) bool {
	if o.Hook != nil || len(o.Rules) == 0 || len(o.Rules) > maxPatchRules || len(c.Rules) > maxPatchRules {
		return false
	}
	ch := b.chainObj(c)
	kernel, err := b.readRules(ch)
	if err != nil || len(kernel) != len(o.Rules) {
		return false
	}
	// keep[j] is the old rule that new rule j keeps, or -1: a longest
	// common subsequence of the two rule lists.
	n, m := len(o.Rules), len(c.Rules)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if rn.SameRule(o.Rules[i], c.Rules[j]) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	keep := make([]int, m)
	kept := make([]bool, n)
	for i, j := 0, 0; j < m; {
		switch {
		case i < n && rn.SameRule(o.Rules[i], c.Rules[j]):
			keep[j], kept[i] = i, true
			i, j = i+1, j+1
		case i < n && lcs[i+1][j] >= lcs[i][j+1]:
			i++
		default:
			keep[j] = -1
			j++
		}
	}
	for i, k := range kept {
		if !k {
			b.fail(b.conn.DelRule(&gnft.Rule{Table: b.table, Chain: ch, Handle: kernel[i].Handle}))
		}
	}
	// New rules go after the kept rule before them, or first in the
	// chain; added in reverse order, each lands before the one added
	// after it.
	comp := &compiler{table: b.table, fam: b.fam, sets: b.sets}
	added := 0
	for j := m - 1; j >= 0; j-- {
		if keep[j] >= 0 {
			continue
		}
		r := comp.rule(ch, c.Rules[j])
		prev := j - 1
		for prev >= 0 && keep[prev] < 0 {
			prev--
		}
		if prev < 0 {
			b.conn.InsertRule(r)
		} else {
			r.Position = kernel[keep[prev]].Handle
			b.conn.AddRule(r)
		}
		added++
	}
	b.fail(comp.err)
	b.stats.Rules += added
	b.stats.Chains++
	return true
}

// readRules reads a chain's rules (for their handles) from the kernel.
func (b *batch) readRules(ch *gnft.Chain) ([]*gnft.Rule, error) {
	c, err := b.read()
	if err != nil {
		return nil, err
	}
	return c.GetRules(b.table, ch)
}

// changedWindow trims the common prefix and suffix (same pointers) of two
// lists and returns what is left of each.
func changedWindow[T comparable](a, b []T) ([]T, []T) {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	j := 0
	for j < len(a)-i && j < len(b)-i && a[len(a)-1-j] == b[len(b)-1-j] {
		j++
	}
	return a[i : len(a)-j], b[i : len(b)-j]
}

// elementDiff returns the elements to delete from and add to a set so that
// old becomes next. A map element whose verdict changed is deleted and added.
// Elements are sorted the same way on both sides, so equal runs at both
// ends are skipped before anything is hashed.
func elementDiff(oldSet, nextSet *rn.Set) (del, add []rn.Element) {
	old, next := changedWindow(oldSet.Elements, nextSet.Elements)
	type val struct {
		i int
		v rn.Verdict
		t netip.AddrPort
	}
	// A range's key is its start and its last address.
	var buf []byte
	key := func(e *rn.Element) string {
		buf = appendElementKey(buf[:0], nextSet.Key, e)
		if nextSet.Key == rn.KeyAddrProtoPortSource {
			buf = appendLast(buf, e.Prefix)
		}
		return string(buf)
	}
	before := make(map[string]val, len(old))
	for i := range old {
		before[key(&old[i])] = val{i, old[i].Verdict, old[i].Target}
	}
	for i := range next {
		k := key(&next[i])
		o, ok := before[k]
		if ok && o.v == next[i].Verdict && o.t == next[i].Target {
			delete(before, k)
			continue
		}
		if ok {
			del = append(del, old[o.i])
			delete(before, k)
		}
		add = append(add, next[i])
	}
	for _, o := range before {
		del = append(del, old[o.i])
	}
	return del, add
}

// DeleteForeignTable deletes the nftables tables of that name in the ip and
// ip6 families, if they exist, in one transaction (for --cleanup-kube-proxy:
// kube-proxy's nftables mode keeps its rules in tables named "kube-proxy").
// It returns how many tables it deleted.
func DeleteForeignTable(name string) (int, error) {
	c, err := gnft.New()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range []gnft.TableFamily{gnft.TableFamilyIPv4, gnft.TableFamilyIPv6} {
		ts, err := c.ListTablesOfFamily(f)
		if err != nil {
			return 0, fmt.Errorf("listing nftables tables: %w", err)
		}
		for _, t := range ts {
			if t.Name == name {
				c.DelTable(t)
				n++
			}
		}
	}
	if n == 0 {
		return 0, nil
	}
	return n, c.Flush()
}
