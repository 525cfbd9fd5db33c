package rules

import (
	"net/netip"
	"testing"
)

func TestCategorize(t *testing.T) {
	node := Node{Name: "node-a", Zone: "zone-a"}
	local := func(ip string, ready, serving, term bool) Endpoint {
		return Endpoint{IP: netip.MustParseAddr(ip), Port: 80, Ready: ready, Serving: serving, Terminating: term, NodeName: "node-a"}
	}
	remote := func(ip string, ready, serving, term bool) Endpoint {
		e := local(ip, ready, serving, term)
		e.NodeName = "node-b"
		return e
	}
	tests := []struct {
		name                  string
		port                  ServicePort
		eps                   []Endpoint
		cluster, local        int
		internal, external    Verdict
		wantEndpointsAnywhere bool
	}{
		{name: "ready endpoints", port: ServicePort{NodePort: 30000}, eps: []Endpoint{local("10.0.0.1", true, true, false), remote("10.0.0.2", true, true, false)},
			cluster: 2, internal: Pass, external: Pass, wantEndpointsAnywhere: true},
		{name: "none", port: ServicePort{NodePort: 30000}, internal: Reject, external: Reject},
		{name: "not ready only", port: ServicePort{}, eps: []Endpoint{local("10.0.0.1", false, false, false)}, internal: Reject, external: Reject},
		{name: "terminating serving used when nothing ready", eps: []Endpoint{remote("10.0.0.2", false, true, true), local("10.0.0.1", false, false, true)},
			cluster: 1, internal: Pass, external: Reject, wantEndpointsAnywhere: true},
		{name: "etp local, only remote", port: ServicePort{NodePort: 30000, ExternalPolicyLocal: true}, eps: []Endpoint{remote("10.0.0.2", true, true, false)},
			cluster: 1, local: 0, internal: Pass, external: Drop, wantEndpointsAnywhere: true},
		{name: "etp local, local terminating, remote ready", port: ServicePort{NodePort: 30000, ExternalPolicyLocal: true},
			eps:     []Endpoint{local("10.0.0.1", false, true, true), remote("10.0.0.2", true, true, false)},
			cluster: 1, local: 1, internal: Pass, external: Pass, wantEndpointsAnywhere: true},
		{name: "itp local, only remote", port: ServicePort{InternalPolicyLocal: true}, eps: []Endpoint{remote("10.0.0.2", true, true, false)},
			internal: Drop, external: Reject, wantEndpointsAnywhere: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.port
			s := &ServicePlan{ServicePort: &p, ClusterIP: netip.MustParseAddr("10.96.0.1"), HasNodePort: p.NodePort != 0, All: tc.eps}
			categorize(s, node)
			if len(s.ClusterEndpoints) != tc.cluster || len(s.LocalEndpoints) != tc.local {
				t.Errorf("cluster/local endpoints = %d/%d, want %d/%d", len(s.ClusterEndpoints), len(s.LocalEndpoints), tc.cluster, tc.local)
			}
			if s.HasEndpoints != tc.wantEndpointsAnywhere {
				t.Errorf("HasEndpoints = %v, want %v", s.HasEndpoints, tc.wantEndpointsAnywhere)
			}
			if v := s.InternalVerdict(); v != tc.internal {
				t.Errorf("internal verdict %v, want %v", v, tc.internal)
			}
			if v := s.ExternalVerdict(); s.HasExternal() && v != tc.external {
				t.Errorf("external verdict %v, want %v", v, tc.external)
			}
		})
	}
}

func TestTopologyMode(t *testing.T) {
	node := Node{Name: "node-a", Zone: "zone-a"}
	hinted := func(zones ...string) Endpoint { return Endpoint{Ready: true, ZoneHints: zones} }
	tests := []struct {
		name string
		eps  []Endpoint
		want string
	}{
		{"all hinted, one for us", []Endpoint{hinted("zone-a"), hinted("zone-b")}, "PreferSameZone"},
		{"all hinted, none for us", []Endpoint{hinted("zone-b")}, ""},
		{"one unhinted", []Endpoint{hinted("zone-a"), {Ready: true}}, ""},
		{"node hints win", []Endpoint{{Ready: true, NodeHints: []string{"node-a"}, ZoneHints: []string{"zone-b"}}}, "PreferSameNode"},
		{"unready ignored", []Endpoint{hinted("zone-a"), {Ready: false}}, "PreferSameZone"},
	}
	for _, tc := range tests {
		if got := topologyMode(tc.eps, node); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestHashStable(t *testing.T) {
	// Chain names must never change between releases: nodes would see every
	// chain as new. This pins the scheme.
	if got := Hash("default/web/tcp/http", 8); got != "SUSTUHLJ" {
		t.Errorf("Hash changed: %q", got)
	}
	if got := len(Hash("x", 16)); got != 16 {
		t.Errorf("Hash length %d", got)
	}
}

func TestPlannerReusesUnchangedServices(t *testing.T) {
	st := NewState()
	cfg := &Config{Node: Node{Name: "n"}}
	svc := func(name, ext string) {
		key := ServiceKey{"ns", name}
		st.SetService(key, []*ServicePort{{Name: ServicePortName{ServiceKey: key, Protocol: TCP},
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0." + map[string]string{"a": "1", "b": "2", "c": "3"}[name])},
			Port:       80, ExternalIPs: []netip.Addr{netip.MustParseAddr(ext)}}})
	}
	svc("a", "172.16.0.1")
	svc("b", "172.16.0.1") // conflicts with a on the external IP
	svc("c", "172.16.0.3")
	pl := NewPlanner(IPv4)
	p1 := pl.Plan(st, cfg)
	if len(p1.Conflicts) != 1 || len(p1.Services[1].ExtIPs) != 0 {
		t.Fatalf("b should lose the external IP: %v", p1.Conflicts)
	}
	p2 := pl.Plan(st, cfg)
	if p2.Services[0] != p1.Services[0] || p2.Services[2] != p1.Services[2] {
		t.Error("unchanged services were planned again")
	}
	if p2.Services[1] == p1.Services[1] {
		t.Error("a service that lost a destination must be re-planned")
	}
	svc("c", "172.16.0.4")
	p3 := pl.Plan(st, cfg)
	if p3.Services[2] == p2.Services[2] || p3.Services[0] != p2.Services[0] {
		t.Error("only the changed service must be planned again")
	}
	st.DeleteService(ServiceKey{"ns", "a"})
	p4 := pl.Plan(st, cfg)
	if len(p4.Conflicts) != 0 || len(p4.Services[0].ExtIPs) != 1 {
		t.Errorf("with a gone, b gets the external IP back: %+v", p4.Services[0].ExtIPs)
	}
	cfg.MasqueradeAll = true
	if p5 := pl.Plan(st, cfg); p5.Services[1] == p4.Services[1] {
		t.Error("a config change must re-plan everything")
	}
}
