package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rulegen/rulegen/test/cluster"
	"github.com/rulegen/rulegen/test/e2e"
	"github.com/rulegen/rulegen/test/netnstest"
)

var bins struct{ rulegen, server string }

// TestMain builds rulegen with its fault injector (-tags soakfaults) and
// the test server.
func TestMain(m *testing.M) {
	b, err := e2e.BuildBinariesTags("soakfaults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.rulegen, bins.server = b.Rulegen, b.Server
	code := m.Run()
	b.Remove()
	os.Exit(code)
}

// harness is one soak run.
type harness struct {
	t                        *testing.T
	s                        settings
	logDir                   string
	start                    time.Time
	node, client, pods, podc *netnstest.NS
	cp                       *cluster.ControlPlane
	stable                   []stable

	mu        sync.Mutex
	rulegen   *exec.Cmd
	lives     int
	lifeStart time.Time
	samples   []sample

	apiRestarts, kills, flushes int
	apiDown                     time.Duration
	// flushRepairs: per hand flush, the time until rulegen's services
	// chain held rules again; flushUnrepaired the flushes it never did.
	flushRepairs    []time.Duration
	flushUnrepaired int
	outages         []outage // the API server's, in order
}

// outage is a time the API server was down: from its kill until it was
// ready again (to is zero while it lasts).
type outage struct{ from, to time.Time }

// afterOutage is how long a change whose measurement an API server outage
// overlapped may take once the server is back: the latency limit, plus
// client-go's reflector backoff (up to 30 s), after which rulegen's watches
// relist. A change made just before the kill reaches rulegen only then,
// whichever proxy it is.
const afterOutage = latencyTimeout + 30*time.Second

// deadline is when a change made at at counts as lost: latencyTimeout
// later, or afterOutage after the end of an API server outage that began
// before that (and had not ended before at).
func (h *harness) deadline(at time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return deadlineAmid(at, h.outages, time.Now())
}

func deadlineAmid(at time.Time, outages []outage, now time.Time) time.Time {
	d := at.Add(latencyTimeout)
	for _, o := range outages {
		if !o.to.IsZero() && o.to.Before(at) || o.from.After(d) {
			continue
		}
		end := o.to
		if end.IsZero() {
			end = now
		}
		if e := end.Add(afterOutage); e.After(d) {
			d = e
		}
	}
	return d
}

func (h *harness) since() string { return h.sinceAt(time.Now()) }

func (h *harness) sinceAt(t time.Time) string {
	return "+" + t.Sub(h.start).Round(100*time.Millisecond).String()
}

// rulegenArgs are the daemon's flags; --dry-run gets the same. No
// --service-cluster-ip-range: the daemon learns the range from the
// ServiceCIDR object the API server keeps, and the dry run must read it too
// (it did not: the convergence check then missed the rules that drop
// traffic to unallocated ClusterIPs).
func (h *harness) rulegenArgs() []string {
	return []string{"--kubeconfig", h.cp.Kubeconfig, "--node-name", nodeName, "--cluster-cidr", clusterCIDR,
		"--backend", h.s.backend, "-v", "1"}
}

// startRulegen starts the daemon in the node with the faults of the run.
func (h *harness) startRulegen() {
	env := []string{"RULEGEN_FAULT_REFUSE=" + h.s.refuse}
	if h.s.dropElement {
		env = append(env, "RULEGEN_FAULT_DROP_ELEMENT=1")
	}
	// env execs rulegen: the PID is rulegen's.
	args := append(append(env, bins.rulegen), h.rulegenArgs()...)
	cmd := h.node.StartLogged(filepath.Join(h.logDir, "rulegen.log"), "env", args...)
	h.mu.Lock()
	h.rulegen, h.lifeStart = cmd, time.Now()
	h.lives++
	h.mu.Unlock()
}

// killRulegen SIGKILLs the daemon by its PID and waits for it.
func (h *harness) killRulegen() {
	h.mu.Lock()
	cmd := h.rulegen
	h.mu.Unlock()
	netnstest.Stop(cmd, syscall.SIGKILL, 10*time.Second)
}

func TestSoak(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "iptables-save", "conntrack")
	cluster.RequireKubeBins(t)
	s, err := loadSettings()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, logDir: t.TempDir()}
	if d := os.Getenv("SOAK_LOGS"); d != "" {
		h.logDir = d
		os.MkdirAll(d, 0o755)
	}
	o := h.soak()
	checks := h.checks(o)
	report := h.report(o, checks)
	fmt.Print(report)
	if s.out != "" {
		if err := os.WriteFile(s.out, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("check failed: %s: %s (limit %s)", ck.name, ck.value, ck.limit)
		}
	}
}

// outcome is what a run observed, for the checks and the report.
type outcome struct {
	churn                *churn
	probes               *probeStats
	neighbour            *neighbour
	convergence          check
	stale                []string
	conntrackEntries     int
	conntrackErr         error
	neighbourDiffs       []string
	samples              []sample
	udpSent, udpAnswered int64
}

// soak sets the node up, runs churn, faults, probes and samplers at once
// for the duration, stops the churn and observes the end state.
func (h *harness) soak() *outcome {
	t, s := h.t, h.s
	setupStart := time.Now()
	h.newTopology((s.duration + 10*time.Minute).String())
	h.cp = cluster.StartControlPlane(t, h.node)
	h.createNode()
	initial, nextIP := h.createServices()
	nb := h.startNeighbour()
	h.startRulegen()
	h.waitStable()
	t.Logf("setup %s: %d services (%d stable) x %d endpoints, seed %d, logs in %s", time.Since(setupStart).Round(100*time.Millisecond),
		s.services, s.stable, s.endpoints, s.seed, h.logDir)

	h.start = time.Now()
	o := &outcome{churn: h.newChurn(initial, nextIP), probes: &probeStats{total: map[string]int{}}, neighbour: nb}
	ctx, stop := context.WithCancel(context.Background())
	probeCtx, stopProbes := context.WithCancel(context.Background())
	var wg, pwg sync.WaitGroup
	var udpSent, udpAnswered atomic.Int64
	wg.Go(func() { o.churn.run(ctx) })
	wg.Go(func() { o.churn.udpTraffic(ctx, 50*time.Millisecond, &udpSent, &udpAnswered) })
	wg.Go(func() { nb.run(ctx, 2*time.Second) })
	for _, src := range []string{"pod", "node", "outside"} {
		for _, proto := range []string{"tcp", "udp"} {
			pwg.Go(func() { h.probeStable(probeCtx, src, proto, 100*time.Millisecond, o.probes) })
		}
	}
	pwg.Go(func() { h.sampleRulegen(probeCtx) })
	h.faults()
	stop()
	wg.Wait()
	o.convergence = h.convergence(time.Now())
	stopProbes()
	pwg.Wait()
	o.churn.lat.measureInFlight.Wait()
	// The end state of conntrack, as of the end state of the rules: a UDP
	// packet that crossed the old rules while the last ones were committed
	// leaves an entry that rulegen's look one second after a cleanup
	// removes (sync.Proxier.recheckConntrack); give it the 2 s the ruleset
	// gets too.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		o.stale, o.conntrackEntries, o.conntrackErr = h.staleConntrack()
		if o.conntrackErr == nil && len(o.stale) == 0 || time.Now().After(deadline) {
			break
		}
	}
	o.neighbourDiffs = nb.intact()
	o.udpSent, o.udpAnswered = udpSent.Load(), udpAnswered.Load()
	h.mu.Lock()
	o.samples = append([]sample(nil), h.samples...)
	h.mu.Unlock()
	var tsv strings.Builder
	tsv.WriteString("process\tseconds\trss_kib\tgoroutines\n")
	for _, x := range o.samples {
		fmt.Fprintf(&tsv, "%d\t%.0f\t%d\t%d\n", x.life, x.at.Seconds(), x.rssKiB, x.goroutines)
	}
	os.WriteFile(filepath.Join(h.logDir, "samples.tsv"), []byte(tsv.String()), 0o644)
	return o
}

func (h *harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func (h *harness) createNode() {
	ctx, cancel := h.ctx()
	defer cancel()
	node, err := h.cp.Client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	node.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}
	if _, err := h.cp.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// createServices creates the stable services and the churned ones with 32
// writers, and returns the churned ones and the last pod address used.
func (h *harness) createServices() (map[string]*churned, uint32) {
	n, e := h.s.services, h.s.endpoints
	h.stable = make([]stable, h.s.stable)
	churn := map[string]*churned{}
	var mu sync.Mutex
	work := make(chan int)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range work {
				kind, name := kindChurned, fmt.Sprintf("churn-%d", i)
				if i < h.s.stable {
					kind, name = kindStable, fmt.Sprintf("stable-%d", i)
				}
				var eps []discovery.Endpoint
				var ips []string
				for j := range e {
					ip := podIP(uint32(i*e + j + 1))
					ips = append(ips, ip)
					eps = append(eps, endpoint(ip, j))
				}
				if kind == kindStable {
					// Every endpoint of a stable service is on this node and
					// ready: it answers whatever its traffic policy.
					for j := range eps {
						node := nodeName
						eps[j].NodeName = &node
					}
				}
				ctx, cancel := h.ctx()
				svc, err := h.cp.Client.CoreV1().Services(namespace).Create(ctx, newService(name, kind, i%2 == 1, "tcp", "udp"), metav1.CreateOptions{})
				var sl *discovery.EndpointSlice
				if err == nil {
					sl, err = h.cp.Client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, newSlice(name, kind, "a", "tcp", "udp", eps), metav1.CreateOptions{})
				}
				cancel()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				mu.Lock()
				if kind == kindStable {
					s := stable{name: name, clusterIP: svc.Spec.ClusterIP, eps: ips}
					if h.s.wrongEndpoints {
						s.eps = ips[1:] // a self-test of the probes: answers from ips[0] must count as failures
					}
					if svc.Spec.Type == v1.ServiceTypeNodePort {
						s.nodePortTCP, s.nodeP = svc.Spec.Ports[0].NodePort, svc.Spec.Ports[1].NodePort
					}
					h.stable[i] = s
				} else {
					churn[name] = &churned{svc: svc, slices: []*discovery.EndpointSlice{sl}}
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatal(err)
	}
	return churn, uint32(n*e + 1)
}

// waitStable waits (at most 2 min) until every stable service answers
// from every source, before the clock of the run starts.
func (h *harness) waitStable() {
	deadline := time.Now().Add(2 * time.Minute)
	for _, s := range h.stable {
		for _, probe := range []struct {
			ns   *netnstest.NS
			addr string
		}{{h.podc, fmt.Sprintf("%s:%d", s.clusterIP, svcTCPPort)}, {h.node, fmt.Sprintf("%s:%d", s.clusterIP, svcUDPPort)}} {
			proto := "tcp"
			if strings.HasSuffix(probe.addr, ":53") {
				proto = "udp"
			}
			for {
				if _, err := h.ask(probe.ns, proto, probe.addr, 300*time.Millisecond); err == nil {
					break
				}
				if time.Now().After(deadline) {
					b, _ := os.ReadFile(filepath.Join(h.logDir, "rulegen.log"))
					h.t.Fatalf("stable service %s never answered %s at %s; rulegen log tail:\n%s", s.name, proto, probe.addr, tail(string(b), 3000))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// faults runs one fault every faultEvery, in turn an API server restart, a
// hand flush and a rulegen SIGKILL, until the duration is over. The run
// must end with everything up and synced: no fault starts in the last
// faultEvery/2 (at most 20 s), and the API server is back (at the
// longest outage) a minute before the end at the latest (half the run, if
// shorter), because after a restart the daemon's watches come back only
// after client-go's backoff (up to 30 s).
func (h *harness) faults() {
	s := h.s
	end := h.start.Add(s.duration)
	quiet, apiQuiet := min(s.faultEvery/2, 20*time.Second), min(s.duration/2, time.Minute)
	rng := rand.New(rand.NewPCG(s.seed, 17))
	kinds := []string{"api", "flush", "kill"}
	for i := 0; ; i++ {
		next := h.start.Add(time.Duration(i+1) * s.faultEvery)
		if next.After(end.Add(-quiet)) {
			break
		}
		kind := kinds[i%len(kinds)]
		if kind == "api" && next.Add(s.apiDownMax).After(end.Add(-apiQuiet)) {
			continue
		}
		time.Sleep(time.Until(next))
		switch kind {
		case "api":
			down := s.apiDownMin + time.Duration(rng.Int64N(int64(s.apiDownMax-s.apiDownMin)+1))
			h.t.Logf("%s fault: kube-apiserver SIGKILLed, down %s", h.since(), down.Round(time.Second))
			h.mu.Lock()
			h.outages = append(h.outages, outage{from: time.Now()})
			h.mu.Unlock()
			h.cp.StopAPIServer()
			time.Sleep(down)
			t0 := time.Now()
			h.cp.StartAPIServer()
			h.mu.Lock()
			h.outages[len(h.outages)-1].to = time.Now()
			h.mu.Unlock()
			h.apiRestarts++
			h.apiDown += down + time.Since(t0)
		case "flush":
			flush := []string{"nft", "flush", "table", "ip", "rulegen"}
			if s.backend == "iptables" {
				flush = []string{"iptables", "-t", "nat", "-F", "RG-SERVICES"}
			}
			h.t.Logf("%s fault: %s", h.since(), strings.Join(flush, " "))
			if out, err := h.node.Run(nil, flush[0], flush[1:]...); err != nil {
				h.t.Logf("flush: %v: %s", err, out)
			} else {
				h.flushes++
				// Waited for past the run's end if need be (the churn
				// goes on meanwhile): a flush is judged on its whole limit.
				flushed := time.Now()
				if d, ok := h.rulesBack(flushed, flushed.Add(h.flushLimit()+time.Second)); ok {
					h.flushRepairs = append(h.flushRepairs, d)
					h.t.Logf("%s rulegen's rules back %s after the flush", h.since(), d.Round(time.Millisecond))
				} else {
					h.flushUnrepaired++
					h.t.Logf("%s rulegen's rules not back %s after the flush", h.since(), time.Since(flushed).Round(time.Second))
				}
			}
		case "kill":
			h.t.Logf("%s fault: rulegen SIGKILLed and restarted", h.since())
			h.killRulegen()
			h.kills++
			h.startRulegen()
		}
	}
	time.Sleep(time.Until(end))
}

// flushLimit is how soon after a hand flush rulegen must have its rules
// back. Its kernel check runs every second, even while no change arrives
// (while the API server is away, or on a quiet cluster), and the
// repairing write may be a refused one (RULEGEN_FAULT_REFUSE), retried a
// second later: 2 s, and half a second for the write and the harness's
// listing; with iptables-nft 3 s, its full restore taking a few hundred
// milliseconds more (1.3 s measured without a refusal). With
// iptables-legacy the check is made at each sync only, at least every
// --sync-period (30 s).
func (h *harness) flushLimit() time.Duration {
	if h.s.backend == "iptables" {
		if out, _ := h.node.Run(nil, "iptables", "-V"); strings.Contains(out, "legacy") {
			return 32 * time.Second
		}
		return 3 * time.Second
	}
	return 2500 * time.Millisecond
}

// rulesBack polls, every 50 ms until deadline, whether rulegen's services
// chain holds rules again, and returns the time from from to then. Each
// poll starts a process in the node (and with iptables reads the nat
// table): the interval keeps that load small beside what is measured.
func (h *harness) rulesBack(from, deadline time.Time) (time.Duration, bool) {
	for time.Now().Before(deadline) {
		if h.servicesRules() > 0 {
			return time.Since(from), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, false
}

// servicesRules counts the rules of rulegen's services chain in the node
// (0 when it cannot be listed).
func (h *harness) servicesRules() int {
	if h.s.backend == "iptables" {
		out, err := h.node.Run(nil, "iptables", "-t", "nat", "-S", "RG-SERVICES")
		if err != nil {
			return 0
		}
		return strings.Count("\n"+out, "\n-A ")
	}
	out, err := h.node.Run(nil, "nft", "-j", "list", "chain", "ip", "rulegen", "services")
	if err != nil {
		return 0
	}
	return strings.Count(out, `{"rule":`)
}

// sampleRulegen reads rulegen's RSS (/proc) and goroutines (/metrics)
// every s.sample.
func (h *harness) sampleRulegen(ctx context.Context) {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: h.node.DialContext, DisableKeepAlives: true}}
	tick := time.NewTicker(h.s.sample)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.mu.Lock()
		pid, life, at := h.rulegen.Process.Pid, h.lives, time.Since(h.lifeStart)
		h.mu.Unlock()
		s := sample{life: life, at: at, rssKiB: statusKiB(pid, "VmRSS:"), goroutines: goroutines(hc)}
		h.mu.Lock()
		h.samples = append(h.samples, s)
		h.mu.Unlock()
	}
}

func statusKiB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func goroutines(hc *http.Client) int {
	resp, err := hc.Get("http://127.0.0.1:10249/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// convergence lists the node's rulegen table every 100 ms from the moment
// the churn stopped (for at most 10 s), meanwhile renders the API server's
// final state with rulegen --dry-run (the daemon's flags) and loads it
// into a scratch namespace, and then finds the first listing equal to the
// scratch one; the check wants one within 2 s of the last change.
func (h *harness) convergence(stopped time.Time) check {
	const limit, give = 2 * time.Second, 10 * time.Second
	name := "kernel ruleset = rulegen --dry-run of the final API state (nft -j, canonical)"
	if h.s.backend == "iptables" {
		name = "kernel ruleset = rulegen --dry-run of the final API state (iptables-save RG-, canonical)"
	}
	fail := func(v string) check { return check{name, v, "equal within " + limit.String(), false} }
	type listing struct {
		at  time.Time
		out []byte
	}
	listings := make(chan listing, int(give/(100*time.Millisecond))+1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(listings)
		for time.Since(stopped) < give {
			select {
			case <-done:
				return
			default:
			}
			at := time.Now()
			if out, err := h.listRules(h.node); err == nil {
				listings <- listing{at, []byte(out)}
			}
			time.Sleep(time.Until(at.Add(100 * time.Millisecond)))
		}
	}()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.node.Name, bins.rulegen, "--dry-run"}, h.rulegenArgs()...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	script, err := cmd.Output()
	if err != nil {
		return fail(fmt.Sprintf("rulegen --dry-run: %v: %s", err, tail(stderr.String(), 500)))
	}
	os.WriteFile(filepath.Join(h.logDir, "dry-run.txt"), script, 0o644)
	scratch := netnstest.New(h.t, "skscratch")
	load := []string{"nft", "-f", "-"}
	if h.s.backend == "iptables" {
		load = []string{"iptables-restore", "--noflush"}
	}
	if out, err := scratch.Run(script, load[0], load[1:]...); err != nil {
		return fail(fmt.Sprintf("%s of the dry run: %v: %s", load[0], err, tail(out, 500)))
	}
	out, err := h.listRules(scratch)
	if err != nil {
		return fail("listing the dry run: " + tail(out, 300))
	}
	want, err := h.canonical([]byte(out))
	if err != nil {
		return fail(err.Error())
	}
	var diff []string
	var ndiff int
	for l := range listings {
		got, err := h.canonical(l.out)
		if err != nil {
			continue
		}
		if diff, ndiff = diffLines(want, got, 6); ndiff == 0 {
			d := l.at.Sub(stopped)
			return check{name, fmt.Sprintf("equal %s after the churn stopped (%d objects)", fmtDur(d), len(want)), "equal within " + limit.String(), d <= limit}
		}
		os.WriteFile(filepath.Join(h.logDir, "kernel-differing.txt"), l.out, 0o644)
	}
	return fail(fmt.Sprintf("still %d lines apart after %s: %s", ndiff, give, strings.Join(diff, " ")))
}

// listRules lists rulegen's rules in ns as the kernel has them: its
// nftables table as JSON, or the whole iptables-save.
func (h *harness) listRules(ns *netnstest.NS) (string, error) {
	if h.s.backend == "iptables" {
		return ns.Run(nil, "iptables-save")
	}
	return ns.Run(nil, "nft", "-j", "list", "table", "ip", "rulegen")
}

// canonical is canonicalRuleset or canonicalIptables, by backend.
func (h *harness) canonical(b []byte) ([]string, error) {
	if h.s.backend == "iptables" {
		return canonicalIptables(string(b)), nil
	}
	return canonicalRuleset(b)
}

// staleConntrack lists the node's UDP conntrack entries and returns those
// rewritten to an endpoint that the API server's final state no longer has.
func (h *harness) staleConntrack() ([]string, int, error) {
	ctx, cancel := h.ctx()
	defer cancel()
	svcs, err := h.cp.Client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, 0, err
	}
	sls, err := h.cp.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, 0, err
	}
	bySvc := map[string][]string{}
	for _, sl := range sls.Items {
		for _, ep := range sl.Endpoints {
			bySvc[sl.Labels[discovery.LabelServiceName]] = append(bySvc[sl.Labels[discovery.LabelServiceName]], ep.Addresses...)
		}
	}
	endpoints := map[string][]string{}
	for _, s := range svcs.Items {
		for _, p := range s.Spec.Ports {
			if p.Protocol != v1.ProtocolUDP {
				continue
			}
			endpoints[fmt.Sprintf("%s:%d", s.Spec.ClusterIP, p.Port)] = bySvc[s.Name]
			if p.NodePort != 0 {
				endpoints[fmt.Sprintf("%s:%d", nodeIP, p.NodePort)] = bySvc[s.Name]
				endpoints[fmt.Sprintf("%s:%d", secondNodeIP, p.NodePort)] = bySvc[s.Name]
			}
		}
	}
	var dump strings.Builder
	for k, v := range endpoints {
		fmt.Fprintf(&dump, "%s %v\n", k, v)
	}
	os.WriteFile(filepath.Join(h.logDir, "final-udp-endpoints.txt"), []byte(dump.String()), 0o644)
	out, err := h.node.Run(nil, "conntrack", "-L", "-p", "udp")
	if err != nil {
		return nil, 0, fmt.Errorf("conntrack -L: %v: %s", err, tail(out, 300))
	}
	os.WriteFile(filepath.Join(h.logDir, "conntrack-udp.txt"), []byte(out), 0o644)
	stale, n := staleUDP(strings.Split(out, "\n"), endpoints, netip.MustParsePrefix(serviceCIDR), []string{nodeIP, secondNodeIP})
	return stale, n, nil
}

// countLog counts the lines of rulegen's log holding s.
func (h *harness) countLog(s string) int {
	b, _ := os.ReadFile(filepath.Join(h.logDir, "rulegen.log"))
	return strings.Count(string(b), s)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
