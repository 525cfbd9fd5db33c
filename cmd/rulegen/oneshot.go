package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rulegen/rulegen/pkg/manifest"
	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync"
)

// loadState reads the state from -f manifests, or else lists the cluster
// once. It adopts the Node object's zone and (unless --node-ip) addresses.
// A nil state means the source could not be read at all (code says how to exit).
// where adds to an error about an object (a conflict found later, when
// rendering) the file and document the object was read from.
func loadState(o options, s settings, stdin io.Reader, stderr io.Writer) (st *rules.State, errs []error, where func(error) error, code int) {
	where = func(err error) error { return err }
	if len(o.files) > 0 {
		objs, errs := manifest.Load(o.files, stdin)
		st, convErrs := objs.BuildState()
		errs = append(errs, convErrs...)
		if n := objs.Node(s.cfg.Node.Name); n != nil {
			node, err := rules.NodeFromObject(n)
			if err != nil {
				errs = append(errs, &manifest.Error{Source: objs.SourceOf(n), Err: err})
			}
			adoptNode(s.cfg, node)
		}
		return st, errs, objs.WithSource, exitOK
	}
	client, _, _, err := newClient(o)
	if err != nil {
		fmt.Fprintf(stderr, "rulegen: %v\n", err)
		return nil, nil, where, exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, node, errs := sync.ListState(ctx, client, s.cfg.Node.Name)
	if st == nil {
		for _, e := range errs {
			fmt.Fprintf(stderr, "rulegen: %v\n", e)
		}
		return nil, nil, where, exitSkipped
	}
	if node != nil {
		adoptNode(s.cfg, *node)
	}
	// The ranges of the cluster's ServiceCIDR objects, which the daemon
	// watches, besides --service-cluster-ip-range: the dry run drops what
	// the daemon drops.
	cidrs, cerrs := sync.ListServiceCIDRs(ctx, client)
	errs = append(errs, cerrs...)
	for _, c := range cidrs {
		if !slices.Contains(s.cfg.ServiceCIDRs, c) {
			s.cfg.ServiceCIDRs = append(s.cfg.ServiceCIDRs, c)
		}
	}
	return st, errs, where, exitOK
}

// dryRunOrApply is --dry-run (from manifests or the live cluster) and --apply.
func dryRunOrApply(o options, s settings, stdin io.Reader, stdout, stderr io.Writer) int {
	st, errs, where, code := loadState(o, s, stdin, stderr)
	if st == nil {
		return code
	}
	return render(o.apply, o.applyValid, s, st, errs, where, stdout, stderr)
}

// adoptNode takes the zone, the pod CIDRs, and the IPs unless --node-ip gave them, from
// the Node object.
func adoptNode(cfg *rules.Config, n rules.Node) {
	cfg.Node.Zone = n.Zone
	cfg.Node.PodCIDRs = n.PodCIDRs
	if len(cfg.Node.IPs) == 0 {
		cfg.Node.IPs = n.IPs
	}
}

// render prints (or, with apply, writes) the rules of every family. Every
// family is rendered before anything is written: with apply, any problem
// with the input (an unreadable file, an invalid object, a conflict) writes
// nothing unless applyValid says to write what was valid, so that a typo in
// a path never replaces a node's rules with an empty ruleset.
func render(apply, applyValid bool, s settings, st *rules.State, errs []error, where func(error) error, stdout, stderr io.Writer) int {
	fams := families(s, st)
	if len(s.cfg.Node.IPs) == 0 {
		fmt.Fprintf(stderr, "rulegen: warning: no IP known for node %q (no --node-ip, and no Node object with a valid InternalIP or ExternalIP address): nodePorts are not rendered\n", s.cfg.Node.Name)
	}
	desired := make([]*sync.Desired, 0, len(fams))
	for _, fam := range fams {
		d := sync.Render(st, s.cfg, s.backend, fam)
		for _, c := range d.Plan.Conflicts {
			errs = append(errs, where(c))
		}
		desired = append(desired, d)
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "rulegen: skipped: %v\n", e)
	}
	if !apply {
		for i, d := range desired {
			if len(desired) > 1 {
				if i > 0 {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "# %s, %s\n", s.backend, d.Plan.Family)
			}
			io.WriteString(stdout, d.Text())
		}
		if len(errs) > 0 {
			return exitSkipped
		}
		return exitOK
	}
	if len(errs) > 0 && !applyValid {
		fmt.Fprintf(stderr, "rulegen: %d problem(s) in the input: nothing written (the kernel's rules are unchanged; --apply-valid writes the valid objects' rules anyway)\n", len(errs))
		return exitSkipped
	}
	for _, w := range sync.NodeWarnings(s.backend, s.cfg, fams) {
		fmt.Fprintf(stderr, "rulegen: warning: %s\n", w)
	}
	kernel, err := sync.NewKernel(s.backend, s.iptMode)
	if err != nil {
		fmt.Fprintf(stderr, "rulegen: %v\n", err)
		return exitSkipped
	}
	failed := false
	for _, d := range desired {
		if _, err := kernel.Apply(d); err != nil {
			fmt.Fprintf(stderr, "rulegen: %s %s: %v\n", s.backend, d.Plan.Family, err)
			failed = true
		}
	}
	if len(errs) > 0 || failed {
		return exitSkipped
	}
	return exitOK
}

// families decides which families to render: --ip-family, else the
// families of the node's IPs, else of the services' cluster IPs, else IPv4.
func families(s settings, st *rules.State) []rules.Family {
	if len(s.families) > 0 {
		return s.families
	}
	has := map[rules.Family]bool{}
	for _, ip := range s.cfg.Node.IPs {
		has[rules.FamilyOf(ip)] = true
	}
	if len(has) == 0 && st != nil {
		for _, p := range st.Ports() {
			for _, ip := range p.ClusterIPs {
				has[rules.FamilyOf(ip)] = true
			}
		}
	}
	var out []rules.Family
	for _, f := range []rules.Family{rules.IPv4, rules.IPv6} {
		if has[f] {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		out = []rules.Family{rules.IPv4}
	}
	return out
}

// cleanup is --cleanup.
func cleanup(s settings, stderr io.Writer) int {
	if err := sync.Cleanup(s.iptMode); err != nil {
		fmt.Fprintf(stderr, "rulegen: cleanup: %v\n", err)
		return exitSkipped
	}
	return exitOK
}
