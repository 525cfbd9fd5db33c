package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Label selectors of the watches: like kube-proxy, rulegen does not even
// receive services that name another proxy, nor headless services' slices.
const (
	serviceSelector = "!" + rules.LabelServiceProxyName
	sliceSelector   = "!" + rules.LabelHeadless
)

// Watch starts informers for Services, EndpointSlices (all namespaces) and
// this node's Node object, feeding p, and returns once every object of the
// initial lists has reached p (or ctx ends): an informer's store fills
// before its handlers have seen everything, and a first sync from half the
// services would replace the node's rules with half of them. Handlers only
// record the change; resync is off (the proxier resyncs the kernel itself).
// Services and EndpointSlices are converted as they arrive (convertService,
// convertSlice), and the informers keep the conversion and a header (name,
// namespace, version) instead of the API object, which would hold every
// service and endpoint a second time; managed fields are dropped from the
// other cached objects (rulegen never reads them; they are often the
// larger part of an object).
//
// ServiceCIDR objects are watched too, but not waited for, as kube-proxy
// does (its ServiceCIDRConfig runs beside the sync gate): the drop of
// unallocated ClusterIPs they bring follows in a later sync, and a cluster
// that does not serve networking.k8s.io/v1 ServiceCIDRs (before 1.33), or
// does not let rulegen list them, still gets its services (the informer
// logs its list errors and retries).
func Watch(ctx context.Context, client kubernetes.Interface, p *Proxier) error {
	strip := informers.WithTransform(stripManagedFields)
	svcs := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(convertService),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = serviceSelector }))
	// EndpointSlices are converted as they arrive (convertSlice): the
	// informer keeps the converted slice and a header, not the object.
	slicesF := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(convertSlice),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sliceSelector }))
	nodes := informers.NewSharedInformerFactoryWithOptions(client, 0, strip,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + p.opts.NodeName }))

	si := svcs.Core().V1().Services().Informer()
	ei := slicesF.Discovery().V1().EndpointSlices().Informer()
	ni := nodes.Core().V1().Nodes().Informer()
	sr, err := si.AddEventHandler(handler(func(o *ConvertedService, del bool) { p.onService(o, del) }))
	if err != nil {
		return err
	}
	er, err := ei.AddEventHandler(handler(func(o *ConvertedSlice, del bool) { p.onSlice(o, del) }))
	if err != nil {
		return err
	}
	nr, err := ni.AddEventHandler(handler(func(o *v1.Node, del bool) { p.OnNode(o, del) }))
	if err != nil {
		return err
	}
	cidrsF := informers.NewSharedInformerFactoryWithOptions(client, 0, strip)
	if _, err := cidrsF.Networking().V1().ServiceCIDRs().Informer().AddEventHandler(handler(func(o *networkingv1.ServiceCIDR, del bool) { p.OnServiceCIDR(o, del) })); err != nil {
		return err
	}
	for _, f := range []informers.SharedInformerFactory{svcs, slicesF, nodes, cidrsF} {
		f.Start(ctx.Done())
	}
	// Each registration's channel closes once its handler has seen the
	// whole initial list: no poll (cache.WaitForCacheSync looks every 100
	// ms), as the first sync, and with it a node's cold start, waits for
	// this.
	for _, r := range []cache.ResourceEventHandlerRegistration{sr, er, nr} {
		select {
		case <-r.HasSyncedChecker().Done():
		case <-ctx.Done():
			return errors.New("informers did not sync before shutdown")
		}
	}
	return nil
}

// stripManagedFields is an informer transform that drops metadata.managedFields.
func stripManagedFields(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// handler adapts a typed callback to informer events, unwrapping
// tombstones (a delete seen only after a re-list).
func handler[T any](f func(obj T, deleted bool)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { f(obj.(T), false) },
		UpdateFunc: func(_, obj any) { f(obj.(T), false) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if o, ok := obj.(T); ok {
				f(o, true)
			}
		},
	}
}

// ListState reads the cluster once (for a live --dry-run): every Service
// and EndpointSlice, and the named Node if it exists. Invalid objects are
// reported in errs and skipped.
func ListState(ctx context.Context, client kubernetes.Interface, nodeName string) (*rules.State, *rules.Node, []error) {
	st := rules.NewState()
	var errs []error
	svcs, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: serviceSelector})
	if err != nil {
		return nil, nil, []error{fmt.Errorf("listing services: %w", err)}
	}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		ports, err := rules.ConvertService(svc)
		if err != nil {
			errs = append(errs, err)
		}
		st.SetService(rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}, ports)
	}
	sl, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: sliceSelector})
	if err != nil {
		return nil, nil, []error{fmt.Errorf("listing endpointslices: %w", err)}
	}
	for i := range sl.Items {
		s, serrs := rules.ConvertSlice(&sl.Items[i])
		errs = append(errs, serrs...)
		if s != nil {
			st.SetSlice(s)
		}
	}
	var node *rules.Node
	if n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{}); err == nil {
		nd, err := rules.NodeFromObject(n)
		if err != nil {
			errs = append(errs, err)
		}
		node = &nd
	}
	return st, node, errs
}

// ListServiceCIDRs lists the cluster's ServiceCIDR objects once and returns
// their ranges, as the daemon's watch of them sees them (for a dry run of
// the live cluster). A cluster without the ServiceCIDR API has none; an
// object with a bad range is reported by name and field, its good ranges
// kept.
func ListServiceCIDRs(ctx context.Context, client kubernetes.Interface) ([]netip.Prefix, []error) {
	list, err := client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("listing servicecidrs: %w", err)}
	}
	var out []netip.Prefix
	var errs []error
	for i := range list.Items {
		cidrs, cerrs := serviceCIDRsOf(&list.Items[i])
		out = append(out, cidrs...)
		for _, e := range cerrs {
			errs = append(errs, fmt.Errorf("ServiceCIDR %s: %w", list.Items[i].Name, e))
		}
	}
	return out, errs
}

// pprofWriteTimeout replaces httpWriteTimeout on a server that serves
// /debug/pprof/: a CPU profile or trace is written only after it has run
// for ?seconds= (30 by default), and pprof refuses a duration longer than
// the server's write timeout.
const pprofWriteTimeout = 5 * time.Minute

// Serve serves /healthz and /livez on healthAddr and /metrics on
// metricsAddr (the same server when equal), until ctx ends. An empty
// address disables that endpoint. The answers are kube-proxy's
// (cmd/kube-proxy/app/server.go and pkg/proxy/healthcheck/proxy_health.go,
// v1.37.2):
//
//   - /livez: 200 when p.Health is healthy, 503 otherwise;
//   - /healthz: the same, and 503 too when the node is not eligible (its
//     Node object unknown or deleted, being deleted, or tainted
//     ToBeDeletedByClusterAutoscaler), so that load balancers probing
//     :10256/healthz drain a node that is going away; its body has
//     nodeEligible;
//   - both: a ProxyHealth JSON body, Content-Type application/json,
//     X-Content-Type-Options nosniff, any method; each answer is counted in
//     kubeproxy_proxy_healthz_total or kubeproxy_proxy_livez_total by code;
//   - the metrics address also answers /healthz with "ok" (kube-proxy
//     installs the generic healthz handler there) unless it is the health
//     address, and /proxyMode with the backend ("nftables" or "iptables").
//
// With profiling, the metrics address also serves Go's /debug/pprof/ (CPU
// and heap profiles of the running daemon), and it serves the extra routes
// (the daemon's /configz). Other paths get 404. The servers have rulegen's
// HTTP timeouts (see httpReadHeaderTimeout).
func Serve(ctx context.Context, healthAddr, metricsAddr string, profiling bool, p *Proxier, m *Metrics, extra ...Route) error {
	servers := statusServers(healthAddr, metricsAddr, profiling, p, m, extra...)
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ListenAndServe() }()
		go func() { <-ctx.Done(); srv.Close() }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// Route is a handler the metrics address serves besides its own.
type Route struct {
	Path    string
	Handler http.Handler
}

// statusServers returns the (not yet started) servers of Serve, one per
// address.
func statusServers(healthAddr, metricsAddr string, profiling bool, p *Proxier, m *Metrics, extra ...Route) []*http.Server {
	healthz := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { serveHealth(w, p, m.healthz, true) })
	livez := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { serveHealth(w, p, m.livez, false) })
	muxes := map[string]*http.ServeMux{}
	mux := func(addr string) *http.ServeMux {
		if muxes[addr] == nil {
			muxes[addr] = http.NewServeMux()
		}
		return muxes[addr]
	}
	if healthAddr != "" {
		mux(healthAddr).Handle("/healthz", healthz)
		mux(healthAddr).Handle("/livez", livez)
	}
	if metricsAddr != "" {
		mux(metricsAddr).Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
		if metricsAddr != healthAddr {
			mux(metricsAddr).HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				fmt.Fprint(w, "ok")
			})
		}
		mux(metricsAddr).HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			fmt.Fprint(w, p.opts.Backend)
		})
		for _, r := range extra {
			mux(metricsAddr).Handle(r.Path, r.Handler)
		}
		if profiling {
			mx := mux(metricsAddr)
			mx.HandleFunc("/debug/pprof/", pprof.Index)
			mx.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mx.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mx.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mx.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
	}
	var out []*http.Server
	for addr, mx := range muxes {
		srv := newHTTPServer(mx)
		srv.Addr = addr
		if profiling && addr == metricsAddr {
			srv.WriteTimeout = pprofWriteTimeout
		}
		out = append(out, srv)
	}
	return out
}

// serveHealth answers /healthz (withNode) or /livez from p's health, as
// kube-proxy's healthzHandler and livezHandler do, and counts the answer.
func serveHealth(w http.ResponseWriter, p *Proxier, count *prometheus.CounterVec, withNode bool) {
	h := p.Health()
	healthy := h.Healthy
	if withNode {
		eligible := p.NodeEligible()
		h.NodeEligible = &eligible
		healthy = healthy && eligible
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	code := http.StatusOK
	if !healthy {
		code = http.StatusServiceUnavailable
	} else {
		// kube-proxy's compatibility rule: a healthy answer says "updated
		// now", as older releases' timestamp of the last sync loop did.
		h.LastUpdated = h.CurrentTime
	}
	count.WithLabelValues(strconv.Itoa(code)).Inc()
	w.WriteHeader(code)
	b, _ := json.Marshal(h)
	w.Write(b)
}
