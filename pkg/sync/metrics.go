package sync

import (
	"context"
	"net/url"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientmetrics "k8s.io/client-go/tools/metrics"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Metrics are rulegen's Prometheus metrics, in a registry of their own.
//
// Where rulegen does what kube-proxy does, the metric is kube-proxy's:
// same name, help, labels and buckets as k8s.io/kubernetes v1.37.2
// pkg/proxy/metrics/metrics.go (ip_family is "IPv4" or "IPv6", as
// v1.IPFamily). Metrics of what only rulegen does keep a rulegen_ prefix.
// The registry also holds Go's runtime and process collectors and
// client-go's rest_client_* metrics, as kube-proxy's legacy registry does.
//
//	kubeproxy_sync_proxy_rules_duration_seconds{ip_family}          one family's sync (render and apply)
//	kubeproxy_sync_full_proxy_rules_duration_seconds{ip_family}     the same, full syncs
//	kubeproxy_sync_partial_proxy_rules_duration_seconds{ip_family}  the same, partial syncs
//	kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family}    end of the last successful sync
//	kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family} last change that asked for a sync
//	kubeproxy_network_programming_duration_seconds{ip_family}       EndpointSlice last-change-trigger-time to applied
//	kubeproxy_sync_proxy_rules_{endpoint,service}_changes_total     changes received
//	kubeproxy_sync_proxy_rules_{endpoint,service}_changes_pending   objects changed since the last sync
//	kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy,ip_family} Local-policy services without a local endpoint
//	kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family}   (nftables backend) failed transactions
//	kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family} (iptables backend) failed iptables-restore
//	kubeproxy_sync_proxy_rules_iptables_total{table,ip_family}     (iptables backend) rules in rulegen's chains after the last sync
//	kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family} stale UDP conntrack entries deleted
//	kubeproxy_conntrack_reconciler_sync_duration_seconds{ip_family} time to delete them (after a change, or in the periodic reconcile)
//	rulegen_conntrack_reconciler_failures_total{ip_family}          conntrack cleanups or reconciles that failed (each is retried)
//	kubeproxy_proxy_healthz_total{code}, kubeproxy_proxy_livez_total{code} answers of /healthz and /livez
//	rulegen_sync_objects_total{kind="chains|rules|elements"}        objects sent to the kernel (a partial sync sends only what changed)
//
// Network programming latency is observed once per EndpointSlice and
// successful sync, from the oldest change of the slice that sync applied
// (several updates of a slice between two syncs, or while syncs fail, count
// once); a deleted slice is not measured, and, as kube-proxy
// (EndpointsChangeTracker.trackerStartTime), a trigger time from before the
// proxier started is ignored: a restart would otherwise observe the age of
// every slice.
type Metrics struct {
	Registry *prometheus.Registry

	syncs, fullSyncs, partialSyncs *prometheus.HistogramVec
	lastSync, lastQueued           *prometheus.GaugeVec
	programming                    *prometheus.HistogramVec
	endpointChanges, svcChanges    prometheus.Counter
	endpointPending, svcPending    prometheus.Gauge
	noLocal                        *prometheus.GaugeVec
	nftFailures, iptFailures       *prometheus.CounterVec
	iptRules                       *prometheus.GaugeVec
	conntrack                      *prometheus.CounterVec
	conntrackSync                  *prometheus.HistogramVec
	conntrackFailures              *prometheus.CounterVec
	healthz, livez                 *prometheus.CounterVec
	written                        *prometheus.CounterVec

	backendOnce gosync.Once
	failures    *prometheus.CounterVec // the backend's failure counter, set by forBackend
}

// syncBuckets are kube-proxy's buckets of its sync duration histograms:
// ExponentialBuckets(0.001, 2, 15), 1 ms to ~16 s.
var syncBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// programmingBuckets are kube-proxy's buckets of
// network_programming_duration_seconds: 0.25 s and 0.5 s, every second to
// 59 s, every 5 s to 115 s, every 30 s to 5 min.
var programmingBuckets = func() []float64 {
	var b []float64
	b = append(b, prometheus.LinearBuckets(0.25, 0.25, 2)...)
	b = append(b, prometheus.LinearBuckets(1, 1, 59)...)
	b = append(b, prometheus.LinearBuckets(60, 5, 12)...)
	return append(b, prometheus.LinearBuckets(120, 30, 7)...)
}()

// NewMetrics registers the metrics (see Metrics). The backend's failure
// counter is registered when a Proxier of that backend is made.
func NewMetrics() *Metrics {
	fam := []string{"ip_family"}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, fam)
	}
	m := &Metrics{
		Registry:     prometheus.NewRegistry(),
		syncs:        hist("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncBuckets),
		fullSyncs:    hist("kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncBuckets),
		partialSyncs: hist("kubeproxy_sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncBuckets),
		lastSync: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time proxy rules were successfully synced"}, fam),
		lastQueued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
			Help: "The last time a sync of proxy rules was queued"}, fam),
		programming: hist("kubeproxy_network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", programmingBuckets),
		endpointChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_endpoint_changes_total",
			Help: "Cumulative proxy rules Endpoint changes"}),
		svcChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_service_changes_total",
			Help: "Cumulative proxy rules Service changes"}),
		endpointPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
			Help: "Pending proxy rules Endpoint changes"}),
		svcPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_service_changes_pending",
			Help: "Pending proxy rules Service changes"}),
		noLocal: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
			Help: "Number of services with a Local traffic policy and no endpoints"}, []string{"traffic_policy", "ip_family"}),
		nftFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
			Help: "Cumulative proxy nftables sync failures"}, fam),
		iptFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
			Help: "Cumulative proxy iptables restore failures"}, fam),
		iptRules: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeproxy_sync_proxy_rules_iptables_total",
			Help: "Total number of iptables rules owned by kube-proxy"}, []string{"table", "ip_family"}),
		conntrack: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_conntrack_reconciler_deleted_entries_total",
			Help: "Cumulative conntrack flows deleted by conntrack reconciler"}, fam),
		conntrackSync: hist("kubeproxy_conntrack_reconciler_sync_duration_seconds", "ReconcileConntrackFlowsLatency latency in seconds", syncBuckets),
		conntrackFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rulegen_conntrack_reconciler_failures_total",
			Help: "Conntrack cleanups and reconciles of stale UDP entries that failed (each is retried)."}, fam),
		healthz: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_proxy_healthz_total",
			Help: "Cumulative proxy healthz HTTP status"}, []string{"code"}),
		livez: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeproxy_proxy_livez_total",
			Help: "Cumulative proxy livez HTTP status"}, []string{"code"}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rulegen_sync_objects_total",
			Help: "Chains, rules and set elements sent to the kernel, summed over syncs (a partial sync sends only what changed)."}, []string{"kind"}),
	}
	m.Registry.MustRegister(m.syncs, m.fullSyncs, m.partialSyncs, m.lastSync, m.lastQueued, m.programming,
		m.endpointChanges, m.svcChanges, m.endpointPending, m.svcPending, m.noLocal, m.conntrack, m.conntrackSync, m.conntrackFailures, m.healthz, m.livez, m.written,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		restClient.latency, restClient.results)
	registerRESTClientMetrics()
	return m
}

// forBackend registers the metrics of backend b as kube-proxy registers
// those of the same mode, once: NFTablesSyncFailuresTotal in nftables
// mode; IPTablesRestoreFailuresTotal and IPTablesRulesTotal in iptables
// mode.
func (m *Metrics) forBackend(b Backend) {
	m.backendOnce.Do(func() {
		m.failures = m.nftFailures
		if b == IPTables {
			m.failures = m.iptFailures
			m.Registry.MustRegister(m.iptRules)
		}
		m.Registry.MustRegister(m.failures)
	})
}

// observeRuleset sets the rule counts of an iptables ruleset, per table
// (the rules of rulegen's chains; kube-proxy counts its KUBE- chains' the
// same way, without the jumps from the built-in chains).
func (m *Metrics) observeRuleset(d *Desired) {
	if d.IPTables == nil {
		return
	}
	fam := ipFamily(d.IPTables.Family)
	for _, t := range d.IPTables.Tables {
		n := 0
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
		m.iptRules.WithLabelValues(t.Name, fam).Set(float64(n))
	}
}

// syncFailed counts a failed kernel update of family f.
func (m *Metrics) syncFailed(f rules.Family) {
	if m.failures == nil {
		m.forBackend(NFTables)
	}
	m.failures.WithLabelValues(ipFamily(f)).Inc()
}

// ipFamily is f as kube-proxy labels it (v1.IPFamily).
func ipFamily(f rules.Family) string {
	if f == rules.IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// observeSync records one family's successful sync, of duration d and
// ending at end.
func (m *Metrics) observeSync(f rules.Family, d time.Duration, end time.Time, w Written) {
	fam := ipFamily(f)
	m.syncs.WithLabelValues(fam).Observe(d.Seconds())
	if w.Full {
		m.fullSyncs.WithLabelValues(fam).Observe(d.Seconds())
	} else {
		m.partialSyncs.WithLabelValues(fam).Observe(d.Seconds())
	}
	m.lastSync.WithLabelValues(fam).Set(unixSeconds(end))
	m.written.WithLabelValues("chains").Add(float64(w.Chains))
	m.written.WithLabelValues("rules").Add(float64(w.Rules))
	m.written.WithLabelValues("elements").Add(float64(w.Elements))
}

// observeNoLocal sets the no-local-endpoints gauges of a family's plan,
// counted as kube-proxy counts them (syncProxyRules, nftables and
// iptables): services that have endpoints, a Local policy for that
// traffic, and no local endpoint.
func (m *Metrics) observeNoLocal(plan *rules.Plan) {
	internal, external := plan.NoLocalInternal, plan.NoLocalExternal
	fam := ipFamily(plan.Family)
	m.noLocal.WithLabelValues("internal", fam).Set(float64(internal))
	m.noLocal.WithLabelValues("external", fam).Set(float64(external))
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// restClient holds client-go's request metrics, named, labelled and
// bucketed as component-base registers them for kube-proxy
// (k8s.io/component-base metrics/prometheus/restclient). client-go takes
// its adapters once per process, so they are package-level; every Metrics
// registry exposes them.
var restClient = struct {
	latency *prometheus.HistogramVec
	results *prometheus.CounterVec
}{
	latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rest_client_request_duration_seconds",
		Help:    "Request latency in seconds. Broken down by verb, and host.",
		Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0}}, []string{"verb", "host"}),
	results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rest_client_requests_total",
		Help: "Number of HTTP requests, partitioned by status code, method, and host."}, []string{"code", "method", "host"}),
}

var restClientOnce gosync.Once

func registerRESTClientMetrics() {
	restClientOnce.Do(func() {
		clientmetrics.Register(clientmetrics.RegisterOpts{RequestLatency: restLatency{}, RequestResult: restResult{}})
	})
}

type restLatency struct{}

func (restLatency) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	restClient.latency.WithLabelValues(verb, u.Host).Observe(d.Seconds())
}

type restResult struct{}

func (restResult) Increment(_ context.Context, code, method, host string) {
	restClient.results.WithLabelValues(code, method, host).Inc()
}
