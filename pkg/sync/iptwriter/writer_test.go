package iptwriter

import (
	"strings"
	"testing"

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
