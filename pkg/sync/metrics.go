package sync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are rulegen's Prometheus metrics, in a registry of their own.
type Metrics struct {
	Registry    *prometheus.Registry
	syncs       *prometheus.HistogramVec
	lastSync    prometheus.Gauge
	programming prometheus.Histogram
	written     *prometheus.CounterVec
	failures    prometheus.Counter
	pending     prometheus.Gauge
	conntrack   prometheus.Counter
}

// NewMetrics registers the metrics:
//
//	rulegen_sync_duration_seconds{kind="full|partial"}   time to render and apply
//	rulegen_last_sync_timestamp_seconds                  end of the last successful sync
//	rulegen_network_programming_duration_seconds         from an EndpointSlice's last-change-trigger-time to applied
//	rulegen_sync_objects_total{kind="chains|rules|elements"} objects sent to the kernel (a partial sync sends only what changed)
//	rulegen_sync_failures_total                          syncs the kernel refused
//	rulegen_changes_pending                              1 while a change waits for a sync
//	rulegen_conntrack_entries_deleted_total              stale UDP conntrack entries deleted
//
// Network programming latency is observed once per EndpointSlice and
// successful sync, from the oldest change of the slice that sync applied
// (several updates of a slice between two syncs, or while syncs fail, count
// once); a deleted slice is not measured.
func NewMetrics() *Metrics {
	buckets := prometheus.ExponentialBuckets(0.0005, 2, 18) // 0.5 ms .. ~65 s
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		syncs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rulegen_sync_duration_seconds",
			Help: "Time to render and apply one sync, by kind (full or partial).", Buckets: buckets}, []string{"kind"}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rulegen_last_sync_timestamp_seconds",
			Help: "Unix time at which the last successful sync ended."}),
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rulegen_network_programming_duration_seconds",
			Help: "Time from an EndpointSlice change (its last-change-trigger-time annotation) to the rules being applied.", Buckets: buckets}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rulegen_sync_objects_total",
			Help: "Chains, rules and set elements sent to the kernel, summed over syncs (a partial sync sends only what changed)."}, []string{"kind"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "rulegen_sync_failures_total",
			Help: "Syncs that failed (the kernel refused the update); each is retried with a full sync."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rulegen_changes_pending",
			Help: "1 while a received change has not been applied yet."}),
		conntrack: prometheus.NewCounter(prometheus.CounterOpts{Name: "rulegen_conntrack_entries_deleted_total",
			Help: "Stale UDP conntrack entries deleted after endpoint changes."}),
	}
	m.Registry.MustRegister(m.syncs, m.lastSync, m.programming, m.written, m.failures, m.pending, m.conntrack)
	return m
}

func (m *Metrics) observeSync(d time.Duration, end time.Time, w Written) {
	kind := "partial"
	if w.Full {
		kind = "full"
	}
	m.syncs.WithLabelValues(kind).Observe(d.Seconds())
	m.lastSync.Set(float64(end.UnixNano()) / 1e9)
	m.written.WithLabelValues("chains").Add(float64(w.Chains))
	m.written.WithLabelValues("rules").Add(float64(w.Rules))
	m.written.WithLabelValues("elements").Add(float64(w.Elements))
}
