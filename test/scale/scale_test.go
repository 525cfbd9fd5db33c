// Package scale is the side-by-side harness of rulegen and kube-proxy at
// scale: one real kube-apiserver, N services x E endpoints, and each proxy in
// turn on the same node namespace, measured black-box with real TCP
// connections.
//
//	make bench-scale                       # N=5000 E=10, every proxy
//	RULEGEN_SCALE_SERVICES=50000 RULEGEN_SCALE_PROXIES=rulegen-nft make bench-scale
//
// Settings (environment):
//
//	RULEGEN_SCALE_SERVICES   N services (default 200: the smoke run of make test)
//	RULEGEN_SCALE_ENDPOINTS  E endpoints per service (default 10)
//	RULEGEN_SCALE_CHANGES    changes of each kind per proxy (default 3; make bench-scale: 10)
//	RULEGEN_SCALE_GAP        pause before each change (default 1.1s: longer than
//	                         kube-proxy's default min-sync-period, so every
//	                         change meets an idle proxy)
//	RULEGEN_SCALE_TIMEOUT    give up on a cold start after this long (default 10m)
//	RULEGEN_SCALE_PROXIES    comma-separated subset of the proxies below
//	RULEGEN_SCALE_OUT        also write the table to this file
//	RULEGEN_SCALE_PROFILE    a directory: rulegen runs with --profiling; a CPU
//	                         profile of 1+N/10000 seconds from when its metrics
//	                         address first answers (its cold start), its heap
//	                         profile (allocations since start included) after
//	                         the cold start and after the changes, and its log
//	                         are saved there
//
// Topology (topology.go): "node" runs etcd, kube-apiserver and the proxy
// under test; "client" (192.168.1.100) is outside the cluster and opens the
// connections; "pods" holds every endpoint: a local route for 10.128.0.0/12
// makes each of its addresses answer, so E x N endpoints are E x N distinct
// pod IPs with one server (it answers with the address it was reached at, so
// a probe knows which endpoint answered). No namespace has a route out of
// the machine.
package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rulegen/rulegen/test/cluster"
	"github.com/rulegen/rulegen/test/e2e"
	"github.com/rulegen/rulegen/test/netnstest"
)

var bins struct{ rulegen, server string }

func TestMain(m *testing.M) {
	os.Exit(e2e.RunTests(m, func(rulegen, server string) { bins.rulegen, bins.server = rulegen, server }))
}

const (
	nodeName    = "node-a"
	nodeIP      = NodeIP
	clusterCIDR = "10.128.0.0/12"
	podPort     = 8080
	namespace   = "default"
)

// proxy is one configuration under test.
type proxy struct {
	name    string
	kube    bool // kube-proxy (else rulegen)
	mode    string
	minSync string // "" = the proxy's default
	kind    string // "nft" or "ipt": how to count its kernel objects
}

var proxies = []proxy{
	{name: "rulegen-nft", mode: "nftables", kind: "nft"},
	{name: "rulegen-ipt", mode: "iptables", kind: "ipt"},
	{name: "kube-proxy-nft", kube: true, mode: "nftables", kind: "nft"},
	{name: "kube-proxy-nft-minsync0", kube: true, mode: "nftables", minSync: "0s", kind: "nft"},
	{name: "kube-proxy-ipt", kube: true, mode: "iptables", kind: "ipt"},
}

func (p proxy) args(kubeconfig string) (bin string, args []string) {
	if !p.kube {
		args = []string{"--kubeconfig", kubeconfig, "--node-name", nodeName, "--cluster-cidr", clusterCIDR,
			"--backend", p.mode, "-v", "1"}
		if os.Getenv("RULEGEN_SCALE_PROFILE") != "" {
			args = append(args, "--profiling")
		}
		return bins.rulegen, args
	}
	args = []string{"--kubeconfig", kubeconfig, "--hostname-override", nodeName, "--proxy-mode", p.mode,
		"--cluster-cidr", clusterCIDR, "--conntrack-max-per-core", "0",
		"--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249", "--v", "1"}
	if p.minSync != "" {
		// kube-proxy's flag for the min-sync-period of both the iptables and
		// the nftables mode.
		args = append(args, "--iptables-min-sync-period", p.minSync)
	}
	return filepath.Join(cluster.KubeBinDir(), "kube-proxy"), args
}

// result is what the harness measured for one proxy.
type result struct {
	proxy
	cold          time.Duration // 0: did not finish
	newSvc, epChg []time.Duration
	// api is, for each new service, the time from the create calls'
	// start until the harness's watch saw its EndpointSlice: the part of
	// newSvc that is the API server's, not the proxy's.
	api []time.Duration
	// svcCall is, for each new service, how long the Service create call
	// took (the API server allocates its ClusterIP), and afterCall the rest
	// of newSvc: from the call's return to the first answer.
	svcCall, afterCall []time.Duration
	// lists is how long a bare client took to list every Service and
	// EndpointSlice just before the proxy started: the part of a cold
	// start no proxy can save.
	lists time.Duration
	// cpu is the cores used during the changes by the API server, etcd
	// and the proxy (CPU time over wall time).
	cpu     [3]float64
	rssKiB  int
	objects string
	note    string
}

type settings struct {
	n, e, changes int
	gap, timeout  time.Duration
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil && v >= 0 {
		return v
	}
	return def
}

// harness is the cluster and topology shared by every proxy of one run.
type harness struct {
	t                  *testing.T
	s                  settings
	node, client, pods *netnstest.NS
	cp                 *cluster.ControlPlane
	clusterIPs         []string      // by service index
	endpoints          [][]string    // by service index
	sample             []int         // service indexes probed for the cold start
	nextIP             atomic.Uint32 // fresh pod IPs for changes
	logDir             string
	// seen holds when the harness's own watch saw each EndpointSlice
	// added (by name): the API path of a new service, which every proxy
	// waits for as well.
	seenMu sync.Mutex
	seen   map[string]time.Time
}

func TestScale(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-save", "conntrack")
	cluster.RequireKubeBins(t)
	s := settings{
		n:       envInt("RULEGEN_SCALE_SERVICES", 200),
		e:       envInt("RULEGEN_SCALE_ENDPOINTS", 10),
		changes: envInt("RULEGEN_SCALE_CHANGES", 3),
		gap:     envDuration("RULEGEN_SCALE_GAP", 1100*time.Millisecond),
		timeout: envDuration("RULEGEN_SCALE_TIMEOUT", 10*time.Minute),
	}
	run := proxies
	if v := os.Getenv("RULEGEN_SCALE_PROXIES"); v != "" {
		want := strings.Split(v, ",")
		run = slices.DeleteFunc(slices.Clone(proxies), func(p proxy) bool { return !slices.Contains(want, p.name) })
		if len(run) == 0 {
			t.Fatalf("RULEGEN_SCALE_PROXIES=%q names none of the proxies", v)
		}
	}
	h := newHarness(t, s)
	var results []*result
	for _, p := range run {
		r := h.measure(p)
		results = append(results, r)
		t.Logf("%s: cold start %s, new service %s, endpoint change %s, peak RSS %s, kernel %s %s", p.name,
			fmtCold(r.cold, s.timeout), fmtMedian(r.newSvc), fmtMedian(r.epChg), fmtKiB(r.rssKiB), r.objects, r.note)
	}
	table := report(s, results)
	fmt.Print(table)
	if out := os.Getenv("RULEGEN_SCALE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, r := range results {
		if r.cold == 0 && !r.kube {
			t.Errorf("%s did not serve all sampled services within %s", r.name, s.timeout)
		}
	}
}

func newHarness(t *testing.T, s settings) *harness {
	h := &harness{t: t, s: s, logDir: t.TempDir()}
	tp := NewTopology(t, bins.server, clusterCIDR, strconv.Itoa(podPort), "3h", filepath.Join(h.logDir, "pods.log"))
	h.node, h.client, h.pods = tp.Node, tp.Client, tp.Pods
	n := h.node
	h.cp = cluster.StartControlPlane(t, n)
	h.createNode()
	h.createServices()
	h.watchSlices()
	return h
}

// watchSlices watches the EndpointSlices created from now on and notes
// when each was seen (see harness.seen), until the test ends. It starts
// from the resource version of a one-item list, so that the existing
// slices are not sent again; a watch the server closes is opened again
// from the last version seen.
func (h *harness) watchSlices() {
	h.seen = map[string]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	api := h.cp.Client.DiscoveryV1().EndpointSlices(namespace)
	list, err := api.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		h.t.Fatal(err)
	}
	rv := list.ResourceVersion
	go func() {
		for ctx.Err() == nil {
			w, err := api.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			for ev := range w.ResultChan() {
				es, ok := ev.Object.(*discovery.EndpointSlice)
				if !ok {
					continue
				}
				rv = es.ResourceVersion
				if ev.Type == watch.Added {
					h.seenMu.Lock()
					h.seen[es.Name] = time.Now()
					h.seenMu.Unlock()
				}
			}
			w.Stop()
		}
	}()
}

func (h *harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func (h *harness) createNode() {
	ctx, cancel := h.ctx()
	defer cancel()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	node, err := h.cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	node.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}
	if _, err := h.cp.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// podIP returns the k-th pod address of the range (k >= 1).
func podIP(k uint32) string {
	return netip.AddrFrom4([4]byte{10, byte(128 + k>>16), byte(k >> 8), byte(k)}).String()
}

func (h *harness) service(name string, eps []string) (*v1.Service, *discovery.EndpointSlice) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Spec: v1.ServiceSpec{
		Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(podPort)}}}}
	return svc, slice(name, eps)
}

func slice(name string, eps []string) *discovery.EndpointSlice {
	port, proto, pname, ready := int32(podPort), v1.ProtocolTCP, "http", true
	es := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: namespace, Labels: map[string]string{discovery.LabelServiceName: name}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: &pname, Protocol: &proto, Port: &port}},
	}
	for i, ip := range eps {
		node := fmt.Sprintf("node-%d", i%10)
		es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{ip}, NodeName: &node,
			Conditions: discovery.EndpointConditions{Ready: &ready}})
	}
	return es
}

// createServices creates N services and their slices with 32 writers.
func (h *harness) createServices() {
	start := time.Now()
	n, e := h.s.n, h.s.e
	h.clusterIPs = make([]string, n)
	h.endpoints = make([][]string, n)
	work := make(chan int)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range work {
				eps := make([]string, e)
				for j := range eps {
					eps[j] = podIP(uint32(i*e + j + 1))
				}
				if i == n-1 {
					// The last service is large: beyond rulegen's numgen
					// cascade, so its DNAT map carries real packets too.
					for j := range bigService {
						eps = append(eps, podIP(uint32(n*e+j+1)))
					}
				}
				if err := h.create(fmt.Sprintf("svc-%d", i), eps, i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
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
	h.nextIP.Store(uint32(n*e + bigService + 1))
	// Sample up to 100 services, spread evenly, the last one included.
	step := max(1, n/100)
	for i := n - 1; i >= 0 && len(h.sample) < 100; i -= step {
		h.sample = append(h.sample, i)
	}
	h.t.Logf("created %d services x %d endpoints in %s", n, e, time.Since(start).Round(time.Millisecond))
}

// create writes a service and its slice; i >= 0 records it at that index.
func (h *harness) create(name string, eps []string, i int) error {
	ctx, cancel := h.ctx()
	defer cancel()
	svc, es := h.service(name, eps)
	got, err := h.cp.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if i >= 0 {
		h.clusterIPs[i], h.endpoints[i] = got.Spec.ClusterIP, eps
	}
	_, err = h.cp.Client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, es, metav1.CreateOptions{})
	return err
}

// ask opens one TCP connection from the client to addr and returns the pod
// address that answered ("" and an error if none did within timeout).
func (h *harness) ask(addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := h.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("hi\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.Fields(line)[0], nil
}

func svcAddr(ip string) string { return net.JoinHostPort(ip, "80") }

// allAnswer probes the services idx in turn, one connection per
// millisecond (at most 100 waiting, each for at most 100 ms), until each has
// answered from one of its endpoints, the timeout passes or the process pid
// exits. It returns the time from start to the last first answer and to
// the first one, and how many services never answered.
func (h *harness) allAnswer(start time.Time, idx []int, pid int) (last, first time.Duration, pending int) {
	var mu sync.Mutex
	done := map[int]time.Duration{}
	sem := make(chan struct{}, 100)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for next := 0; time.Since(start) < h.s.timeout; next++ {
		mu.Lock()
		n := len(done)
		mu.Unlock()
		if n == len(idx) {
			break
		}
		if next%1000 == 0 && exited(pid) {
			break
		}
		<-tick.C
		i := idx[next%len(idx)]
		mu.Lock()
		_, ok := done[i]
		mu.Unlock()
		if ok {
			continue
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			got, err := h.ask(svcAddr(h.clusterIPs[i]), 100*time.Millisecond)
			if err == nil && slices.Contains(h.endpoints[i], got) {
				mu.Lock()
				if _, ok := done[i]; !ok {
					done[i] = time.Since(start)
				}
				mu.Unlock()
			}
		}()
	}
	for range cap(sem) { // wait for the probes in flight
		sem <- struct{}{}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range done {
		last = max(last, d)
		if first == 0 || d < first {
			first = d
		}
	}
	return last, first, len(idx) - len(done)
}

// answering probes every sampled service once, in parallel, and returns
// which answered from one of its own endpoints.
func (h *harness) answering(idx []int) map[int]bool {
	var mu sync.Mutex
	ok := map[int]bool{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, i := range idx {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := h.ask(svcAddr(h.clusterIPs[i]), 300*time.Millisecond)
			if err == nil && slices.Contains(h.endpoints[i], got) {
				mu.Lock()
				ok[i] = true
				mu.Unlock()
			} else if err == nil {
				h.t.Errorf("service %d (%s) answered from %s, not one of its endpoints", i, h.clusterIPs[i], got)
			}
		})
	}
	wg.Wait()
	return ok
}

// listsAlone lists every Service and EndpointSlice at once, as a proxy's
// informers do at its start (protobuf, from the API server's watch cache),
// with a client of the harness's own, and returns how long the slower
// took.
func (h *harness) listsAlone() time.Duration {
	cfg, err := clientcmd.BuildConfigFromFlags("", h.cp.Kubeconfig)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg.Dial = h.node.DialContext
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = cfg.ContentType
	c := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := h.ctx()
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var errs [2]error
	wg.Go(func() { _, errs[0] = c.CoreV1().Services("").List(ctx, metav1.ListOptions{ResourceVersion: "0"}) })
	wg.Go(func() {
		_, errs[1] = c.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	})
	wg.Wait()
	d := time.Since(start)
	for _, err := range errs {
		if err != nil {
			h.t.Fatalf("lists: %v", err)
		}
	}
	return d
}

// measure runs one proxy from a clean node and measures it.
func (h *harness) measure(p proxy) *result {
	t := h.t
	r := &result{proxy: p}
	if ok := h.answering(h.sample[:1]); len(ok) > 0 {
		t.Fatalf("%s: a service answers before the proxy started: the last proxy's rules are still there", p.name)
	}
	r.lists = h.listsAlone()
	time.Sleep(h.s.gap)
	bin, args := p.args(h.cp.Kubeconfig)
	logFile := filepath.Join(h.logDir, p.name+".log")
	start := time.Now()
	cmd := h.node.StartLogged(logFile, bin, args...)
	defer h.clean(p, cmd)

	// Cold start: every fourth sampled service (25 of 100, the last service
	// included), probed in turn one connection per millisecond; then all
	// 100 must answer, each from one of its own endpoints.
	var cold []int
	for k := 0; k < len(h.sample); k += 4 {
		cold = append(cold, h.sample[k])
	}
	var prof sync.WaitGroup
	if !p.kube && os.Getenv("RULEGEN_SCALE_PROFILE") != "" {
		prof.Go(func() { h.cpuProfile(p, start) })
	}
	d, first, pending := h.allAnswer(start, cold, cmd.Process.Pid)
	prof.Wait()
	if pending == 0 {
		for try := 0; try < 5; try++ {
			ok := h.answering(h.sample)
			if pending = len(h.sample) - len(ok); pending == 0 {
				break
			}
			time.Sleep(time.Second)
		}
	}
	if pending > 0 {
		if exited(cmd.Process.Pid) {
			r.note = "(exited)"
		}
		r.note += fmt.Sprintf("(%d sampled services never answered)", pending)
		r.rssKiB = rss(cmd.Process.Pid)
		b, _ := os.ReadFile(logFile)
		t.Logf("%s log tail:\n%s", p.name, tail(string(b), 3000))
		return r
	}
	r.cold = d
	t.Logf("%s: the first sampled service answered %s after the start, the last %s", p.name, first.Round(time.Millisecond), d.Round(time.Millisecond))
	h.profile(p, "cold")
	r.objects = h.objects(p.kind)
	if out, err := h.node.Run(nil, "nft", "list", "ruleset"); err == nil {
		os.WriteFile(filepath.Join(h.logDir, p.name+".nft"), []byte(out), 0o644)
	}

	apiPID, etcdPID := h.cp.PIDs()
	pids := [3]int{apiPID, etcdPID, cmd.Process.Pid}
	var cpu0 [3]time.Duration
	for i, pid := range pids {
		cpu0[i] = cpuTime(pid)
	}
	changesStart := time.Now()
	for c := range h.s.changes {
		time.Sleep(h.s.gap)
		if d, api, call, ok := h.newService(fmt.Sprintf("new-%s-%d", p.name, c)); ok {
			r.newSvc = append(r.newSvc, d)
			r.svcCall = append(r.svcCall, call)
			r.afterCall = append(r.afterCall, d-call)
			if api > 0 {
				r.api = append(r.api, api)
			}
		} else {
			r.note = "(a new service never answered)"
		}
		time.Sleep(h.s.gap)
		if d, ok := h.replaceEndpoint(h.sample[c%len(h.sample)]); ok {
			r.epChg = append(r.epChg, d)
		} else {
			r.note = "(a replaced endpoint never answered)"
		}
	}
	wall := time.Since(changesStart)
	for i, pid := range pids {
		if t := cpuTime(pid); t >= cpu0[i] { // else the process is gone
			r.cpu[i] = (t - cpu0[i]).Seconds() / wall.Seconds()
		}
	}
	r.rssKiB = rss(cmd.Process.Pid)
	h.profile(p, "changes")
	if dir := os.Getenv("RULEGEN_SCALE_PROFILE"); dir != "" {
		if b, err := os.ReadFile(logFile); err == nil {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", p.name, h.s.n)), b, 0o644)
		}
	}
	if r.note != "" {
		b, _ := os.ReadFile(logFile)
		t.Errorf("%s %s; log tail:\n%s", p.name, r.note, tail(string(b), 3000))
	}
	return r
}

const changeTimeout = 30 * time.Second

// bigService is how many endpoints the last service has beyond E.
const bigService = 40

// newService creates a service with E fresh endpoints and returns the time
// from the create call until it answers from one of them, until the
// harness's watch saw its EndpointSlice (0: not seen), and how long the
// Service create call took.
func (h *harness) newService(name string) (time.Duration, time.Duration, time.Duration, bool) {
	eps := make([]string, h.s.e)
	for j := range eps {
		eps[j] = podIP(h.nextIP.Add(1))
	}
	start := time.Now()
	ctx, cancel := h.ctx()
	defer cancel()
	svc, es := h.service(name, eps)
	got, err := h.cp.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	call := time.Since(start)
	if _, err := h.cp.Client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	d, ok := h.until(start, svcAddr(got.Spec.ClusterIP), 1, func(ip string) bool { return slices.Contains(eps, ip) })
	h.seenMu.Lock()
	seen, watched := h.seen[es.Name]
	h.seenMu.Unlock()
	var api time.Duration
	if watched {
		api = seen.Sub(start)
	}
	return d, api, call, ok
}

// replaceEndpoint replaces the first endpoint of service i with a fresh pod
// and returns the time from the update call until that pod answers.
func (h *harness) replaceEndpoint(i int) (time.Duration, bool) {
	fresh := podIP(h.nextIP.Add(1))
	eps := slices.Clone(h.endpoints[i])
	eps[0] = fresh
	start := time.Now()
	ctx, cancel := h.ctx()
	defer cancel()
	if _, err := h.cp.Client.DiscoveryV1().EndpointSlices(namespace).Update(ctx, slice(fmt.Sprintf("svc-%d", i), eps), metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.endpoints[i] = eps
	// Each connection reaches the fresh pod with probability 1/E: send
	// several per round.
	return h.until(start, svcAddr(h.clusterIPs[i]), min(len(eps), 8), func(ip string) bool { return ip == fresh })
}

// until opens burst connections to addr every 2 ms (each waits at most
// 150 ms for its answer, at most 75 at a time) until one is answered by a
// pod that want accepts, and returns the time from start to that answer. Probes
// overlap because a connection sent before the rules exist is not refused
// at once: its SYN is lost and would wait for TCP's retransmission. A
// service picks one of its endpoints at random, so waiting for a particular
// pod takes a few probes, 2 ms apart.
func (h *harness) until(start time.Time, addr string, burst int, want func(ip string) bool) (time.Duration, bool) {
	found := make(chan time.Duration, 1)
	stop := make(chan struct{})
	defer close(stop)
	sem := make(chan struct{}, 75)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(changeTimeout - time.Since(start))
	for {
		select {
		case d := <-found:
			return d, true
		case <-timeout:
			return 0, false
		case <-tick.C:
			for range burst {
				select {
				case sem <- struct{}{}:
				default:
					continue // 75 probes in flight already
				}
				go func() {
					defer func() { <-sem }()
					if ip, err := h.ask(addr, 150*time.Millisecond); err == nil && want(ip) {
						select {
						case found <- time.Since(start):
						default:
						}
					}
				}()
			}
		}
	}
}

// profile saves rulegen's heap profile in RULEGEN_SCALE_PROFILE, if set.
func (h *harness) profile(p proxy, when string) {
	dir := os.Getenv("RULEGEN_SCALE_PROFILE")
	if dir == "" || p.kube {
		return
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-%d-%s.heap", p.name, h.s.n, when))
	if err := h.getProfile("heap profile", "/debug/pprof/heap", out, 30*time.Second,
		"go tool pprof -sample_index=alloc_space "+out); err != nil {
		h.t.Logf("heap profile: %v", err)
	}
}

// cpuProfile saves a CPU profile of 1+N/10000 seconds of rulegen's cold
// start in RULEGEN_SCALE_PROFILE: it asks for one as soon as the metrics
// address answers (60-100 ms after the start), trying every 2 ms for at
// most 5 s.
func (h *harness) cpuProfile(p proxy, start time.Time) {
	secs := 1 + h.s.n/10000
	out := filepath.Join(os.Getenv("RULEGEN_SCALE_PROFILE"), fmt.Sprintf("%s-%d-cold.cpu", p.name, h.s.n))
	for time.Since(start) < 5*time.Second {
		asked := time.Since(start)
		hint := fmt.Sprintf("from %s after the start; go tool pprof %s", asked.Round(time.Millisecond), out)
		if h.getProfile("CPU profile", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), out, time.Duration(secs+30)*time.Second, hint) == nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	h.t.Logf("CPU profile: the metrics address did not answer within 5 s")
}

// getProfile saves the profile at path of rulegen's metrics address in
// the file out. It returns the error of a request nothing answered (the
// caller may ask again); anything else, a refusal or the file saved (with
// hint), it logs as what.
func (h *harness) getProfile(what, path, out string, timeout time.Duration, hint string) error {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: h.node.DialContext}}
	resp, err := c.Get("http://127.0.0.1:10249" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if resp.StatusCode != http.StatusOK {
		h.t.Logf("%s: %s: %s", what, resp.Status, tail(string(b), 300))
	} else if err := os.WriteFile(out, b, 0o644); err != nil {
		h.t.Logf("%s: %v", what, err)
	} else {
		h.t.Logf("%s: %s (%s)", what, out, hint)
	}
	return nil
}

// clean stops the proxy and removes everything it left in the node.
func (h *harness) clean(p proxy, cmd *exec.Cmd) {
	netnstest.Stop(cmd, syscall.SIGTERM, 30*time.Second)
	bin, _ := p.args("")
	if out, err := h.node.Run(nil, bin, "--cleanup"); err != nil {
		h.t.Logf("%s --cleanup: %v\n%s", p.name, err, tail(out, 1000))
	}
	h.node.MustRun(nil, "nft", "flush", "ruleset")
	h.node.Run(nil, "conntrack", "-F")
}

// exited reports whether a process started by the harness has exited (it
// stays a zombie until the cleanup waits for it).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) == 0 || f[0] == "Z" || f[0] == "X"
}

// rss returns the peak resident set size of a process in KiB (VmHWM).
func rss(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// cpuTime is the CPU time a process has used, all its threads (utime and
// stime of /proc/PID/stat, in clock ticks of USER_HZ, which is 100 on x86
// and arm64), or 0 if it is gone.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (utime and stime are fields 14 and 15).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// objects counts what the proxy put in the kernel: chains, rules and set
// elements from nft (nftables modes), chains and rules from iptables-save
// (iptables modes).
func (h *harness) objects(kind string) string {
	if kind == "ipt" {
		out, err := h.node.Run(nil, "iptables-save")
		if err != nil {
			return "?"
		}
		var chains, rules int
		for _, l := range strings.Split(out, "\n") {
			switch {
			case strings.HasPrefix(l, ":"):
				chains++
			case strings.HasPrefix(l, "-A "):
				rules++
			}
		}
		return fmt.Sprintf("%d chains, %d rules", chains, rules)
	}
	out, err := h.node.Run(nil, "nft", "-j", "list", "ruleset")
	if err != nil {
		return "?"
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return "?"
	}
	var chains, rules, elems int
	for _, o := range doc.Nftables {
		for k, v := range o {
			switch k {
			case "chain":
				chains++
			case "rule":
				rules++
			case "set", "map":
				var s struct {
					Elem []json.RawMessage `json:"elem"`
				}
				json.Unmarshal(v, &s)
				elems += len(s.Elem)
			}
		}
	}
	return fmt.Sprintf("%d chains, %d rules, %d elements", chains, rules, elems)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtMedian(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	return fmtDur(median(ds))
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

func fmtCold(d, timeout time.Duration) string {
	if d == 0 {
		return "> " + timeout.String()
	}
	return fmtDur(d)
}

func fmtKiB(k int) string { return fmt.Sprintf("%.0f MiB", float64(k)/1024) }

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// report formats the table and the ratios against kube-proxy.
func report(s settings, rs []*result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "\nScale harness: %d services x %d endpoints, %d changes of each kind per proxy (%s apart), host %s, %s\n\n",
		s.n, s.e, s.changes, s.gap, host, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("| proxy | cold start | new service (median) | of which the API path (median) | endpoint replaced (median) | peak RSS | kernel objects |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	by := map[string]*result{}
	for _, r := range rs {
		by[r.name] = r
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s %s |\n", r.name, fmtCold(r.cold, s.timeout), fmtMedian(r.newSvc),
			fmtMedian(r.api), fmtMedian(r.epChg), fmtKiB(r.rssKiB), r.objects, r.note)
	}
	b.WriteString("\n\"Of which the API path\": from the create calls of a new service until the harness's own watch saw its EndpointSlice, which every proxy waits for as well.\n")
	// note writes a line of one figure per proxy.
	note := func(title, sep string, figure func(r *result) string) {
		b.WriteString(title)
		for i, r := range rs {
			if i > 0 {
				b.WriteString(sep)
			}
			fmt.Fprintf(&b, " %s %s", r.name, figure(r))
		}
		b.WriteString(".\n")
	}
	note("A bare client's lists of every Service and EndpointSlice (protobuf, from the API server's cache), just before each proxy started: the part of a cold start no proxy can save:", ",",
		func(r *result) string { return r.lists.Round(time.Millisecond).String() })
	note("The new service's Service create call alone (the API server allocates its ClusterIP), and the rest, from the call's return to the first answer (medians):", ";",
		func(r *result) string { return fmtMedian(r.svcCall) + " and " + fmtMedian(r.afterCall) })
	note("Cores used during the changes (CPU time over wall time; the pauses between changes included) by the API server, etcd and the proxy:", ";",
		func(r *result) string { return fmt.Sprintf("%.2f, %.2f, %.2f", r.cpu[0], r.cpu[1], r.cpu[2]) })
	b.WriteString("\n")
	ratio := func(what string, ours, theirs *result, get func(*result) float64) {
		if ours == nil || theirs == nil {
			return
		}
		o, th := get(ours), get(theirs)
		switch {
		case what == "cold start" && theirs.cold == 0 && o > 0:
			// kube-proxy never finished: its figure is at least the timeout.
			fmt.Fprintf(&b, "- %s, %s vs %s: more than %.0fx (%s did not finish in %s)\n", what, ours.name, theirs.name,
				s.timeout.Seconds()/o, theirs.name, s.timeout)
		case o <= 0 || th <= 0:
			fmt.Fprintf(&b, "- %s, %s vs %s: not measured\n", what, ours.name, theirs.name)
		default:
			fmt.Fprintf(&b, "- %s, %s vs %s: %.1fx\n", what, ours.name, theirs.name, th/o)
		}
	}
	cold := func(r *result) float64 { return r.cold.Seconds() }
	newSvc := func(r *result) float64 { return median(r.newSvc).Seconds() }
	epChg := func(r *result) float64 { return median(r.epChg).Seconds() }
	mem := func(r *result) float64 { return float64(r.rssKiB) }
	b.WriteString("Ratios (kube-proxy's figure / rulegen's: above 1 means rulegen is faster or smaller):\n\n")
	for _, pair := range [][2]string{
		{"rulegen-nft", "kube-proxy-nft"}, {"rulegen-nft", "kube-proxy-nft-minsync0"}, {"rulegen-nft", "kube-proxy-ipt"},
		{"rulegen-ipt", "kube-proxy-ipt"},
	} {
		o, th := by[pair[0]], by[pair[1]]
		ratio("cold start", o, th, cold)
		ratio("new service", o, th, newSvc)
		ratio("endpoint replaced", o, th, epChg)
		ratio("peak RSS", o, th, mem)
	}
	return b.String()
}
