// Package rulestest builds synthetic cluster states for benchmarks and scale
// tests.
package rulestest

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Scale returns a state with n ClusterIP services (every fourth a NodePort,
// numbered from 30000 up: beyond the default range from 11,072 services on,
// as a cluster that size would configure it)
// in 10.96.0.0/12, each with e ready endpoints in 10.128.0.0/9 spread over
// nodes node-0..node-9, and the config of node-0. Addresses never repeat up to
// n = 1,000,000 and n*e = 8,000,000.
func Scale(n, e int) (*rules.State, *rules.Config) {
	st := rules.NewState()
	for i := range n {
		Restore(st, i, e)
	}
	cfg := &rules.Config{
		Node:         rules.Node{Name: "node-0", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9")},
	}
	return st, cfg
}

// Restore sets service i of a Scale state with e endpoints back to what
// Scale made (or adds it, for i >= n).
func Restore(st *rules.State, i, e int) { restore(st, i, e, e) }

// ScaleMixed is like Scale, but service i has i%kmax + 1 endpoints: every
// endpoint count from 1 to kmax is in use (kmax at most 64 up to 125,000
// services).
func ScaleMixed(n, kmax int) (*rules.State, *rules.Config) {
	st, cfg := Scale(0, 0)
	for i := range n {
		restore(st, i, i%kmax+1, kmax)
	}
	return st, cfg
}

// restore sets service i with e endpoints, numbered from i*stride.
func restore(st *rules.State, i, e, stride int) {
	key := ServiceKey(i)
	p := &rules.ServicePort{
		Name:       rules.ServicePortName{ServiceKey: key, Port: "http", Protocol: rules.TCP},
		ClusterIPs: []netip.Addr{addr(10<<24 | 96<<16 + uint32(i) + 1)},
		Port:       80,
		TargetPort: "8080",
	}
	if i%4 == 0 {
		p.NodePort = int32(30000 + (i/4)%35536) // unique up to 142,144 services
	}
	sl := &rules.Slice{Name: key.Name + "-1", Service: key, Family: rules.IPv4,
		Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}}}
	for j := range e {
		sl.Endpoints = append(sl.Endpoints, rules.Endpoint{
			IP: addr(10<<24 | 128<<16 + uint32(i*stride+j) + 1), Ready: true, Serving: true, NodeName: fmt.Sprintf("node-%d", j%10)})
	}
	st.SetService(key, []*rules.ServicePort{p})
	st.SetSlice(sl)
}

// ServiceKey is the name of service i of a Scale state.
func ServiceKey(i int) rules.ServiceKey {
	return rules.ServiceKey{Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("svc-%d", i)}
}

// Delete deletes service i of a Scale state and its EndpointSlice.
func Delete(st *rules.State, i int) {
	key := ServiceKey(i)
	st.DeleteService(key)
	st.DeleteSlice(key, key.Name+"-1")
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// DropEndpoint removes the last endpoint of service i of a Scale state (as
// when a pod goes away).
func DropEndpoint(st *rules.State, i int) {
	key := rules.ServiceKey{Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("svc-%d", i)}
	p := st.ServicePorts(key)[0]
	eps := st.Endpoints(p, rules.IPv4)
	sl := &rules.Slice{Name: key.Name + "-1", Service: key, Family: rules.IPv4,
		Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}}}
	for _, e := range eps[:len(eps)-1] {
		e.Port = 0
		sl.Endpoints = append(sl.Endpoints, e)
	}
	st.SetSlice(sl)
}

// ReplaceEndpoint replaces the last endpoint of service i of a Scale state
// with a new pod address (as when a pod is replaced), distinct from every
// address Scale made.
func ReplaceEndpoint(st *rules.State, i int) {
	setEndpoints(st, i, func(eps []rules.Endpoint) []rules.Endpoint {
		eps[len(eps)-1].IP = addr(10<<24 | 127<<16 + uint32(i) + 1)
		return eps
	})
}

// AddEndpoint adds one endpoint to service i of a Scale state (a
// deployment scaled up by one), at an address Scale never uses.
func AddEndpoint(st *rules.State, i int) {
	setEndpoints(st, i, func(eps []rules.Endpoint) []rules.Endpoint {
		e := eps[0]
		e.IP = addr(10<<24 | 126<<16 + uint32(i) + 1)
		return append(eps, e)
	})
}

func setEndpoints(st *rules.State, i int, edit func([]rules.Endpoint) []rules.Endpoint) {
	key := rules.ServiceKey{Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("svc-%d", i)}
	p := st.ServicePorts(key)[0]
	eps := edit(slices.Clone(st.Endpoints(p, rules.IPv4))) // the state's own: not to be changed
	sl := &rules.Slice{Name: key.Name + "-1", Service: key, Family: rules.IPv4,
		Ports: []rules.SlicePort{{Name: "http", Protocol: rules.TCP, Port: 8080}}}
	for _, e := range eps {
		e.Port = 0
		sl.Endpoints = append(sl.Endpoints, e)
	}
	st.SetSlice(sl)
}
