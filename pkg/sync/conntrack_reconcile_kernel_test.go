package sync

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/rulegen/rulegen/test/netnstest"
)

// cleanupFails is the kernel's conntrack table, except that the cleanup
// after a change fails: only the reconcile can delete.
type cleanupFails struct{ NetlinkConntrack }

func (cleanupFails) DeleteUDP([]ConntrackSpec) (uint, error) {
	return 0, errors.New("injected cleanup failure")
}

// TestReconcileConntrackKernel, in a throwaway namespace: a UDP entry to a
// service's ClusterIP that an endpoint no longer there answered is
// deleted by the reconcile, not by a change — because the cleanup of the
// change failed, or because the entry was made after it (as by a packet
// that raced the sync). Entries answered by the current endpoint, and
// entries to other destinations, stay.
func TestReconcileConntrackKernel(t *testing.T) {
	netnstest.Require(t, "conntrack")
	// client .10 to the ClusterIP 10.96.0.10:80, answered by an endpoint
	// (each from its own client port: reply tuples must differ).
	type entry struct{ sport, dst, ep string }
	current := entry{"40001", "10.96.0.10", "10.128.0.2"}
	gone := entry{"40002", "10.96.0.10", "10.128.0.1"}
	elsewhere := entry{"40003", "10.96.0.99", "10.128.0.1"}
	for _, tc := range []struct {
		name        string
		ct          Conntrack
		insertAfter bool // insert the entries after the change's sync
	}{
		{"the change's cleanup failed", cleanupFails{}, false},
		{"the entry was made after the change's cleanup", NetlinkConntrack{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "ctrec")
			insert := func() {
				for _, e := range []entry{current, gone, elsewhere} {
					ns.MustRun(nil, "conntrack", "-I", "-p", "udp", "-s", "10.0.0.10", "-d", e.dst, "--sport", e.sport, "--dport", "80",
						"-r", e.ep, "-q", "10.0.0.10", "--reply-port-src", "8080", "--reply-port-dst", e.sport, "-t", "120")
				}
			}
			present := func() map[entry]bool {
				list := ns.MustRun(nil, "conntrack", "-L", "-f", "ipv4")
				out := map[entry]bool{}
				for _, e := range []entry{current, gone, elsewhere} {
					out[e] = strings.Contains(list, "dst="+e.dst+" sport="+e.sport+" dport=80 ") && strings.Contains(list, "src="+e.ep+" dst=10.0.0.10 sport=8080 dport="+e.sport)
				}
				return out
			}
			p := NewProxier(Options{Backend: NFTables, NodeName: "node-a", NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
				&fakeKernel{}, tc.ct, NewMetrics(), nil, &fakeClock{now: time.Unix(1000, 0)}, slog.New(slog.DiscardHandler))
			// Every conntrack call below runs inside the namespace.
			in := func(f func() error) {
				t.Helper()
				if err := ns.Do(f); err != nil {
					t.Fatal(err)
				}
			}
			p.OnService(testService("dns", "10.96.0.10", v1.ProtocolUDP, 0), false)
			p.OnSlice(testSlice("s1", "dns", v1.ProtocolUDP, "10.128.0.1"), false)
			in(p.Sync)
			if !tc.insertAfter {
				insert()
			}
			p.OnSlice(testSlice("s1", "dns", v1.ProtocolUDP, "10.128.0.2"), false) // 10.128.0.1 is gone
			in(p.Sync)
			if tc.insertAfter {
				insert()
			}
			if got := present(); !got[gone] || !got[current] || !got[elsewhere] {
				t.Fatalf("before the reconcile: present %v, want all three", got)
			}
			in(p.ReconcileConntrack)
			got := present()
			if got[gone] {
				t.Errorf("the entry answered by the deleted endpoint 10.128.0.1 is still there")
			}
			if !got[current] || !got[elsewhere] {
				t.Errorf("the reconcile deleted more: present %v", got)
			}
			if n := metricValue(t, p.metrics, "kubeproxy_conntrack_reconciler_deleted_entries_total", "ip_family", "IPv4"); n != 1 {
				t.Errorf("kubeproxy_conntrack_reconciler_deleted_entries_total %v, want 1", n)
			}
		})
	}
}
