package sync

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	gosync "sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
	MasqueradeAll     bool
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
	// full rewrites; HealthTimeout how long a change may wait, or the last
	// sync may be old, before /healthz fails.
	SyncPeriod     time.Duration
	FullSyncPeriod time.Duration
	HealthTimeout  time.Duration
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

	mu           gosync.Mutex
	state        *rules.State
	node         rules.Node
	dirty        bool
	pendingSince time.Time
	// sliceOwner is the service each recorded EndpointSlice is filed under
	// in state, so that a relabelled slice moves and a deleted one is
	// removed from there whatever labels its last copy carries.
	sliceOwner map[types.NamespacedName]rules.ServiceKey
	// triggers holds, per recorded slice, the oldest last-change-trigger-time
	// not yet applied: at most one entry per live slice, however many
	// updates arrive or syncs fail.
	triggers map[types.NamespacedName]time.Time
	reported map[string]string // object -> last problem logged, to log each once; forgotten when the object is deleted
	// serviceCIDRs are the valid spec.cidrs of each ServiceCIDR object,
	// by object name.
	serviceCIDRs map[string][]netip.Prefix

	// Owned by Sync.
	conflicts   map[string]bool // conflicts of the last sync, each logged when it appeared
	lastFull    time.Time
	lastSuccess time.Time
	applied     map[rules.Family]*Desired
	syncedMu    gosync.Mutex // guards lastSuccess for health probes
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
	return &Proxier{opts: opts, renderer: NewRenderer(opts.Backend), kernel: kernel, conntrack: ct, metrics: m, health: hc, clock: clock, log: log,
		request: func() {}, state: rules.NewState(), node: rules.Node{Name: opts.NodeName, IPs: opts.NodeIPs},
		sliceOwner: map[types.NamespacedName]rules.ServiceKey{}, triggers: map[types.NamespacedName]time.Time{},
		reported: map[string]string{}, serviceCIDRs: map[string][]netip.Prefix{}, conflicts: map[string]bool{}, applied: map[rules.Family]*Desired{}}
}

// SetVerbose makes every sync log the full ruleset it applied (debug level).
func (p *Proxier) SetVerbose(v bool) { p.verbose = v }

// SetRequest sets the function that asks for a sync (the runner's Run).
func (p *Proxier) SetRequest(f func()) { p.request = f }

func (p *Proxier) changed(now time.Time) {
	if !p.dirty {
		p.dirty = true
		p.pendingSince = now
	}
	p.metrics.pending.Set(1)
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
	key := rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if deleted {
		p.state.DeleteService(key)
		p.report("Service "+key.String(), nil)
	} else {
		ports, err := rules.ConvertService(svc)
		p.report("Service "+key.String(), err)
		p.state.SetService(key, ports) // an invalid service is skipped: no ports
	}
	p.changed(p.clock.Now())
	p.request()
}

// OnSlice records an EndpointSlice added, updated or (deleted=true) deleted.
// A slice is filed under the service its kubernetes.io/service-name label
// names, and the proxier remembers where: an update that changes or drops
// the label moves the slice (or removes it), and a delete removes it from
// where it was filed, whatever labels the deleted copy (a tombstone, say)
// carries.
func (p *Proxier) OnSlice(es *discovery.EndpointSlice, deleted bool) {
	id := types.NamespacedName{Namespace: es.Namespace, Name: es.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	var sl *rules.Slice
	if deleted {
		p.report("EndpointSlice "+id.String(), nil)
	} else {
		var errs []error
		sl, errs = rules.ConvertSlice(es)
		p.report("EndpointSlice "+id.String(), errors.Join(errs...))
	}
	if old, ok := p.sliceOwner[id]; ok && (sl == nil || sl.Service != old) {
		p.state.DeleteSlice(old, es.Name)
		delete(p.sliceOwner, id)
	}
	if sl != nil {
		p.state.SetSlice(sl)
		p.sliceOwner[id] = sl.Service
		if t, err := time.Parse(time.RFC3339, es.Annotations[AnnotationTriggerTime]); err == nil {
			if old, ok := p.triggers[id]; !ok || t.Before(old) {
				p.triggers[id] = t
			}
		}
	} else {
		// Nothing of the slice is left to program: its latency is not
		// measured (and its entry cannot outlive it).
		delete(p.triggers, id)
	}
	p.changed(p.clock.Now())
	p.request()
}

// takeTriggers returns the pending trigger times and clears them.
func (p *Proxier) takeTriggers() map[types.NamespacedName]time.Time {
	t := p.triggers
	p.triggers = map[types.NamespacedName]time.Time{}
	return t
}

// restoreTriggers puts back the trigger times of a failed sync, keeping
// the oldest per slice, for the slices that still exist.
func (p *Proxier) restoreTriggers(taken map[types.NamespacedName]time.Time) {
	for id, t := range taken {
		if _, ok := p.sliceOwner[id]; !ok {
			continue
		}
		if cur, ok := p.triggers[id]; !ok || t.Before(cur) {
			p.triggers[id] = t
		}
	}
}

// OnNode records this node's Node object (its addresses and zone). A Node
// with an invalid address is reported, and its valid addresses are used.
func (p *Proxier) OnNode(n *v1.Node, deleted bool) {
	if n.Name != p.opts.NodeName || deleted {
		return
	}
	node, err := rules.NodeFromObject(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.report("Node "+n.Name, err)
	if len(p.opts.NodeIPs) > 0 {
		node.IPs = p.opts.NodeIPs
	}
	if node.Zone == p.node.Zone && slices.Equal(node.IPs, p.node.IPs) {
		return
	}
	p.node = node
	p.changed(p.clock.Now())
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
		for i, c := range o.Spec.CIDRs {
			pr, err := netip.ParsePrefix(c)
			if err != nil || pr.Addr().Zone() != "" {
				errs = append(errs, fmt.Errorf("spec.cidrs[%d]: %q is not a CIDR", i, c))
				continue
			}
			cidrs = append(cidrs, pr.Masked())
		}
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
	p.changed(p.clock.Now())
	p.request()
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
// no longer holds what rulegen wrote (checked at every sync, so within
// SyncPeriod); otherwise the update is incremental.
func (p *Proxier) Sync() error {
	start := p.clock.Now()
	p.mu.Lock()
	cfg := &rules.Config{Node: p.node, ClusterCIDRs: p.opts.ClusterCIDRs, NodePortAddresses: p.opts.NodePortAddresses, MasqueradeAll: p.opts.MasqueradeAll,
		MasqueradeBit: p.opts.MasqueradeBit, ServiceCIDRs: p.allServiceCIDRs(), LocalhostNodePorts: p.opts.LocalhostNodePorts, ConntrackTCPBeLiberal: p.opts.ConntrackTCPBeLiberal}
	var desired []*Desired
	for _, f := range p.families() {
		desired = append(desired, p.renderer.Render(p.state, cfg, f))
	}
	rendered := p.clock.Now()
	triggers := p.takeTriggers()
	wasDirty, pendingSince := p.dirty, p.pendingSince
	p.dirty = false
	p.mu.Unlock()

	p.reportConflicts(desired)
	periodic := p.opts.FullSyncPeriod > 0 && start.Sub(p.lastFull) >= p.opts.FullSyncPeriod
	if periodic || !p.kernel.Intact() {
		p.kernel.Invalidate()
	}
	var written Written
	for _, d := range desired {
		w, err := p.kernel.Apply(d)
		written.Full = written.Full || w.Full
		written.Chains += w.Chains
		written.Rules += w.Rules
		written.Elements += w.Elements
		if err != nil {
			p.kernel.Invalidate()
			p.metrics.failures.Inc()
			p.mu.Lock()
			p.restoreTriggers(triggers)
			if wasDirty {
				p.changed(pendingSince)
			}
			p.mu.Unlock()
			p.log.Error("sync failed; the previous rules stay in place, retrying with a full sync", "family", d.Plan.Family, "error", err.Error())
			return fmt.Errorf("sync %s: %w", d.Plan.Family, err)
		}
	}
	end := p.clock.Now()
	full := written.Full
	if full {
		p.lastFull = start
	}
	p.syncedMu.Lock()
	p.lastSuccess = end
	p.syncedMu.Unlock()
	p.metrics.observeSync(end.Sub(start), end, written)
	for _, t := range triggers {
		p.metrics.programming.Observe(end.Sub(t).Seconds())
	}
	p.mu.Lock()
	if !p.dirty {
		p.metrics.pending.Set(0)
	}
	p.mu.Unlock()

	p.cleanConntrack(desired)
	p.updateHealthChecks(desired)
	for _, d := range desired {
		p.applied[d.Plan.Family] = d
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

// Healthy reports whether the proxier is keeping up: it has synced, a
// pending change has not waited longer than HealthTimeout, and the last
// successful sync is not older than SyncPeriod + HealthTimeout.
func (p *Proxier) Healthy() (bool, string) {
	now := p.clock.Now()
	p.syncedMu.Lock()
	last := p.lastSuccess
	p.syncedMu.Unlock()
	p.mu.Lock()
	dirty, since := p.dirty, p.pendingSince
	p.mu.Unlock()
	switch {
	case last.IsZero():
		return false, "no successful sync yet"
	case dirty && now.Sub(since) > p.opts.HealthTimeout:
		return false, fmt.Sprintf("a change has waited %s for a sync", now.Sub(since).Round(time.Millisecond))
	case now.Sub(last) > p.opts.SyncPeriod+p.opts.HealthTimeout:
		return false, fmt.Sprintf("last successful sync %s ago", now.Sub(last).Round(time.Millisecond))
	}
	return true, fmt.Sprintf("last successful sync %s ago", now.Sub(last).Round(time.Millisecond))
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
		prev := map[rules.ServicePortName]*rules.ServicePlan{}
		if old := p.applied[d.Plan.Family]; old != nil {
			for _, s := range old.Plan.Services {
				prev[s.Name] = s
			}
		}
		for _, s := range d.Plan.Services {
			if s.Name.Protocol != rules.UDP {
				continue
			}
			o := prev[s.Name]
			now := s.UsedEndpoints()
			dests := serviceDests(s)
			if o == nil || len(o.UsedEndpoints()) == 0 {
				if len(now) > 0 && o != nil {
					for _, dst := range dests {
						specs = append(specs, ConntrackSpec{Family: d.Plan.Family, OrigDst: dst.addr, OrigPort: dst.port})
					}
				}
				continue
			}
			for _, e := range o.UsedEndpoints() {
				if slices.ContainsFunc(now, func(n rules.Endpoint) bool { return n.IP == e.IP && n.Port == e.Port }) {
					continue
				}
				for _, dst := range dests {
					specs = append(specs, ConntrackSpec{Family: d.Plan.Family, OrigDst: dst.addr, OrigPort: dst.port, ReplySrc: e.IP})
				}
			}
		}
	}
	if len(specs) == 0 {
		return
	}
	n, err := p.conntrack.DeleteUDP(specs)
	if err != nil {
		p.log.Warn("deleting stale UDP conntrack entries", "error", err.Error())
	}
	p.metrics.conntrack.Add(float64(n))
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

func (p *Proxier) updateHealthChecks(desired []*Desired) {
	if p.health == nil {
		return
	}
	want := map[int32]HealthCheck{}
	var addrs []netip.Addr // where nodePorts are served
	for _, d := range desired {
		addrs = append(addrs, d.Plan.NodePortIPs...)
		for _, s := range d.Plan.Services {
			if s.HealthCheckNodePort == 0 {
				continue
			}
			hc := want[s.HealthCheckNodePort]
			hc.Service = s.Name.ServiceKey
			hc.LocalEndpoints = max(hc.LocalEndpoints, len(s.LocalEndpoints))
			want[s.HealthCheckNodePort] = hc
		}
	}
	if err := p.health.Update(addrs, want); err != nil {
		p.log.Warn("health check node ports", "error", err.Error())
	}
}
