package iptwriter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
)

// fakeRunner plays the iptables tools: iptables-save lists the chains in
// chains, iptables-restore accepts its input unless refuse is set, and
// `iptables -S` answers one rule. It records every call. (The jumps are a
// FakeJumps.)
type fakeRunner struct {
	mu     sync.Mutex
	chains map[string][]string // table -> chain names
	refuse string              // iptables-restore fails when its name contains this
	hang   bool                // every command runs until its context ends
	calls  []fakeCall
}

type fakeCall struct {
	name  string
	args  []string
	stdin string
	// deadline is how long the command was given.
	deadline time.Duration
}

var _ Runner = &fakeRunner{}

func (f *fakeRunner) Run(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fakeCall{name: name, args: args, stdin: stdin, deadline: -1}
	if dl, ok := ctx.Deadline(); ok {
		c.deadline = time.Until(dl)
	}
	f.calls = append(f.calls, c)
	cmdline := strings.Join(append([]string{name}, args...), " ")
	if f.hang {
		<-ctx.Done()
		return nil, &CommandError{Command: cmdline, Code: -1, Err: ctx.Err()}
	}
	switch {
	case strings.HasSuffix(name, "-save"):
		table := args[len(args)-1]
		var b strings.Builder
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range f.chains[table] {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		b.WriteString("COMMIT\n")
		return []byte(b.String()), nil
	case strings.HasSuffix(name, "-restore"):
		if f.refuse != "" && strings.Contains(name, f.refuse) {
			return nil, &CommandError{Command: cmdline, Code: 1, Err: errors.New("exit status 1"), Stderr: "Error occurred at line: 2"}
		}
		return nil, nil
	}
	return []byte("-A RG-SERVICES -j ACCEPT\n"), nil // iptables -S CHAIN 1
}

// restores returns the inputs of the iptables-restore calls of a binary.
func (f *fakeRunner) restores(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if c.name == name {
			out = append(out, c.stdin)
		}
	}
	return out
}

func builtins() map[string][]string {
	return map[string][]string{
		"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
		"filter": {"INPUT", "FORWARD", "OUTPUT"},
	}
}

// jumpsIn returns a FakeJumps holding copies of each jump whose
// "table/CHAIN" is not in except.
func jumpsIn(copies int, except ...string) *FakeJumps {
	f := &FakeJumps{}
	for _, j := range ri.Jumps() {
		if !slices.Contains(except, j.Table+"/"+j.Chain) {
			for range copies {
				f.Insert(j.Table, j.Chain, j.Args...)
			}
		}
	}
	return f
}

// TestFullUpdateInput: a full update sends the dry-run text, less the jumps
// already in place, plus the deletion of stale RG- chains.
func TestFullUpdateInput(t *testing.T) {
	r := ruleset(3, 2)
	withRG := builtins()
	withRG["nat"] = append(withRG["nat"], r.ChainNames("nat")...)
	withRG["filter"] = append(withRG["filter"], r.ChainNames("filter")...)
	stale := builtins()
	stale["nat"] = append(slices.Clone(withRG["nat"]), "RG-SVC-GONE")
	stale["filter"] = withRG["filter"]
	for _, tc := range []struct {
		name    string
		chains  map[string][]string
		present *FakeJumps // the jumps in place
		want    func(string) bool
		jumps   int
	}{
		{name: "empty node: exactly the dry-run text", chains: builtins(), present: jumpsIn(0), jumps: len(ri.Jumps()),
			want: func(in string) bool { return in == r.Restore(nil) }},
		{name: "every jump in place: none written", chains: withRG, present: jumpsIn(1), jumps: 0,
			want: func(in string) bool {
				return in == (&ri.Ruleset{Family: r.Family, Tables: r.Tables}).Restore(nil)
			}},
		{name: "one jump gone: only it written", chains: withRG, present: jumpsIn(1, "nat/POSTROUTING"), jumps: 1, // the only jump in its chain
			want: func(in string) bool {
				return strings.Count(in, "\n-I ") == 1 && strings.Contains(in, "\n-I POSTROUTING -m comment --comment \"rulegen masquerading\" -j RG-POSTROUTING\n")
			}},
		{name: "stale chain: deleted", chains: stale, present: jumpsIn(1), jumps: 0,
			want: func(in string) bool { return strings.Contains(in, "\n-X RG-SVC-GONE\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRunner{chains: tc.chains}
			w, err := NewWithOptions(rules.IPv4, Options{Mode: NFT, Runner: f, Jumps: tc.present})
			if err != nil {
				t.Fatal(err)
			}
			st, err := w.Apply(r)
			if err != nil {
				t.Fatal(err)
			}
			in := f.restores("iptables-nft-restore")
			if len(in) != 1 {
				t.Fatalf("want one iptables-restore, got %d", len(in))
			}
			if !tc.want(in[0]) {
				t.Errorf("unexpected input:\n%s", in[0])
			}
			if !st.Full || st.Jumps != tc.jumps {
				t.Errorf("stats %+v, want a full update with %d jumps", st, tc.jumps)
			}
			// The next update, with nothing changed, writes nothing: jumps
			// are written by full updates only.
			if st, err := w.Apply(r); err != nil || st.Full || len(f.restores("iptables-nft-restore")) != 1 {
				t.Errorf("unchanged incremental update: %+v, %v", st, err)
			}
		})
	}
}

// TestCommandsBounded: every command the writer runs through its Runner
// has a deadline, and those that take the xtables lock wait for it a
// bounded time. (go-iptables' bound: TestJumpRulesBinaryAndWait.)
func TestCommandsBounded(t *testing.T) {
	f := &fakeRunner{chains: builtins()}
	jumps := &FakeJumps{}
	w, err := NewWithOptions(rules.IPv4, Options{Mode: Legacy, Runner: f, Jumps: jumps, LockWait: 3 * time.Second, Timeout: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ruleset(2, 1)); err != nil {
		t.Fatal(err)
	}
	for _, j := range ri.Jumps() {
		jumps.Insert(j.Table, j.Chain, j.Args...)
	}
	f.chains["nat"] = append(f.chains["nat"], ri.ChainServices, ri.ChainPostrouting)
	f.chains["filter"] = append(f.chains["filter"], ri.ChainFilter)
	w.Intact()
	if err := w.Cleanup(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range f.calls {
		names[c.name] = true
		if c.deadline < 0 || c.deadline > 7*time.Second {
			t.Errorf("%s %v: deadline %v, want at most 7s", c.name, c.args, c.deadline)
		}
		if !strings.HasSuffix(c.name, "-save") && !slices.Equal(c.args[:2], []string{"--wait", "3"}) {
			t.Errorf("%s %v: want --wait 3 first", c.name, c.args)
		}
	}
	for _, n := range []string{"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore"} {
		if !names[n] {
			t.Errorf("%s never ran (ran %v)", n, names)
		}
	}
}

// TestTimeoutNamesCommand: a command that does not finish is given up after
// the timeout, and the error names it.
func TestTimeoutNamesCommand(t *testing.T) {
	f := &fakeRunner{hang: true}
	w, err := NewWithOptions(rules.IPv6, Options{Mode: NFT, Runner: f, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = w.Apply(ri.Render(rules.NewPlan(rules.NewState(), &rules.Config{}, rules.IPv6)))
	if err == nil || !strings.Contains(err.Error(), "ip6tables-nft-save -t nat: killed after 50ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want an error naming the command that timed out, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestExecRunnerKillsOnTimeout: the real runner stops a command when its
// context ends, and says so.
func TestExecRunnerKillsOnTimeout(t *testing.T) {
	start := time.Now()
	_, err := runBounded(ExecRunner{}, 100*time.Millisecond, "", "sleep", "5")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Code != -1 || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "sleep 5: killed after 100ms") {
		t.Errorf("want a timeout naming sleep 5, got %#v (%v)", err, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("sleep ran %v, want it killed after 100ms", d)
	}
	_, err = runBounded(ExecRunner{}, time.Second, "", "sh", "-c", "echo nope >&2; exit 3")
	if !errors.As(err, &ce) || ce.Code != 3 || ce.Stderr != "nope" {
		t.Errorf("want exit code 3 and stderr, got %#v", err)
	}
}
