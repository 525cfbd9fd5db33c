package sync

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/test/netnstest"
)

// recordingListen is a HealthChecks.Listen that records the addresses
// asked for and listens on a free loopback port instead.
type recordingListen struct{ addrs []string }

func (r *recordingListen) listen(addr netip.AddrPort) (net.Listener, error) {
	r.addrs = append(r.addrs, addr.String())
	return net.Listen("tcp", "127.0.0.1:0")
}

// TestHealthCheckAnswers: kube-proxy's answers (pkg/proxy/healthcheck
// service_health.go, v1.37.2): any path; 200 only with local endpoints
// and a healthy proxy; the weight header; the body byte for byte. Unlike
// kube-proxy, only GET and HEAD.
func TestHealthCheckAnswers(t *testing.T) {
	svc := rules.ServiceKey{Namespace: "ns", Name: "a"}
	body := func(n int, healthy bool) string {
		return "{\n\t\"service\": {\n\t\t\"namespace\": \"ns\",\n\t\t\"name\": \"a\"\n\t},\n\t\"localEndpoints\": " +
			strconv.Itoa(n) + ",\n\t\"serviceProxyHealthy\": " + strconv.FormatBool(healthy) + "\n}"
	}
	for _, tc := range []struct {
		name, method, path string
		local              int
		proxyUnhealthy     bool
		code               int
	}{
		{"GET / with local endpoints", http.MethodGet, "/", 2, false, http.StatusOK},
		{"GET /healthz", http.MethodGet, "/healthz", 2, false, http.StatusOK},
		{"GET any other path", http.MethodGet, "/any/path", 2, false, http.StatusOK},
		{"HEAD", http.MethodHead, "/", 2, false, http.StatusOK},
		{"no local endpoints", http.MethodGet, "/", 0, false, http.StatusServiceUnavailable},
		{"proxy unhealthy (stale sync)", http.MethodGet, "/", 2, true, http.StatusServiceUnavailable},
		{"POST", http.MethodPost, "/", 2, false, http.StatusMethodNotAllowed},
		{"DELETE", http.MethodDelete, "/healthz", 2, false, http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &hcServer{state: HealthCheck{Service: svc, LocalEndpoints: tc.local}, proxyHealthy: func() bool { return !tc.proxyUnhealthy }}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
			if w.Code != tc.code {
				t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, w.Code, tc.code, w.Body)
			}
			if tc.code == http.StatusMethodNotAllowed {
				return
			}
			for h, want := range map[string]string{"Content-Type": "application/json", "X-Content-Type-Options": "nosniff",
				"X-Load-Balancing-Endpoint-Weight": strconv.Itoa(tc.local)} {
				if got := w.Header().Get(h); got != want {
					t.Errorf("%s: %q, want %q", h, got, want)
				}
			}
			if tc.method == http.MethodGet && w.Body.String() != body(tc.local, !tc.proxyUnhealthy) {
				t.Errorf("body:\n%s\nwant kube-proxy's:\n%s", w.Body, body(tc.local, !tc.proxyUnhealthy))
			}
		})
	}
}

// TestHealthCheckNodePortFollowsProxyHealth: a proxier's health check
// servers fail while it is unhealthy, as kube-proxy's.
func TestHealthCheckNodePortFollowsProxyHealth(t *testing.T) {
	k, ct := &fakeKernel{}, &fakeConntrack{}
	hc := NewHealthChecks()
	hc.Listen = (&recordingListen{}).listen
	defer hc.Close()
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := NewProxier(Options{Backend: NFTables, NodeName: "node-a", NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, HealthTimeout: time.Minute},
		k, ct, NewMetrics(), hc, clock, nil)
	lb := testService("lb", "10.96.0.2", v1.ProtocolTCP, 30000)
	lb.Spec.Type, lb.Spec.ExternalTrafficPolicy, lb.Spec.HealthCheckNodePort = v1.ServiceTypeLoadBalancer, v1.ServiceExternalTrafficPolicyLocal, 30100
	p.OnService(lb, false)
	es := testSlice("lb-1", "lb", v1.ProtocolTCP, "10.128.0.1")
	es.Endpoints[0].NodeName = &p.opts.NodeName
	p.OnSlice(es, false)
	code := func() int {
		w := httptest.NewRecorder()
		hc.servers[30100].ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		return w.Code
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if c := code(); c != http.StatusOK {
		t.Fatalf("healthy proxy: %d, want 200", c)
	}
	k.fail = true
	p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
	p.Sync()
	clock.Step(time.Minute)
	if c := code(); c != http.StatusServiceUnavailable {
		t.Errorf("change waiting a minute: %d, want 503", c)
	}
}

// TestHealthChecksListenOnTheGivenAddresses: each port on each address;
// the servers move when the addresses change, and only then.
func TestHealthChecksListenOnTheGivenAddresses(t *testing.T) {
	rec := &recordingListen{}
	h := NewHealthChecks()
	h.Listen = rec.listen
	defer h.Close()
	want := map[int32]HealthCheck{30100: {Service: rules.ServiceKey{Namespace: "ns", Name: "a"}, LocalEndpoints: 1}}
	steps := []struct {
		name   string
		addrs  []string
		listen []string // new listens expected
	}{
		{"first", []string{"fd00::1", "10.0.0.1"}, []string{"10.0.0.1:30100", "[fd00::1]:30100"}},
		{"same addresses, in another order", []string{"10.0.0.1", "fd00::1", "10.0.0.1"}, nil},
		{"an address gone", []string{"10.0.0.1"}, []string{"10.0.0.1:30100"}},
		{"no address known", nil, nil},
	}
	for _, st := range steps {
		rec.addrs = nil
		var addrs []netip.Addr
		for _, a := range st.addrs {
			addrs = append(addrs, netip.MustParseAddr(a))
		}
		if err := h.Update(addrs, want); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !slices.Equal(rec.addrs, st.listen) {
			t.Errorf("%s: listened on %v, want %v", st.name, rec.addrs, st.listen)
		}
	}
}

// TestHTTPServersHaveTimeouts: no server of rulegen lets a slow or idle
// client hold a connection indefinitely.
func TestHTTPServersHaveTimeouts(t *testing.T) {
	h := NewHealthChecks()
	h.Listen = (&recordingListen{}).listen
	defer h.Close()
	if err := h.Update([]netip.Addr{netip.MustParseAddr("10.0.0.1")}, map[int32]HealthCheck{30100: {}}); err != nil {
		t.Fatal(err)
	}
	servers := map[string]*http.Server{"health check node port": h.servers[30100].srv}
	for _, srv := range statusServers(":10256", ":10249", true, nil, NewMetrics()) {
		servers["status server "+srv.Addr] = srv
	}
	for name, srv := range servers {
		t.Run(name, func(t *testing.T) {
			if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
				t.Errorf("timeouts: read header %v, read %v, write %v, idle %v; want all set",
					srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
			}
			if srv.Addr == ":10249" && srv.WriteTimeout <= 30*time.Second {
				t.Errorf("write timeout %v with profiling: a default 30 s CPU profile would be refused", srv.WriteTimeout)
			}
		})
	}
}

// TestHealthCheckNodePortsFollowNodePortAddresses: the proxier serves
// health checks on the addresses its nodePort rules accept.
func TestHealthCheckNodePortsFollowNodePortAddresses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prefixes []netip.Prefix
		primary  bool
		listen   []string
	}{
		{"unset: every node IP", nil, false, []string{"10.0.0.1:32000", "192.168.1.1:32000"}},
		{"one CIDR", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, false, []string{"10.0.0.1:32000"}},
		{"no node IP matches", []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}, false, nil},
		{"primary: the first node IP", nil, true, []string{"10.0.0.1:32000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingListen{}
			hc := NewHealthChecks()
			hc.Listen = rec.listen
			defer hc.Close()
			p, _, _ := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.168.1.1")},
				NodePortAddresses: tc.prefixes, NodePortPrimary: tc.primary})
			p.health = hc
			svc := testService("a", "10.96.0.1", v1.ProtocolTCP, 30080)
			svc.Spec.Type = v1.ServiceTypeLoadBalancer
			svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			svc.Spec.HealthCheckNodePort = 32000
			p.OnService(svc, false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			slices.Sort(rec.addrs)
			if !slices.Equal(rec.addrs, tc.listen) {
				t.Errorf("health check listens on %v, want %v", rec.addrs, tc.listen)
			}
		})
	}
}

// TestListenFreebind, in the kernel: a health check port opens on a node
// address no interface holds (a cloud ExternalIP NATed to the node, or an
// address not configured yet).
func TestListenFreebind(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "freebind")
	for _, a := range []string{"10.0.0.1:32000", "[fd00::1]:32000"} {
		if err := ns.Do(func() error {
			l, err := listenFreebind(netip.MustParseAddrPort(a))
			if err != nil {
				return err
			}
			return l.Close()
		}); err != nil {
			t.Errorf("listen on %s: %v", a, err)
		}
	}
}

// TestHealthCheckCountsLocalReadyEndpointIPs: a health check node port
// reports what kube-proxy's EndpointsMap.LocalReadyEndpoints counts: the
// distinct IPs of this node's ready endpoints over all the service's ports.
func TestHealthCheckCountsLocalReadyEndpointIPs(t *testing.T) {
	type e struct {
		ip, node, port           string
		ready, serving, terminat bool
	}
	ready := func(ip, node, port string) e { return e{ip, node, port, true, true, false} }
	for _, tc := range []struct {
		name string
		eps  []e
		want int
	}{
		{"no endpoint", nil, 0},
		{"one local, one remote", []e{ready("10.1.0.1", "node-a", "http"), ready("10.1.0.9", "node-b", "http")}, 1},
		{"only remote", []e{ready("10.1.0.9", "node-b", "http")}, 0},
		{"local not ready", []e{{"10.1.0.1", "node-a", "http", false, false, false}, ready("10.1.0.9", "node-b", "http")}, 0},
		// The terminating endpoint takes traffic (no ready one is left)
		// but the load balancer should move away from the node.
		{"local only terminating", []e{{"10.1.0.1", "node-a", "http", false, true, true}, ready("10.1.0.9", "node-b", "http")}, 0},
		{"ready and terminating", []e{ready("10.1.0.1", "node-a", "http"), {"10.1.0.2", "node-a", "http", false, true, true}}, 1},
		{"one pod per port", []e{ready("10.1.0.1", "node-a", "http"), ready("10.1.0.2", "node-a", "alt")}, 2},
		{"one pod on both ports", []e{ready("10.1.0.1", "node-a", "http"), ready("10.1.0.1", "node-a", "alt")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := NewHealthChecks()
			hc.Listen = (&recordingListen{}).listen
			defer hc.Close()
			p, _, _ := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}})
			p.health = hc
			lb := testService("lb", "10.96.0.2", v1.ProtocolTCP, 30000)
			lb.Spec.Type, lb.Spec.ExternalTrafficPolicy, lb.Spec.HealthCheckNodePort = v1.ServiceTypeLoadBalancer, v1.ServiceExternalTrafficPolicyLocal, 30100
			lb.Spec.Ports[0].Name = "http"
			lb.Spec.Ports = append(lb.Spec.Ports, v1.ServicePort{Name: "alt", Port: 90, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(9090), NodePort: 30001})
			p.OnService(lb, false)
			for _, port := range []string{"http", "alt"} {
				es := testSlice("lb-"+port, "lb", v1.ProtocolTCP)
				es.Ports[0].Name = &port
				for _, x := range tc.eps {
					if x.port == port {
						es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{x.ip}, NodeName: &x.node,
							Conditions: discovery.EndpointConditions{Ready: &x.ready, Serving: &x.serving, Terminating: &x.terminat}})
					}
				}
				p.OnSlice(es, false)
			}
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := hc.servers[30100].state.LocalEndpoints; got != tc.want {
				t.Errorf("localEndpoints %d, want %d", got, tc.want)
			}
		})
	}
}
