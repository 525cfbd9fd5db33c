package nftwriter

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/test/netnstest"
)

func ruleset(n, e int) *rn.Ruleset {
	st, cfg := rulestest.Scale(n, e)
	return rn.Render(rules.NewPlan(st, cfg, rules.IPv4))
}

// TestRefusedTransactionKeepsPreviousRules: when the kernel refuses an
// update, the previous table stays exactly as it was, and the next update
// is a full one.
func TestRefusedTransactionKeepsPreviousRules(t *testing.T) {
	netnstest.Require(t, "nft")
	ns := netnstest.New(t, "refuse")
	w := New(ns.Fd())
	list := func() string { return ns.MustRun(nil, "nft", "list", "table", "ip", "rulegen") }

	good := ruleset(3, 2)
	if _, err := w.Apply(good); err != nil {
		t.Fatal(err)
	}
	before := list()

	// A chain that jumps to a chain that does not exist: the kernel says ENOENT.
	bad := ruleset(4, 2)
	bad.Chains = append(bad.Chains, &rn.Chain{Name: "broken", Rules: []rn.Rule{{rn.Verdict{Kind: rn.Jump, Chain: "no-such-chain"}}}})
	_, err := w.Apply(bad)
	if err == nil {
		t.Fatal("the kernel accepted a jump to a missing chain")
	}
	if !strings.Contains(err.Error(), "kernel refused") || !strings.Contains(err.Error(), `rule "broken"`) ||
		!strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("error does not say that the kernel refused the rule of chain broken, and why: %v", err)
	}
	if after := list(); after != before {
		t.Errorf("a refused transaction changed the table:\n%s", after)
	}

	// A name the kernel would refuse is caught before anything is sent, and
	// the error names it.
	long := ruleset(4, 2)
	long.Chains = append(long.Chains, &rn.Chain{Name: "service-" + strings.Repeat("x", 300)})
	if _, err := w.Apply(long); err == nil || !strings.Contains(err.Error(), "service-xxx") {
		t.Errorf("too long a name: got %v", err)
	}
	if after := list(); after != before {
		t.Errorf("a refused name changed the table")
	}

	next := ruleset(4, 2)
	st, err := w.Apply(next)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Full {
		t.Error("the update after a failure was not a full one")
	}
	check := netnstest.New(t, "refuse-check")
	check.MustRun([]byte(next.Script()), "nft", "-f", "-")
	if got, want := list(), check.MustRun(nil, "nft", "list", "table", "ip", "rulegen"); got != want {
		t.Errorf("after recovery the table differs from a full load")
	}
}
