package soak

import (
	"fmt"
	"strings"
	"time"
)

func rssOf(x sample) int        { return x.rssKiB }
func goroutinesOf(x sample) int { return x.goroutines }

// checks turns what a run observed into the rows of the summary table.
func (h *harness) checks(o *outcome) []check {
	st, c := o.probes, o.churn
	probes := st.sum()
	checks := []check{
		{"connections to stable services failed", fmt.Sprintf("%d of %d (%s)", st.failed, probes, probeBreakdown(st)), "0", st.failed == 0 && probes > 0},
		o.convergence,
	}
	c.lat.mu.Lock()
	checks = append(checks, latencyCheck("API-to-packet: service created → first answer", c.lat.created, c.lat.createdLost),
		latencyCheck("API-to-packet: service deleted → first unanswered", c.lat.gone, c.lat.goneLost))
	c.lat.mu.Unlock()
	checks = append(checks, flushCheck(h.flushRepairs, h.flushUnrepaired, h.flushLimit()))
	// Goroutines come and go with the churn (a healthCheckNodePort server
	// per ETP Local service, HTTP connections, retries): a growth of at most
	// goroutineSlack is noise at any size, never a leak, which grows with
	// the number of changes (hundreds over a run).
	checks = append(checks, growthCheck("rulegen RSS growth after warm-up", o.samples, h.s.warmup, rssOf, "KiB", 0),
		growthCheck("rulegen goroutines growth after warm-up", o.samples, h.s.warmup, goroutinesOf, "", goroutineSlack))
	gone := 0
	for _, l := range o.stale {
		if strings.HasSuffix(l, "(service gone)") {
			gone++
		}
	}
	staleValue := fmt.Sprintf("%d of %d UDP entries (%d to a deleted service, %d to an endpoint gone from its service)", len(o.stale), o.conntrackEntries, gone, len(o.stale)-gone)
	if o.conntrackErr != nil {
		staleValue = o.conntrackErr.Error()
	}
	checks = append(checks, check{"stale UDP conntrack entries to deleted endpoints at the end", staleValue, "0 within 2s", o.conntrackErr == nil && len(o.stale) == 0})
	nbValue := fmt.Sprintf("yes (%d changes by it)", o.neighbour.changes)
	if len(o.neighbourDiffs) > 0 {
		nbValue = strings.Join(o.neighbourDiffs, "; ")
	}
	return append(checks, check{"other program's nftables table and iptables rules intact", nbValue, "intact", len(o.neighbourDiffs) == 0})
}

// report is the summary: the table, what the churn and the faults did,
// the first failures, and one summary line.
func (h *harness) report(o *outcome, checks []check) string {
	s, c, st := h.s, o.churn, o.probes
	refused := h.countLog("soak fault: transaction refused")
	failed := 0
	for _, ck := range checks {
		if !ck.ok {
			failed++
		}
	}
	verdict := "PASS"
	if failed > 0 {
		verdict = fmt.Sprintf("FAIL (%d checks)", failed)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nSoak: %s, %s backend, %d services (%d stable) x %d endpoints, %g changes/s asked, seed %d, %s\n\n%s\n",
		s.duration, s.backend, s.services, s.stable, s.endpoints, s.rate, s.seed, time.Now().UTC().Format("2006-01-02 15:04 UTC"), table(checks))
	fmt.Fprintf(&b, "churn: %d changes in %s (%.1f/s; %v), %d failed (API server down), %d ticks skipped (every writer busy), UDP to churned services %d sent, %d answered\n",
		c.done, s.duration, float64(c.done)/s.duration.Seconds(), c.byKind, c.failed, c.behind, o.udpSent, o.udpAnswered)
	fmt.Fprintf(&b, "faults: %d API server restarts (down %s in all), %d rulegen SIGKILLs, %d hand flushes, %d refused transactions (RULEGEN_FAULT_REFUSE=%s)\n",
		h.apiRestarts, h.apiDown.Round(time.Second), h.kills, h.flushes, refused, s.refuse)
	if len(st.failures) > 0 {
		b.WriteString("first failed connections:\n  " + strings.Join(st.failures, "\n  ") + "\n")
	}
	if len(c.errs) > 0 {
		b.WriteString("first churn errors:\n  " + strings.Join(c.errs, "\n  ") + "\n")
	}
	if len(o.stale) > 0 {
		b.WriteString("stale entries:\n  " + strings.Join(o.stale[:min(len(o.stale), 10)], "\n  ") + "\n")
	}
	c.lat.mu.Lock()
	p50, p99, _ := percentiles(c.lat.created)
	c.lat.mu.Unlock()
	g, _, _, _ := growth(o.samples, s.warmup, rssOf)
	gg, _, _, _ := growth(o.samples, s.warmup, goroutinesOf)
	fmt.Fprintf(&b, "soak: %s in %s: %d services x %d endpoints, %d changes (%.1f/s), %d/%d stable connections failed, %s, created→answered p50 %s p99 %s, RSS %+.1f%%, goroutines %+.1f%%, %d stale UDP conntrack entries, faults: %d API restarts, %d SIGKILLs, %d flushes, %d refused writes\n",
		verdict, s.duration, s.services, s.endpoints, c.done, float64(c.done)/s.duration.Seconds(), st.failed, st.sum(), o.convergence.value,
		fmtDur(p50), fmtDur(p99), 100*g, 100*gg, len(o.stale), h.apiRestarts, h.kills, h.flushes, refused)
	return b.String()
}

func probeBreakdown(st *probeStats) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var parts []string
	for _, k := range []string{"pod/tcp", "pod/udp", "node/tcp", "node/udp", "outside/tcp", "outside/udp"} {
		parts = append(parts, fmt.Sprintf("%s %d", k, st.total[k]))
	}
	return strings.Join(parts, ", ")
}

func latencyCheck(name string, ds []time.Duration, lost int) check {
	p50, p99, mx := percentiles(ds)
	return check{name, fmt.Sprintf("p50 %s, p99 %s, max %s (n=%d, %d never)", fmtDur(p50), fmtDur(p99), fmtDur(mx), len(ds), lost),
		fmt.Sprintf("each within %s (%s after an API server outage)", latencyTimeout, afterOutage), lost == 0 && len(ds) > 0}
}

// flushCheck judges how soon rulegen's rules were back after each hand
// flush. A run without a flush has nothing to judge and passes.
func flushCheck(repairs []time.Duration, unrepaired int, limit time.Duration) check {
	name, lim := "hand flush → rulegen's rules back", fmt.Sprintf("each within %s", limit)
	if len(repairs)+unrepaired == 0 {
		return check{name, "no hand flush in this run", lim, true}
	}
	_, _, mx := percentiles(repairs)
	return check{name, fmt.Sprintf("max %s (n=%d, %d never)", fmtDur(mx), len(repairs), unrepaired), lim, unrepaired == 0 && mx <= limit}
}

func growthCheck(name string, samples []sample, warmup time.Duration, get func(sample) int, unit string, slack int) check {
	limit := "< +10%"
	if slack > 0 {
		limit = fmt.Sprintf("< +10%% or ≤ +%d", slack)
	}
	g, judged, from, to := growth(samples, warmup, get)
	if judged == 0 {
		return check{name, fmt.Sprintf("no rulegen process lived %s + 6 samples", warmup), limit, false}
	}
	return check{name, fmt.Sprintf("%+.1f%% (worst of %d processes: %d → %d%s)", 100*g, judged, from, to, unit), limit, g < 0.10 || to-from <= slack}
}

// goroutineSlack is the goroutine growth that is noise, not a leak (see
// the goroutine check).
const goroutineSlack = 10
