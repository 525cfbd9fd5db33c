package sync

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rulegen/rulegen/pkg/rules"
)

// testNode is this proxier's Node, 10.0.0.1, changed by opts.
func testNode(opts ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}}}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func deleting(n *v1.Node) { n.DeletionTimestamp = &metav1.Time{Time: time.Unix(900, 0)} }
func autoscalerTaint(n *v1.Node) {
	n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: TaintToBeDeleted, Value: "1700000000", Effect: v1.TaintEffectNoSchedule})
}

// get answers one request to the status servers of p.
func get(t *testing.T, p *Proxier, m *Metrics, path string) (*httptest.ResponseRecorder, ProxyHealth) {
	t.Helper()
	srvs := statusServers("127.0.0.1:10256", "127.0.0.1:10249", false, p, m)
	var h http.Handler
	for _, s := range srvs {
		if s.Addr == "127.0.0.1:10256" {
			h = s.Handler
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	var body ProxyHealth
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: body %q is not kube-proxy's JSON: %v", path, w.Body, err)
	}
	return w, body
}

// TestHealthzAndLivez: kube-proxy's answers (pkg/proxy/healthcheck
// proxy_health.go, v1.37.2) in each state: status codes, headers, and the
// JSON fields. /livez ignores the Node; /healthz fails for a Node that is
// unknown, deleted, being deleted or tainted by the cluster autoscaler.
func TestHealthzAndLivez(t *testing.T) {
	synced := func(t *testing.T, p *Proxier, _ *fakeKernel) {
		p.OnNode(testNode(), false)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name          string
		setup         func(t *testing.T, p *Proxier, k *fakeKernel)
		healthz       int
		livez         int
		eligible      bool
		familyHealthy bool // the "IPv4" status (none before the first sync)
	}{
		{"before the watches synced: Node unknown", func(*testing.T, *Proxier, *fakeKernel) {}, 503, 200, false, true},
		{"healthy", synced, 200, 200, true, true},
		{"healthy long after the last change (periodic syncs queue nothing)", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.clock.(*fakeClock).Step(10 * time.Minute)
		}, 200, 200, true, true},
		{"a change waits less than the timeout", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			p.clock.(*fakeClock).Step(59 * time.Second)
		}, 200, 200, true, true},
		{"stale sync: a change waits the timeout", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			p.clock.(*fakeClock).Step(60 * time.Second)
		}, 503, 503, true, false},
		{"stale sync: syncs fail", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			k.fail = true
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			for range 4 {
				p.clock.(*fakeClock).Step(20 * time.Second)
				if p.Sync() == nil {
					t.Fatal("the sync should fail")
				}
			}
		}, 503, 503, true, false},
		{"the first sync fails for the timeout", func(t *testing.T, p *Proxier, k *fakeKernel) {
			p.OnNode(testNode(), false)
			k.fail = true
			p.Sync()
			p.clock.(*fakeClock).Step(60 * time.Second)
		}, 503, 503, true, false},
		{"healthy again after a successful sync", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			k.fail = true
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			p.Sync()
			p.clock.(*fakeClock).Step(2 * time.Minute)
			k.fail = false
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
		}, 200, 200, true, true},
		{"Node being deleted", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.OnNode(testNode(deleting), false)
		}, 503, 200, false, true},
		{"Node tainted ToBeDeletedByClusterAutoscaler", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.OnNode(testNode(autoscalerTaint), false)
		}, 503, 200, false, true},
		{"taint removed", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.OnNode(testNode(autoscalerTaint), false)
			p.OnNode(testNode(), false)
		}, 200, 200, true, true},
		{"Node deleted", func(t *testing.T, p *Proxier, k *fakeKernel) {
			synced(t, p, k)
			p.OnNode(testNode(), true)
		}, 503, 200, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, _ := newTestProxier(Options{HealthTimeout: 60 * time.Second, SyncPeriod: 30 * time.Second})
			m := p.metrics
			tc.setup(t, p, k)
			now := p.clock.Now()
			for _, path := range []string{"/healthz", "/livez"} {
				w, body := get(t, p, m, path)
				want := tc.livez
				if path == "/healthz" {
					want = tc.healthz
				}
				if w.Code != want {
					t.Errorf("%s: %d, want %d (%s)", path, w.Code, want, w.Body)
				}
				if ct, ns := w.Header().Get("Content-Type"), w.Header().Get("X-Content-Type-Options"); ct != "application/json" || ns != "nosniff" {
					t.Errorf("%s: Content-Type %q, X-Content-Type-Options %q; want application/json, nosniff", path, ct, ns)
				}
				if body.Healthy != (tc.livez == 200) {
					t.Errorf("%s: healthy %v, want %v", path, body.Healthy, tc.livez == 200)
				}
				if !body.CurrentTime.Equal(now) {
					t.Errorf("%s: currentTime %v, want %v", path, body.CurrentTime, now)
				}
				if w.Code == 200 && !body.LastUpdated.Equal(now) {
					t.Errorf("%s: healthy, lastUpdated %v; want the current time, as kube-proxy", path, body.LastUpdated)
				}
				if path == "/healthz" {
					if body.NodeEligible == nil || *body.NodeEligible != tc.eligible {
						t.Errorf("/healthz: nodeEligible %v, want %v", body.NodeEligible, tc.eligible)
					}
				} else if strings.Contains(w.Body.String(), "nodeEligible") {
					t.Errorf("/livez has nodeEligible (kube-proxy's /livez does not): %s", w.Body)
				}
				if st, ok := body.Status["IPv4"]; ok && st.Healthy != tc.familyHealthy {
					t.Errorf("%s: status.IPv4.healthy %v, want %v", path, st.Healthy, tc.familyHealthy)
				}
			}
			if got := metricValue(t, m, "kubeproxy_proxy_healthz_total", "code", map[bool]string{true: "200", false: "503"}[tc.healthz == 200]); got != 1 {
				t.Errorf("kubeproxy_proxy_healthz_total for code %d: %v, want 1", tc.healthz, got)
			}
		})
	}
}

// TestHealthzBodyFields: the JSON keys are kube-proxy's, per family.
func TestHealthzBodyFields(t *testing.T) {
	p, _, _ := newTestProxier(Options{HealthTimeout: time.Minute, Families: []rules.Family{rules.IPv4, rules.IPv6}})
	p.OnNode(testNode(), false)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	w, _ := get(t, p, p.metrics, "/healthz")
	var raw map[string]any
	json.Unmarshal(w.Body.Bytes(), &raw)
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"currentTime", "healthy", "lastUpdated", "nodeEligible", "status"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want kube-proxy's %v", keys, want)
	}
	status, _ := raw["status"].(map[string]any)
	for _, f := range []string{"IPv4", "IPv6"} {
		fs, _ := status[f].(map[string]any)
		if _, ok := fs["lastUpdated"]; !ok || fs["healthy"] != true {
			t.Errorf("status.%s = %v, want lastUpdated and healthy true", f, status[f])
		}
	}
}

// TestMetricsServerExtras: the metrics address answers /healthz "ok" and
// /proxyMode, as kube-proxy's.
func TestMetricsServerExtras(t *testing.T) {
	p, _, _ := newTestProxier(Options{})
	for _, srv := range statusServers("127.0.0.1:10256", "127.0.0.1:10249", false, p, p.metrics) {
		if srv.Addr != "127.0.0.1:10249" {
			continue
		}
		for path, want := range map[string]string{"/healthz": "ok", "/proxyMode": "nftables"} {
			w := httptest.NewRecorder()
			srv.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			if w.Code != 200 || w.Body.String() != want {
				t.Errorf("%s: %d %q, want 200 %q", path, w.Code, w.Body, want)
			}
		}
	}
}

// metricValue is the value of the counter or gauge name whose labels
// include the given name/value pairs (-1 when there is none).
func metricValue(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, mt := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range mt.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metrics
				}
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := mt.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return mt.GetGauge().GetValue()
		}
	}
	return -1
}

// TestHealthFollowsTheFamilies: a family is reported once it is synced,
// and no longer once the node lost its last address of it.
func TestHealthFollowsTheFamilies(t *testing.T) {
	p, _, _ := newTestProxier(Options{HealthTimeout: time.Minute})
	dual := testNode(func(n *v1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: "fd00::1"})
	})
	for _, step := range []struct {
		name string
		node *v1.Node
		want []string
	}{
		{"dual-stack node", dual, []string{"IPv4", "IPv6"}},
		{"IPv6 address gone", testNode(), []string{"IPv4"}},
	} {
		p.OnNode(step.node, false)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for f := range p.Health().Status {
			got = append(got, f)
		}
		slices.Sort(got)
		if !slices.Equal(got, step.want) {
			t.Errorf("%s: status of %v, want %v", step.name, got, step.want)
		}
	}
}

// TestAChangeQueuesOnlyItsFamilies: as each of kube-proxy's per-family
// proxiers queues only the changes it sees, a change makes only its own
// families stale while syncs fail, and a change that changes nothing makes
// none stale.
func TestAChangeQueuesOnlyItsFamilies(t *testing.T) {
	dual := func(n *v1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: "fd00::1"})
	}
	lb := testService("lb", "10.96.0.2", v1.ProtocolTCP, 0)
	for _, tc := range []struct {
		name   string
		change func(p *Proxier)
		stale  []string // the families unhealthy after the timeout
	}{
		{"IPv4 EndpointSlice", func(p *Proxier) { p.OnSlice(testSlice("lb-1", "lb", v1.ProtocolTCP, "10.1.0.1"), false) }, []string{"IPv4"}},
		{"IPv6 EndpointSlice", func(p *Proxier) { p.OnSlice(testSlice("lb-2", "lb", v1.ProtocolTCP, "fd00:1::1"), false) }, []string{"IPv6"}},
		{"IPv4 EndpointSlice deleted", func(p *Proxier) { p.OnSlice(testSlice("lb-0", "lb", v1.ProtocolTCP, "10.1.0.9"), true) }, []string{"IPv4"}},
		{"IPv4 Service", func(p *Proxier) { p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false) }, []string{"IPv4"}},
		{"dual-stack Service", func(p *Proxier) {
			s := testService("a", "10.96.0.1", v1.ProtocolTCP, 0)
			s.Spec.ClusterIPs = []string{"10.96.0.1", "fd00:96::1"}
			p.OnService(s, false)
		}, []string{"IPv4", "IPv6"}},
		{"Service updated, nothing changed", func(p *Proxier) {
			s := lb.DeepCopy()
			s.Labels = map[string]string{"a": "b"}
			p.OnService(s, false)
		}, nil},
		{"IPv4 Service deleted", func(p *Proxier) { p.OnService(lb, true) }, []string{"IPv4"}},
		{"ServiceCIDR added (kube-proxy applies it without queueing)", func(p *Proxier) {
			p.OnServiceCIDR(&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"},
				Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.100.0.0/16"}}}, false)
		}, nil},
		{"Node address changed", func(p *Proxier) {
			p.OnNode(testNode(dual, func(n *v1.Node) { n.Status.Addresses[0].Address = "10.0.0.2" }), false)
		}, []string{"IPv4", "IPv6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, _ := newTestProxier(Options{HealthTimeout: time.Minute})
			p.OnNode(testNode(dual), false)
			p.OnService(lb, false)
			p.OnSlice(testSlice("lb-0", "lb", v1.ProtocolTCP, "10.1.0.9"), false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			k.fail = true
			tc.change(p)
			p.Sync()
			p.clock.(*fakeClock).Step(time.Minute)
			var stale []string
			for f, st := range p.Health().Status {
				if !st.Healthy {
					stale = append(stale, f)
				}
			}
			slices.Sort(stale)
			if !slices.Equal(stale, tc.stale) {
				t.Errorf("unhealthy families %v, want %v", stale, tc.stale)
			}
		})
	}
}

// TestHealthTimeoutDefaultsToTwiceTheSyncPeriod: kube-proxy fails /healthz
// when a change has waited twice its syncPeriod; so does rulegen unless
// told otherwise.
func TestHealthTimeoutDefaultsToTwiceTheSyncPeriod(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		syncPeriod, healthTimeout time.Duration
		healthyAt, staleAt        time.Duration // time since the change
	}{
		{"unset: twice the sync period", 3 * time.Second, 0, 5 * time.Second, 6 * time.Second},
		{"unset, kube-proxy's default sync period", 30 * time.Second, 0, 59 * time.Second, 60 * time.Second},
		{"set: as set", 3 * time.Second, 20 * time.Second, 19 * time.Second, 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, _ := newTestProxier(Options{SyncPeriod: tc.syncPeriod, HealthTimeout: tc.healthTimeout})
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			k.fail = true
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			p.Sync()
			p.clock.(*fakeClock).Step(tc.healthyAt)
			if !p.Health().Healthy {
				t.Errorf("unhealthy %s after the change", tc.healthyAt)
			}
			p.clock.(*fakeClock).Step(tc.staleAt - tc.healthyAt)
			if p.Health().Healthy {
				t.Errorf("healthy %s after the change", tc.staleAt)
			}
		})
	}
}
