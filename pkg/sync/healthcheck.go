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

// HealthCheck is what the health check node port of one service reports.
type HealthCheck struct {
	Service        rules.ServiceKey
	LocalEndpoints int
}

// HealthChecks serves the healthCheckNodePort of LoadBalancer services with
// externalTrafficPolicy Local: HTTP 200 with a JSON body counting the local
// endpoints when there are some, 503 otherwise. Cloud load balancers use it
// to send traffic only to nodes that have endpoints.
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
}

type hcServer struct {
	srv   *http.Server // one server, one listener per address
	state HealthCheck
	mu    gosync.Mutex
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
	st := s.state
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if st.LocalEndpoints == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(map[string]any{
		"service":        map[string]string{"namespace": st.Service.Namespace, "name": st.Service.Name},
		"localEndpoints": st.LocalEndpoints,
	})
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
		s := &hcServer{state: st}
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
