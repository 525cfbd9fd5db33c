package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rulegen/rulegen/test/e2e"
	"github.com/rulegen/rulegen/test/netnstest"
)

var bins struct{ rulegen, server string }

func TestMain(m *testing.M) {
	os.Exit(e2e.RunTests(m, func(rulegen, server string) { bins.rulegen, bins.server = rulegen, server }))
}

const ns = "default"

// env is one cluster test environment: the e2e topology, a control plane
// on the node's loopback, and the rulegen daemon in the node.
type env struct {
	t       *testing.T
	tp      *e2e.Topology
	cp      *ControlPlane
	backend string
	daemon  *exec.Cmd
	logFile string
	diag    string // an address to look for in the kernel's table when a step fails
}

func newEnv(t *testing.T, backend string) *env {
	netnstest.Require(t, "nft", "iptables-restore")
	RequireKubeBins(t)
	tp := e2e.NewTopology(t, bins.server)
	cp := StartControlPlane(t, tp.Node)
	e := &env{t: t, tp: tp, cp: cp, backend: backend, logFile: filepath.Join(t.TempDir(), "rulegen.log")}
	e.createNode()
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) createNode() {
	e.t.Helper()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"topology.kubernetes.io/zone": "zone-a"}}}
	n, err := e.cp.Client.CoreV1().Nodes().Create(e.ctx(), n, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: e2e.NodeIP}, {Type: v1.NodeInternalIP, Address: e2e.NodeIP6}}
	if _, err := e.cp.Client.CoreV1().Nodes().UpdateStatus(e.ctx(), n, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// startDaemon starts `rulegen` in the node (its log appended to e.logFile).
func (e *env) startDaemon(extra ...string) {
	e.t.Helper()
	args := append([]string{"--kubeconfig", e.cp.Kubeconfig, "--node-name", "node-a",
		"--cluster-cidr", e2e.ClusterCIDR + "," + e2e.ClusterCIDR6, "--backend", e.backend,
		"--sync-period", "3s", "--health-timeout", "10s", "-v", "1"}, extra...)
	e.daemon = e.tp.Node.StartLogged(e.logFile, bins.rulegen, args...)
}

func (e *env) stopDaemon(sig syscall.Signal) { netnstest.Stop(e.daemon, sig, 10*time.Second) }

// log is the daemon's log so far.
func (e *env) log() string {
	b, _ := os.ReadFile(e.logFile)
	return string(b)
}

func (e *env) dumpLog() {
	b, _ := os.ReadFile(e.logFile)
	e.t.Logf("rulegen log (tail):\n%s", tail(string(b), 4000))
	if e.diag != "" && e.backend == "nftables" {
		out, _ := e.tp.Node.Run(nil, "sh", "-c", "nft list table ip rulegen | grep -n -e '"+e.diag+"' | head -20; nft list table ip rulegen | wc -l")
		e.t.Logf("kernel lines mentioning %s:\n%s", e.diag, out)
	}
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func (e *env) eventually(timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	e.t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < timeout {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	e.dumpLog()
	e.t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
	return 0
}

func (e *env) probe(from *netnstest.NS, addr string) string {
	out, _ := from.Run(nil, bins.server, "-probe", "tcp", "-addr", addr, "-timeout", "300ms")
	return strings.TrimSpace(out)
}

func (e *env) get(from *netnstest.NS, url string) string {
	out, _ := from.Run(nil, bins.server, "-http", url, "-timeout", "1s")
	return strings.TrimSpace(out)
}

// answeredBy polls until connections from client1 to addr are answered only
// by the pods in want, each of them at least once.
func (e *env) answeredBy(addr string, want ...string) time.Duration {
	e.t.Helper()
	sort.Strings(want)
	return e.eventually(15*time.Second, addr+" answered by "+strings.Join(want, ","), func() (bool, string) {
		seen := map[string]bool{}
		for i := 0; i < 12*len(want); i++ {
			f := strings.Fields(e.probe(e.tp.Client1, addr))
			if len(f) < 2 || f[0] != "ok" {
				return false, strings.Join(f, " ")
			}
			seen[f[1]] = true
			if len(seen) > len(want) {
				break
			}
		}
		var got []string
		for p := range seen {
			got = append(got, p)
		}
		sort.Strings(got)
		return strings.Join(got, ",") == strings.Join(want, ","), "answered by " + strings.Join(got, ",")
	})
}

func (e *env) createService(name string, typ v1.ServiceType, mutate ...func(*v1.Service)) *v1.Service {
	e.t.Helper()
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.ServiceSpec{
		Type:  typ,
		Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")}},
	}}
	for _, m := range mutate {
		m(svc)
	}
	svc, err := e.cp.Client.CoreV1().Services(ns).Create(e.ctx(), svc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

type ep struct {
	ip, node string
	ready    bool
}

var (
	podA = ep{e2e.PodA, "node-a", true}
	podB = ep{e2e.PodB, "node-a", true}
	podR = ep{e2e.PodR, "node-b", true}
)

// setSlice creates or updates the service's EndpointSlice.
func (e *env) setSlice(svc string, eps ...ep) {
	e.t.Helper()
	es := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-1", Namespace: ns, Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8080))}},
	}
	for _, p := range eps {
		es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{p.ip}, NodeName: ptr(p.node),
			Conditions: discovery.EndpointConditions{Ready: ptr(p.ready)}})
	}
	if err := putSlice(e.ctx(), e.cp, es); err != nil {
		e.t.Fatal(err)
	}
}

// putSlice creates the EndpointSlice, or replaces the one of its name.
func putSlice(ctx context.Context, cp *ControlPlane, es *discovery.EndpointSlice) error {
	c := cp.Client.DiscoveryV1().EndpointSlices(es.Namespace)
	old, err := c.Get(ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = old.ResourceVersion
		_, err = c.Update(ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = c.Create(ctx, es, metav1.CreateOptions{})
	}
	return err
}

func ptr[T any](v T) *T { return &v }

func addr(svc *v1.Service) string { return svc.Spec.ClusterIP + ":80" }

// TestDaemon is the daemon's life against a real API server, in order.
func TestDaemon(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { testDaemon(t, backend) })
	}
}

func testDaemon(t *testing.T, backend string) {
	e := newEnv(t, backend)
	e.startDaemon()
	web := e.createService("web", v1.ServiceTypeNodePort)
	e.setSlice("web", podA)

	t.Run("create-service-reachable", func(t *testing.T) {
		d := e.answeredBy(addr(web), "pod-a")
		t.Logf("reachable %s after the slice was written", d.Round(time.Millisecond))
		e.eventually(5*time.Second, "nodePort", func() (bool, string) {
			r := e.probe(e.tp.Client1, fmt.Sprintf("%s:%d", e2e.NodeIP, web.Spec.Ports[0].NodePort))
			return strings.HasPrefix(r, "ok pod-a"), r
		})
	})
	t.Run("scale-up", func(t *testing.T) {
		e.setSlice("web", podA, podB, podR)
		e.answeredBy(addr(web), "pod-a", "pod-b", "pod-r")
	})
	t.Run("scale-down", func(t *testing.T) {
		e.setSlice("web", podB)
		e.answeredBy(addr(web), "pod-b")
	})
	t.Run("endpoint-not-ready", func(t *testing.T) {
		e.setSlice("web", podA, ep{e2e.PodB, "node-a", false})
		e.answeredBy(addr(web), "pod-a")
	})
	t.Run("invalid-and-conflicting-objects-skipped", func(t *testing.T) {
		// Two services claim the same external IP and port: the first by
		// name keeps it, the conflict is logged, the rest keeps working.
		conflict := func(s *v1.Service) { s.Spec.ExternalIPs = []string{"172.16.0.9"} }
		e.createService("aaa-first", v1.ServiceTypeClusterIP, conflict)
		e.setSlice("aaa-first", podA)
		e.createService("zzz-second", v1.ServiceTypeClusterIP, conflict)
		e.setSlice("zzz-second", podB)
		e.answeredBy("172.16.0.9:80", "pod-a")
		e.answeredBy(addr(web), "pod-a")
		e.eventually(5*time.Second, "conflict logged", func() (bool, string) {
			b, _ := os.ReadFile(e.logFile)
			return strings.Contains(string(b), "is already used by default/aaa-first"), "no log line"
		})
	})
	t.Run("udp-conntrack-cleared-when-endpoint-goes", func(t *testing.T) {
		dns := e.createService("dns", v1.ServiceTypeClusterIP, func(s *v1.Service) {
			s.Spec.Ports = []v1.ServicePort{{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt(5353)}}
		})
		setUDP := func(ip, node string) {
			es := &discovery.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: "dns-1", Namespace: ns, Labels: map[string]string{discovery.LabelServiceName: "dns"}},
				AddressType: discovery.AddressTypeIPv4,
				Ports:       []discovery.EndpointPort{{Name: ptr("dns"), Protocol: ptr(v1.ProtocolUDP), Port: ptr(int32(5353))}},
				Endpoints:   []discovery.Endpoint{{Addresses: []string{ip}, NodeName: ptr(node), Conditions: discovery.EndpointConditions{Ready: ptr(true)}}},
			}
			c := e.cp.Client.DiscoveryV1().EndpointSlices(ns)
			if old, err := c.Get(e.ctx(), "dns-1", metav1.GetOptions{}); err == nil {
				es.ResourceVersion = old.ResourceVersion
				_, err = c.Update(e.ctx(), es, metav1.UpdateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			} else if _, err := c.Create(e.ctx(), es, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// The client always sends from the same port: one conntrack entry.
		udp := func() string {
			out, _ := e.tp.Client1.Run(nil, bins.server, "-probe", "udp", "-addr", dns.Spec.ClusterIP+":53", "-sport", "40053", "-timeout", "300ms")
			return strings.TrimSpace(out)
		}
		setUDP(e2e.PodA, "node-a")
		e.eventually(10*time.Second, "udp to pod-a", func() (bool, string) { r := udp(); return strings.HasPrefix(r, "ok pod-a"), r })
		// pod-a still answers, so only the deleted conntrack entry can move
		// this client to pod-b.
		setUDP(e2e.PodB, "node-a")
		e.eventually(10*time.Second, "udp moved to pod-b", func() (bool, string) { r := udp(); return strings.HasPrefix(r, "ok pod-b"), r })
		m := e.get(e.tp.Node, "http://127.0.0.1:10249/metrics")
		if !strings.Contains(m, `kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family="IPv4"}`) ||
			strings.Contains(m, `kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family="IPv4"} 0`) {
			t.Errorf("no conntrack entry was counted as deleted")
		}
	})
	t.Run("health-check-node-port", func(t *testing.T) {
		lb := e.createService("lb", v1.ServiceTypeLoadBalancer, func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		})
		url := fmt.Sprintf("http://%s:%d/", e2e.NodeIP, lb.Spec.HealthCheckNodePort)
		e.setSlice("lb", podA, podR)
		e.eventually(10*time.Second, "health check 200", func() (bool, string) {
			r := e.get(e.tp.Client1, url)
			return strings.HasPrefix(r, "200 ") && strings.Contains(r, `"localEndpoints": 1`) && strings.Contains(r, `"serviceProxyHealthy": true`), r
		})
		e.setSlice("lb", podR)
		e.eventually(10*time.Second, "health check 503", func() (bool, string) {
			r := e.get(e.tp.Client1, url)
			return strings.HasPrefix(r, "503 ") && strings.Contains(r, `"localEndpoints": 0`), r
		})
	})
	t.Run("healthz-and-metrics", func(t *testing.T) {
		// kube-proxy's defaults: /healthz on every address (a load
		// balancer probes the node IP), /metrics on the loopback.
		for _, url := range []string{"http://127.0.0.1:10256/healthz", "http://" + e2e.NodeIP + ":10256/healthz", "http://127.0.0.1:10256/livez"} {
			if r := e.get(e.tp.Node, url); !strings.HasPrefix(r, "200 ") || !strings.Contains(r, `"healthy":true`) {
				t.Errorf("%s: %s", url, r)
			}
		}
		// (The failure counters, kube-proxy's too, have no series before
		// a failure; pkg/sync's tests check that they are registered.)
		m := e.get(e.tp.Node, "http://127.0.0.1:10249/metrics")
		for _, want := range []string{`kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv4"}`,
			`kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv6"}`, `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`,
			"kubeproxy_sync_proxy_rules_endpoint_changes_total", "kubeproxy_sync_proxy_rules_service_changes_pending",
			`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"}`,
			`rulegen_sync_objects_total{kind="rules"}`, "rest_client_requests_total{",
			"go_goroutines", "process_resident_memory_bytes"} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("healthz-fails-while-the-node-goes-away", func(t *testing.T) {
		// The cluster autoscaler's taint: load balancers must drain the
		// node (/healthz 503), the pod must not be restarted (/livez 200).
		taint := func(on bool) {
			n, err := e.cp.Client.CoreV1().Nodes().Get(e.ctx(), "node-a", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Spec.Taints = nil
			if on {
				n.Spec.Taints = []v1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Value: "1700000000", Effect: v1.TaintEffectNoSchedule}}
			}
			if _, err := e.cp.Client.CoreV1().Nodes().Update(e.ctx(), n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		taint(true)
		e.eventually(10*time.Second, "/healthz 503 on a tainted node", func() (bool, string) {
			r := e.get(e.tp.Node, "http://127.0.0.1:10256/healthz")
			return strings.HasPrefix(r, "503 ") && strings.Contains(r, `"nodeEligible":false`), r
		})
		if r := e.get(e.tp.Node, "http://127.0.0.1:10256/livez"); !strings.HasPrefix(r, "200 ") {
			t.Errorf("/livez on a tainted node: %s", r)
		}
		taint(false)
		e.eventually(10*time.Second, "/healthz 200 once the taint is gone", func() (bool, string) {
			r := e.get(e.tp.Node, "http://127.0.0.1:10256/healthz")
			return strings.HasPrefix(r, "200 ") && strings.Contains(r, `"nodeEligible":true`), r
		})
	})
	t.Run("rules-flushed-by-hand-restored", func(t *testing.T) {
		// rulegen says so each time it finds its rules gone; a probe
		// cannot show that the flush broke the service, as with nftables
		// the kernel check may restore it before the probe's first packet.
		const noticed = "no longer in the kernel as written"
		before := strings.Count(e.log(), noticed)
		if backend == "nftables" {
			e.tp.Node.MustRun(nil, "nft", "flush", "table", "ip", "rulegen")
		} else {
			e.tp.Node.MustRun(nil, "iptables", "-t", "nat", "-F", "RG-SERVICES")
		}
		d := e.answeredBy(addr(web), "pod-a")
		t.Logf("restored %s after the flush (kernel check every 1s, sync period 3s)", d.Round(time.Millisecond))
		e.eventually(5*time.Second, "the rewrite after the flush logged", func() (bool, string) {
			n := strings.Count(e.log(), noticed)
			return n > before, fmt.Sprintf("%q logged %d times, as before the flush", noticed, n)
		})
	})
	t.Run("api-server-away", func(t *testing.T) {
		e.cp.StopAPIServer()
		time.Sleep(2 * time.Second)
		if r := e.probe(e.tp.Client1, addr(web)); !strings.HasPrefix(r, "ok pod-a") {
			t.Errorf("existing rules stopped working without the API server: %s", r)
		}
		e.cp.StartAPIServer()
		e.setSlice("web", podR)
		e.answeredBy(addr(web), "pod-r")
	})
	t.Run("restart-without-refusing-connections", func(t *testing.T) {
		stop := make(chan struct{})
		results := make(chan []string)
		go func() {
			var bad []string
			for i := 0; i < 400; i++ { // bounded: at most ~400 probes
				select {
				case <-stop:
					results <- bad
					return
				default:
				}
				if r := e.probe(e.tp.Client1, addr(web)); !strings.HasPrefix(r, "ok pod-r") {
					bad = append(bad, r)
				}
			}
			results <- bad
		}()
		e.stopDaemon(syscall.SIGKILL)
		time.Sleep(300 * time.Millisecond)
		e.startDaemon()
		e.eventually(20*time.Second, "restarted daemon healthy", func() (bool, string) {
			r := e.get(e.tp.Node, "http://127.0.0.1:10256/healthz")
			return strings.HasPrefix(r, "200 "), r
		})
		time.Sleep(500 * time.Millisecond)
		close(stop)
		if bad := <-results; len(bad) > 0 {
			t.Errorf("%d probes failed across the restart: %v", len(bad), bad)
		}
	})
	t.Run("service-deleted", func(t *testing.T) {
		if err := e.cp.Client.CoreV1().Services(ns).Delete(e.ctx(), "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.eventually(10*time.Second, "deleted service unreachable", func() (bool, string) {
			r := e.probe(e.tp.Client1, addr(web))
			return r == "timeout" || r == "refused", r
		})
	})
	t.Run("graceful-stop-leaves-rules", func(t *testing.T) {
		e.stopDaemon(syscall.SIGTERM)
		if r := e.probe(e.tp.Client1, "172.16.0.9:80"); !strings.HasPrefix(r, "ok pod-a") {
			t.Errorf("after SIGTERM the rules should stay: %s", r)
		}
	})
}
