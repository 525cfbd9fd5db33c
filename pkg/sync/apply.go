package sync

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync/iptwriter"
	"github.com/rulegen/rulegen/pkg/sync/nftwriter"
)

// Kernel writes desired rulesets to the kernel of the caller's network
// namespace.
//
// What is atomic: with nftables, one Apply (one family's table) is one
// netlink transaction. With iptables, one Apply is one iptables-restore
// whose tables (nat, then filter) are each committed atomically but not
// together: a refused filter table can follow a committed nat table (see
// package iptwriter). The families are separate Applys in both backends.
// What converges: after any failed Apply, Proxier.Sync calls Invalidate,
// which makes the next Apply of every family and table a full rewrite (in
// the kernel, every rulegen table or RG- chain is replaced or deleted), so
// no half-written state outlives the next successful sync.
type Kernel interface {
	// Apply writes the desired state of one family and says what it wrote.
	Apply(d *Desired) (Written, error)
	// Invalidate makes the next Apply of every family a full update.
	Invalidate()
	// Intact reports whether the kernel still holds what was last applied,
	// by a cheap check (a canary): false when someone deleted or flushed
	// rulegen's rules by hand.
	Intact() bool
	// CheapCheck says whether Intact costs the same at any number of
	// services, so that it can be made between syncs (Proxier.WatchKernel):
	// nftables, and iptables-nft, whose tables are read through netlink;
	// not iptables-legacy, which is read with iptables, table and all.
	CheapCheck() bool
	// Remove deletes everything rulegen wrote for one family (its nftables
	// table; its RG- chains and jumps), for a family that is no longer
	// programmed. Removing a family that has nothing is not an error. The
	// next Apply of that family is a full one.
	Remove(f rules.Family) error
}

// NewKernel returns the writer for a backend. iptMode picks the iptables
// flavour (auto, nft, legacy) for the iptables backend.
func NewKernel(b Backend, iptMode iptwriter.Mode) (Kernel, error) {
	if b == NFTables {
		return &nftKernel{w: nftwriter.New(0)}, nil
	}
	return &iptKernel{opts: iptwriter.Options{Mode: iptMode}, w: map[rules.Family]*iptwriter.Writer{}}, nil
}

// Written is what one Apply sent to the kernel.
type Written struct {
	Full                    bool
	Chains, Rules, Elements int
}

type nftKernel struct{ w *nftwriter.Writer }

func (k *nftKernel) Apply(d *Desired) (Written, error) {
	if d.NFTables == nil {
		return Written{}, fmt.Errorf("nftables writer given a %s ruleset", IPTables)
	}
	st, err := k.w.Apply(d.NFTables)
	return Written{Full: st.Full, Chains: st.Chains, Rules: st.Rules, Elements: st.Elements}, err
}

func (k *nftKernel) Invalidate() { k.w.Invalidate() }

func (k *nftKernel) Intact() bool { return k.w.Intact() }

func (k *nftKernel) CheapCheck() bool { return true }

func (k *nftKernel) Remove(f rules.Family) error { return k.w.Delete(f) }

// iptKernel keeps one writer per family. Its guarantees (each table of a
// family atomic, tables and families not together, a full update of every
// family after any failure) are in package iptwriter's doc.
type iptKernel struct {
	opts iptwriter.Options
	w    map[rules.Family]*iptwriter.Writer
}

func (k *iptKernel) writer(f rules.Family) (*iptwriter.Writer, error) {
	if w := k.w[f]; w != nil {
		return w, nil
	}
	w, err := iptwriter.NewWithOptions(f, k.opts)
	if err != nil {
		return nil, err
	}
	k.w[f] = w
	return w, nil
}

func (k *iptKernel) Apply(d *Desired) (Written, error) {
	if d.IPTables == nil {
		return Written{}, fmt.Errorf("iptables writer given an %s ruleset", NFTables)
	}
	w, err := k.writer(d.Plan.Family)
	if err != nil {
		return Written{}, err
	}
	st, err := w.Apply(d.IPTables)
	return Written{Full: st.Full, Chains: st.Chains, Rules: st.Rules + st.Jumps}, err
}

func (k *iptKernel) Remove(f rules.Family) error {
	w, err := k.writer(f)
	if err == nil {
		err = w.Cleanup()
	}
	if err != nil {
		return fmt.Errorf("removing rulegen's iptables rules of %s: %w", f, err)
	}
	return nil
}

func (k *iptKernel) Intact() bool {
	for _, w := range k.w {
		if !w.Intact() {
			return false
		}
	}
	return true
}

// CheapCheck: every family's writer reads the kernel through netlink (a
// family not written yet has nothing to check).
func (k *iptKernel) CheapCheck() bool {
	for _, w := range k.w {
		if !w.CheapIntact() {
			return false
		}
	}
	return true
}

func (k *iptKernel) Invalidate() {
	for _, w := range k.w {
		w.Invalidate()
	}
}

// removeDropped deletes the rules of every family that was applied before
// and is not programmed any more (the node lost its last address of that
// family, say), and forgets it. A family whose removal fails stays recorded,
// so that the next sync tries again; the error fails this sync, which makes
// the runner retry.
func (p *Proxier) removeDropped(desired []*Desired) error {
	var errs []error
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		if p.applied[f] == nil || slices.ContainsFunc(desired, func(d *Desired) bool { return d.Plan.Family == f }) {
			continue
		}
		if err := p.kernel.Remove(f); err != nil {
			p.metrics.syncFailed(f)
			p.log.Error("removing the rules of a family no longer programmed; retrying", "family", f, "error", err.Error())
			errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
			continue
		}
		delete(p.applied, f)
		p.log.Info("removed the rules of a family no longer programmed", "family", f)
	}
	return errors.Join(errs...)
}

// Cleanup removes everything rulegen installed in the caller's network
// namespace, for both backends and both families: its nftables tables, its
// RG- chains and its jump rules. Nothing else is touched. Missing iptables
// tools are not an error (there can be no RG- chains then).
func Cleanup(iptMode iptwriter.Mode) error {
	var errs []error
	nw := nftwriter.New(0)
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		if err := nw.Delete(f); err != nil {
			errs = append(errs, err)
		}
		w, err := iptwriter.New(f, iptMode)
		if errors.Is(err, iptwriter.ErrNotInstalled) {
			continue
		}
		if err == nil {
			err = w.Cleanup()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// NodeWarnings checks the node settings rulegen's rules depend on but does
// not own, and returns one line per problem: forwarding must be on for
// traffic to reach pods on other nodes or behind a bridge, and
// route_localnet for localhost nodePorts (iptables backend).
func NodeWarnings(b Backend, cfg *rules.Config, fams []rules.Family) []string {
	var out []string
	if b == IPTables && slices.Contains(fams, rules.IPv4) && len(cfg.LocalhostNodePortRanges()) > 0 {
		// kube-proxy's iptables mode sets it (NewProxier, "Setting
		// route_localnet=1 to allow node-ports on localhost"); rulegen
		// leaves every sysctl to the operator: it would open 127.0.0.0/8
		// to routing on every interface of the host, a decision the
		// RG-BLOCK-LOCALNET rule only mitigates.
		v, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/route_localnet")
		if err == nil && strings.TrimSpace(string(v)) != "1" {
			out = append(out, "net.ipv4.conf.all.route_localnet is 0: nodePorts on 127.0.0.1 are written but the kernel will not route them to endpoints (set it to 1 as kube-proxy does, or pass --iptables-localhost-nodeports=false)")
		}
	}
	for _, f := range fams {
		path, name := "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"
		if f == rules.IPv6 {
			path, name = "/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding"
		}
		b, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(b)) != "1" {
			out = append(out, fmt.Sprintf("%s is 0: service traffic to endpoints behind this node will not be forwarded (set it to 1; that is the operator's job, rulegen does not change sysctls)", name))
		}
	}
	return out
}

// ConntrackTCPBeLiberal reports whether net.netfilter.
// nf_conntrack_tcp_be_liberal is set in this network namespace (false if
// it cannot be read): kube-proxy's iptables mode reads it the same way
// (NewProxier) and then writes no DROP for INVALID packets.
func ConntrackTCPBeLiberal() bool {
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal")
	return err == nil && strings.TrimSpace(string(b)) != "0"
}

// CleanupKubeProxy removes kube-proxy's leftovers from the caller's network
// namespace: its nftables tables ("kube-proxy" in ip and ip6), its
// iptables chains and the jumps to them, in every installed iptables
// flavour, and what its IPVS mode leaves (the kube-ipvs0 interface, the
// IPVS virtual servers, its KUBE- ipsets; see cleanupKubeProxyIPVS). It is
// destructive: run it only after kube-proxy is stopped and rulegen serves
// the node. It returns how many objects it removed.
func CleanupKubeProxy() (int, error) {
	var errs []error
	removed, err := nftwriter.DeleteForeignTable("kube-proxy")
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, m := range []iptwriter.Mode{iptwriter.NFT, iptwriter.Legacy} {
			w, err := iptwriter.New(f, m)
			if err != nil {
				continue // that flavour is not installed
			}
			n, err := w.CleanupKubeProxy()
			removed += n
			if err != nil {
				errs = append(errs, fmt.Errorf("iptables %s %s: %w", m, f, err))
			}
		}
	}
	// After the iptables rules: the kernel keeps an ipset that a rule uses.
	n, err := cleanupKubeProxyIPVS()
	removed += n
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}
