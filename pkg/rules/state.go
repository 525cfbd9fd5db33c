package rules

import (
	"slices"
)

// State is the cluster state rulegen renders from: the ports of every usable
// Service and the EndpointSlices of every Service. It is not safe for
// concurrent use; the sync loop owns it.
type State struct {
	services map[ServiceKey][]*ServicePort
	slices   map[ServiceKey]map[string]*Slice
	// counter counts the changes recorded.
	counter uint64
	sorted  []*ServicePort // Ports(), cached until the set of ports changes
	// log lists the services changed, in the order of their changes
	// (counter values logFloor+1 onwards), so that a Planner finds what
	// changed since its last plan without walking every service. It is
	// cut in half when it outgrows the number of services: a Planner
	// further behind than what is left plans everything (see ChangedSince).
	log      []ServiceKey
	logFloor uint64
}

// NewState returns an empty State.
func NewState() *State {
	return &State{services: map[ServiceKey][]*ServicePort{}, slices: map[ServiceKey]map[string]*Slice{}}
}

// touch records a change of a service in the change log, which is cut in
// half when it is longer than minLog and twice the services and slice sets
// held (so churn does not grow it).
func (s *State) touch(key ServiceKey) {
	s.counter++
	s.log = append(s.log, key)
	if len(s.log) > minLog && len(s.log) > 2*(len(s.services)+len(s.slices)) {
		drop := len(s.log) / 2
		s.log = append(s.log[:0:0], s.log[drop:]...)
		s.logFloor += uint64(drop)
	}
}

// minLog is the length below which the change log is never cut.
const minLog = 4096

// Counter returns the number of changes recorded so far: pass it to
// ChangedSince later to learn what changed after this moment.
func (s *State) Counter() uint64 { return s.counter }

// ChangedSince returns the services changed after the moment Counter
// returned since, each once, in no particular order, and true; or false
// when the log no longer reaches back that far (the caller must then look
// at every service). Its cost is the number of changes, not of services.
func (s *State) ChangedSince(since uint64) ([]ServiceKey, bool) {
	if since < s.logFloor || since > s.counter {
		return nil, false
	}
	recent := s.log[since-s.logFloor:]
	out := make([]ServiceKey, 0, len(recent))
	seen := make(map[ServiceKey]bool, len(recent))
	for _, k := range recent {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, true
}

// SetService records the ports of a service, replacing any earlier version.
// Setting no ports removes the service.
func (s *State) SetService(key ServiceKey, ports []*ServicePort) {
	defer s.touch(key)
	s.sorted = nil
	if len(ports) == 0 {
		delete(s.services, key)
		return
	}
	s.services[key] = ports
}

// DeleteService forgets a service (its EndpointSlices stay until deleted).
func (s *State) DeleteService(key ServiceKey) {
	s.sorted = nil
	delete(s.services, key)
	s.touch(key)
}

// SetSlice records an EndpointSlice, replacing any earlier version of it.
func (s *State) SetSlice(sl *Slice) {
	m := s.slices[sl.Service]
	if m == nil {
		m = map[string]*Slice{}
		s.slices[sl.Service] = m
	}
	m[sl.Name] = sl
	s.touch(sl.Service)
}

// DeleteSlice forgets an EndpointSlice of a service.
func (s *State) DeleteSlice(svc ServiceKey, name string) {
	if m := s.slices[svc]; m != nil {
		delete(m, name)
		if len(m) == 0 {
			delete(s.slices, svc)
		}
	}
	s.touch(svc)
}

// Ports returns every service port, sorted by name. The slice is shared:
// callers must not modify it.
func (s *State) Ports() []*ServicePort {
	if s.sorted != nil {
		return s.sorted
	}
	n := 0
	for _, ps := range s.services {
		n += len(ps)
	}
	out := make([]*ServicePort, 0, n)
	for _, ps := range s.services {
		out = append(out, ps...)
	}
	slices.SortFunc(out, func(a, b *ServicePort) int { return a.Name.Compare(b.Name) })
	s.sorted = out
	return out
}

// ServicePorts returns the ports of one service (nil if unknown).
func (s *State) ServicePorts(key ServiceKey) []*ServicePort { return s.services[key] }

// Endpoints returns the endpoints of a service port in family fam: every
// endpoint of the service's slices of that family whose slice has a port with
// the same name and protocol as the service port (this is how a named
// targetPort resolves to a container port). An address:port listed in two
// slices is kept once. The result is sorted by address and port. It may
// be the state's own memory (a service of one one-port slice): callers
// must not change it.
func (s *State) Endpoints(p *ServicePort, fam Family) []Endpoint {
	m := s.slices[p.Name.ServiceKey]
	if len(m) == 0 {
		return nil
	}
	if len(m) == 1 {
		for _, sl := range m {
			if sl.planned && sl.Family == fam && sl.Ports[0].Name == p.Name.Port && sl.Ports[0].Protocol == p.Name.Protocol {
				return slices.Clip(sl.Endpoints) // the same as below, made once (see Slice.planned); clipped: an append copies
			}
		}
	}
	var one [1]string
	names := one[:0]
	total := 0
	for n, sl := range m {
		names = append(names, n)
		total += len(sl.Endpoints)
	}
	slices.Sort(names)
	out := make([]Endpoint, 0, total)
	for _, n := range names {
		sl := m[n]
		if sl.Family != fam {
			continue
		}
		for _, sp := range sl.Ports {
			if sp.Name != p.Name.Port || sp.Protocol != p.Name.Protocol {
				continue
			}
			for _, e := range sl.Endpoints {
				e.Port = sp.Port
				out = append(out, e)
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	if !slices.IsSortedFunc(out, compareEndpoints) {
		slices.SortStableFunc(out, compareEndpoints)
	}
	return slices.CompactFunc(out, func(a, b Endpoint) bool { return a.IP == b.IP && a.Port == b.Port })
}

func compareEndpoints(a, b Endpoint) int {
	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}
	return int(a.Port - b.Port)
}
