package rules

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStateForgetsDeletedServices: services created and deleted by the
// hundred thousand leave nothing behind, in whichever order their Service
// and EndpointSlice come and go: no ports, no slices, and a change log
// that was cut (it keeps at most minLog changes more than twice what the
// state holds).
func TestStateForgetsDeletedServices(t *testing.T) {
	port := func(key ServiceKey) []*ServicePort {
		return []*ServicePort{{Name: ServicePortName{ServiceKey: key, Protocol: TCP}, Port: 80,
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")}}}
	}
	slice := func(key ServiceKey) *Slice {
		return &Slice{Name: key.Name + "-1", Service: key, Family: IPv4,
			Endpoints: []Endpoint{{IP: netip.MustParseAddr("10.128.0.1")}}}
	}
	for _, tc := range []struct {
		name  string
		cycle func(st *State, key ServiceKey)
	}{
		{"service then slice, deleted in order", func(st *State, key ServiceKey) {
			st.SetService(key, port(key))
			st.SetSlice(slice(key))
			st.DeleteService(key)
			st.DeleteSlice(key, key.Name+"-1")
		}},
		{"slice first, deleted in reverse order", func(st *State, key ServiceKey) {
			st.SetSlice(slice(key))
			st.SetService(key, port(key))
			st.DeleteSlice(key, key.Name+"-1")
			st.DeleteService(key)
		}},
		{"service set to no ports", func(st *State, key ServiceKey) {
			st.SetService(key, port(key))
			st.SetService(key, nil)
		}},
		{"delete of what was never set", func(st *State, key ServiceKey) {
			st.DeleteSlice(key, "x")
			st.DeleteService(key)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			for i := range 100_000 {
				tc.cycle(st, ServiceKey{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)})
			}
			if len(st.log) > minLog+1 || len(st.services) != 0 || len(st.slices) != 0 {
				t.Errorf("after 100,000 create/delete cycles the state holds %d logged changes (at most %d), %d services, %d slice sets; want none",
					len(st.log), minLog+1, len(st.services), len(st.slices))
			}
		})
	}
}

// TestPlannerNeverReusesAPlanOfADeletedService: a service deleted and
// created again (with other ports) between two plans is planned anew.
func TestPlannerNeverReusesAPlanOfADeletedService(t *testing.T) {
	key := ServiceKey{"ns", "a"}
	set := func(st *State, port int32) {
		st.SetService(key, []*ServicePort{{Name: ServicePortName{ServiceKey: key, Protocol: TCP}, Port: port,
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")}}})
	}
	for _, tc := range []struct {
		name    string
		between func(st *State)
	}{
		{"deleted and re-created", func(st *State) { st.DeleteService(key); set(st, 81) }},
		{"deleted, another service churned, re-created", func(st *State) {
			st.DeleteService(key)
			other := ServiceKey{"ns", "b"}
			st.SetService(other, []*ServicePort{{Name: ServicePortName{ServiceKey: other, Protocol: TCP}, Port: 80}})
			st.DeleteService(other)
			set(st, 81)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			cfg := &Config{Node: Node{Name: "n"}}
			set(st, 80)
			pl := NewPlanner(IPv4)
			if p := pl.Plan(st, cfg); len(p.Services) != 1 || p.Services[0].Port != 80 {
				t.Fatalf("first plan: %+v", p.Services)
			}
			tc.between(st)
			if p := pl.Plan(st, cfg); len(p.Services) != 1 || p.Services[0].Port != 81 {
				t.Errorf("after the service was re-created with port 81 the plan has %+v", p.Services[0])
			}
		})
	}
}

// TestEndpointsOfAOnePortSlice: for a service of one slice with one port,
// State.Endpoints hands out the converted slice's endpoints as they are
// (ConvertSlice made them what it would make: the port set, sorted), and
// they equal what it makes of the same slice otherwise; a slice with
// twice the same address is copied and compacted as before.
func TestEndpointsOfAOnePortSlice(t *testing.T) {
	ready, notReady, port, name := true, false, int32(8080), "http"
	tests := []struct {
		name   string
		ips    []string
		shared bool
	}{
		{"sorted", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, true},
		{"unsorted", []string{"10.0.0.9", "10.0.0.1", "10.0.0.5", "10.0.0.2"}, true},
		{"one address twice", []string{"10.0.0.2", "10.0.0.1", "10.0.0.2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := &discovery.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{discovery.LabelServiceName: "web"}},
				AddressType: discovery.AddressTypeIPv4,
				Ports:       []discovery.EndpointPort{{Name: &name, Port: &port}},
			}
			for i, ip := range tt.ips {
				c := &ready
				if i%2 == 1 {
					c = &notReady
				}
				es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{ip}, Conditions: discovery.EndpointConditions{Ready: c}})
			}
			sl, errs := ConvertSlice(es)
			if len(errs) != 0 {
				t.Fatal(errs)
			}
			key := ServiceKey{Namespace: "default", Name: "web"}
			sp := &ServicePort{Name: ServicePortName{ServiceKey: key, Port: "http", Protocol: TCP}, Port: 80}
			st := NewState()
			st.SetService(key, []*ServicePort{sp})
			st.SetSlice(sl)
			got := st.Endpoints(sp, IPv4)
			if shared := len(got) > 0 && &got[0] == &sl.Endpoints[0]; shared != tt.shared {
				t.Errorf("shared the slice's endpoints: %v, want %v", shared, tt.shared)
			}
			// The same slice, as if ConvertSlice had not prepared it.
			plain := *sl
			plain.planned = false
			plain.Endpoints = slices.Clone(sl.Endpoints)
			for i := range plain.Endpoints {
				plain.Endpoints[i].Port = 0
			}
			st2 := NewState()
			st2.SetService(key, []*ServicePort{sp})
			st2.SetSlice(&plain)
			if want := st2.Endpoints(sp, IPv4); !reflect.DeepEqual(got, want) {
				t.Errorf("endpoints %#v, want %#v", got, want)
			}
		})
	}
}
