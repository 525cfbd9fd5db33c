package sync

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/rulegen/rulegen/pkg/rules"
)

// fakeConntrackTable is the conntrack table of fakeConntrack: its UDP
// entries per family, and failures to inject.
type fakeConntrackTable struct {
	entries            map[rules.Family][]ConntrackEntry
	listErr, deleteErr error
	deleteUDPErr       error // DeleteUDP (the per-change cleanup) fails
	lists, deleteCalls int
}

func (c *fakeConntrack) ListUDP(f rules.Family) ([]ConntrackEntry, error) {
	c.lists++
	if c.listErr != nil {
		return nil, c.listErr
	}
	return slices.Clone(c.entries[f]), nil
}

func (c *fakeConntrack) DeleteEntries(f rules.Family, entries []ConntrackEntry) (uint, error) {
	c.deleteCalls++
	if c.deleteErr != nil {
		return 0, c.deleteErr
	}
	n := len(c.entries[f])
	c.entries[f] = slices.DeleteFunc(c.entries[f], func(e ConntrackEntry) bool { return slices.Contains(entries, e) })
	return uint(n - len(c.entries[f])), nil
}

// Addresses of the reconcile tests.
const (
	ctClient  = "10.0.0.10:40000"
	ctCluster = "10.96.0.53"
	ctExt     = "192.168.50.53"
	ctLB      = "192.168.60.53"
	ctNode    = "192.168.1.10"
	ctReady   = "10.244.1.5:53"
	ctTerm    = "10.244.1.6:53" // terminating, still serving
	ctGone    = "10.244.1.9:53" // no longer an endpoint
	ctUnserve = "10.244.1.7:53" // neither ready nor serving
)

// svcCIDR is the service range of the plans built with dnsPlanIn.
var svcCIDR = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")}

// udpEntry is a UDP entry from ctClient to dst, answered by reply.
func udpEntry(dst, reply string) ConntrackEntry {
	c := netip.MustParseAddrPort(ctClient)
	return ConntrackEntry{OrigSrc: c, OrigDst: netip.MustParseAddrPort(dst), ReplySrc: netip.MustParseAddrPort(reply), ReplyDst: c}
}

// dnsPlan is the IPv4 plan of ns/dns: port 53/UDP on ctCluster, an
// external IP, an LB IP and nodePort 30053, with the endpoints eps (each
// "ip:port/state", state one of ready, terminating, unserving), and of
// ns/web: port 53/TCP on 10.96.0.80.
func dnsPlan(eps ...string) *rules.Plan { return dnsPlanIn(nil, eps...) }

// dnsPlanIn is dnsPlan with the service CIDRs cidrs.
func dnsPlanIn(cidrs []netip.Prefix, eps ...string) *rules.Plan {
	st := rules.NewState()
	key := rules.ServiceKey{Namespace: "ns", Name: "dns"}
	st.SetService(key, []*rules.ServicePort{{Name: rules.ServicePortName{ServiceKey: key, Protocol: rules.UDP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr(ctCluster)}, Port: 53, NodePort: 30053,
		ExternalIPs: []netip.Addr{netip.MustParseAddr(ctExt)}, LoadBalancerIPs: []netip.Addr{netip.MustParseAddr(ctLB)}}})
	sl := &rules.Slice{Name: "dns-1", Service: key, Family: rules.IPv4, Ports: []rules.SlicePort{{Protocol: rules.UDP, Port: 53}}}
	for _, e := range eps {
		addr, state, _ := strings.Cut(e, "/")
		ep := rules.Endpoint{IP: netip.MustParseAddrPort(addr).Addr(), NodeName: "node-a"}
		switch state {
		case "ready":
			ep.Ready, ep.Serving = true, true
		case "terminating":
			ep.Serving, ep.Terminating = true, true
		}
		sl.Endpoints = append(sl.Endpoints, ep)
	}
	st.SetSlice(sl)
	web := rules.ServiceKey{Namespace: "ns", Name: "web"}
	st.SetService(web, []*rules.ServicePort{{Name: rules.ServicePortName{ServiceKey: web, Protocol: rules.TCP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.80")}, Port: 53}})
	cfg := &rules.Config{Node: rules.Node{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr(ctNode)}}, ServiceCIDRs: cidrs}
	return rules.NewPlan(st, cfg, rules.IPv4)
}

// TestStaleUDP: which entries the reconcile deletes, as kube-proxy's
// conntrack reconciler decides.
func TestStaleUDP(t *testing.T) {
	all := []string{ctReady + "/ready", ctTerm + "/terminating", ctUnserve + "/unserving"}
	tests := []struct {
		name  string
		plan  *rules.Plan
		entry ConntrackEntry
		stale bool
	}{
		{"ClusterIP, answered by a ready endpoint", dnsPlan(all...), udpEntry(ctCluster+":53", ctReady), false},
		{"ClusterIP, answered by a terminating serving endpoint", dnsPlan(all...), udpEntry(ctCluster+":53", ctTerm), false},
		{"ClusterIP, answered by an endpoint that is gone", dnsPlan(all...), udpEntry(ctCluster+":53", ctGone), true},
		{"ClusterIP, answered by an endpoint no longer serving", dnsPlan(all...), udpEntry(ctCluster+":53", ctUnserve), true},
		{"ClusterIP, the endpoint's address on another port", dnsPlan(all...), udpEntry(ctCluster+":53", "10.244.1.5:54"), true},
		{"ClusterIP, not DNATed (made before the service had endpoints)", dnsPlan(all...), udpEntry(ctCluster+":53", ctCluster+":53"), true},
		{"ClusterIP, another port", dnsPlan(all...), udpEntry(ctCluster+":54", ctGone), false},
		{"external IP, gone endpoint", dnsPlan(all...), udpEntry(ctExt+":53", ctGone), true},
		{"LB IP, gone endpoint", dnsPlan(all...), udpEntry(ctLB+":53", ctGone), true},
		{"LB IP, ready endpoint", dnsPlan(all...), udpEntry(ctLB+":53", ctReady), false},
		{"nodePort, gone endpoint", dnsPlan(all...), udpEntry(ctNode+":30053", ctGone), true},
		{"nodePort, on any address", dnsPlan(all...), udpEntry("10.1.1.1:30053", ctGone), true},
		{"nodePort, ready endpoint", dnsPlan(all...), udpEntry(ctNode+":30053", ctReady), false},
		{"no serving endpoint: every entry to its IPs", dnsPlan(ctUnserve + "/unserving"), udpEntry(ctCluster+":53", ctUnserve), true},
		{"no endpoint: every entry to its IPs", dnsPlan(), udpEntry(ctCluster+":53", ctGone), true},
		{"no endpoint: not its nodePort (anybody's port)", dnsPlan(), udpEntry(ctNode+":30053", ctGone), false},
		{"a TCP service's address and port", dnsPlan(all...), udpEntry("10.96.0.80:53", ctGone), false},
		{"an address no service has", dnsPlan(all...), udpEntry("8.8.8.8:53", "8.8.8.8:53"), false},
		{"a deleted service's ClusterIP, DNATed", dnsPlanIn(svcCIDR, all...), udpEntry("10.96.0.99:53", ctGone), true},
		{"a deleted service's ClusterIP, DNATed to an endpoint still alive", dnsPlanIn(svcCIDR, all...), udpEntry("10.96.0.99:53", ctReady), true},
		{"a ClusterIP's other UDP port, DNATed (renumbered port)", dnsPlanIn(svcCIDR, all...), udpEntry(ctCluster+":54", ctReady), true},
		{"a ClusterIP no service has, not DNATed", dnsPlanIn(svcCIDR, all...), udpEntry("10.96.0.99:53", "10.96.0.99:53"), false},
		{"DNATed, but outside the service CIDRs", dnsPlanIn(svcCIDR, all...), udpEntry("10.97.0.99:53", ctGone), false},
		{"a deleted service's ClusterIP, no service CIDR known", dnsPlan(all...), udpEntry("10.96.0.99:53", ctGone), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := staleUDP(tc.plan, []ConntrackEntry{tc.entry})
			if stale := len(got) == 1; stale != tc.stale {
				t.Errorf("%s: stale %v, want %v", tc.entry, stale, tc.stale)
			}
		})
	}
}

// TestReconcileConntrack: the reconcile deletes, against the last synced
// plan, the entries staleUDP names and no other, counts them in
// kube-proxy's metric, does nothing before the first sync, and reports a
// failure (for its runner to retry) with the failure counter.
func TestReconcileConntrack(t *testing.T) {
	fresh := udpEntry("10.96.0.10:80", "10.128.0.1:8080")
	stale := udpEntry("10.96.0.10:80", "10.128.0.9:8080")
	other := udpEntry("10.96.0.99:80", "10.128.0.9:8080")
	tests := []struct {
		name        string
		sync        bool
		listErr     error
		deleteErr   error
		wantErr     string
		wantLeft    []ConntrackEntry
		wantDeleted float64
		wantFailed  float64
	}{
		{name: "stale entry deleted", sync: true, wantLeft: []ConntrackEntry{fresh, other}, wantDeleted: 1},
		{name: "before the first sync: nothing read", wantLeft: []ConntrackEntry{fresh, stale, other}},
		{name: "list fails", sync: true, listErr: errors.New("EPERM"), wantErr: "EPERM", wantLeft: []ConntrackEntry{fresh, stale, other}, wantFailed: 1},
		{name: "delete fails", sync: true, deleteErr: errors.New("ENOBUFS"), wantErr: "ENOBUFS", wantLeft: []ConntrackEntry{fresh, stale, other}, wantFailed: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, ct := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}})
			p.OnService(testService("udp", "10.96.0.10", v1.ProtocolUDP, 0), false)
			p.OnSlice(testSlice("s1", "udp", v1.ProtocolUDP, "10.128.0.1"), false)
			if tc.sync {
				if err := p.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			ct.entries = map[rules.Family][]ConntrackEntry{rules.IPv4: {fresh, stale, other}}
			ct.listErr, ct.deleteErr = tc.listErr, tc.deleteErr
			err := p.ReconcileConntrack()
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !slices.Equal(ct.entries[rules.IPv4], tc.wantLeft) {
				t.Errorf("left %v, want %v", ct.entries[rules.IPv4], tc.wantLeft)
			}
			if got := max(0, metricValue(t, p.metrics, "kubeproxy_conntrack_reconciler_deleted_entries_total", "ip_family", "IPv4")); got != tc.wantDeleted {
				t.Errorf("kubeproxy_conntrack_reconciler_deleted_entries_total %v, want %v", got, tc.wantDeleted)
			}
			if got := max(0, metricValue(t, p.metrics, "rulegen_conntrack_reconciler_failures_total", "ip_family", "IPv4")); got != tc.wantFailed {
				t.Errorf("rulegen_conntrack_reconciler_failures_total %v, want %v", got, tc.wantFailed)
			}
		})
	}
}

// TestSyncRequestsReconcile: a full sync, and a per-change cleanup that
// failed, ask for a reconcile; an incremental sync whose cleanup worked
// does not.
func TestSyncRequestsReconcile(t *testing.T) {
	k, ct := &incrementalKernel{full: true}, &fakeConntrack{}
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := NewProxier(Options{Backend: NFTables, NodeName: "node-a", NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		k, ct, NewMetrics(), nil, clock, slog.New(slog.DiscardHandler))
	var requests atomic.Int32
	p.SetReconcileRequest(func() { requests.Add(1) })
	p.OnService(testService("udp", "10.96.0.10", v1.ProtocolUDP, 0), false)
	p.OnSlice(testSlice("s1", "udp", v1.ProtocolUDP, "10.128.0.1"), false)
	check := func(what string, want int32) {
		t.Helper()
		for i := 0; i < 200 && requests.Load() < want; i++ { // an asynchronous request: wait, bounded
			time.Sleep(5 * time.Millisecond)
		}
		if got := requests.Load(); got != want {
			t.Errorf("%s: %d reconcile requests, want %d", what, got, want)
		}
	}
	step := func(what string, want int32) {
		t.Helper()
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		check(what, want)
	}
	step("first (full) sync", 1)
	k.full = false
	p.OnSlice(testSlice("s1", "udp", v1.ProtocolUDP, "10.128.0.2"), false)
	step("endpoint replaced, cleanup works: nothing yet", 1)
	clock.Step(conntrackRecheck)
	check("a moment after the cleanup: a second look", 2)
	ct.deleteUDPErr = errors.New("EINTR")
	p.OnSlice(testSlice("s1", "udp", v1.ProtocolUDP, "10.128.0.3"), false)
	step("endpoint replaced, cleanup fails", 3)
	clock.Step(conntrackRecheck)
	check("and the second look", 4)
}

// incrementalKernel is a fakeKernel whose writes are full only when full
// is set.
type incrementalKernel struct {
	fakeKernel
	full bool
}

func (k *incrementalKernel) Apply(d *Desired) (Written, error) {
	w, err := k.fakeKernel.Apply(d)
	w.Full = w.Full && k.full
	return w, err
}
