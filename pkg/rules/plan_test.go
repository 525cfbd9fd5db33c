package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
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
	if !slices.Equal(p2.Services, p1.Services) || len(p2.Changes) != 0 || p2.Base != p1.Gen || len(p2.Conflicts) != 1 {
		t.Errorf("nothing changed, yet the services were planned again (changes %v) or the conflict was forgotten (%v)", p2.Changes, p2.Conflicts)
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

func TestConflictOldestWins(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	type svc struct {
		name    string
		created time.Time
		ext, lb string
	}
	tests := []struct {
		name     string
		services []svc
		winner   string // keeps the contested IP
		loser    string // reported
	}{
		{name: "older first by name wins", services: []svc{{"a", t0, "172.16.0.5", ""}, {"b", t0.Add(time.Hour), "172.16.0.5", ""}}, winner: "a", loser: "b"},
		{name: "older later by name wins", services: []svc{{"a", t0.Add(time.Hour), "172.16.0.5", ""}, {"b", t0, "172.16.0.5", ""}}, winner: "b", loser: "a"},
		{name: "tie: first by name wins", services: []svc{{"a", t0, "172.16.0.5", ""}, {"b", t0, "172.16.0.5", ""}}, winner: "a", loser: "b"},
		{name: "no timestamps: first by name wins", services: []svc{{"a", time.Time{}, "172.16.0.5", ""}, {"b", time.Time{}, "172.16.0.5", ""}}, winner: "a", loser: "b"},
		{name: "LB IP: older wins", services: []svc{{"a", t0.Add(time.Minute), "", "192.168.100.5"}, {"b", t0, "", "192.168.100.5"}}, winner: "b", loser: "a"},
		{name: "external IP of one, LB IP of the other", services: []svc{{"a", t0.Add(time.Second), "192.168.100.5", ""}, {"b", t0, "", "192.168.100.5"}}, winner: "b", loser: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			for i, s := range tc.services {
				key := ServiceKey{"ns", s.name}
				sp := &ServicePort{Name: ServicePortName{ServiceKey: key, Protocol: TCP}, Created: s.created, Port: 80,
					ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 0, byte(10 + i)})}}
				if s.ext != "" {
					sp.ExternalIPs = []netip.Addr{netip.MustParseAddr(s.ext)}
				}
				if s.lb != "" {
					sp.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr(s.lb)}
				}
				st.SetService(key, []*ServicePort{sp})
			}
			p := NewPlan(st, &Config{Node: Node{Name: "n"}}, IPv4)
			if len(p.Services) != 2 || p.Services[0].Name.Name != "a" {
				t.Fatalf("plan must list both services by name: %v", p.Services)
			}
			for _, s := range p.Services {
				n := len(s.ExtIPs) + len(s.LBIPs)
				if s.Name.Name == tc.winner && n != 1 || s.Name.Name == tc.loser && n != 0 {
					t.Errorf("%s has %d external/LB IPs; want the winner %s to keep the IP", s.Name, n, tc.winner)
				}
			}
			if len(p.Conflicts) != 1 {
				t.Fatalf("conflicts %v, want one", p.Conflicts)
			}
			var oe *ObjectError
			if !errors.As(p.Conflicts[0], &oe) || oe.Name != tc.loser || !strings.Contains(oe.Reason, "ns/"+tc.winner+" ") {
				t.Errorf("conflict %q must name the loser ns/%s and the winner ns/%s", p.Conflicts[0], tc.loser, tc.winner)
			}
		})
	}
}

// TestPlannerConflictAgeWithReuse: the planner reuses unchanged plans, but a
// newly seen older service still wins a destination an existing one holds.
func TestPlannerConflictAgeWithReuse(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	st := NewState()
	cfg := &Config{Node: Node{Name: "n"}}
	set := func(name string, created time.Time, last byte) {
		key := ServiceKey{"ns", name}
		st.SetService(key, []*ServicePort{{Name: ServicePortName{ServiceKey: key, Protocol: TCP}, Created: created, Port: 80,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 0, last})}, ExternalIPs: []netip.Addr{netip.MustParseAddr("172.16.0.5")}}})
	}
	extOf := func(p *Plan) map[string]int {
		m := map[string]int{}
		for _, s := range p.Services {
			m[s.Name.Name] = len(s.ExtIPs)
		}
		return m
	}
	pl := NewPlanner(IPv4)
	set("a", t0.Add(time.Hour), 1)
	if got := extOf(pl.Plan(st, cfg)); got["a"] != 1 {
		t.Fatalf("alone, a holds the IP: %v", got)
	}
	set("z", t0, 2) // older, but seen later
	if got := extOf(pl.Plan(st, cfg)); got["a"] != 0 || got["z"] != 1 {
		t.Errorf("the older z must take the IP from a: %v", got)
	}
	if got := extOf(pl.Plan(st, cfg)); got["a"] != 0 || got["z"] != 1 {
		t.Errorf("an unchanged state must plan the same: %v", got)
	}
	st.DeleteService(ServiceKey{"ns", "z"})
	if got := extOf(pl.Plan(st, cfg)); got["a"] != 1 {
		t.Errorf("with z gone, a gets the IP back: %v", got)
	}
}

// TestPlannerFollowsChanges: a plan after a change re-plans only the
// changed service's ports and lists them, with what they were, in Changes;
// a port that gains a destination another one gave up is listed too.
func TestPlannerFollowsChanges(t *testing.T) {
	st := NewState()
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	set := func(name string, i int, ext string) {
		key := ServiceKey{"ns", name}
		sp := &ServicePort{Name: ServicePortName{ServiceKey: key, Protocol: TCP}, Port: 80, Created: t0.Add(time.Duration(i) * time.Hour),
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 0, byte(i + 1)})}}
		if ext != "" {
			sp.ExternalIPs = []netip.Addr{netip.MustParseAddr(ext)}
		}
		st.SetService(key, []*ServicePort{sp})
	}
	for i, name := range []string{"a", "b", "c"} {
		set(name, i, "")
	}
	cfg := &Config{Node: Node{Name: "n"}}
	pl := NewPlanner(IPv4)
	first := pl.Plan(st, cfg)
	if first.Base != 0 || first.Changes != nil || len(first.Services) != 3 {
		t.Fatalf("a first plan is made from scratch: base %d, changes %v, %d services", first.Base, first.Changes, len(first.Services))
	}
	names := func(cs []PortChange) []string {
		var out []string
		for _, c := range cs {
			out = append(out, fmt.Sprintf("%s %v>%v", c.Name.Name, c.Old != nil, c.New != nil))
		}
		return out
	}
	st.SetSlice(&Slice{Name: "b-1", Service: ServiceKey{"ns", "b"}, Family: IPv4})
	p := pl.Plan(st, cfg)
	if p.Base != first.Gen || !slices.Equal(names(p.Changes), []string{"b true>true"}) || p.Services[0] != first.Services[0] || p.Services[2] != first.Services[2] {
		t.Errorf("an endpoint change of b: changes %v, base %d (want %d)", names(p.Changes), p.Base, first.Gen)
	}
	set("a", 0, "172.16.0.9")
	set("c", 2, "172.16.0.9") // younger than a: loses the external IP
	p = pl.Plan(st, cfg)
	if !slices.Equal(names(p.Changes), []string{"a true>true", "c true>true"}) || len(p.Conflicts) != 1 || len(p.Services[2].ExtIPs) != 0 {
		t.Errorf("a and c changed: changes %v, conflicts %v", names(p.Changes), p.Conflicts)
	}
	st.DeleteService(ServiceKey{"ns", "a"})
	p = pl.Plan(st, cfg)
	if !slices.Equal(names(p.Changes), []string{"a true>false", "c true>true"}) || len(p.Conflicts) != 0 || len(p.Services) != 2 || len(p.Services[1].ExtIPs) != 1 {
		t.Errorf("a deleted: c gets the external IP; changes %v, conflicts %v", names(p.Changes), p.Conflicts)
	}
	if again := pl.Plan(st, cfg); len(again.Changes) != 0 || !slices.Equal(again.Services, p.Services) {
		t.Errorf("nothing changed: changes %v", names(again.Changes))
	}
}

// TestCategorizeShortCircuit: under externalTrafficPolicy Local and
// internalTrafficPolicy Local, traffic from pods and the node to an external
// destination goes to the cluster-wide endpoints (kube-proxy's
// UsesClusterEndpoints and "short-circuit" rules).
func TestCategorizeShortCircuit(t *testing.T) {
	node := Node{Name: "node-a"}
	remote := Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80, Ready: true, Serving: true, NodeName: "node-b"}
	tests := []struct {
		name                         string
		port                         ServicePort
		wantShortCircuit, wantChain  bool
		wantCluster                  int
		wantInternal, wantExternalVd Verdict
	}{
		{name: "etp and itp local, external", port: ServicePort{NodePort: 30000, ExternalPolicyLocal: true, InternalPolicyLocal: true},
			wantShortCircuit: true, wantChain: true, wantCluster: 1, wantInternal: Drop, wantExternalVd: Drop},
		{name: "etp local, itp cluster", port: ServicePort{NodePort: 30000, ExternalPolicyLocal: true},
			wantShortCircuit: true, wantChain: true, wantCluster: 1, wantInternal: Pass, wantExternalVd: Drop},
		{name: "itp local, no external destination", port: ServicePort{InternalPolicyLocal: true},
			wantInternal: Drop, wantExternalVd: Reject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.port
			s := &ServicePlan{ServicePort: &p, ClusterIP: netip.MustParseAddr("10.96.0.1"), HasNodePort: p.NodePort != 0, All: []Endpoint{remote}}
			categorize(s, node)
			if len(s.ClusterEndpoints) != tc.wantCluster {
				t.Errorf("cluster endpoints = %d, want %d", len(s.ClusterEndpoints), tc.wantCluster)
			}
			if s.ShortCircuit() != tc.wantShortCircuit || s.NeedsClusterChain() != tc.wantChain {
				t.Errorf("ShortCircuit/NeedsClusterChain = %v/%v, want %v/%v", s.ShortCircuit(), s.NeedsClusterChain(), tc.wantShortCircuit, tc.wantChain)
			}
			if s.HasExternal() && s.ShortCircuit() != s.NeedsExternalChain() {
				t.Errorf("NeedsExternalChain = %v, want %v", s.NeedsExternalChain(), s.ShortCircuit())
			}
			if v := s.InternalVerdict(); v != tc.wantInternal {
				t.Errorf("internal verdict %v, want %v", v, tc.wantInternal)
			}
			if v := s.ExternalVerdict(); s.HasExternal() && v != tc.wantExternalVd {
				t.Errorf("external verdict %v, want %v", v, tc.wantExternalVd)
			}
		})
	}
}

// TestPlanSourceRangesAndNodePorts: kube-proxy's reading of
// loadBalancerSourceRanges (per family; a /0 or none of the family: no
// filter; the LB IP itself allowed when a range holds the node IP; with no
// endpoints, the firewall still decides) and of --nodeport-addresses (no
// range of a family: every node IP of it).
func TestPlanSourceRangesAndNodePorts(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	node := Node{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("192.168.2.10"), netip.MustParseAddr("fd00:1::10")}}
	tests := []struct {
		name         string
		fam          Family
		ranges       []netip.Prefix
		npa          []netip.Prefix
		primary      bool
		noEndpoints  bool
		wantFW       bool
		wantRanges   []netip.Prefix
		wantRejects  bool
		wantNodePort []netip.Addr
	}{
		{name: "ranges of the family", fam: IPv4, ranges: pfx("192.168.50.0/24", "fd00:50::/64"),
			wantFW: true, wantRanges: pfx("192.168.50.0/24")},
		{name: "ipv6 ranges only, ipv4 LB", fam: IPv4, ranges: pfx("fd00:50::/64")},
		{name: "ipv4 ranges only, ipv6 LB", fam: IPv6, ranges: pfx("192.168.50.0/24")},
		{name: "a zero range allows all", fam: IPv4, ranges: pfx("192.168.50.0/24", "0.0.0.0/0")},
		{name: "a range holding the node IP allows the LB IP", fam: IPv4, ranges: pfx("192.168.1.0/24"),
			wantFW: true, wantRanges: pfx("192.168.1.0/24", "192.168.100.5/32")},
		{name: "a range holding a secondary node IP does not", fam: IPv4, ranges: pfx("192.168.2.0/24"),
			wantFW: true, wantRanges: pfx("192.168.2.0/24")},
		{name: "no endpoints: the firewall rejects inside, drops outside", fam: IPv4, ranges: pfx("192.168.50.0/24"), noEndpoints: true,
			wantFW: true, wantRanges: pfx("192.168.50.0/24"), wantRejects: true},
		{name: "nodeport-addresses of the family", fam: IPv4, npa: pfx("192.168.1.0/24", "fd00:1::/64"),
			wantNodePort: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		{name: "nodeport-addresses of the other family only", fam: IPv6, npa: pfx("192.168.1.0/24"),
			wantNodePort: []netip.Addr{netip.MustParseAddr("fd00:1::10")}},
		{name: "primary: the first node IP of the family", fam: IPv4, primary: true,
			wantNodePort: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		{name: "primary in IPv6", fam: IPv6, primary: true,
			wantNodePort: []netip.Addr{netip.MustParseAddr("fd00:1::10")}},
		{name: "primary and a CIDR of a secondary IP", fam: IPv4, primary: true, npa: pfx("192.168.2.0/24"),
			wantNodePort: []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("192.168.2.10")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			key := ServiceKey{"ns", "web"}
			st.SetService(key, []*ServicePort{{Name: ServicePortName{ServiceKey: key, Protocol: TCP}, Port: 80, NodePort: 30080,
				ClusterIPs:      []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:96::10")},
				LoadBalancerIPs: []netip.Addr{netip.MustParseAddr("192.168.100.5"), netip.MustParseAddr("fd00:100::5")},
				SourceRanges:    tc.ranges}})
			if !tc.noEndpoints {
				ip := map[Family]string{IPv4: "10.244.2.7", IPv6: "fd00:244:2::7"}[tc.fam]
				st.SetSlice(&Slice{Name: "web-1", Service: key, Family: tc.fam, Ports: []SlicePort{{Protocol: TCP, Port: 8080}},
					Endpoints: []Endpoint{{IP: netip.MustParseAddr(ip), Ready: true, Serving: true, NodeName: "node-b"}}})
			}
			p := NewPlan(st, &Config{Node: node, NodePortAddresses: tc.npa, NodePortPrimary: tc.primary}, tc.fam)
			if len(p.Services) != 1 {
				t.Fatalf("%d services planned, want 1", len(p.Services))
			}
			s := p.Services[0]
			if s.Firewalled != tc.wantFW || !slices.Equal(s.Ranges, tc.wantRanges) {
				t.Errorf("Firewalled %v, Ranges %v; want %v, %v", s.Firewalled, s.Ranges, tc.wantFW, tc.wantRanges)
			}
			if s.FirewallRejects() != tc.wantRejects {
				t.Errorf("FirewallRejects = %v, want %v", s.FirewallRejects(), tc.wantRejects)
			}
			if tc.wantNodePort != nil && !slices.Equal(p.NodePortIPs, tc.wantNodePort) {
				t.Errorf("NodePortIPs = %v, want %v", p.NodePortIPs, tc.wantNodePort)
			}
		})
	}
}

// TestPlanDetectLocalNodeCIDR: the pod range of a plan is the cluster CIDR,
// or with DetectLocalNodeCIDR the Node's first pod CIDR of the family.
func TestPlanDetectLocalNodeCIDR(t *testing.T) {
	pods := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.9.0/24"), netip.MustParsePrefix("fd00:244:1::/64")}
	cluster := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	tests := []struct {
		name     string
		nodeCIDR bool
		pods     []netip.Prefix
		fam      Family
		want     netip.Prefix
	}{
		{name: "ClusterCIDR", pods: pods, fam: IPv4, want: cluster[0]},
		{name: "NodeCIDR: the first of the family", nodeCIDR: true, pods: pods, fam: IPv4, want: pods[0]},
		{name: "NodeCIDR in IPv6", nodeCIDR: true, pods: pods, fam: IPv6, want: pods[2]},
		{name: "NodeCIDR, the Node has none", nodeCIDR: true, fam: IPv4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{Node: Node{Name: "node-a", PodCIDRs: tc.pods}, ClusterCIDRs: cluster, DetectLocalNodeCIDR: tc.nodeCIDR}
			if got := NewPlan(NewState(), cfg, tc.fam).ClusterCIDR; got != tc.want {
				t.Errorf("ClusterCIDR %v, want %v", got, tc.want)
			}
		})
	}
}
