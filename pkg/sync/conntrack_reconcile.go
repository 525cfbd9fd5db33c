package sync

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
)

// ConntrackEntry is a UDP conntrack entry, as the reconcile reads it: the
// original tuple (client to service destination) and the reply tuple (for
// a DNATed entry, from the endpoint back to the client).
type ConntrackEntry struct {
	OrigSrc, OrigDst   netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
}

// String returns "udp 10.0.0.1:5000 -> 10.96.0.10:53 (reply from 10.244.1.5:53)".
func (e ConntrackEntry) String() string {
	return fmt.Sprintf("udp %s -> %s (reply from %s)", e.OrigSrc, e.OrigDst, e.ReplySrc)
}

// staleUDP returns the entries that plan says are stale, as kube-proxy's
// conntrack reconciler decides (CleanStaleEntries in
// pkg/proxy/conntrack/cleanup.go): an entry whose original destination is a
// destination of a UDP service port of the plan (its ClusterIP, an
// external or LB IP, with the service port; or its nodePort, on any
// address) and whose reply does not come from a serving endpoint of that
// port. Serving is every endpoint whose serving condition holds, whatever
// the traffic policies, topology or terminating state (so that a policy
// change does not cut flows, as for TCP). A port without serving endpoints
// loses every entry to its IPs (they were DNATed before its reject rule
// could match, and a one-way UDP flow would keep them alive forever), but
// not its nodePort entries: matched on the port alone, they could be
// anybody's. Beyond kube-proxy, an entry DNATed from a ClusterIP that is no
// UDP service's any more is stale too (see deletedService).
func staleUDP(plan *rules.Plan, entries []ConntrackEntry) []ConntrackEntry {
	type front struct {
		addr netip.Addr // invalid: a nodePort, on any address
		port uint16
	}
	serving := map[front]map[netip.AddrPort]bool{}
	for _, s := range plan.Services {
		if s.Name.Protocol != rules.UDP {
			continue
		}
		eps := map[netip.AddrPort]bool{}
		for _, e := range s.All {
			if e.Serving {
				eps[netip.AddrPortFrom(e.IP, uint16(e.Port))] = true
			}
		}
		for _, d := range serviceDests(s) {
			if !d.addr.IsValid() && len(eps) == 0 {
				continue
			}
			serving[front{d.addr, d.port}] = eps
		}
	}
	var stale []ConntrackEntry
	for _, e := range entries {
		eps, ok := serving[front{e.OrigDst.Addr(), e.OrigDst.Port()}]
		if !ok {
			eps, ok = serving[front{port: e.OrigDst.Port()}]
		}
		if ok && !eps[e.ReplySrc] || !ok && deletedService(plan, e) {
			stale = append(stale, e)
		}
	}
	return stale
}

// deletedService reports whether e was sent to a ClusterIP that is no UDP
// service's now (the entry's destination is a destination of no UDP port
// of the plan) and was DNATed (its reply comes from another address):
// the service was deleted, or its port renamed or renumbered, and the entry
// still steers the flow to the old endpoint. A ClusterIP is told by the
// plan's service CIDRs; without them (none configured, no ServiceCIDR
// objects) nothing is. kube-proxy's reconciler leaves such entries until
// they time out, which a client that keeps sending never lets happen;
// rulegen deletes them (the per-change cleanup of Sync does too, for the
// ports it saw go).
func deletedService(plan *rules.Plan, e ConntrackEntry) bool {
	if e.ReplySrc.Addr() == e.OrigDst.Addr() {
		return false
	}
	for _, c := range plan.ServiceCIDRs {
		if c.Contains(e.OrigDst.Addr()) {
			return true
		}
	}
	return false
}

// ReconcileConntrack deletes, in every family the proxier programs, the
// UDP conntrack entries that point at no serving endpoint of the service
// they were sent to (see staleUDP), against the plan of the last
// successful sync. It catches what the per-change cleanup of Sync missed:
// a cleanup that failed, entries made while rulegen was down, an entry
// created between a sync and its cleanup. It never runs concurrently with
// Sync. It returns an error when listing or deleting failed in a family
// (the other family is still reconciled), so that its runner retries.
// Each family's run is measured and its deletions counted in kube-proxy's
// conntrack reconciler metrics.
func (p *Proxier) ReconcileConntrack() error {
	if p.conntrack == nil {
		return nil
	}
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	var errs []error
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		d := p.applied[f]
		if d == nil {
			continue // not synced yet (or no longer programmed)
		}
		start := p.clock.Now()
		entries, err := p.conntrack.ListUDP(f)
		if err != nil && len(entries) == 0 {
			p.conntrackFailed(f, start, fmt.Errorf("list %s UDP conntrack entries: %w", f, err))
			errs = append(errs, err)
			continue
		}
		// A partial list (an interrupted dump) is reconciled as far as it
		// goes, and the reconcile is retried for the rest.
		stale := staleUDP(d.Plan, entries)
		n, derr := uint(0), error(nil)
		if len(stale) > 0 {
			n, derr = p.conntrack.DeleteEntries(f, stale)
		}
		p.metrics.conntrackSync.WithLabelValues(ipFamily(f)).Observe(p.clock.Now().Sub(start).Seconds())
		p.metrics.conntrack.WithLabelValues(ipFamily(f)).Add(float64(n))
		if err = errors.Join(err, derr); err != nil {
			p.conntrackFailed(f, start, fmt.Errorf("reconcile %s UDP conntrack entries (%d stale, %d deleted): %w", f, len(stale), n, err))
			errs = append(errs, err)
			continue
		}
		p.log.Debug("reconciled UDP conntrack entries", "family", f, "entries", len(entries), "deleted", n, "duration", p.clock.Now().Sub(start))
	}
	return errors.Join(errs...)
}

// conntrackFailed logs and counts a failed conntrack cleanup or reconcile
// of family f.
func (p *Proxier) conntrackFailed(f rules.Family, start time.Time, err error) {
	p.metrics.conntrackFailures.WithLabelValues(ipFamily(f)).Inc()
	p.log.Warn("stale UDP conntrack entries not all deleted; the reconcile retries", "family", f, "error", err.Error(), "duration", p.clock.Now().Sub(start))
}

// SetReconcileRequest sets the function that asks for a ReconcileConntrack
// run (its runner's Run). Sync asks after a full sync and after a failed
// per-change cleanup.
func (p *Proxier) SetReconcileRequest(f func()) { p.requestReconcile = f }

// dumpRetries is how often a conntrack dump interrupted by a concurrent
// change of the table is tried before a partial result is used.
const dumpRetries = 3

// ListUDP implements Conntrack: the UDP entries of family f's table. An
// interrupted dump is retried; if it stays interrupted, the entries read
// are returned with the error.
func (NetlinkConntrack) ListUDP(f rules.Family) ([]ConntrackEntry, error) {
	fam, err := inetFamily(f)
	if err != nil {
		return nil, err
	}
	var flows []*netlink.ConntrackFlow
	for range dumpRetries {
		flows, err = netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	var out []ConntrackEntry
	for _, fl := range flows {
		if fl.Forward.Protocol != unix.IPPROTO_UDP {
			continue
		}
		out = append(out, entryOf(fl))
	}
	return out, err
}

// DeleteEntries implements Conntrack: it deletes the UDP entries of family
// f that equal one of entries in both tuples (an entry made anew since it
// was listed, with another reply tuple, stays).
func (NetlinkConntrack) DeleteEntries(f rules.Family, entries []ConntrackEntry) (uint, error) {
	fam, err := inetFamily(f)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	match := entryFilter{}
	for _, e := range entries {
		match[e] = true
	}
	return netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, match)
}

// entryFilter matches the UDP flows that are one of its entries.
type entryFilter map[ConntrackEntry]bool

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (m entryFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	return fl.Forward.Protocol == unix.IPPROTO_UDP && m[entryOf(fl)]
}

func entryOf(fl *netlink.ConntrackFlow) ConntrackEntry {
	ap := func(ip []byte, port uint16) netip.AddrPort {
		a, _ := netip.AddrFromSlice(ip)
		return netip.AddrPortFrom(a.Unmap(), port)
	}
	return ConntrackEntry{
		OrigSrc: ap(fl.Forward.SrcIP, fl.Forward.SrcPort), OrigDst: ap(fl.Forward.DstIP, fl.Forward.DstPort),
		ReplySrc: ap(fl.Reverse.SrcIP, fl.Reverse.SrcPort), ReplyDst: ap(fl.Reverse.DstIP, fl.Reverse.DstPort),
	}
}

func inetFamily(f rules.Family) (netlink.InetFamily, error) {
	switch f {
	case rules.IPv4:
		return unix.AF_INET, nil
	case rules.IPv6:
		return unix.AF_INET6, nil
	}
	return 0, fmt.Errorf("conntrack: family %d is neither IPv4 nor IPv6", f)
}
