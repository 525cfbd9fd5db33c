package iptwriter

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/test/netnstest"
)

func ruleset(n, e int) *ri.Ruleset {
	st, cfg := rulestest.Scale(n, e)
	return ri.Render(rules.NewPlan(st, cfg, rules.IPv4))
}

// TestWriter applies, updates incrementally, survives a refused restore with
// the previous rules intact, and recovers with a full update — in a scratch
// namespace, for both iptables flavours.
func TestWriter(t *testing.T) {
	netnstest.Require(t, "iptables-nft-restore", "iptables-legacy-restore")
	for _, mode := range []Mode{NFT, Legacy} {
		t.Run(string(mode), func(t *testing.T) {
			ns := netnstest.New(t, "ipt")
			save := func() string {
				out := ns.MustRun(nil, "iptables-"+string(mode)+"-save")
				var keep []string
				for _, l := range strings.Split(out, "\n") {
					if !strings.HasPrefix(l, "#") {
						keep = append(keep, l)
					}
				}
				return strings.Join(keep, "\n")
			}
			var w *Writer
			do := func(f func() error) error { return ns.Do(f) }
			if err := do(func() (err error) { w, err = New(rules.IPv4, mode); return }); err != nil {
				t.Fatal(err)
			}
			a := ruleset(5, 3)
			var st Stats
			if err := do(func() (err error) { st, err = w.Apply(a); return }); err != nil {
				t.Fatal(err)
			}
			if !st.Full || !strings.Contains(save(), "-A PREROUTING -m comment --comment \"rulegen service portals\" -j RG-SERVICES") {
				t.Fatalf("first apply: %+v\n%s", st, save())
			}
			// One endpoint of one service gone: only that service's chain is
			// rewritten.
			st2, cfg := rulestest.Scale(5, 3)
			rulestest.DropEndpoint(st2, 1)
			b := ri.Render(rules.NewPlan(st2, cfg, rules.IPv4))
			if err := do(func() (err error) { st, err = w.Apply(b); return }); err != nil {
				t.Fatal(err)
			}
			if st.Full || st.Deleted != 0 || st.Chains != 1 {
				t.Errorf("incremental update, one endpoint gone: %+v", st)
			}
			// One service gone (svc-4, a NodePort): its two chains are deleted.
			if err := do(func() (err error) { st, err = w.Apply(ruleset(4, 3)); return }); err != nil {
				t.Fatal(err)
			}
			if st.Full || st.Deleted != 2 {
				t.Errorf("incremental update, one service gone: %+v", st)
			}
			before := save()
			if strings.Count(before, ":RG-SVC-") != 4 || strings.Count(before, "-j DNAT") != 12 {
				t.Errorf("want 4 service chains and 12 DNAT rules after the update:\n%s", before)
			}
			bad := ruleset(6, 2)
			bad.Tables[0].Chains[0].Rules = append(bad.Tables[0].Chains[0].Rules, "-j RG-NO-SUCH-CHAIN")
			err := do(func() (err error) { _, err = w.Apply(bad); return })
			if err == nil || !strings.Contains(err.Error(), "RG-NO-SUCH-CHAIN") {
				t.Errorf("refused restore: want an error quoting the bad line, got %v", err)
			}
			if after := save(); after != before {
				t.Errorf("a refused restore changed the rules")
			}
			c := ruleset(6, 2)
			if err := do(func() (err error) { st, err = w.Apply(c); return }); err != nil {
				t.Fatal(err)
			}
			if !st.Full {
				t.Error("the update after a failure was not a full one")
			}
			if got := strings.Count(save(), "-j DNAT"); got != 12 {
				t.Errorf("want 12 DNAT rules, got %d", got)
			}
			if err := do(w.Cleanup); err != nil {
				t.Fatal(err)
			}
			if s := save(); strings.Contains(s, "RG-") {
				t.Errorf("cleanup left rules:\n%s", s)
			}
		})
	}
}

// TestDryRunTextIsWhatIsWritten: the restore text the dry run prints, loaded
// by hand into an empty namespace, gives exactly the rules a first full
// update writes; a full update over them adds no second jump.
func TestDryRunTextIsWhatIsWritten(t *testing.T) {
	netnstest.Require(t, "iptables-nft-restore", "iptables-legacy-restore")
	for _, mode := range []Mode{NFT, Legacy} {
		t.Run(string(mode), func(t *testing.T) {
			r := ruleset(4, 2)
			loaded, written := netnstest.New(t, "dry"), netnstest.New(t, "wr")
			loaded.MustRun([]byte(r.Restore(nil)), "iptables-"+string(mode)+"-restore", "--noflush")
			var w *Writer
			if err := written.Do(func() (err error) {
				if w, err = New(rules.IPv4, mode); err == nil {
					_, err = w.Apply(r)
				}
				return
			}); err != nil {
				t.Fatal(err)
			}
			save := func(ns *netnstest.NS) string { return stripSave(ns.MustRun(nil, "iptables-"+string(mode)+"-save")) }
			if got, want := save(loaded), save(written); got != want {
				t.Fatalf("the dry run loaded by hand:\n%s\ndiffers from what the writer wrote:\n%s", got, want)
			}
			before := save(written)
			for _, ns := range []*netnstest.NS{written, loaded} {
				var st Stats
				if err := ns.Do(func() (err error) {
					w, err := New(rules.IPv4, mode) // a restarted daemon: full update
					if err == nil {
						st, err = w.Apply(r)
					}
					return
				}); err != nil {
					t.Fatal(err)
				}
				if !st.Full || st.Jumps != 0 {
					t.Errorf("%s: full update over the same rules: %+v, want no jump written", ns.Name, st)
				}
				if got := save(ns); got != before {
					t.Errorf("%s: a second full update changed the rules:\n%s", ns.Name, got)
				}
			}
			// Loaded twice by hand, as the note in the text warns: every
			// jump is there twice, and Cleanup still removes everything.
			loaded.MustRun([]byte(r.Restore(nil)), "iptables-"+string(mode)+"-restore", "--noflush")
			if got := save(loaded); strings.Count(got, "-j RG-SERVICES") != 2*strings.Count(before, "-j RG-SERVICES") {
				t.Fatalf("loading twice did not duplicate the jumps:\n%s", got)
			}
			if err := loaded.Do(func() error {
				w, err := New(rules.IPv4, mode)
				if err == nil {
					err = w.Cleanup()
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if got := save(loaded); strings.Contains(got, "RG-") || strings.Contains(got, "rulegen") {
				t.Errorf("cleanup of twice-loaded rules left:\n%s", got)
			}
		})
	}
}

// TestHeldXtablesLock: with the xtables lock held by someone else, an
// update fails after the lock wait (or is killed after the timeout, when
// that comes first) naming the command, instead of hanging; once the lock is
// free the next update is a full one. On an empty node the first command to
// meet the lock is iptables-restore (the Runner's, which can be killed); on
// a node with rulegen's chains it is the jump check (go-iptables', which
// cannot be, so its lock wait is the smaller bound). The lock file is the
// test's own (XTABLES_LOCKFILE, which go-iptables passes on with the rest of
// the environment), never the node's /run/xtables.lock; only
// iptables-legacy takes the lock.
func TestHeldXtablesLock(t *testing.T) {
	netnstest.Require(t, "iptables-legacy-restore")
	lock := filepath.Join(t.TempDir(), "xtables.lock")
	t.Setenv("XTABLES_LOCKFILE", lock)
	empty, loaded := netnstest.New(t, "lock"), netnstest.New(t, "lockj")
	loaded.MustRun([]byte(ruleset(2, 1).Restore(nil)), "iptables-legacy-restore", "--noflush")
	f, err := os.Create(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ns       *netnstest.NS
		lockWait time.Duration
		timeout  time.Duration
		want     []string
	}{
		{name: "restore, lock wait first", ns: empty, lockWait: time.Second, timeout: 20 * time.Second,
			want: []string{"iptables-legacy-restore", "holding the xtables lock"}},
		{name: "restore, timeout first", ns: empty, lockWait: 20 * time.Second, timeout: 500 * time.Millisecond,
			want: []string{"iptables-legacy-restore", "killed after 500ms"}},
		{name: "jump check, lock wait first", ns: loaded, lockWait: time.Second, timeout: 20 * time.Second,
			want: []string{"checking ipv4 jump nat/PREROUTING", "iptables-legacy", "holding the xtables lock"}},
		{name: "jump check, timeout first", ns: loaded, lockWait: 20 * time.Second, timeout: 500 * time.Millisecond,
			want: []string{"checking ipv4 jump nat/PREROUTING", "iptables-legacy", "holding the xtables lock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w *Writer
			var err error
			start := time.Now()
			tc.ns.Do(func() error {
				if w, err = NewWithOptions(rules.IPv4, Options{Mode: Legacy, LockWait: tc.lockWait, Timeout: tc.timeout}); err == nil {
					_, err = w.Apply(ruleset(2, 1))
				}
				return nil
			})
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("want an error saying %q, got %v", want, err)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("gave up after %v", d)
			}
		})
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*netnstest.NS{empty, loaded} {
		var st Stats
		if err := ns.Do(func() error {
			w, err := NewWithOptions(rules.IPv4, Options{Mode: Legacy, LockWait: time.Second, Timeout: 20 * time.Second})
			if err == nil {
				st, err = w.Apply(ruleset(2, 1))
			}
			return err
		}); err != nil || !st.Full {
			t.Errorf("%s, with the lock free: %+v, %v", ns.Name, st, err)
		}
	}
}

// stripSave drops iptables-save's comment lines and chain counters.
func stripSave(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.LastIndex(l, " ["); strings.HasPrefix(l, ":") && i > 0 {
			l = l[:i]
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// TestPatchLongChains: with many services, adding, deleting or changing
// one patches the chains of one rule per service (RG-SERVICES,
// RG-NODEPORTS, RG-FILTER, …) in place instead of writing them again, and
// afterwards every RG- chain the kernel holds is exactly the rendered one,
// rule for rule and in order (both iptables flavours).
func TestPatchLongChains(t *testing.T) {
	netnstest.Require(t, "iptables-nft-restore", "iptables-legacy-restore")
	for _, mode := range []Mode{NFT, Legacy} {
		t.Run(string(mode), func(t *testing.T) {
			ns := netnstest.New(t, "ipt-patch")
			ref := netnstest.New(t, "ipt-ref")
			var w *Writer
			if err := ns.Do(func() (err error) { w, err = New(rules.IPv4, mode); return }); err != nil {
				t.Fatal(err)
			}
			const n = 300
			st, cfg := rulestest.Scale(n, 2)
			// chains returns the rules of every RG- chain of a table as
			// iptables-save lists them, per chain, in order.
			chains := func(ns *netnstest.NS, table string) map[string][]string {
				out := ns.MustRun(nil, "iptables-"+string(mode)+"-save", "-t", table)
				got := map[string][]string{}
				for _, l := range strings.Split(out, "\n") {
					if rest, ok := strings.CutPrefix(l, "-A RG-"); ok {
						chain, rule, _ := strings.Cut(rest, " ")
						got["RG-"+chain] = append(got["RG-"+chain], rule)
					}
				}
				return got
			}
			check := func(what string, wantFull bool, maxRules int) {
				t.Helper()
				r := ri.Render(rules.NewPlan(st, cfg, rules.IPv4))
				var s Stats
				if err := ns.Do(func() (err error) { s, err = w.Apply(r); return }); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if s.Full != wantFull || (!wantFull && s.Rules > maxRules) {
					t.Errorf("%s: %+v, want full=%v and at most %d rules sent", what, s, wantFull, maxRules)
				}
				// The same ruleset loaded whole (iptables-restore flushes
				// the tables it is given) is what the kernel must hold.
				ref.MustRun([]byte(r.Restore(nil)), "iptables-"+string(mode)+"-restore")
				for _, tb := range r.Tables {
					want, got := chains(ref, tb.Name), chains(ns, tb.Name)
					for _, c := range tb.Chains {
						if !slices.Equal(got[c.Name], want[c.Name]) {
							t.Errorf("%s: %s chain %s in the kernel:\n%s\nloaded whole:\n%s", what, tb.Name, c.Name,
								strings.Join(got[c.Name], "\n"), strings.Join(want[c.Name], "\n"))
						}
					}
					if len(got) != len(want) {
						t.Errorf("%s: %s: %d RG- chains with rules in the kernel, %d loaded whole", what, tb.Name, len(got), len(want))
					}
				}
			}
			check("initial", true, 0)
			rulestest.Restore(st, n, 2) // a new NodePort service (n is a multiple of 4)
			check("a service added", false, 12)
			rulestest.Delete(st, n/2)
			check("a service deleted", false, 12)
			rulestest.Delete(st, 7)
			rulestest.Delete(st, n-1)
			check("two services deleted", false, 16)
			rulestest.DropEndpoint(st, 9)
			check("an endpoint gone", false, 12)
			// Several inserts and deletes in the same chains in one
			// commit: two services back, one more gone, one new.
			rulestest.Restore(st, 7, 2)
			rulestest.Restore(st, n/2, 2)
			rulestest.Delete(st, 100)
			rulestest.Restore(st, n+4, 2)
			check("two services back, one gone, one new", false, 40)
		})
	}
}
