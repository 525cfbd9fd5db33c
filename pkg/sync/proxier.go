package sync

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	gosync "sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/rulegen/rulegen/pkg/rules"
)

// AnnotationTriggerTime is set by the EndpointSlice controller to when the
// change that produced the slice happened; rulegen measures network
// programming latency from it.
const AnnotationTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"

// Options configure a Proxier.
type Options struct {
	Backend  Backend
	NodeName string
	// NodeIPs override the Node object's addresses when set.
	NodeIPs           []netip.Addr
	ClusterCIDRs      []netip.Prefix
	NodePortAddresses []netip.Prefix
	// NodePortPrimary is rules.Config.NodePortPrimary (the keyword
	// primary of --nodeport-addresses).
	NodePortPrimary bool
	// DetectLocalNodeCIDR is rules.Config.DetectLocalNodeCIDR: pod traffic
	// is told by the Node object's spec.podCIDRs.
	DetectLocalNodeCIDR bool
	// PodInterface is rules.Config.PodInterface: pod traffic is told by
	// the interface it arrives on.
	PodInterface  rules.PodInterface
	MasqueradeAll bool
	// MasqueradeBit, ServiceCIDRs, LocalhostNodePorts and
	// ConntrackTCPBeLiberal are passed on to rules.Config (see there).
	MasqueradeBit         *int32
	ServiceCIDRs          []netip.Prefix
	LocalhostNodePorts    *bool
	ConntrackTCPBeLiberal bool
	// Families to program; empty means the families of the node's IPs.
	Families []rules.Family
	// SyncPeriod is the interval of periodic syncs (which check that the
	// kernel still holds rulegen's rules); FullSyncPeriod the interval of
	// full rewrites; HealthTimeout how long a change may wait for a
	// successful sync before /healthz and /livez fail (0: twice
	// SyncPeriod, kube-proxy's only rule).
	SyncPeriod     time.Duration
	FullSyncPeriod time.Duration
	HealthTimeout  time.Duration
	// KernelCheckPeriod is how often WatchKernel checks, between syncs,
	// that the kernel still holds rulegen's rules, when the kernel's check
	// is cheap (Kernel.CheapCheck); 0: only at each sync.
	KernelCheckPeriod time.Duration
}

// Proxier keeps the kernel in step with the cluster state fed to it by the
// On* handlers. Handlers only record the change and request a sync; Sync
// (run by a Runner, never concurrently) renders and applies.
type Proxier struct {
	opts      Options
	renderer  *Renderer
	kernel    Kernel
	conntrack Conntrack
	metrics   *Metrics
	health    *HealthChecks
	clock     Clock
	log       *slog.Logger
	request   func() // asks the runner for a sync
	verbose   bool   // log the whole ruleset after each sync
	// requestReconcile asks the conntrack reconcile's runner for a run.
	requestReconcile func()
	// recheckPending: a reconcile is already asked for a moment after a
	// cleanup (see recheckConntrack).
	recheckPending atomic.Bool
	// syncMu keeps Sync and ReconcileConntrack apart: the reconcile reads
	// the plans of the last sync, and must not judge entries made by the
	// rules of a sync still being applied.
	syncMu gosync.Mutex

	mu    gosync.Mutex
	state *rules.State
	node  rules.Node
	// started is when the proxier was made: trigger times before it are
	// ignored (kube-proxy's EndpointsChangeTracker.trackerStartTime).
	started time.Time
	// pendingServices are the services changed since the last sync (the
	// service_changes_pending gauge).
	pendingServices map[rules.ServiceKey]bool
	// sliceOwner is the service each recorded EndpointSlice is filed under
	// in state, so that a relabelled slice moves and a deleted one is
	// removed from there whatever labels its last copy carries.
	sliceOwner map[types.NamespacedName]rules.ServiceKey
	// triggers holds, per recorded slice, the oldest last-change-trigger-time
	// not yet applied: at most one entry per live slice, however many
	// updates arrive or syncs fail.
	triggers map[types.NamespacedName]trigger
	reported map[string]string // object -> last problem logged, to log each once; forgotten when the object is deleted
	// serviceCIDRs are the valid spec.cidrs of each ServiceCIDR object,
	// by object name.
	serviceCIDRs map[string][]netip.Prefix

	// Owned by Sync.
	conflicts map[string]bool // conflicts of the last sync, each logged when it appeared
	lastFull  time.Time
	applied   map[rules.Family]*Desired

	// Health, read by the HTTP handlers (see Health and NodeEligible).
	healthMu gosync.Mutex
	// lastUpdated is, per family, the end of its last successful sync (or
	// the start of its first sync, as kube-proxy's SyncLoop marks it);
	// queued the time of the oldest change not yet applied in it.
	lastUpdated, queued map[rules.Family]time.Time
	loopStarted         bool // the first sync has started: changes are queued from now on
	nodeSeen            bool // the Node object was received (and not deleted since)
	nodeDeleting        bool // it has a deletion timestamp
	nodeToBeDeleted     bool // it has the cluster autoscaler's ToBeDeletedByClusterAutoscaler taint
}

// trigger is a pending last-change-trigger-time of an EndpointSlice.
type trigger struct {
	at     time.Time
	family rules.Family
}

// NewProxier returns a proxier. request is called (without blocking) when a
// change needs a sync.
func NewProxier(opts Options, kernel Kernel, ct Conntrack, m *Metrics, hc *HealthChecks, clock Clock, log *slog.Logger) *Proxier {
	if clock == nil {
		clock = RealClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	m.forBackend(opts.Backend)
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 2 * opts.SyncPeriod
	}
	p := &Proxier{opts: opts, renderer: NewRenderer(opts.Backend), kernel: kernel, conntrack: ct, metrics: m, health: hc, clock: clock, log: log,
		request: func() {}, requestReconcile: func() {}, state: rules.NewState(), node: rules.Node{Name: opts.NodeName, IPs: opts.NodeIPs}, started: clock.Now(),
		pendingServices: map[rules.ServiceKey]bool{}, sliceOwner: map[types.NamespacedName]rules.ServiceKey{}, triggers: map[types.NamespacedName]trigger{},
		reported: map[string]string{}, serviceCIDRs: map[string][]netip.Prefix{}, conflicts: map[string]bool{}, applied: map[rules.Family]*Desired{},
		lastUpdated: map[rules.Family]time.Time{}, queued: map[rules.Family]time.Time{}}
	if hc != nil {
		// As kube-proxy's service health servers, a health check node
		// port fails while the proxy is unhealthy.
		hc.setProxyHealthy(func() bool { return p.Health().Healthy })
	}
	return p
}

// SetVerbose makes every sync log the full ruleset it applied (debug level).
func (p *Proxier) SetVerbose(v bool) { p.verbose = v }

// SetRequest sets the function that asks for a sync (the runner's Run).
func (p *Proxier) SetRequest(f func()) { p.request = f }

// changed records that a change of families fams waits for a sync (p.mu
// held): as kube-proxy's Proxier.Sync, called by the proxier of each family
// the change concerns, it queues an update of those families for the
// health checks and sets their last-queued timestamp. A family rulegen
// does not program is ignored. Changes before the first sync are queued
// when it starts (kube-proxy queues nothing until it is initialized, and
// marks every family updated when its sync loop starts).
func (p *Proxier) changed(now time.Time, fams ...rules.Family) {
	fams = slices.DeleteFunc(slices.Clone(fams), func(f rules.Family) bool { return !slices.Contains(p.families(), f) })
	p.healthMu.Lock()
	started := p.loopStarted
	if started {
		for _, f := range fams {
			if _, ok := p.queued[f]; !ok {
				p.queued[f] = now
			}
		}
	}
	p.healthMu.Unlock()
	if started {
		for _, f := range fams {
			p.metrics.lastQueued.WithLabelValues(ipFamily(f)).Set(unixSeconds(now))
		}
	}
}

// serviceFamilies are the families a change of a service from old to
// cur ports concerns, as kube-proxy's per-family change trackers see it:
// none when nothing changed (an update of a label, say); otherwise the
// families of the ClusterIPs before and after (an IPv4-only service is no
// change for the IPv6 proxier).
func serviceFamilies(old, cur []*rules.ServicePort) []rules.Family {
	if reflect.DeepEqual(old, cur) {
		return nil
	}
	var fams []rules.Family
	for _, sp := range slices.Concat(old, cur) {
		for _, ip := range sp.ClusterIPs {
			if f := rules.FamilyOf(ip); !slices.Contains(fams, f) {
				fams = append(fams, f)
			}
		}
	}
	return fams
}

// sliceFamily is the family of an EndpointSlice's addresses (none for
// FQDN slices, which kube-proxy ignores).
func sliceFamily(at discovery.AddressType) []rules.Family {
	switch at {
	case discovery.AddressTypeIPv4:
		return []rules.Family{rules.IPv4}
	case discovery.AddressTypeIPv6:
		return []rules.Family{rules.IPv6}
	}
	return nil
}

// report logs a problem with an object once (until it changes or is
// fixed); a nil err (the object is fixed or deleted) forgets the object.
// What is ignored depends on the problem (the error names the field): a
// whole Service or EndpointSlice, one endpoint, one Node address.
func (p *Proxier) report(key string, err error) {
	if err == nil {
		delete(p.reported, key)
		return
	}
	if p.reported[key] == err.Error() {
		return
	}
	p.reported[key] = err.Error()
	p.log.Warn("ignoring what is invalid in an object", "object", key, "error", err.Error())
}

// OnService records a Service added, updated or (deleted=true) deleted.
func (p *Proxier) OnService(svc *v1.Service, deleted bool) {
	p.onService(convertedService(svc), deleted)
}

// ConvertedService is a Service as the daemon's informer keeps it:
// converted when it arrives (see Watch), with the metadata the informer
// needs (name, namespace, uid, version).
type ConvertedService struct {
	metav1.TypeMeta
	metav1.ObjectMeta // the header only (header)
	Ports             []*rules.ServicePort
	Err               error
}

// DeepCopyObject makes ConvertedService a runtime.Object. The converted
// ports are never changed once made, so they are shared.
func (c *ConvertedService) DeepCopyObject() runtime.Object {
	out := *c
	out.ObjectMeta = *c.ObjectMeta.DeepCopy()
	return &out
}

// header returns the metadata a converted object keeps of o's.
func header(o metav1.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(), ResourceVersion: o.GetResourceVersion()}
}

// convertedService converts svc as the informer keeps it.
func convertedService(svc *v1.Service) *ConvertedService {
	c := &ConvertedService{ObjectMeta: header(svc)}
	c.Ports, c.Err = rules.ConvertService(svc)
	return c
}

// convertService is the Service informer's transform (see convertSlice).
func convertService(obj any) (any, error) {
	if svc, ok := obj.(*v1.Service); ok {
		return convertedService(svc), nil
	}
	return obj, nil
}

// onService records a converted service (deleted: its removal).
func (p *Proxier) onService(c *ConvertedService, deleted bool) {
	key := rules.ServiceKey{Namespace: c.Namespace, Name: c.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.ServicePorts(key)
	var cur []*rules.ServicePort
	if deleted {
		p.state.DeleteService(key)
		p.report("Service "+key.String(), nil)
	} else {
		cur = c.Ports
		p.report("Service "+key.String(), c.Err)
		p.state.SetService(key, cur) // an invalid service is skipped: no ports
	}
	p.metrics.svcChanges.Inc()
	p.pendingServices[key] = true
	p.metrics.svcPending.Set(float64(len(p.pendingServices)))
	p.changed(p.clock.Now(), serviceFamilies(old, cur)...)
	p.request()
}

// OnSlice records an EndpointSlice added, updated or (deleted=true) deleted.
// A slice is filed under the service its kubernetes.io/service-name label
// names, and the proxier remembers where: an update that changes or drops
// the label moves the slice (or removes it), and a delete removes it from
// where it was filed, whatever labels the deleted copy (a tombstone, say)
// carries.
func (p *Proxier) OnSlice(es *discovery.EndpointSlice, deleted bool) {
	p.onSlice(convertedSlice(es), deleted)
}

// ConvertedSlice is an EndpointSlice as the daemon's informer keeps it:
// converted when it arrives (see Watch), with the metadata the informer
// needs and what OnSlice reads besides: the address type and the
// trigger-time annotation. Keeping the API object as well would hold
// every endpoint twice.
type ConvertedSlice struct {
	metav1.TypeMeta
	metav1.ObjectMeta // the header only (header)
	AddressType       discovery.AddressType
	TriggerTime       string // the AnnotationTriggerTime annotation
	Slice             *rules.Slice
	Errs              []error
}

// DeepCopyObject makes ConvertedSlice a runtime.Object. The converted
// slice is never changed once made, so it is shared.
func (c *ConvertedSlice) DeepCopyObject() runtime.Object {
	out := *c
	out.ObjectMeta = *c.ObjectMeta.DeepCopy()
	return &out
}

// convertedSlice converts es as the informer keeps it.
func convertedSlice(es *discovery.EndpointSlice) *ConvertedSlice {
	c := &ConvertedSlice{ObjectMeta: header(es), AddressType: es.AddressType, TriggerTime: es.Annotations[AnnotationTriggerTime]}
	c.Slice, c.Errs = rules.ConvertSlice(es)
	return c
}

// convertSlice is the EndpointSlice informer's transform: it converts a
// slice as it arrives, and the informer keeps the ConvertedSlice.
func convertSlice(obj any) (any, error) {
	if es, ok := obj.(*discovery.EndpointSlice); ok {
		return convertedSlice(es), nil
	}
	return obj, nil
}

// onSlice records a converted slice (deleted: its removal).
func (p *Proxier) onSlice(c *ConvertedSlice, deleted bool) {
	id := types.NamespacedName{Namespace: c.Namespace, Name: c.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	var sl *rules.Slice
	if deleted {
		p.report("EndpointSlice "+id.String(), nil)
	} else {
		sl = c.Slice
		p.report("EndpointSlice "+id.String(), errors.Join(c.Errs...))
	}
	if old, ok := p.sliceOwner[id]; ok && (sl == nil || sl.Service != old) {
		p.state.DeleteSlice(old, c.Name)
		delete(p.sliceOwner, id)
	}
	if sl != nil {
		p.state.SetSlice(sl)
		p.sliceOwner[id] = sl.Service
		// A trigger time from before the start is ignored, as kube-proxy
		// does: after a restart it is the age of the slice, not a latency.
		if t, err := time.Parse(time.RFC3339, c.TriggerTime); err == nil && t.After(p.started) {
			if old, ok := p.triggers[id]; !ok || t.Before(old.at) {
				p.triggers[id] = trigger{at: t, family: sl.Family}
			}
		}
	} else {
		// Nothing of the slice is left to program: its latency is not
		// measured (and its entry cannot outlive it).
		delete(p.triggers, id)
	}
	p.metrics.endpointChanges.Inc()
	p.metrics.endpointPending.Inc()
	p.changed(p.clock.Now(), sliceFamily(c.AddressType)...)
	p.request()
}

// takeTriggers returns the pending trigger times and clears them.
func (p *Proxier) takeTriggers() map[types.NamespacedName]trigger {
	t := p.triggers
	p.triggers = map[types.NamespacedName]trigger{}
	return t
}

// restoreTriggers puts back the trigger times of a failed sync, keeping
// the oldest per slice, for the slices that still exist.
func (p *Proxier) restoreTriggers(taken map[types.NamespacedName]trigger) {
	for id, t := range taken {
		if _, ok := p.sliceOwner[id]; !ok {
			continue
		}
		if cur, ok := p.triggers[id]; !ok || t.at.Before(cur.at) {
			p.triggers[id] = t
		}
	}
}

// OnNode records this node's Node object (its addresses and zone, and
// whether it is going away, for /healthz). A Node with an invalid address
// is reported, and its valid addresses are used.
func (p *Proxier) OnNode(n *v1.Node, deleted bool) {
	if n.Name != p.opts.NodeName {
		return
	}
	p.healthMu.Lock()
	p.nodeSeen = !deleted
	p.nodeDeleting = n.DeletionTimestamp != nil
	p.nodeToBeDeleted = slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == TaintToBeDeleted })
	p.healthMu.Unlock()
	if deleted {
		return
	}
	node, err := rules.NodeFromObject(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.report("Node "+n.Name, err)
	if len(p.opts.NodeIPs) > 0 {
		node.IPs = p.opts.NodeIPs
	}
	if node.Zone == p.node.Zone && slices.Equal(node.IPs, p.node.IPs) && slices.Equal(node.PodCIDRs, p.node.PodCIDRs) {
		return
	}
	p.node = node
	p.changed(p.clock.Now(), p.families()...)
	p.request()
}

// OnServiceCIDR records a ServiceCIDR (networking.k8s.io/v1) added, updated
// or (deleted=true) deleted. Like kube-proxy (OnServiceCIDRsChanged), the
// ranges of every ServiceCIDR object, with those of
// --service-cluster-ip-range, are where the nftables backend drops
// connections to unallocated ClusterIPs. An invalid range is reported and
// left out; the object's other ranges are kept.
func (p *Proxier) OnServiceCIDR(o *networkingv1.ServiceCIDR, deleted bool) {
	key := "ServiceCIDR " + o.Name
	var cidrs []netip.Prefix
	var errs []error
	if !deleted {
		cidrs, errs = serviceCIDRsOf(o)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.report(key, errors.Join(errs...)) // nil (deleted, or valid) forgets the object
	old, had := p.serviceCIDRs[o.Name]
	if deleted || len(cidrs) == 0 {
		if !had {
			return
		}
		delete(p.serviceCIDRs, o.Name)
	} else {
		if had && slices.Equal(old, cidrs) {
			return
		}
		p.serviceCIDRs[o.Name] = cidrs
	}
	// A sync is asked for, but, as kube-proxy (OnServiceCIDRsChanged does
	// not call Sync), the change is not queued for the health checks: a
	// new range alone does not make /healthz fail while syncs fail.
	p.request()
}

// serviceCIDRsOf returns the ranges of a ServiceCIDR object, and an error
// naming the field of each that is not a CIDR.
func serviceCIDRsOf(o *networkingv1.ServiceCIDR) ([]netip.Prefix, []error) {
	var cidrs []netip.Prefix
	var errs []error
	for i, c := range o.Spec.CIDRs {
		pr, err := netip.ParsePrefix(c)
		if err != nil || pr.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("spec.cidrs[%d]: %q is not a CIDR", i, c))
			continue
		}
		cidrs = append(cidrs, pr.Masked())
	}
	return cidrs, errs
}

// allServiceCIDRs returns the ranges of --service-cluster-ip-range and of
// every ServiceCIDR object, sorted, each once (p.mu held).
func (p *Proxier) allServiceCIDRs() []netip.Prefix {
	if len(p.serviceCIDRs) == 0 {
		return p.opts.ServiceCIDRs
	}
	out := slices.Clone(p.opts.ServiceCIDRs)
	for _, cidrs := range p.serviceCIDRs {
		out = append(out, cidrs...)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// Node returns what the proxier knows of its node.
func (p *Proxier) Node() rules.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node
}

// Families returns the families the proxier programs.
func (p *Proxier) Families() []rules.Family {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.families()
}

func (p *Proxier) families() []rules.Family {
	if len(p.opts.Families) > 0 {
		return p.opts.Families
	}
	var out []rules.Family
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		if slices.ContainsFunc(p.node.IPs, func(a netip.Addr) bool { return rules.FamilyOf(a) == f }) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		out = []rules.Family{rules.IPv4}
	}
	return out
}

// Sync renders the current state and applies it. A full update is made at
// the first sync, after a failure, every FullSyncPeriod, and when the kernel
// no longer holds what rulegen wrote (checked at every sync, and between
// syncs by WatchKernel); otherwise the update is incremental.
func (p *Proxier) Sync() error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	start := p.clock.Now()
	p.mu.Lock()
	cfg := &rules.Config{Node: p.node, ClusterCIDRs: p.opts.ClusterCIDRs, NodePortAddresses: p.opts.NodePortAddresses, NodePortPrimary: p.opts.NodePortPrimary, DetectLocalNodeCIDR: p.opts.DetectLocalNodeCIDR, PodInterface: p.opts.PodInterface,
		MasqueradeAll: p.opts.MasqueradeAll, MasqueradeBit: p.opts.MasqueradeBit, ServiceCIDRs: p.allServiceCIDRs(), LocalhostNodePorts: p.opts.LocalhostNodePorts, ConntrackTCPBeLiberal: p.opts.ConntrackTCPBeLiberal}
	var desired []*Desired
	for _, f := range p.families() {
		desired = append(desired, p.renderer.Render(p.state, cfg, f))
	}
	rendered := p.clock.Now()
	triggers := p.takeTriggers()
	clear(p.pendingServices)
	p.metrics.svcPending.Set(0)
	p.metrics.endpointPending.Set(0)
	queued := p.takeQueued(start, p.families())
	p.mu.Unlock()

	p.reportConflicts(desired)
	periodic := p.opts.FullSyncPeriod > 0 && start.Sub(p.lastFull) >= p.opts.FullSyncPeriod
	intact := p.kernel.Intact()
	if !intact {
		p.log.Warn("rulegen's rules are no longer in the kernel as written (flushed or deleted by something else, or the check could not read them); rewriting all of them")
	}
	if periodic || !intact {
		p.kernel.Invalidate()
	}
	var written Written
	famStart := rendered
	for i, d := range desired {
		w, err := p.kernel.Apply(d)
		written.Full = written.Full || w.Full
		written.Chains += w.Chains
		written.Rules += w.Rules
		written.Elements += w.Elements
		if err != nil {
			p.kernel.Invalidate()
			p.metrics.syncFailed(d.Plan.Family)
			p.mu.Lock()
			p.restoreTriggers(triggers)
			p.mu.Unlock()
			for _, nd := range desired[i:] { // this family and those not applied yet still wait
				p.requeue(nd.Plan.Family, queued)
			}
			p.log.Error("sync failed; the previous rules stay in place, retrying with a full sync", "family", d.Plan.Family, "error", err.Error())
			return fmt.Errorf("sync %s: %w", d.Plan.Family, err)
		}
		// A family's duration is the shared render plus its own apply,
		// as one of kube-proxy's per-family proxiers would measure it.
		famEnd := p.clock.Now()
		p.metrics.observeSync(d.Plan.Family, rendered.Sub(start)+famEnd.Sub(famStart), famEnd, w)
		p.metrics.observeNoLocal(d.Plan)
		p.metrics.observeRuleset(d)
		p.updated(d.Plan.Family, famEnd)
		famStart = famEnd
	}
	end := p.clock.Now()
	full := written.Full
	if full {
		p.lastFull = start
	}
	for _, t := range triggers {
		p.metrics.programming.WithLabelValues(ipFamily(t.family)).Observe(end.Sub(t.at).Seconds())
	}

	p.cleanConntrack(desired)
	p.updateHealthChecks(desired)
	for _, d := range desired {
		p.applied[d.Plan.Family] = d
	}
	if full {
		// After a start or a failure, entries may be stale that no
		// change will point at: reconcile the whole table.
		p.requestReconcile()
	}
	if err := p.removeDropped(desired); err != nil {
		return err
	}
	p.log.Debug("synced", "full", full, "duration", end.Sub(start), "render", rendered.Sub(start), "kernel", end.Sub(rendered),
		"families", len(desired), "chains", written.Chains, "rules", written.Rules, "elements", written.Elements)
	if p.verbose {
		for _, d := range desired {
			p.log.Debug("ruleset", "family", d.Plan.Family, "rules", d.Text())
		}
	}
	return nil
}

// WatchKernel checks every KernelCheckPeriod, until stop is closed, that
// the kernel still holds what the last sync wrote (the kernel's cheap
// canary check), and asks for a sync when it does not, which rewrites the
// whole ruleset. Without it a hand flush (a firewall reload, `nft flush
// ruleset`) is found at the next sync: at once while the cluster changes,
// but up to SyncPeriod later on a quiet one, or while the API server is
// out of reach and the watches back off. It does nothing when
// KernelCheckPeriod is 0, and skips the check while the kernel's check is
// not cheap (iptables-legacy, whose check reads the whole table: it is
// made at each sync only). After each check that asked for a sync the
// wait doubles, up to SyncPeriod, until a check finds the rules in place:
// a check that keeps failing (something that flushes again and again, or
// a check that cannot read the rules) costs at most a full rewrite per
// SyncPeriod, as it did before this watch.
func (p *Proxier) WatchKernel(stop <-chan struct{}) {
	if p.opts.KernelCheckPeriod <= 0 {
		return
	}
	wait := p.opts.KernelCheckPeriod
	for {
		select {
		case <-stop:
			return
		case <-p.clock.After(wait):
		}
		p.syncMu.Lock() // the check uses the writer, which Sync may be using
		intact := !p.kernel.CheapCheck() || p.kernel.Intact()
		p.syncMu.Unlock()
		if intact {
			wait = p.opts.KernelCheckPeriod
			continue
		}
		p.request()
		wait = min(2*wait, max(p.opts.SyncPeriod, p.opts.KernelCheckPeriod))
	}
}

// takeQueued returns the queued times of the families about to be synced
// and clears them (p.mu held). The first sync starts the health clock, as
// kube-proxy's SyncLoop does: every family counts as updated and, because
// what changed before is applied now, queued at start.
func (p *Proxier) takeQueued(start time.Time, fams []rules.Family) map[rules.Family]time.Time {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	for _, f := range fams {
		if _, ok := p.lastUpdated[f]; !ok {
			p.lastUpdated[f] = start
			p.queued[f] = start
			p.metrics.lastQueued.WithLabelValues(ipFamily(f)).Set(unixSeconds(start))
		}
	}
	p.loopStarted = true
	for f := range p.lastUpdated { // a family no longer programmed is not reported
		if !slices.Contains(fams, f) {
			delete(p.lastUpdated, f)
			delete(p.queued, f)
		}
	}
	taken := map[rules.Family]time.Time{}
	for _, f := range fams {
		if t, ok := p.queued[f]; ok {
			taken[f] = t
			delete(p.queued, f)
		}
	}
	return taken
}

// requeue puts back the queued time of family f after a failed sync,
// keeping the oldest.
func (p *Proxier) requeue(f rules.Family, taken map[rules.Family]time.Time) {
	t, ok := taken[f]
	if !ok {
		return
	}
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	if cur, ok := p.queued[f]; !ok || t.Before(cur) {
		p.queued[f] = t
	}
}

// updated records a successful sync of family f (kube-proxy's
// ProxyHealthServer.Updated).
func (p *Proxier) updated(f rules.Family, at time.Time) {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	p.lastUpdated[f] = at
}

// Health reports, as kube-proxy's ProxyHealthServer.Health, whether the
// proxier keeps up, per family: a family is unhealthy while a change has
// waited HealthTimeout or longer for a successful sync of it. A family
// that has not started syncing is not listed (and does not count), so the
// proxier is healthy before its first sync; until the watches have synced
// /healthz fails on NodeEligible instead. LastUpdated is the latest of the
// families'. A periodic sync queues nothing, so, as kube-proxy, only a
// change can make the proxier unhealthy.
func (p *Proxier) Health() ProxyHealth {
	now := p.clock.Now()
	h := ProxyHealth{CurrentTime: now, Healthy: true, Status: map[string]ProxierHealth{}}
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	for f, last := range p.lastUpdated {
		fh := ProxierHealth{LastUpdated: last, Healthy: true}
		if q, ok := p.queued[f]; ok && now.Sub(q) >= p.opts.HealthTimeout {
			fh.Healthy = false
			h.Healthy = false
		}
		h.Status[ipFamily(f)] = fh
		if last.After(h.LastUpdated) {
			h.LastUpdated = last
		}
	}
	return h
}

// NodeEligible reports, as kube-proxy's ProxyHealthServer.NodeEligible,
// whether this node should receive load-balancer traffic: its Node object
// is known, not being deleted, and not tainted ToBeDeletedByClusterAutoscaler.
func (p *Proxier) NodeEligible() bool {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	return p.nodeSeen && !p.nodeDeleting && !p.nodeToBeDeleted
}

// reportConflicts logs each conflict (two services claiming a destination)
// once, when it appears, and that it ended when it is gone.
func (p *Proxier) reportConflicts(desired []*Desired) {
	now := map[string]bool{}
	for _, d := range desired {
		for _, c := range d.Plan.Conflicts {
			msg := c.Error()
			if !now[msg] && !p.conflicts[msg] {
				p.log.Warn("conflict between services", "family", d.Plan.Family, "error", msg)
			}
			now[msg] = true
		}
	}
	for msg := range p.conflicts {
		if !now[msg] {
			p.log.Info("conflict between services ended", "error", msg)
		}
	}
	p.conflicts = now
}

// cleanConntrack deletes UDP conntrack entries that would keep sending
// clients to an endpoint that is gone, or around a service that just got
// its first endpoint. TCP entries are left alone: TCP notices by itself.
func (p *Proxier) cleanConntrack(desired []*Desired) {
	if p.conntrack == nil {
		return
	}
	var specs []ConntrackSpec
	for _, d := range desired {
		var old *rules.Plan
		if a := p.applied[d.Plan.Family]; a != nil {
			old = a.Plan
		}
		follows := old != nil && d.Plan.Base != 0 && d.Plan.Base == old.Gen
		specs = append(specs, udpStaleSpecs(old, d.Plan, follows)...)
	}
	if len(specs) == 0 {
		return
	}
	p.recheckConntrack()
	// One call per family, so that the deleted entries are counted per
	// family as kube-proxy counts them.
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		fs := slices.DeleteFunc(slices.Clone(specs), func(s ConntrackSpec) bool { return s.Family != f })
		if len(fs) == 0 {
			continue
		}
		start := p.clock.Now()
		n, err := p.conntrack.DeleteUDP(fs)
		p.metrics.conntrackSync.WithLabelValues(ipFamily(f)).Observe(p.clock.Now().Sub(start).Seconds())
		if err != nil {
			p.conntrackFailed(f, start, fmt.Errorf("delete stale UDP conntrack entries after a change: %w", err))
			p.requestReconcile()
		}
		p.metrics.conntrack.WithLabelValues(ipFamily(f)).Add(float64(n))
	}
}

// conntrackRecheck is how long after a cleanup the reconcile looks again.
const conntrackRecheck = time.Second

// recheckConntrack asks for a reconcile conntrackRecheck from now (once,
// however many cleanups come meanwhile). A UDP packet that went through
// the old rules while the new ones were committed can leave its entry
// after the cleanup has run; kube-proxy meets that race by cleaning at
// every sync, rulegen by this one later look (found by the soak: one entry
// to a removed endpoint, now and then, at the end of a short run).
func (p *Proxier) recheckConntrack() {
	if p.requestReconcile == nil || p.recheckPending.Swap(true) {
		return
	}
	wait := p.clock.After(conntrackRecheck)
	go func() {
		<-wait
		p.recheckPending.Store(false)
		p.requestReconcile()
	}()
}

// udpStaleSpecs returns the specs of the UDP conntrack entries that the
// change from plan old (nil: none) to now makes stale. With follows (now
// lists its Changes from old) it looks at the changed ports only;
// otherwise at every UDP port of both plans. Both ways give the same specs
// (TestRendererFollowsChurn compares them).
func udpStaleSpecs(old, now *rules.Plan, follows bool) []ConntrackSpec {
	f := now.Family
	type change struct{ old, now *rules.ServicePlan }
	var changes []change
	if follows {
		for _, c := range now.Changes {
			if c.Name.Protocol == rules.UDP {
				changes = append(changes, change{c.Old, c.New})
			}
		}
	} else {
		prev := map[rules.ServicePortName]*rules.ServicePlan{}
		if old != nil {
			for _, s := range old.Services {
				if s.Name.Protocol == rules.UDP {
					prev[s.Name] = s
				}
			}
		}
		for _, s := range now.Services {
			if s.Name.Protocol == rules.UDP {
				changes = append(changes, change{prev[s.Name], s})
				delete(prev, s.Name)
			}
		}
		for _, s := range prev {
			changes = append(changes, change{s, nil})
		}
	}
	var specs []ConntrackSpec
	var gone, kept []*rules.ServicePlan
	for _, c := range changes {
		if c.now == nil {
			gone = append(gone, c.old)
			continue
		}
		kept = append(kept, c.now)
		specs = append(specs, udpChangeSpecs(f, c.old, c.now)...)
	}
	if len(gone) > 0 {
		specs = append(specs, goneDests(f, gone, kept)...)
	}
	return specs
}

// udpChangeSpecs returns the specs of the entries a UDP port's change from
// o (nil: new) to s makes stale: those to an endpoint it no longer uses,
// or, when it has endpoints again after none, every entry to its
// destinations (made while it rejected).
func udpChangeSpecs(f rules.Family, o, s *rules.ServicePlan) []ConntrackSpec {
	if o == s {
		return nil
	}
	var specs []ConntrackSpec
	now := s.UsedEndpoints()
	dests := serviceDests(s)
	var was []rules.Endpoint
	if o != nil {
		was = o.UsedEndpoints()
	}
	if len(was) == 0 {
		if len(now) > 0 && o != nil {
			for _, dst := range dests {
				specs = append(specs, ConntrackSpec{Family: f, OrigDst: dst.addr, OrigPort: dst.port})
			}
		}
		return specs
	}
	for _, e := range was {
		if slices.ContainsFunc(now, func(n rules.Endpoint) bool { return n.IP == e.IP && n.Port == e.Port }) {
			continue
		}
		for _, dst := range dests {
			specs = append(specs, ConntrackSpec{Family: f, OrigDst: dst.addr, OrigPort: dst.port, ReplySrc: e.IP})
		}
	}
	return specs
}

// goneDests returns, for the UDP service ports gone since the last applied
// plan (a deleted service, a port renamed, renumbered or made TCP), a spec
// for each destination of theirs (ClusterIP, external and LB IPs with the
// port; the nodePort) that no UDP port of now (the changed ones) has:
// every entry sent there is stale, whoever answered it, since nothing
// rewrites new packets there any more. A destination a port took over
// keeps its entries: the endpoint check of that port (and the reconcile)
// judge them. A port that takes over a destination is itself a change
// (the planner planned it again), so the changed ports are enough to
// look at. Called only when a port went, so that a sync without deletions
// pays nothing.
func goneDests(f rules.Family, gone, now []*rules.ServicePlan) []ConntrackSpec {
	taken := map[dest]bool{}
	for _, s := range now {
		for _, d := range serviceDests(s) {
			taken[d] = true
		}
	}
	var specs []ConntrackSpec
	for _, s := range gone {
		for _, d := range serviceDests(s) {
			if !taken[d] {
				taken[d] = true // once
				specs = append(specs, ConntrackSpec{Family: f, OrigDst: d.addr, OrigPort: d.port})
			}
		}
	}
	return specs
}

type dest struct {
	addr netip.Addr // invalid for a nodePort: any node address
	port uint16
}

func serviceDests(s *rules.ServicePlan) []dest {
	var out []dest
	if s.ClusterIP.IsValid() {
		out = append(out, dest{s.ClusterIP, uint16(s.Port)})
	}
	for _, ip := range append(slices.Clone(s.ExtIPs), s.LBIPs...) {
		out = append(out, dest{ip, uint16(s.Port)})
	}
	if s.HasNodePort {
		out = append(out, dest{port: uint16(s.NodePort)})
	}
	return out
}

// updateHealthChecks serves the healthCheckNodePorts of the plans. A
// port's local endpoints are counted as kube-proxy counts them
// (EndpointsMap.LocalReadyEndpoints): the distinct IPs of this node's
// ready endpoints over all the service's ports. A terminating endpoint
// still takes traffic when no ready one is left, but is not counted, so
// that load balancers move away from a node whose pods are going. The
// count is per family, as each of kube-proxy's per-family proxiers counts;
// a dual-stack service's port, one server here, reports the larger one.
func (p *Proxier) updateHealthChecks(desired []*Desired) {
	if p.health == nil {
		return
	}
	want := map[int32]HealthCheck{}
	var addrs []netip.Addr // where nodePorts are served
	for _, d := range desired {
		addrs = append(addrs, d.Plan.NodePortIPs...)
		local := map[int32]map[netip.Addr]bool{} // per health check port, this family's local ready endpoint IPs
		for _, s := range d.Plan.WithHealthCheck {
			port := s.HealthCheckNodePort
			hc := want[port]
			hc.Service = s.Name.ServiceKey
			want[port] = hc
			if local[port] == nil {
				local[port] = map[netip.Addr]bool{}
			}
			for _, e := range s.All {
				if e.Ready && e.NodeName == d.Plan.NodeName {
					local[port][e.IP] = true
				}
			}
		}
		for port, ips := range local {
			hc := want[port]
			hc.LocalEndpoints = max(hc.LocalEndpoints, len(ips))
			want[port] = hc
		}
	}
	if err := p.health.Update(addrs, want); err != nil {
		p.log.Warn("health check node ports", "error", err.Error())
	}
}
