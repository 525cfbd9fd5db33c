package sync

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	gosync "sync"

	"github.com/rulegen/rulegen/pkg/rules"
)

// HealthCheck is what the health check node port of one service reports.
type HealthCheck struct {
	Service        rules.ServiceKey
	LocalEndpoints int
}

// HealthChecks serves the healthCheckNodePort of LoadBalancer services with
// externalTrafficPolicy Local: HTTP 200 with a JSON body counting the local
// endpoints when there are some, 503 otherwise. Cloud load balancers use it
// to send traffic only to nodes that have endpoints.
type HealthChecks struct {
	// Listen opens a listener on a port (net.Listen on all addresses by
	// default; tests replace it).
	Listen func(port int32) (net.Listener, error)

	mu      gosync.Mutex
	servers map[int32]*hcServer
}

type hcServer struct {
	srv   *http.Server
	state HealthCheck
	mu    gosync.Mutex
}

// NewHealthChecks returns an empty set of health check servers.
func NewHealthChecks() *HealthChecks {
	return &HealthChecks{
		Listen: func(port int32) (net.Listener, error) {
			return net.Listen("tcp", ":"+strconv.Itoa(int(port)))
		},
		servers: map[int32]*hcServer{},
	}
}

func (s *hcServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
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

// Update opens servers for new ports, closes those of ports no longer
// wanted, and updates the counts of the others.
func (h *HealthChecks) Update(want map[int32]HealthCheck) error {
	h.mu.Lock()
	defer h.mu.Unlock()
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
		l, err := h.Listen(port)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s healthCheckNodePort %d: %w", st.Service, port, err))
			continue
		}
		s := &hcServer{state: st}
		s.srv = &http.Server{Handler: s}
		h.servers[port] = s
		go s.srv.Serve(l)
	}
	return errors.Join(errs...)
}

// Close stops every server.
func (h *HealthChecks) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port, s := range h.servers {
		s.srv.Close()
		delete(h.servers, port)
	}
}
