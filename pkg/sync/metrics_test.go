package sync

import (
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
)

// kubeProxyMetrics are the names kube-proxy v1.37.2 registers
// (pkg/proxy/metrics/metrics.go RegisterMetrics; cmd/kube-proxy's legacy
// registry adds Go, process and client-go's rest_client_*) for what
// rulegen also does, per backend (kube-proxy mode). Left out, as rulegen
// has no such feature: ipvs and winkernel metrics, iptables partial
// restores and rule counts, nftables cleanup of the other mode, localhost
// nodePort listeners and the nfacct packet counters.
var kubeProxyMetrics = []string{
	"kubeproxy_sync_proxy_rules_duration_seconds",
	"kubeproxy_sync_full_proxy_rules_duration_seconds",
	"kubeproxy_sync_partial_proxy_rules_duration_seconds",
	"kubeproxy_sync_proxy_rules_last_timestamp_seconds",
	"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
	"kubeproxy_network_programming_duration_seconds",
	"kubeproxy_sync_proxy_rules_endpoint_changes_pending",
	"kubeproxy_sync_proxy_rules_endpoint_changes_total",
	"kubeproxy_sync_proxy_rules_service_changes_pending",
	"kubeproxy_sync_proxy_rules_service_changes_total",
	"kubeproxy_sync_proxy_rules_no_local_endpoints_total",
	"kubeproxy_proxy_healthz_total",
	"kubeproxy_proxy_livez_total",
	"kubeproxy_conntrack_reconciler_sync_duration_seconds",
	"kubeproxy_conntrack_reconciler_deleted_entries_total",
	"rest_client_request_duration_seconds",
	"rest_client_requests_total",
	"go_goroutines",
	"go_memstats_alloc_bytes",
	"process_cpu_seconds_total",
	"process_resident_memory_bytes",
}

var kubeProxyBackendMetrics = map[Backend][]string{
	NFTables: {"kubeproxy_sync_proxy_rules_nftables_sync_failures_total"},
	IPTables: {"kubeproxy_sync_proxy_rules_iptables_restore_failures_total", "kubeproxy_sync_proxy_rules_iptables_total"},
}

// rulegenOnlyMetrics have no kube-proxy twin, hence the rulegen_ prefix.
var rulegenOnlyMetrics = []string{"rulegen_sync_objects_total", "rulegen_conntrack_reconciler_failures_total"}

// metricNames are the names registered in m.
func metricNames(m *Metrics) []string {
	ch := make(chan *prometheus.Desc, 1000)
	m.Registry.Describe(ch)
	close(ch)
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var out []string
	for d := range ch {
		if s := re.FindStringSubmatch(d.String()); s != nil {
			out = append(out, s[1])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestMetricNamesAreKubeProxys: every metric of a feature rulegen shares
// with kube-proxy has kube-proxy's name, and every other is rulegen_ (or
// Go's and the process's).
func TestMetricNamesAreKubeProxys(t *testing.T) {
	for _, b := range []Backend{NFTables, IPTables} {
		t.Run(string(b), func(t *testing.T) {
			m := NewMetrics()
			NewProxier(Options{Backend: b, NodeName: "node-a"}, &fakeKernel{}, nil, m, nil, &fakeClock{now: time.Unix(1000, 0)}, nil)
			names := metricNames(m)
			want := append(slices.Clone(kubeProxyMetrics), kubeProxyBackendMetrics[b]...)
			for _, n := range want {
				if !slices.Contains(names, n) {
					t.Errorf("kube-proxy's %s is missing", n)
				}
			}
			for b2, ns := range kubeProxyBackendMetrics {
				for _, n := range ns {
					if b2 != b && slices.Contains(names, n) {
						t.Errorf("%s registered with the %s backend (kube-proxy registers it in %s mode only)", n, b, b2)
					}
				}
			}
			for _, n := range names {
				if !slices.Contains(want, n) && !slices.Contains(rulegenOnlyMetrics, n) &&
					!regexp.MustCompile(`^(go|process)_`).MatchString(n) {
					t.Errorf("%s is neither kube-proxy's nor rulegen_-only", n)
				}
			}
		})
	}
}

// TestSyncMetrics: what a sync records, labelled by ip_family as
// kube-proxy labels it.
func TestSyncMetrics(t *testing.T) {
	p, k, _ := newTestProxier(Options{})
	m := p.metrics
	p.OnNode(testNode(), false)
	if err := p.Sync(); err != nil { // the first sync: full
		t.Fatal(err)
	}
	svc := testService("a", "10.96.0.1", v1.ProtocolTCP, 0)
	local := v1.ServiceInternalTrafficPolicyLocal
	svc.Spec.InternalTrafficPolicy = &local
	p.OnService(svc, false)
	p.OnService(svc, false)
	es := testSlice("a-1", "a", v1.ProtocolTCP, "10.128.0.1") // on no node: not local
	// Trigger times: one from before the proxier started (ignored, as
	// kube-proxy ignores them), one after.
	es.Annotations = map[string]string{AnnotationTriggerTime: time.Unix(900, 0).UTC().Format(time.RFC3339)}
	p.OnSlice(es, false)
	check := func(when, name string, want float64, labels ...string) {
		t.Helper()
		if got := metricValue(t, m, name, labels...); got != want {
			t.Errorf("%s: %s%v = %v, want %v", when, name, labels, got, want)
		}
	}
	check("before the sync", "kubeproxy_sync_proxy_rules_service_changes_total", 2)
	check("before the sync", "kubeproxy_sync_proxy_rules_service_changes_pending", 1)
	check("before the sync", "kubeproxy_sync_proxy_rules_endpoint_changes_total", 1)
	check("before the sync", "kubeproxy_sync_proxy_rules_endpoint_changes_pending", 1)
	check("before the sync", "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", 1000, "ip_family", "IPv4")
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	check("after", "kubeproxy_sync_proxy_rules_service_changes_pending", 0)
	check("after", "kubeproxy_sync_proxy_rules_endpoint_changes_pending", 0)
	check("after", "kubeproxy_sync_proxy_rules_duration_seconds", 2, "ip_family", "IPv4")
	check("after", "kubeproxy_sync_full_proxy_rules_duration_seconds", 2, "ip_family", "IPv4") // the fake kernel writes in full
	check("after", "kubeproxy_sync_proxy_rules_last_timestamp_seconds", 1000, "ip_family", "IPv4")
	check("after", "kubeproxy_sync_proxy_rules_no_local_endpoints_total", 1, "traffic_policy", "internal", "ip_family", "IPv4")
	check("after", "kubeproxy_sync_proxy_rules_no_local_endpoints_total", 0, "traffic_policy", "external", "ip_family", "IPv4")
	check("trigger time before the start", "kubeproxy_network_programming_duration_seconds", -1)

	es.Annotations[AnnotationTriggerTime] = time.Unix(1001, 0).UTC().Format(time.RFC3339)
	p.clock.(*fakeClock).Step(3 * time.Second)
	p.OnSlice(es, false)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	check("trigger time after the start", "kubeproxy_network_programming_duration_seconds", 1, "ip_family", "IPv4")

	k.fail = true
	p.OnService(svc, false)
	p.Sync()
	check("failed sync", "kubeproxy_sync_proxy_rules_nftables_sync_failures_total", 1, "ip_family", "IPv4")
}

// TestIPTablesRuleCounts: the iptables backend counts the rules of its
// chains per table, as kube-proxy's iptables mode.
func TestIPTablesRuleCounts(t *testing.T) {
	m := NewMetrics()
	p := NewProxier(Options{Backend: IPTables, NodeName: "node-a"}, &fakeKernel{}, nil, m, nil, &fakeClock{now: time.Unix(1000, 0)}, nil)
	p.OnNode(testNode(), false)
	p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 30000), false)
	p.OnSlice(testSlice("a-1", "a", v1.ProtocolTCP, "10.128.0.1"), false)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"nat", "filter"} {
		if n := metricValue(t, m, "kubeproxy_sync_proxy_rules_iptables_total", "table", table, "ip_family", "IPv4"); n <= 0 {
			t.Errorf("table %s: %v rules counted, want some", table, n)
		}
	}
}
