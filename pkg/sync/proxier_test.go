package sync

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Address plan of these tests: node 10.0.0.1 / fd00::1, cluster IPs in
// 10.96.0.0/16 and fd00:96::/64, endpoints in 10.128.0.0/16 and fd00:128::/64.

// fakeKernel records what it is given; with fail set it refuses an Apply,
// with removeErr a Remove.
// With tampered set, Intact says false until the next Invalidate (as a
// writer whose rules were flushed by hand, then rewritten); with costly,
// its check is not cheap.
type fakeKernel struct {
	fail        bool
	applied     []*Desired
	removed     []rules.Family
	removeErr   error
	tampered    atomic.Bool
	invalidated int
	costly      bool // CheapCheck says false
}

var _ Kernel = &fakeKernel{}

func (k *fakeKernel) Apply(d *Desired) (Written, error) {
	if k.fail {
		return Written{}, errors.New("injected failure")
	}
	k.applied = append(k.applied, d)
	return Written{Full: true}, nil
}
func (k *fakeKernel) Invalidate() {
	k.invalidated++
	k.tampered.Store(false)
}
func (k *fakeKernel) Intact() bool     { return !k.tampered.Load() }
func (k *fakeKernel) CheapCheck() bool { return !k.costly }
func (k *fakeKernel) Remove(f rules.Family) error {
	k.removed = append(k.removed, f)
	return k.removeErr
}

// fakeConntrack records the specs it is asked to delete; for the
// reconcile it holds a table of UDP entries (conntrack_reconcile_test.go).
type fakeConntrack struct {
	specs []ConntrackSpec
	fakeConntrackTable
}

var _ Conntrack = &fakeConntrack{}

func (c *fakeConntrack) DeleteUDP(specs []ConntrackSpec) (uint, error) {
	c.specs = append(c.specs, specs...)
	if c.deleteUDPErr != nil {
		return 0, c.deleteUDPErr
	}
	return uint(len(specs)), nil
}

func newTestProxier(opts Options) (*Proxier, *fakeKernel, *fakeConntrack) {
	k, ct := &fakeKernel{}, &fakeConntrack{}
	if opts.NodeName == "" {
		opts.NodeName = "node-a"
	}
	opts.Backend = NFTables
	log := slog.New(slog.DiscardHandler)
	return NewProxier(opts, k, ct, NewMetrics(), nil, &fakeClock{now: time.Unix(1000, 0)}, log), k, ct
}

// testService is a service "ns/name" with one port 80 of proto, a
// nodePort when nodePort != 0.
func testService(name, clusterIP string, proto v1.Protocol, nodePort int32) *v1.Service {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: clusterIP,
			Ports: []v1.ServicePort{{Port: 80, Protocol: proto, TargetPort: intstr.FromInt32(8080), NodePort: nodePort}}}}
	if nodePort != 0 {
		svc.Spec.Type = v1.ServiceTypeNodePort
	}
	return svc
}

// testSlice is the slice "ns/name" labelled for service svc ("" for no
// label) with ready endpoints ips on port 8080 of proto.
func testSlice(name, svc string, proto v1.Protocol, ips ...string) *discovery.EndpointSlice {
	ready, port, unnamed := true, int32(8080), ""
	es := &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		AddressType: discovery.AddressTypeIPv4, Ports: []discovery.EndpointPort{{Name: &unnamed, Port: &port, Protocol: &proto}}}
	if svc != "" {
		es.Labels = map[string]string{discovery.LabelServiceName: svc}
	}
	for _, ip := range ips {
		if netip.MustParseAddr(ip).Is6() {
			es.AddressType = discovery.AddressTypeIPv6
		}
		es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{ip}, Conditions: discovery.EndpointConditions{Ready: &ready}})
	}
	return es
}

// endpointsOf returns the IPv4 endpoints the proxier holds for ns/svc port 80/TCP.
func endpointsOf(p *Proxier, svc string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, sp := range p.state.ServicePorts(rules.ServiceKey{Namespace: "ns", Name: svc}) {
		for _, e := range p.state.Endpoints(sp, rules.IPv4) {
			out = append(out, e.IP.String())
		}
	}
	return out
}

// TestSliceRelabelAndDelete: a slice is counted for the service its label
// names now, never for one it named before, and a delete removes it
// whatever labels the deleted copy carries.
func TestSliceRelabelAndDelete(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps func(p *Proxier)
		wantA []string // endpoints of ns/a at the end
		wantB []string // endpoints of ns/b at the end
	}{
		{"relabelled from a to b", func(p *Proxier) {
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "b", v1.ProtocolTCP, "10.128.0.1"), false)
		}, nil, []string{"10.128.0.1"}},
		{"label removed", func(p *Proxier) {
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "", v1.ProtocolTCP, "10.128.0.1"), false)
		}, nil, nil},
		{"relabelled, then deleted", func(p *Proxier) {
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "b", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "b", v1.ProtocolTCP, "10.128.0.1"), true)
		}, nil, nil},
		{"deleted through a tombstone without labels", func(p *Proxier) {
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "", v1.ProtocolTCP), true)
		}, nil, nil},
		{"deleted through a stale copy with the old label", func(p *Proxier) {
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "b", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), true)
		}, nil, nil},
		{"other slices of the old service stay", func(p *Proxier) {
			p.OnSlice(testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
			p.OnSlice(testSlice("s2", "a", v1.ProtocolTCP, "10.128.0.2"), false)
			p.OnSlice(testSlice("s1", "b", v1.ProtocolTCP, "10.128.0.1"), false)
		}, []string{"10.128.0.2"}, []string{"10.128.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _ := newTestProxier(Options{})
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			p.OnService(testService("b", "10.96.0.2", v1.ProtocolTCP, 0), false)
			tc.steps(p)
			if got := endpointsOf(p, "a"); !slices.Equal(got, tc.wantA) {
				t.Errorf("service a has endpoints %v, want %v", got, tc.wantA)
			}
			if got := endpointsOf(p, "b"); !slices.Equal(got, tc.wantB) {
				t.Errorf("service b has endpoints %v, want %v", got, tc.wantB)
			}
		})
	}
}

// TestNodeWithAnInvalidAddressKeepsTheValidOnes: one unparsable address
// is reported; the others stay the node's, and nodePorts are served on
// them.
func TestNodeWithAnInvalidAddressKeepsTheValidOnes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs []v1.NodeAddress
	}{
		{"bad address last", []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}, {Type: v1.NodeExternalIP, Address: "not-an-ip"}}},
		{"bad address first", []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "fd00::1%eth0"}, {Type: v1.NodeInternalIP, Address: "10.0.0.1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, _ := newTestProxier(Options{})
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 30080), false)
			p.OnNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: v1.NodeStatus{Addresses: tc.addrs}}, false)
			if got := p.Node().IPs; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.0.0.1")}) {
				t.Errorf("node IPs %v, want [10.0.0.1]", got)
			}
			if len(p.reported) != 1 {
				t.Errorf("the invalid address was not reported: %v", p.reported)
			}
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := k.applied[0].Plan.NodePortIPs; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.0.0.1")}) {
				t.Errorf("nodePorts served on %v, want [10.0.0.1]", got)
			}
		})
	}
}

// TestDetectLocalNodeCIDR: with DetectLocalNodeCIDR the proxier takes the
// pod range from its Node's spec.podCIDRs, and a change of them alone
// re-plans.
func TestDetectLocalNodeCIDR(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodeCIDR bool
		want     string
	}{
		{"ClusterCIDR", false, "10.244.0.0/16"},
		{"NodeCIDR", true, "10.244.2.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, _ := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, DetectLocalNodeCIDR: tc.nodeCIDR})
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: v1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}}}
			p.OnNode(node, false)
			node = node.DeepCopy()
			node.Spec.PodCIDRs = []string{"10.244.2.0/24"}
			p.OnNode(node, false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := k.applied[len(k.applied)-1].Plan.ClusterCIDR.String(); got != tc.want {
				t.Errorf("pod range %s, want %s", got, tc.want)
			}
		})
	}
}

// TestConntrackSpecsCarryTheFamily: the specs of a nodePort (which has no
// address) name the plan's family, so that IPv6 entries are flushed from
// the IPv6 table.
func TestConntrackSpecsCarryTheFamily(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fam       rules.Family
		nodeIP    string
		clusterIP string
		ep        string
	}{
		{"IPv4", rules.IPv4, "10.0.0.1", "10.96.0.1", "10.128.0.1"},
		{"IPv6", rules.IPv6, "fd00::1", "fd00:96::1", "fd00:128::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, ct := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr(tc.nodeIP)}, Families: []rules.Family{tc.fam}})
			p.OnService(testService("a", tc.clusterIP, v1.ProtocolUDP, 30053), false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			// The first endpoint: entries that blackholed while the
			// service had none are flushed, clusterIP and nodePort.
			p.OnSlice(testSlice("s1", "a", v1.ProtocolUDP, tc.ep), false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			var nodePort int
			for _, s := range ct.specs {
				if s.Family != tc.fam {
					t.Errorf("spec %+v has family %s, want %s", s, s.Family, tc.fam)
				}
				if !s.OrigDst.IsValid() && s.OrigPort == 30053 {
					nodePort++
				}
			}
			if nodePort != 1 {
				t.Errorf("want one nodePort spec, got %+v", ct.specs)
			}
			byFam, err := conntrackFilters(ct.specs)
			if err != nil {
				t.Fatal(err)
			}
			want := map[rules.Family]netlink.InetFamily{rules.IPv4: unix.AF_INET, rules.IPv6: unix.AF_INET6}[tc.fam]
			if len(byFam) != 1 || len(byFam[want]) != len(ct.specs) {
				t.Errorf("filters per table (by address family) %v, want all %d in family %d", filterCounts(byFam), len(ct.specs), want)
			}
		})
	}
}

// TestConntrackFiltersRejectsBadSpecs: a spec without a family, or with an
// address of the other family, is an error rather than a silent no-op.
func TestConntrackFiltersRejectsBadSpecs(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec ConntrackSpec
	}{
		{"no family", ConntrackSpec{OrigPort: 53}},
		{"IPv4 address in an IPv6 spec", ConntrackSpec{Family: rules.IPv6, OrigDst: netip.MustParseAddr("10.96.0.1"), OrigPort: 53}},
		{"IPv6 endpoint in an IPv4 spec", ConntrackSpec{Family: rules.IPv4, OrigPort: 53, ReplySrc: netip.MustParseAddr("fd00::1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := conntrackFilters([]ConntrackSpec{tc.spec}); err == nil {
				t.Errorf("no error for %+v", tc.spec)
			}
		})
	}
}

// TestProxierMapsStayBounded: objects created and deleted by the hundred
// thousand, and conflicts that end, leave nothing in the proxier's
// bookkeeping; trigger times pending while syncs fail stay one per slice.
func TestProxierMapsStayBounded(t *testing.T) {
	const cycles = 100_000
	t.Run("create/delete cycles of invalid objects", func(t *testing.T) {
		p, _, _ := newTestProxier(Options{})
		for i := range cycles {
			svc := testService(fmt.Sprintf("svc-%d", i), "not-an-ip", v1.ProtocolTCP, 0)
			es := testSlice(fmt.Sprintf("svc-%d-1", i), svc.Name, v1.ProtocolTCP, "10.128.0.1")
			es.Endpoints[0].Addresses[0] = "bad"
			es.Annotations = map[string]string{AnnotationTriggerTime: "2026-01-01T00:00:00Z"}
			p.OnService(svc, false)
			p.OnSlice(es, false)
			p.OnSlice(es, true)
			p.OnService(svc, true)
		}
		if len(p.reported) != 0 || len(p.sliceOwner) != 0 || len(p.triggers) != 0 {
			t.Errorf("after %d cycles: %d reported, %d slice owners, %d trigger times; want none", cycles, len(p.reported), len(p.sliceOwner), len(p.triggers))
		}
		p.mu.Lock()
		if _, all := p.state.ChangedSince(0); all {
			t.Errorf("the state still logs all %d changes of the deleted services", 4*cycles)
		}
		p.mu.Unlock()
	})
	t.Run("conflicts that end", func(t *testing.T) {
		p, _, _ := newTestProxier(Options{})
		a := testService("a", "10.96.0.1", v1.ProtocolTCP, 0)
		a.Spec.ExternalIPs = []string{"172.16.0.1"}
		p.OnService(a, false)
		for i := range 1000 { // each sync plans a conflict of another service
			b := testService(fmt.Sprintf("b-%d", i), "10.96.1.1", v1.ProtocolTCP, 0)
			b.Spec.ExternalIPs = []string{"172.16.0.1"}
			p.OnService(b, false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			if n := len(p.conflicts) + len(p.reported); n != 1 {
				t.Fatalf("sync %d: %d conflicts recorded, want the 1 current one", i, n)
			}
			p.OnService(b, true)
		}
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		if len(p.conflicts) != 0 || len(p.reported) != 0 {
			t.Errorf("after the conflicts ended: %d conflicts, %d reported; want none", len(p.conflicts), len(p.reported))
		}
	})
	t.Run("trigger times while syncs fail", func(t *testing.T) {
		p, k, _ := newTestProxier(Options{})
		k.fail = true
		p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range 1000 {
			es := testSlice("s1", "a", v1.ProtocolTCP, "10.128.0.1")
			es.Annotations = map[string]string{AnnotationTriggerTime: base.Add(time.Duration(i) * time.Second).Format(time.RFC3339)}
			p.OnSlice(es, false)
			if err := p.Sync(); err == nil {
				t.Fatal("the sync should fail")
			}
		}
		if got := p.triggers; len(got) != 1 || !got[types.NamespacedName{Namespace: "ns", Name: "s1"}].at.Equal(base) {
			t.Errorf("pending trigger times %v, want only the oldest, %v", got, base)
		}
		k.fail = false
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		if len(p.triggers) != 0 {
			t.Errorf("trigger times left after a successful sync: %v", p.triggers)
		}
	})
}

func filterCounts(m map[netlink.InetFamily][]netlink.CustomConntrackFilter) map[netlink.InetFamily]int {
	out := map[netlink.InetFamily]int{}
	for f, fs := range m {
		out[f] = len(fs)
	}
	return out
}

// TestConntrackCleanupOfGoneServicePorts: when a UDP service port goes (the
// service deleted, or its port made TCP), every entry to its ClusterIP and
// nodePort is deleted, whoever answered it (the soak found them left
// behind); a destination another UDP port took over is left to that port's
// endpoint check.
func TestConntrackCleanupOfGoneServicePorts(t *testing.T) {
	const clusterIP, ep = "10.96.0.1", "10.128.0.1"
	tests := []struct {
		name   string
		change func(p *Proxier)
		want   []string // "addr:port" of the specs without a reply source ("any:port" for a nodePort)
	}{
		{name: "service deleted", change: func(p *Proxier) {
			p.OnService(testService("a", clusterIP, v1.ProtocolUDP, 30053), true)
		}, want: []string{"10.96.0.1:80", "any:30053"}},
		{name: "port made TCP", change: func(p *Proxier) {
			p.OnService(testService("a", clusterIP, v1.ProtocolTCP, 30053), false)
		}, want: []string{"10.96.0.1:80", "any:30053"}},
		{name: "the destination taken over by another UDP service", change: func(p *Proxier) {
			p.OnService(testService("a", clusterIP, v1.ProtocolUDP, 30053), true)
			p.OnService(testService("b", clusterIP, v1.ProtocolUDP, 30053), false)
		}, want: nil},
		{name: "nothing gone", change: func(p *Proxier) {}, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, ct := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Families: []rules.Family{rules.IPv4}})
			p.OnService(testService("a", clusterIP, v1.ProtocolUDP, 30053), false)
			p.OnSlice(testSlice("s1", "a", v1.ProtocolUDP, ep), false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			ct.specs = nil
			tc.change(p)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range ct.specs {
				if s.ReplySrc.IsValid() {
					continue
				}
				addr := "any"
				if s.OrigDst.IsValid() {
					addr = s.OrigDst.String()
				}
				got = append(got, fmt.Sprintf("%s:%d", addr, s.OrigPort))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("specs deleting every entry to %v, want %v (all specs %+v)", got, tc.want, ct.specs)
			}
		})
	}
}
