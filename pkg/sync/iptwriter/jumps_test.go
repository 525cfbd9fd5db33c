package iptwriter

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
)

// fakeIptables is a stand-in for the iptables binaries: it answers
// --version as go-iptables expects, logs every other call (its path, then
// its arguments) to $FAKE_IPTABLES_LOG, and exits 1, as `iptables -C` does
// for a missing rule.
const fakeIptables = `#!/bin/sh
if [ "$1" = "--version" ]; then echo "iptables v1.8.9 (legacy)"; exit 0; fi
echo "$0 $*" >> "$FAKE_IPTABLES_LOG"
exit 1
`

// TestJumpRulesBinaryAndWait: the jumps are checked with go-iptables
// running the family's and flavour's iptables binary, with the process's
// environment, and a lock wait of the smaller of LockWait and Timeout (it
// cannot kill the command).
func TestJumpRulesBinaryAndWait(t *testing.T) {
	dir := t.TempDir()
	for _, b := range []string{"iptables", "iptables-nft", "iptables-legacy", "ip6tables", "ip6tables-nft", "ip6tables-legacy"} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte(fakeIptables), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	log := filepath.Join(t.TempDir(), "log")
	t.Setenv("FAKE_IPTABLES_LOG", log)
	for _, tc := range []struct {
		name              string
		fam               rules.Family
		mode              Mode
		lockWait, timeout time.Duration
		want              string // binary and --wait
	}{
		{name: "ipv4 nft, default bounds", fam: rules.IPv4, mode: NFT, lockWait: DefaultLockWait, timeout: DefaultTimeout, want: "iptables-nft --wait 5"},
		{name: "ipv6 legacy", fam: rules.IPv6, mode: Legacy, lockWait: 3 * time.Second, timeout: time.Minute, want: "ip6tables-legacy --wait 3"},
		{name: "unversioned tools only", fam: rules.IPv4, mode: Auto, lockWait: 2500 * time.Millisecond, timeout: time.Minute, want: "iptables --wait 3"},
		{name: "timeout below the lock wait", fam: rules.IPv6, mode: NFT, lockWait: 20 * time.Second, timeout: 500 * time.Millisecond, want: "ip6tables-nft --wait 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(log)
			ipt, err := newJumpRules(tc.fam, tc.mode, tc.lockWait, tc.timeout)
			if err != nil {
				t.Fatal(err)
			}
			j := ri.Jumps()[0]
			if ok, err := ipt.Exists(j.Table, j.Chain, j.Args...); ok || err != nil {
				t.Errorf("exit status 1 from -C: want false, nil; got %v, %v", ok, err)
			}
			if err := ipt.Delete(j.Table, j.Chain, j.Args...); err == nil {
				t.Error("exit status 1 from -D: want an error")
			}
			out, err := os.ReadFile(log)
			if err != nil {
				t.Fatalf("the fake binary never ran with the test's environment: %v", err)
			}
			bin, wait, _ := strings.Cut(tc.want, " ")
			rule := strings.Join(j.Args, " ")
			want := []string{
				filepath.Join(dir, bin) + " -t nat -C PREROUTING " + rule + " " + wait,
				filepath.Join(dir, bin) + " -t nat -D PREROUTING " + rule + " " + wait,
			}
			if got := strings.Split(strings.TrimSpace(string(out)), "\n"); !slices.Equal(got, want) {
				t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestFakeRunnerKeepsJumpsInMemory: a writer given a fake Runner and no
// JumpRules checks its jumps in memory, never with the real iptables (here
// none is on PATH, so go-iptables could not even start).
func TestFakeRunnerKeepsJumpsInMemory(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	w, err := NewWithOptions(rules.IPv4, Options{Mode: NFT, Runner: &fakeRunner{chains: builtins()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.jumps.(*FakeJumps); !ok {
		t.Errorf("jumps checked with %T, want *FakeJumps", w.jumps)
	}
}

// TestCleanupDeletesJumps: Cleanup deletes every copy of every jump whose
// chain exists (checking none whose chain does not: iptables cannot), then
// the RG- chains in one iptables-restore; when a jump cannot be deleted it
// leaves the chains and says which jump.
func TestCleanupDeletesJumps(t *testing.T) {
	// withRG holds every chain a jump leads to, and a service chain.
	withRG := builtins()
	withRG["nat"] = append(withRG["nat"], "RG-SVC-X")
	var filterJumps []string
	natJumps := 0
	for _, j := range ri.Jumps() {
		if !slices.Contains(withRG[j.Table], j.Target()) {
			withRG[j.Table] = append(withRG[j.Table], j.Target())
		}
		if j.Table == "filter" {
			filterJumps = append(filterJumps, "filter/"+j.Chain)
		} else {
			natJumps++
		}
	}
	all := len(ri.Jumps())
	noFilter := builtins()
	noFilter["nat"] = withRG["nat"]
	broken := errors.New("exit status 4: Another app is currently holding the xtables lock")
	for _, tc := range []struct {
		name     string
		chains   map[string][]string
		jumps    *FakeJumps
		checked  int    // jumps looked at (those whose chain exists)
		wantErr  string // "" for success
		restores int
	}{
		{name: "every jump once", chains: withRG, jumps: jumpsIn(1), checked: all, restores: 1},
		{name: "every jump twice (text loaded twice by hand)", chains: withRG, jumps: jumpsIn(2), checked: all, restores: 1},
		{name: "jumps already gone", chains: withRG, jumps: jumpsIn(0), checked: all, restores: 1},
		{name: "no filter chain: its jumps not checked", chains: noFilter, jumps: jumpsIn(1, filterJumps...), checked: natJumps, restores: 1},
		{name: "nothing of rulegen's", chains: builtins(), jumps: jumpsIn(0), checked: 0, restores: 0},
		{name: "more copies than plausible", chains: withRG, jumps: jumpsIn(maxJumpCopies + 1), checked: all, restores: 0,
			wantErr: "deleting ipv4 jump nat/PREROUTING -> RG-SERVICES: still there after 64 deletions"},
		{name: "check fails: chains left", chains: withRG, jumps: &FakeJumps{Err: broken}, checked: all, restores: 0,
			wantErr: "checking ipv4 jump nat/PREROUTING -> RG-SERVICES: exit status 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRunner{chains: tc.chains}
			w, err := NewWithOptions(rules.IPv4, Options{Mode: NFT, Runner: f, Jumps: tc.jumps})
			if err != nil {
				t.Fatal(err)
			}
			err = w.Cleanup()
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("want an error containing %q, got %v", tc.wantErr, err)
			}
			checked := map[string]bool{}
			for _, c := range tc.jumps.Calls {
				checked[c[3:]] = true // without "-C " or "-D "
			}
			if len(checked) != tc.checked {
				t.Errorf("looked at %d jumps, want %d: %q", len(checked), tc.checked, tc.jumps.Calls)
			}
			if tc.wantErr == "" {
				for _, j := range ri.Jumps() {
					if n := tc.jumps.Count(j.Table, j.Chain, j.Args...); n != 0 {
						t.Errorf("%s/%s: %d copies left", j.Table, j.Chain, n)
					}
				}
			}
			in := f.restores("iptables-nft-restore")
			if len(in) != tc.restores {
				t.Fatalf("%d iptables-restore runs, want %d: %q", len(in), tc.restores, in)
			}
			if len(in) == 1 && (strings.Contains(in[0], "-D ") || !strings.Contains(in[0], "\n-X RG-SVC-X\n")) {
				t.Errorf("want the chains deleted and no jump in the restore input:\n%s", in[0])
			}
		})
	}
}
