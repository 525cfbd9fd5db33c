package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	gosync "sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Timeouts of every HTTP server rulegen runs (health check node ports,
// /healthz, /livez, /metrics): a client that sends its request slowly,
// never reads the answer, or keeps an idle connection open cannot hold a
// connection and its goroutine for long. The answers are small and made
// at once, so the limits are far above what a well-behaved client needs.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 10 * time.Second
	httpIdleTimeout       = 60 * time.Second
)

// newHTTPServer returns a server for h with rulegen's timeouts.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
		WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout}
}

// TaintToBeDeleted is the taint the cluster autoscaler puts on a node it is
// about to delete (kube-proxy's healthcheck.ToBeDeletedTaint): /healthz
// fails on such a node so that load balancers drain it first.
const TaintToBeDeleted = "ToBeDeletedByClusterAutoscaler"

// ProxyHealth is the JSON body of /healthz and /livez, field for field
// kube-proxy's (pkg/proxy/healthcheck ProxyHealth, v1.37.2): LastUpdated
// is the latest successful sync of any family, or the time of the answer
// when healthy (kube-proxy keeps that for older clients); NodeEligible is
// set by /healthz only; Status is per family, keyed "IPv4" and "IPv6".
type ProxyHealth struct {
	LastUpdated  time.Time                `json:"lastUpdated"`
	CurrentTime  time.Time                `json:"currentTime"`
	NodeEligible *bool                    `json:"nodeEligible,omitempty"`
	Healthy      bool                     `json:"healthy"`
	Status       map[string]ProxierHealth `json:"status,omitempty"`
}

// ProxierHealth is the health of one family in ProxyHealth.
type ProxierHealth struct {
	LastUpdated time.Time `json:"lastUpdated"`
	Healthy     bool      `json:"healthy"`
}

// HealthCheck is what the health check node port of one service reports.
type HealthCheck struct {
	Service        rules.ServiceKey
	LocalEndpoints int
}

// HealthChecks serves the healthCheckNodePort of LoadBalancer services with
// externalTrafficPolicy Local. As kube-proxy (pkg/proxy/healthcheck
// service_health.go), it answers 200 when the service has local endpoints
// and the proxy is healthy, 503 otherwise, with the header
// X-Load-Balancing-Endpoint-Weight set to the number of local endpoints
// and kube-proxy's JSON body, byte for byte: the service, localEndpoints
// and serviceProxyHealthy. Cloud load balancers use it to send traffic
// only to nodes that have endpoints.
//
// Like kube-proxy, a server answers on every path: load balancers are
// configured with a path of their choosing. Unlike kube-proxy, it answers
// only GET and HEAD (405 otherwise): a health probe does nothing else.
//
// A port is served on the addresses given to Update, which the proxier
// takes from its nodePort rules: the node IPs that --nodeport-addresses
// selects, every node IP when it is unset. kube-proxy listens on the
// wildcard address when --nodeport-addresses is unset (and on the matching
// addresses of local interfaces otherwise); rulegen serves nodePorts only
// on the node IPs, so it serves their health checks there too, and not on,
// say, a pod bridge or loopback address.
type HealthChecks struct {
	// Listen opens a listener on an address (by default a TCP socket with
	// IP_FREEBIND, so that an address the node does not hold yet, such as
	// a cloud ExternalIP that is NATed to it, does not fail; tests replace
	// it).
	Listen func(addr netip.AddrPort) (net.Listener, error)

	mu      gosync.Mutex
	addrs   []netip.Addr // where the servers listen, sorted
	servers map[int32]*hcServer
	// proxyHealthy reports the proxier's health (set by NewProxier;
	// healthy when nil).
	proxyHealthy func() bool
}

type hcServer struct {
	srv          *http.Server // one server, one listener per address
	state        HealthCheck
	proxyHealthy func() bool
	mu           gosync.Mutex
}

// hcBody is kube-proxy's health check node port answer. Indented with
// tabs, without a final newline, it is byte for byte what kube-proxy
// writes (its template, dedented and trimmed).
type hcBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// setProxyHealthy makes every server answer 503 while f reports false.
func (h *HealthChecks) setProxyHealthy(f func() bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.proxyHealthy = f
	for _, s := range h.servers {
		s.mu.Lock()
		s.proxyHealthy = f
		s.mu.Unlock()
	}
}

// NewHealthChecks returns an empty set of health check servers.
func NewHealthChecks() *HealthChecks {
	return &HealthChecks{Listen: listenFreebind, servers: map[int32]*hcServer{}}
}

// listenFreebind listens on TCP addr with IP_FREEBIND (IPV6_FREEBIND): the
// bind succeeds even if the node does not hold the address (yet).
func listenFreebind(addr netip.AddrPort) (net.Listener, error) {
	network, level, opt := "tcp4", unix.SOL_IP, unix.IP_FREEBIND
	if addr.Addr().Is6() {
		network, level, opt = "tcp6", unix.SOL_IPV6, unix.IPV6_FREEBIND
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), network, addr.String())
}

func (s *hcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	st, healthy := s.state, s.proxyHealthy
	s.mu.Unlock()
	var body hcBody
	body.Service.Namespace, body.Service.Name = st.Service.Namespace, st.Service.Name
	body.LocalEndpoints = st.LocalEndpoints
	body.ServiceProxyHealthy = healthy == nil || healthy()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(st.LocalEndpoints))
	if st.LocalEndpoints == 0 || !body.ServiceProxyHealthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	b, _ := json.MarshalIndent(body, "", "\t")
	w.Write(b)
}

// Update serves the wanted ports on addrs: it opens servers for new ports,
// closes those of ports no longer wanted, and updates the counts of the
// others. When addrs change, every server is reopened on the new ones. A
// port that cannot be opened on every address is not served (and tried
// again at the next Update); the error names the service and port.
func (h *HealthChecks) Update(addrs []netip.Addr, want map[int32]HealthCheck) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	if !slices.Equal(addrs, h.addrs) {
		h.closeAll()
		h.addrs = addrs
	}
	var errs []error
	for port, s := range h.servers {
		if _, ok := want[port]; !ok {
			s.srv.Close()
			delete(h.servers, port)
		}
	}
	for port, st := range want {
		if s, ok := h.servers[port]; ok {
			s.mu.Lock()
			s.state = st
			s.mu.Unlock()
			continue
		}
		s := &hcServer{state: st, proxyHealthy: h.proxyHealthy}
		s.srv = newHTTPServer(s)
		var ls []net.Listener
		var err error
		for _, a := range h.addrs {
			var l net.Listener
			if l, err = h.Listen(netip.AddrPortFrom(a, uint16(port))); err != nil {
				err = fmt.Errorf("service %s healthCheckNodePort %d on %s: %w", st.Service, port, a, err)
				break
			}
			ls = append(ls, l)
		}
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			errs = append(errs, err)
			continue
		}
		h.servers[port] = s
		for _, l := range ls {
			go s.srv.Serve(l)
		}
	}
	return errors.Join(errs...)
}

// Close stops every server.
func (h *HealthChecks) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeAll()
}

func (h *HealthChecks) closeAll() {
	for port, s := range h.servers {
		s.srv.Close()
		delete(h.servers, port)
	}
}
