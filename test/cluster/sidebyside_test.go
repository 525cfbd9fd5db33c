package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rulegen/rulegen/test/e2e"
)

// Where each proxy answers in TestHealthSideBySide. Both run on the host
// network of one node, so they cannot share a port on one address:
//
//   - kube-proxy keeps its defaults' ports (10256, 10249) on the loopback,
//     rulegen takes 10266 and 10267, as in the README's migration path;
//   - a healthCheckNodePort is one port number for both: each proxy binds
//     it on its --nodeport-addresses, so they get disjoint ones. kube-proxy
//     takes the addresses of the node's interfaces inside the range, and is
//     given 192.168.2.1 (the node's side of the link to client2, not in
//     the Node object); rulegen takes the Node object's addresses inside the
//     range, and is given the InternalIP. Both are IPv4, as the service.
const (
	kpHealthAddr  = "127.0.0.1:10256"
	kpMetricsAddr = "127.0.0.1:10249"
	rgHealthAddr  = "127.0.0.1:10266"
	rgMetricsAddr = "127.0.0.1:10267"
	kpNodePortIP  = "192.168.2.1"
	rgNodePortIP  = e2e.NodeIP
	// syncPeriod of both: the health timeout is twice the syncPeriod
	// (kube-proxy: cmd/kube-proxy/app/server.go; rulegen: the default of
	// --health-timeout).
	sbsSyncPeriod = 3 * time.Second
)

// comparedHeaders are the headers whose values must be equal in both
// answers: what a client or load balancer acts on. Every other header
// must be present in both or in neither, but its value is not compared:
// Date is the time of the answer, and Content-Length follows the body
// (compared byte for byte where the body must be identical).
var comparedHeaders = []string{"Content-Type", "X-Content-Type-Options", "X-Load-Balancing-Endpoint-Weight"}

// answer is one HTTP answer.
type answer struct {
	code   int
	header http.Header
	body   []byte
	err    error
}

func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.code, a.body)
}

// sideBySide is kube-proxy and rulegen on one node, one API server and one
// Node object.
type sideBySide struct {
	*env
	client *http.Client
	kpLog  string
	hcPort int32
	owner  *ownerSession // set while breakSyncs holds the proxies' tables
}

// ownerSession is the `nft -i` process that owns the proxies' tables.
type ownerSession struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// TestHealthSideBySide runs the real kube-proxy (nftables mode) and rulegen
// (nftables backend) on the same node, API server and Node object, drives
// the node through the states a load balancer cares about, and asks both
// the same HTTP questions in each: /healthz, /livez, an unknown path, and a
// LoadBalancer service's healthCheckNodePort (GET and HEAD). The answers
// must have the same status code, the same headers (values of
// comparedHeaders), the same JSON keys and the same values but for the
// timestamps, which are checked for format and consistency instead; a
// health check node port's body must be byte for byte kube-proxy's. Each
// state also pins kube-proxy's status codes, so the comparison cannot pass
// by both proxies going wrong the same way. Last, the metric names of what
// both do must exist in both.
func TestHealthSideBySide(t *testing.T) {
	s := startSideBySide(t)
	lb := s.createService("lb", v1.ServiceTypeLoadBalancer, func(sv *v1.Service) {
		sv.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	})
	s.hcPort = lb.Spec.HealthCheckNodePort
	s.setSlice("lb", podR)
	s.start()

	// Each case changes the cluster, waits until kube-proxy answers as
	// kube-proxy v1.37.2 must (and rulegen the same), then compares.
	type want struct{ healthz, livez, hc int }
	steps := []struct {
		name   string
		change func(t *testing.T)
		want   want
		// localEndpoints the health check node port reports.
		local int
	}{
		{name: "healthy-no-local-endpoints", want: want{200, 200, 503}},
		{name: "healthy-one-local-endpoint", change: func(*testing.T) { s.setSlice("lb", podA, podR) }, want: want{200, 200, 200}, local: 1},
		// Terminating endpoints still take traffic when no other is
		// left, but do not count for the health check (kube-proxy:
		// LocalReadyEndpoints).
		{name: "local-endpoint-only-terminating", change: func(*testing.T) {
			s.setSliceEndpoints("lb", "http", 8080, endpoint(e2e.PodA, "node-a", false, true, true), endpoint(e2e.PodR, "node-b", true, true, false))
		}, want: want{200, 200, 503}},
		{name: "healthy-two-local-endpoints", change: func(*testing.T) { s.setSlice("lb", podA, podB, podR) }, want: want{200, 200, 200}, local: 2},
		{name: "local-endpoint-not-ready", change: func(*testing.T) { s.setSlice("lb", ep{e2e.PodA, "node-a", false}, podR) }, want: want{200, 200, 503}},
		// The count is of pod IPs over all the service's ports.
		{name: "local-endpoints-on-two-ports", change: func(*testing.T) { s.twoPorts("lb") }, want: want{200, 200, 200}, local: 2},
		{name: "stale-sync", change: s.breakSyncs, want: want{503, 503, 503}, local: 2},
		{name: "synced-again", change: s.repairSyncs, want: want{200, 200, 200}, local: 2},
		{name: "autoscaler-taint", change: func(t *testing.T) { s.taint(t, true) }, want: want{503, 200, 200}, local: 2},
		{name: "taint-removed", change: func(t *testing.T) { s.taint(t, false) }, want: want{200, 200, 200}, local: 2},
		{name: "node-deleting", change: s.deleteNode, want: want{503, 200, 200}, local: 2},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.change != nil {
				st.change(t)
			}
			hc := "/"
			s.waitFor(t, 30*time.Second, map[string]int{"/healthz": st.want.healthz, "/livez": st.want.livez, hc: st.want.hc}, st.local)
			s.compare(t, http.MethodGet, "/healthz", true)
			s.compare(t, http.MethodGet, "/livez", true)
			s.compare(t, http.MethodHead, "/healthz", true)
			s.compare(t, http.MethodGet, "/no-such-path", true)
			s.compare(t, http.MethodGet, hc, false)
			s.compare(t, http.MethodGet, "/any/path?x=1", false)
			s.compare(t, http.MethodHead, hc, false)
		})
	}
	// After full and partial syncs, failed ones, and EndpointSlice changes
	// with a trigger time, both expose these too.
	t.Run("metric-names", func(t *testing.T) {
		s.compareMetricNames(t, kpMetricsAddr, rgMetricsAddr, "kubeproxy_sync_full_proxy_rules_duration_seconds",
			"kubeproxy_sync_partial_proxy_rules_duration_seconds", "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
			"kubeproxy_network_programming_duration_seconds")
	})
}

func startSideBySide(t *testing.T) *sideBySide {
	e := newEnv(t, "nftables")
	if _, err := os.Stat(filepath.Join(KubeBinDir(), "kube-proxy")); err != nil {
		t.Fatalf("kube-proxy not built: %v (make kube-bins)", err)
	}
	tr := &http.Transport{DialContext: e.tp.Node.DialContext, DisableKeepAlives: true}
	return &sideBySide{env: e, kpLog: filepath.Join(t.TempDir(), "kube-proxy.log"),
		client: &http.Client{Transport: tr, Timeout: 2 * time.Second}}
}

// start starts both proxies with the same command line (kube-proxy's
// flags, as a DaemonSet would pass them), but for the addresses that must
// differ (see kpHealthAddr). Neither is told a health timeout: both take
// twice the sync period.
func (s *sideBySide) start() {
	s.t.Helper()
	args := func(health, metrics, nodePortIP string) []string {
		return []string{"--kubeconfig", s.cp.Kubeconfig, "--hostname-override", "node-a", "--proxy-mode", "nftables",
			"--cluster-cidr", e2e.ClusterCIDR, "--conntrack-max-per-core", "0",
			"--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
			"--iptables-sync-period", sbsSyncPeriod.String(), "--nodeport-addresses", nodePortIP + "/32",
			"--healthz-bind-address", health, "--metrics-bind-address", metrics, "--v", "2"}
	}
	s.tp.Node.StartLogged(s.kpLog, filepath.Join(KubeBinDir(), "kube-proxy"), args(kpHealthAddr, kpMetricsAddr, kpNodePortIP)...)
	s.daemon = s.tp.Node.StartLogged(s.logFile, bins.rulegen, args(rgHealthAddr, rgMetricsAddr, rgNodePortIP)...)
}

// url is where kube-proxy (kp) or rulegen answers path: the health check
// node port when path does not start with /healthz, /livez or /no-such.
func (s *sideBySide) url(kp bool, path string) string {
	health, hc := rgHealthAddr, fmt.Sprintf("%s:%d", rgNodePortIP, s.hcPort)
	if kp {
		health, hc = kpHealthAddr, fmt.Sprintf("%s:%d", kpNodePortIP, s.hcPort)
	}
	for _, p := range []string{"/healthz", "/livez", "/no-such-path"} {
		if path == p {
			return "http://" + health + path
		}
	}
	return "http://" + hc + path
}

func (s *sideBySide) ask(method, url string) answer {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return answer{err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// waitFor polls (bounded by timeout) until kube-proxy gives the wanted
// status code on each path and its health check node port reports local
// endpoints: kube-proxy v1.37.2's answer in this state, which rulegen's
// must then match.
func (s *sideBySide) waitFor(t *testing.T, timeout time.Duration, codes map[string]int, local int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []string
	for time.Now().Before(deadline) {
		last = last[:0]
		for path, code := range codes {
			a := s.ask(http.MethodGet, s.url(true, path))
			ok := a.err == nil && a.code == code
			if ok && path == "/" {
				var b struct{ LocalEndpoints int }
				ok = json.Unmarshal(a.body, &b) == nil && b.LocalEndpoints == local
			}
			if !ok {
				last = append(last, fmt.Sprintf("kube-proxy %s: %s (want %d, %d local endpoints)", path, a, code, local))
			}
		}
		if len(last) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.dumpLogs()
	t.Fatalf("not within %s:\n%s", timeout, strings.Join(last, "\n"))
}

func proxyName(kp bool) string {
	if kp {
		return "kube-proxy"
	}
	return "rulegen"
}

func (s *sideBySide) dumpLogs() {
	b, _ := os.ReadFile(s.kpLog)
	s.t.Logf("kube-proxy log (tail):\n%s", tail(string(b), 3000))
	s.dumpLog()
}

// compare asks both proxies the same question and reports every
// difference. A health check node port's body (identicalBody) must be
// kube-proxy's byte for byte; /healthz and /livez bodies carry timestamps.
// The question is asked again (every 200 ms, for at most catchUp) while
// the answers differ: rulegen may apply the state's change a moment after
// kube-proxy (kube-proxy's stale sync, say, shows up to a sync period
// later or earlier than rulegen's).
func (s *sideBySide) compare(t *testing.T, method, path string, withTimes bool) {
	t.Helper()
	const catchUp = 10 * time.Second
	var diffs []string
	var kp, rg answer
	for deadline := time.Now().Add(catchUp); ; time.Sleep(200 * time.Millisecond) {
		kp, rg = s.ask(method, s.url(true, path)), s.ask(method, s.url(false, path))
		diffs = diffAnswers(kp, rg, method, !withTimes)
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, d := range diffs {
		t.Errorf("%s %s: %s", method, path, d)
	}
	if len(diffs) > 0 {
		t.Logf("kube-proxy: %s\nrulegen:    %s", kp, rg)
	}
	if method == http.MethodGet && withTimes && kp.err == nil && rg.err == nil && json.Valid(kp.body) {
		for _, a := range []struct {
			who string
			a   answer
		}{{"kube-proxy", kp}, {"rulegen", rg}} {
			if err := checkTimes(a.a); err != nil {
				t.Errorf("%s %s: %s: %v", method, path, a.who, err)
			}
		}
	}
}

// diffAnswers lists how rulegen's answer differs from kube-proxy's.
func diffAnswers(kp, rg answer, method string, identicalBody bool) []string {
	if kp.err != nil || rg.err != nil {
		return []string{fmt.Sprintf("kube-proxy: %v, rulegen: %v", kp.err, rg.err)}
	}
	var d []string
	if kp.code != rg.code {
		d = append(d, fmt.Sprintf("status: kube-proxy %d, rulegen %d", kp.code, rg.code))
	}
	for _, h := range comparedHeaders {
		if k, r := kp.header.Values(h), rg.header.Values(h); !slices.Equal(k, r) {
			d = append(d, fmt.Sprintf("header %s: kube-proxy %q, rulegen %q", h, k, r))
		}
	}
	names := func(h http.Header) []string {
		var out []string
		for n := range h {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	if k, r := names(kp.header), names(rg.header); !slices.Equal(k, r) {
		d = append(d, fmt.Sprintf("header names: kube-proxy %v, rulegen %v", k, r))
	}
	if method == http.MethodHead {
		if len(kp.body)+len(rg.body) != 0 {
			d = append(d, "a HEAD answer has a body")
		}
		return d
	}
	if identicalBody || !json.Valid(kp.body) {
		if string(kp.body) != string(rg.body) {
			d = append(d, fmt.Sprintf("body: kube-proxy %q, rulegen %q", kp.body, rg.body))
		}
		if k, r := kp.header.Get("Content-Length"), rg.header.Get("Content-Length"); k != r {
			d = append(d, fmt.Sprintf("header Content-Length: kube-proxy %q, rulegen %q", k, r))
		}
		return d
	}
	kf, err := flatJSON(kp.body)
	if err != nil {
		return append(d, "kube-proxy: "+err.Error())
	}
	rf, err := flatJSON(rg.body)
	if err != nil {
		return append(d, "rulegen: "+err.Error())
	}
	for _, p := range unionKeys(kf, rf) {
		k, inK := kf[p]
		r, inR := rf[p]
		switch {
		case !inK || !inR:
			d = append(d, fmt.Sprintf("JSON field %s: in kube-proxy's %v, in rulegen's %v", p, inK, inR))
		case isTimeField(p):
			// Compared for format and consistency by checkTimes.
		case k != r:
			d = append(d, fmt.Sprintf("JSON field %s: kube-proxy %v, rulegen %v", p, k, r))
		}
	}
	return d
}

// flatJSON returns the leaves of a JSON object by dotted path
// ("status.IPv4.healthy").
func flatJSON(b []byte) (map[string]any, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("body is not JSON: %w: %q", err, b)
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
			return
		}
		out[prefix] = v
	}
	walk("", v)
	return out, nil
}

func unionKeys(a, b map[string]any) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func isTimeField(path string) bool {
	return strings.HasSuffix(path, "lastUpdated") || path == "currentTime"
}

// checkTimes checks the timestamps of a /healthz or /livez answer, which
// differ between two proxies: each is RFC 3339 with nanoseconds;
// currentTime is now (within 5 s: one clock on one machine); no family was
// updated after currentTime; and, as kube-proxy answers, the top-level
// lastUpdated is "now" in a 200 answer (kept for older clients) and the
// latest family's otherwise.
func checkTimes(a answer) error {
	f, err := flatJSON(a.body)
	if err != nil {
		return err
	}
	times := map[string]time.Time{}
	for p, v := range f {
		if !isTimeField(p) {
			continue
		}
		str, _ := v.(string)
		tm, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return fmt.Errorf("%s: %q is not an RFC 3339 time", p, v)
		}
		times[p] = tm
	}
	now, ok := times["currentTime"]
	if !ok {
		return fmt.Errorf("no currentTime")
	}
	if d := time.Since(now); math.Abs(d.Seconds()) > 5 {
		return fmt.Errorf("currentTime %s is %s away from now", now, d)
	}
	var latest time.Time
	for p, tm := range times {
		if strings.HasPrefix(p, "status.") {
			if tm.After(now) {
				return fmt.Errorf("%s %s is after currentTime %s", p, tm, now)
			}
			if tm.After(latest) {
				latest = tm
			}
		}
	}
	last := times["lastUpdated"]
	if a.code == http.StatusOK {
		if d := last.Sub(now); d < 0 || d > time.Second {
			return fmt.Errorf("a 200 answer: lastUpdated %s is not currentTime %s", last, now)
		}
	} else if !last.Equal(latest) {
		return fmt.Errorf("a %d answer: lastUpdated %s is not the latest family's %s", a.code, last, latest)
	}
	return nil
}

// endpoint is an EndpointSlice endpoint with its conditions.
func endpoint(ip, node string, ready, serving, terminating bool) discovery.Endpoint {
	return discovery.Endpoint{Addresses: []string{ip}, NodeName: ptr(node),
		Conditions: discovery.EndpointConditions{Ready: ptr(ready), Serving: ptr(serving), Terminating: ptr(terminating)}}
}

// setSliceEndpoints creates or updates the slice <svc>-<port> with one
// port and eps.
func (s *sideBySide) setSliceEndpoints(svc, port string, target int32, eps ...discovery.Endpoint) {
	s.t.Helper()
	es := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-1", Namespace: ns, Labels: map[string]string{discovery.LabelServiceName: svc},
			// As the EndpointSlice controller writes it: both proxies
			// measure network programming latency from it.
			Annotations: map[string]string{v1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339)}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr(port), Protocol: ptr(v1.ProtocolTCP), Port: ptr(target)}},
		Endpoints:   eps,
	}
	if port != "http" {
		es.Name = svc + "-" + port
	}
	if err := putSlice(s.ctx(), s.cp, es); err != nil {
		s.t.Fatal(err)
	}
}

// twoPorts gives the service a second port, served by pod-b only, while
// pod-a serves the first: one local endpoint per port, two local
// endpoints (pod IPs) for the service.
func (s *sideBySide) twoPorts(svc string) {
	s.t.Helper()
	c := s.cp.Client.CoreV1().Services(ns)
	sv, err := c.Get(s.ctx(), svc, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	sv.Spec.Ports = append(sv.Spec.Ports[:1], v1.ServicePort{Name: "alt", Protocol: v1.ProtocolTCP, Port: 90, TargetPort: intstr.FromInt(9091)})
	if _, err := c.Update(s.ctx(), sv, metav1.UpdateOptions{}); err != nil {
		s.t.Fatal(err)
	}
	s.setSliceEndpoints(svc, "http", 8080, endpoint(e2e.PodA, "node-a", true, true, false), endpoint(e2e.PodR, "node-b", true, true, false))
	s.setSliceEndpoints(svc, "alt", 9091, endpoint(e2e.PodB, "node-a", true, true, false))
}

// proxyTables are both proxies' tables, one per family.
var proxyTables = []string{"ip kube-proxy", "ip6 kube-proxy", "ip rulegen", "ip6 rulegen"}

// breakSyncs makes every sync of both proxies fail, then makes a change
// that needs a sync. Both proxies write their tables in one transaction
// (kube-proxy through `nft -f`, rulegen through netlink); here each table is
// replaced by an empty one with nftables' "owner" flag, created by an
// `nft -i` session the test holds open: the kernel refuses every change of
// an owned table from another netlink socket (EPERM), and removes the table
// when its owner's socket closes (repairSyncs). Reads still work.
func (s *sideBySide) breakSyncs(t *testing.T) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", s.tp.Node.Name, "nft", "-i")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	s.owner = &ownerSession{cmd: cmd, stdin: stdin}
	var line []string
	for _, tb := range proxyTables {
		// add-delete-add: "delete" alone would fail the line for a
		// table that is not there.
		line = append(line, "add table "+tb, "delete table "+tb, "add table "+tb+" { flags owner; }")
	}
	// One line is one transaction: no sync slips in between.
	fmt.Fprintln(stdin, strings.Join(line, "; "))
	s.eventually(5*time.Second, "tables owned by the test", func() (bool, string) {
		for _, tb := range proxyTables {
			out, _ := s.tp.Node.Run(nil, "nft", "list", "table", strings.Fields(tb)[0], strings.Fields(tb)[1])
			if !strings.Contains(out, "flags owner") {
				return false, tb + ": " + out
			}
		}
		return true, ""
	})
	// A change for both to apply: another remote endpoint (the local ones
	// stay as they are).
	s.setSliceEndpoints("lb", "http", 8080, endpoint(e2e.PodA, "node-a", true, true, false), endpoint(e2e.PodR, "node-b", true, true, false),
		endpoint("10.244.2.8", "node-b", true, true, false))
	// The change is not late yet: for a third of the health timeout (twice
	// the sync period), both still answer 200.
	changed := time.Now()
	for time.Since(changed) < 2*sbsSyncPeriod/3 {
		for _, kp := range []bool{true, false} {
			if a := s.ask(http.MethodGet, s.url(kp, "/livez")); a.code != http.StatusOK {
				t.Fatalf("%s: /livez %s after the change: %s; want 200 until the change has waited %s", proxyName(kp),
					time.Since(changed).Round(time.Millisecond), a, 2*sbsSyncPeriod)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// repairSyncs ends the session that owns the tables: they vanish, and both
// proxies' next sync succeeds.
func (s *sideBySide) repairSyncs(t *testing.T) {
	t.Helper()
	if s.owner == nil {
		t.Fatal("syncs were not broken")
	}
	s.owner.stdin.Close()
	s.owner.cmd.Wait()
	s.owner = nil
}

// taint puts the cluster autoscaler's ToBeDeletedByClusterAutoscaler taint
// on node-a, or removes it.
func (s *sideBySide) taint(t *testing.T, on bool) {
	t.Helper()
	n, err := s.cp.Client.CoreV1().Nodes().Get(s.ctx(), "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = nil
	if on {
		n.Spec.Taints = []v1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Value: "1700000000", Effect: v1.TaintEffectNoSchedule}}
	}
	if _, err := s.cp.Client.CoreV1().Nodes().Update(s.ctx(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deleteNode deletes node-a, which a finalizer keeps: the Node stays,
// with a deletion timestamp, as while a node controller drains it.
func (s *sideBySide) deleteNode(t *testing.T) {
	t.Helper()
	c := s.cp.Client.CoreV1().Nodes()
	n, err := c.Get(s.ctx(), "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Finalizers = append(n.Finalizers, "rulegen.test/keep")
	if _, err := c.Update(s.ctx(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(s.ctx(), "node-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Get(s.ctx(), "node-a", metav1.GetOptions{}); err != nil || n.DeletionTimestamp == nil {
		t.Fatalf("node-a: want a deletion timestamp, got %v", err)
	}
}
