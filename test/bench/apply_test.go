// Package bench measures writing rules to the kernel, in scratch network
// namespaces (root only): a full sync of N services x 10 endpoints, and an
// incremental sync of one endpoint change, for each backend.
//
//	sudo go test ./test/bench -run '^$' -bench Apply -benchtime 3x
package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/pkg/sync/iptwriter"
	"github.com/rulegen/rulegen/pkg/sync/nftwriter"
	"github.com/rulegen/rulegen/test/netnstest"
)

// sizes are the service counts to measure; RULEGEN_BENCH_SERVICES
// overrides them (comma-separated), e.g. 10000 for the iptables figures,
// which take many minutes with iptables-nft (RULEGEN_BENCH_IPTABLES_MODE=legacy
// measures iptables-legacy instead).
func sizes(def ...int) []int {
	env := os.Getenv("RULEGEN_BENCH_SERVICES")
	if env == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// states returns the plan of n services x 10 endpoints, and the same with
// one endpoint of one service gone.
func states(n int) (full, changed *rules.Plan) {
	st, cfg := rulestest.Scale(n, 10)
	full = rules.NewPlan(st, cfg, rules.IPv4)
	rulestest.DropEndpoint(st, n/2)
	return full, rules.NewPlan(st, cfg, rules.IPv4)
}

func BenchmarkApplyNFTables(b *testing.B) {
	netnstest.Require(b, "nft")
	for _, n := range sizes(1000, 10000) {
		full, changed := states(n)
		a, c := rn.Render(full), rn.Render(changed)
		ns := netnstest.New(b, "bench-nft")
		w := nftwriter.New(ns.Fd())
		b.Run(fmt.Sprintf("full/services=%d", n), func(b *testing.B) {
			for b.Loop() {
				w.Invalidate()
				if _, err := w.Apply(a); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("one-endpoint/services=%d", n), func(b *testing.B) {
			next := []*rn.Ruleset{c, a}
			i := 0
			for b.Loop() {
				st, err := w.Apply(next[i%2])
				if err != nil || st.Full {
					b.Fatalf("incremental apply: %+v %v", st, err)
				}
				i++
			}
		})
		// The daemon's check, between syncs, that the kernel still holds
		// the table (WatchKernel, every second): it must stay flat.
		b.Run(fmt.Sprintf("intact-check/services=%d", n), func(b *testing.B) {
			if _, err := w.Apply(a); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if !w.Intact() {
					b.Fatal("Intact: false on the table just written")
				}
			}
		})
		// The changes of issue 14, each timed one way only: the writer
		// goes back to the base ruleset outside the timer.
		for _, ch := range changes(n) {
			b.Run(fmt.Sprintf("%s/services=%d", ch.name, n), func(b *testing.B) {
				to := rn.Render(ch.plan)
				if _, err := w.Apply(a); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					st, err := w.Apply(to)
					if err != nil || st.Full {
						b.Fatalf("incremental apply: %+v %v", st, err)
					}
					b.StopTimer()
					if _, err := w.Apply(a); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// change is one kind of change from the base state of n services.
type change struct {
	name string
	plan *rules.Plan
}

// edit is one kind of change of issue 14 to a state of n services x 10
// endpoints (rulestest.Scale), made on service n/2 (or n, when one is
// added), and the edit that undoes it.
type edit struct {
	name     string
	do, undo func(st *rules.State, n int)
}

// edits are the changes issue 14 measures: one endpoint replaced by a new
// pod, one service added, one deleted, one scaled from 10 to 11 endpoints.
var edits = []edit{
	{"endpoint-replaced", func(st *rules.State, n int) { rulestest.ReplaceEndpoint(st, n/2) }, restoreMid},
	{"service-added", func(st *rules.State, n int) { rulestest.Restore(st, n, 10) }, func(st *rules.State, n int) { rulestest.Delete(st, n) }},
	{"service-deleted", func(st *rules.State, n int) { rulestest.Delete(st, n/2) }, restoreMid},
	{"scaled-10-to-11", func(st *rules.State, n int) { rulestest.AddEndpoint(st, n/2) }, restoreMid},
}

func restoreMid(st *rules.State, n int) { rulestest.Restore(st, n/2, 10) }

// changes returns the base state of n services x 10 endpoints changed in
// each way of edits, as plans.
func changes(n int) []change {
	var out []change
	for _, e := range edits {
		st, cfg := rulestest.Scale(n, 10)
		e.do(st, n)
		out = append(out, change{e.name, rules.NewPlan(st, cfg, rules.IPv4)})
	}
	return out
}

// BenchmarkDaemonChange is a daemon's sync after each change of issue 14,
// end to end but for the API: the state edited, the daemon's Renderer
// (planner and nftables renderer following the changes) and the nftables
// writer's transaction. Each iteration times the change one way; the
// change back is synced outside the timer. The daemon-one-change figure
// of docs/performance.md is endpoint-removed. "cold" is the first sync
// of a daemon: everything planned, rendered and written at once.
func BenchmarkDaemonChange(b *testing.B) {
	netnstest.Require(b, "nft")
	for _, n := range sizes(1000, 10000) {
		st, cfg := rulestest.Scale(n, 10)
		ns := netnstest.New(b, "bench-daemon")
		w := nftwriter.New(ns.Fd())
		r := sync.NewRenderer(sync.NFTables)
		sync1 := func(b *testing.B) {
			s, err := w.Apply(r.Render(st, cfg, rules.IPv4).NFTables)
			if err != nil || s.Full {
				b.Fatalf("%+v %v", s, err)
			}
		}
		// A cold start's sync: a new renderer (planner and store built
		// from scratch) and a full write.
		b.Run(fmt.Sprintf("cold/services=%d", n), func(b *testing.B) {
			for b.Loop() {
				r = sync.NewRenderer(sync.NFTables)
				w.Invalidate()
				if s, err := w.Apply(r.Render(st, cfg, rules.IPv4).NFTables); err != nil || !s.Full {
					b.Fatalf("%+v %v", s, err)
				}
			}
		})
		removed := edit{"endpoint-removed", func(st *rules.State, n int) { rulestest.DropEndpoint(st, n/2) }, restoreMid}
		for _, ch := range append([]edit{removed}, edits...) {
			b.Run(fmt.Sprintf("%s/services=%d", ch.name, n), func(b *testing.B) {
				for b.Loop() {
					ch.do(st, n)
					sync1(b)
					b.StopTimer()
					ch.undo(st, n)
					sync1(b)
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkDaemonChangeIPTables is BenchmarkDaemonChange for the iptables
// backend (iptables-nft; RULEGEN_BENCH_IPTABLES_MODE=legacy for
// iptables-legacy): the state edited, the daemon's Renderer (reusing the
// rules of unchanged services) and one iptables-restore, which patches the
// chains of one rule per service in place.
func BenchmarkDaemonChangeIPTables(b *testing.B) {
	mode := iptwriter.NFT
	if os.Getenv("RULEGEN_BENCH_IPTABLES_MODE") == "legacy" {
		mode = iptwriter.Legacy
	}
	netnstest.Require(b, "iptables-"+string(mode)+"-restore")
	for _, n := range sizes(1000, 10000) {
		st, cfg := rulestest.Scale(n, 10)
		ns := netnstest.New(b, "bench-daemon-ipt")
		var w *iptwriter.Writer
		if err := ns.Do(func() (err error) { w, err = iptwriter.New(rules.IPv4, mode); return }); err != nil {
			b.Fatal(err)
		}
		r := sync.NewRenderer(sync.IPTables)
		var last iptwriter.Stats
		apply := func(b *testing.B) {
			if err := ns.Do(func() (err error) { last, err = w.Apply(r.Render(st, cfg, rules.IPv4).IPTables); return }); err != nil {
				b.Fatal(err)
			}
		}
		apply(b) // the table the changes start from
		b.Run(fmt.Sprintf("cold/services=%d", n), func(b *testing.B) {
			for b.Loop() {
				r = sync.NewRenderer(sync.IPTables)
				w.Invalidate()
				apply(b)
			}
		})
		for _, ch := range edits {
			b.Run(fmt.Sprintf("%s/services=%d", ch.name, n), func(b *testing.B) {
				rules := 0
				for b.Loop() {
					ch.do(st, n)
					apply(b)
					rules = last.Rules
					if last.Full {
						b.Fatalf("a full update: %+v", last)
					}
					b.StopTimer()
					ch.undo(st, n)
					apply(b)
					b.StartTimer()
				}
				b.ReportMetric(float64(rules), "rules-sent")
			})
		}
	}
}

func BenchmarkApplyIPTables(b *testing.B) {
	mode := iptwriter.NFT
	if os.Getenv("RULEGEN_BENCH_IPTABLES_MODE") == "legacy" {
		mode = iptwriter.Legacy
	}
	netnstest.Require(b, "iptables-"+string(mode)+"-restore")
	for _, n := range sizes(1000) {
		full, changed := states(n)
		a, c := ri.Render(full), ri.Render(changed)
		ns := netnstest.New(b, "bench-ipt")
		var w *iptwriter.Writer
		if err := ns.Do(func() (err error) { w, err = iptwriter.New(rules.IPv4, mode); return }); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("full/services=%d", n), func(b *testing.B) {
			for b.Loop() {
				w.Invalidate()
				if err := ns.Do(func() error { _, err := w.Apply(a); return err }); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("one-endpoint/services=%d", n), func(b *testing.B) {
			next := []*ri.Ruleset{c, a}
			i := 0
			for b.Loop() {
				if err := ns.Do(func() error { _, err := w.Apply(next[i%2]); return err }); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		// The canary check: with iptables-nft read through netlink, flat;
		// with iptables-legacy run with the iptables tools, which read the
		// whole table (the daemon then makes it at each sync only).
		b.Run(fmt.Sprintf("intact-check/services=%d", n), func(b *testing.B) {
			if err := ns.Do(func() error { _, err := w.Apply(a); return err }); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				intact := false
				ns.Do(func() error { intact = w.Intact(); return nil })
				if !intact {
					b.Fatal("Intact: false on the table just written")
				}
			}
		})
	}
}
