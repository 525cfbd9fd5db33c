package rules

import (
	"net/netip"
	"slices"
	"testing"
)

func TestPrintableService(t *testing.T) {
	a := netip.MustParseAddr
	ep := func(ip string, port int32) Endpoint { return Endpoint{IP: a(ip), Port: port, Ready: true} }
	base := func() *ServicePlan {
		sp := &ServicePort{Name: ServicePortName{ServiceKey: ServiceKey{"ns", "svc"}, Protocol: TCP}, Port: 80, NodePort: 30080}
		eps := []Endpoint{ep("fd00:244::5", 8080), ep("fd00:244::6", 8080)}
		return &ServicePlan{ServicePort: sp, ClusterIP: a("fd00:96::1"), ExtIPs: []netip.Addr{a("fd00:172::1")},
			Ranges: []netip.Prefix{netip.MustParsePrefix("fd00:50::/64")}, HasNodePort: true,
			All: eps, ClusterEndpoints: eps, HasEndpoints: true}
	}
	tests := []struct {
		name   string
		change func(s *ServicePlan)
		check  func(t *testing.T, in, out *ServicePlan) // nil: out must be in itself
	}{
		{name: "a clean plan is returned as is", change: func(*ServicePlan) {}},
		{name: "unknown protocol skips the port", change: func(s *ServicePlan) { s.Name.Protocol = "icmp\n" },
			check: func(t *testing.T, _, out *ServicePlan) { wantNil(t, out) }},
		{name: "port out of range skips the port", change: func(s *ServicePlan) { s.Port = 70000 },
			check: func(t *testing.T, _, out *ServicePlan) { wantNil(t, out) }},
		{name: "cluster IP of the other family skips the port", change: func(s *ServicePlan) { s.ClusterIP = a("10.96.0.1") },
			check: func(t *testing.T, _, out *ServicePlan) { wantNil(t, out) }},
		{name: "zone dropped from the cluster IP", change: func(s *ServicePlan) { s.ClusterIP = a("fd00:96::1%eth0") },
			check: func(t *testing.T, _, out *ServicePlan) {
				if out.ClusterIP != a("fd00:96::1") {
					t.Errorf("ClusterIP = %v", out.ClusterIP)
				}
			}},
		{name: "zones dropped, duplicates kept once, other family and zero dropped",
			change: func(s *ServicePlan) {
				s.ExtIPs = []netip.Addr{a("fd00:172::1%a"), a("fd00:172::1%b"), a("10.0.0.1"), {}}
			},
			check: func(t *testing.T, _, out *ServicePlan) {
				if want := []netip.Addr{a("fd00:172::1")}; !slices.Equal(out.ExtIPs, want) {
					t.Errorf("ExtIPs = %v, want %v", out.ExtIPs, want)
				}
			}},
		{name: "endpoints: zone dropped, duplicate, bad port and other family dropped",
			change: func(s *ServicePlan) {
				eps := []Endpoint{ep("fd00:244::5%x", 8080), ep("fd00:244::5%y", 8080), ep("fd00:244::6", 0), ep("10.244.1.5", 8080)}
				s.All, s.ClusterEndpoints = eps, eps
			},
			check: func(t *testing.T, _, out *ServicePlan) {
				want := []Endpoint{ep("fd00:244::5", 8080)}
				if !slices.EqualFunc(out.ClusterEndpoints, want, func(x, y Endpoint) bool { return x.IP == y.IP && x.Port == y.Port }) {
					t.Errorf("ClusterEndpoints = %v, want %v", out.ClusterEndpoints, want)
				}
			}},
		{name: "nodePort out of range is not opened", change: func(s *ServicePlan) { s.NodePort = -1 },
			check: func(t *testing.T, _, out *ServicePlan) {
				if out.HasNodePort {
					t.Error("HasNodePort = true")
				}
			}},
		{name: "range with host bits is masked, of the other family dropped",
			change: func(s *ServicePlan) {
				s.Ranges = []netip.Prefix{netip.MustParsePrefix("fd00:50::7/64"), netip.MustParsePrefix("10.0.0.0/8")}
			},
			check: func(t *testing.T, _, out *ServicePlan) {
				if want := []netip.Prefix{netip.MustParsePrefix("fd00:50::/64")}; !slices.Equal(out.Ranges, want) {
					t.Errorf("Ranges = %v, want %v", out.Ranges, want)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.change(in)
			before := *in
			beforeEps := slices.Clone(in.ClusterEndpoints)
			out := PrintableService(in, IPv6)
			if tt.check == nil {
				if out != in {
					t.Errorf("a clean plan was copied")
				}
				return
			}
			if out == in {
				t.Fatalf("the plan was returned unchanged")
			}
			tt.check(t, in, out)
			if in.ClusterIP != before.ClusterIP || !slices.EqualFunc(in.ClusterEndpoints, beforeEps, func(x, y Endpoint) bool { return x.IP == y.IP && x.Port == y.Port }) || in.HasNodePort != before.HasNodePort {
				t.Errorf("the input plan was modified")
			}
		})
	}
}

func wantNil(t *testing.T, s *ServicePlan) {
	t.Helper()
	if s != nil {
		t.Errorf("got a plan, want the port skipped")
	}
}

func TestPrintablePlan(t *testing.T) {
	clean := &Plan{Family: IPv6, NodePortIPs: []netip.Addr{netip.MustParseAddr("fd00:1::10")}, ClusterCIDR: netip.MustParsePrefix("fd00:244::/32")}
	if PrintablePlan(clean) != clean {
		t.Error("a clean plan was copied")
	}
	dirty := &Plan{Family: IPv6, NodePortIPs: []netip.Addr{netip.MustParseAddr("fd00:1::10%a"), netip.MustParseAddr("fd00:1::10%b"), {}},
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}
	got := PrintablePlan(dirty)
	if want := []netip.Addr{netip.MustParseAddr("fd00:1::10")}; !slices.Equal(got.NodePortIPs, want) {
		t.Errorf("NodePortIPs = %v, want %v", got.NodePortIPs, want)
	}
	if got.ClusterCIDR.IsValid() {
		t.Errorf("ClusterCIDR = %v, want none (other family)", got.ClusterCIDR)
	}
	if len(dirty.NodePortIPs) != 3 {
		t.Error("the input plan was modified")
	}
}
