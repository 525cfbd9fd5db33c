// Command rulegen is a Kubernetes service proxy: it turns Services and
// EndpointSlices into nftables or iptables DNAT rules. This file holds only
// flags and wiring; the work is in pkg/.
package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/rulegen/rulegen/pkg/manifest"
	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/pkg/sync/iptwriter"
)

// Exit statuses.
const (
	exitOK      = 0
	exitSkipped = 1 // ran, but some input was invalid and skipped
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	dryRun            bool
	apply             bool
	cleanup           bool
	iptablesMode      string
	files             []string
	nodeName          string
	nodeIPs           []string
	clusterCIDRs      []string
	backend           string
	ipFamily          string
	nodePortAddresses []string
	masqueradeAll     bool
}

func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rulegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the rules rulegen would write, and change nothing")
	fs.BoolVar(&o.apply, "apply", false, "render the manifests given with -f and write the rules once to this network namespace")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove everything rulegen installed (its nftables tables, RG- chains and jump rules, both backends and families) and exit")
	fs.StringVar(&o.iptablesMode, "iptables-mode", "auto", "iptables flavour for the iptables backend: auto (the one holding more rules), nft or legacy")
	fs.StringArrayVarP(&o.files, "filename", "f", nil, "read Services, EndpointSlices and Nodes from this file, directory or - (stdin); YAML or JSON, multi-document, kind List; repeatable")
	fs.StringVar(&o.nodeName, "node-name", strings.ToLower(host), "this node's name: endpoints with this nodeName are local")
	fs.StringSliceVar(&o.nodeIPs, "node-ip", nil, "this node's IP addresses (default: from the Node object's status); repeatable or comma-separated")
	fs.StringSliceVar(&o.clusterCIDRs, "cluster-cidr", nil, "pod CIDR, at most one per family: traffic from outside it to a ClusterIP is masqueraded, traffic from inside it is pod traffic")
	fs.StringVar(&o.backend, "backend", "nftables", "kernel interface: nftables or iptables")
	fs.StringVar(&o.ipFamily, "ip-family", "", "render only this family: ipv4 or ipv6 (default: every family of the node's IPs, else of the services)")
	fs.StringSliceVar(&o.nodePortAddresses, "nodeport-addresses", nil, "open nodePorts only on node IPs inside these CIDRs (default: every node IP)")
	fs.BoolVar(&o.masqueradeAll, "masquerade-all", false, "masquerade all traffic to ClusterIPs")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n"+
			"  rulegen --dry-run -f PATH [-f PATH...] [flags]   print the rules, change nothing\n"+
			"  rulegen --apply -f PATH [-f PATH...] [flags]     write the rules once\n"+
			"  rulegen --cleanup                                remove everything rulegen installed\n\n"+
			"Rules go to stdout, problems to stderr. Exit status: 0 ok, 1 some input was\n"+
			"invalid and skipped (or the kernel refused the rules), 2 usage error.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	fs := newFlags(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "rulegen: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q (manifests are given with -f)", fs.Arg(0))
	}
	modes := 0
	for _, m := range []bool{o.dryRun, o.apply, o.cleanup} {
		if m {
			modes++
		}
	}
	if modes != 1 {
		return usage("give exactly one of --dry-run, --apply, --cleanup; see rulegen --help")
	}
	iptMode := iptwriter.Mode(o.iptablesMode)
	switch iptMode {
	case iptwriter.Auto, iptwriter.NFT, iptwriter.Legacy:
	default:
		return usage("--iptables-mode: %q is not auto, nft or legacy", o.iptablesMode)
	}
	if o.cleanup {
		if err := sync.Cleanup(iptMode); err != nil {
			fmt.Fprintf(stderr, "rulegen: cleanup: %v\n", err)
			return exitSkipped
		}
		return exitOK
	}
	if len(o.files) == 0 {
		return usage("manifests are needed: -f PATH")
	}
	backend, err := sync.ParseBackend(o.backend)
	if err != nil {
		return usage("--backend: %v", err)
	}
	cfg := &rules.Config{Node: rules.Node{Name: o.nodeName}, MasqueradeAll: o.masqueradeAll}
	for _, s := range o.clusterCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return usage("--cluster-cidr: %q is not a CIDR", s)
		}
		cfg.ClusterCIDRs = append(cfg.ClusterCIDRs, p.Masked())
	}
	for _, s := range o.nodePortAddresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return usage("--nodeport-addresses: %q is not a CIDR", s)
		}
		cfg.NodePortAddresses = append(cfg.NodePortAddresses, p.Masked())
	}
	for _, s := range o.nodeIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return usage("--node-ip: %q is not an IP address", s)
		}
		cfg.Node.IPs = append(cfg.Node.IPs, ip.Unmap())
	}
	if err := cfg.Validate(); err != nil {
		return usage("%v", err)
	}

	objs, errs := manifest.Load(o.files, stdin)
	st, convErrs := objs.BuildState()
	errs = append(errs, convErrs...)
	if n := objs.Node(cfg.Node.Name); n != nil {
		node, err := rules.NodeFromObject(n)
		if err != nil {
			errs = append(errs, &manifest.Error{Source: objs.SourceOf(n), Err: err})
		}
		cfg.Node.Zone = node.Zone
		if len(cfg.Node.IPs) == 0 {
			cfg.Node.IPs = node.IPs
		}
	}

	fams, err := families(o.ipFamily, cfg, st)
	if err != nil {
		return usage("--ip-family: %v", err)
	}
	if len(cfg.Node.IPs) == 0 {
		fmt.Fprintf(stderr, "rulegen: warning: no IP known for node %q (no --node-ip and no Node object): nodePorts are not rendered\n", cfg.Node.Name)
	}
	var kernel sync.Kernel
	if o.apply {
		for _, w := range sync.NodeWarnings(fams) {
			fmt.Fprintf(stderr, "rulegen: warning: %s\n", w)
		}
		if kernel, err = sync.NewKernel(backend, iptMode); err != nil {
			fmt.Fprintf(stderr, "rulegen: %v\n", err)
			return exitSkipped
		}
	}
	failed := false
	for i, fam := range fams {
		d := sync.Render(st, cfg, backend, fam)
		errs = append(errs, d.Plan.Conflicts...)
		if kernel != nil {
			if _, err := kernel.Apply(d); err != nil {
				fmt.Fprintf(stderr, "rulegen: %s %s: %v\n", backend, fam, err)
				failed = true
			}
			continue
		}
		if len(fams) > 1 {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "# %s, %s\n", backend, fam)
		}
		io.WriteString(stdout, d.Text())
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "rulegen: skipped: %v\n", e)
	}
	if len(errs) > 0 || failed {
		return exitSkipped
	}
	return exitOK
}

// families decides which families to render: the flag, else the families of
// the node's IPs, else of the services' cluster IPs, else IPv4.
func families(flagValue string, cfg *rules.Config, st *rules.State) ([]rules.Family, error) {
	if flagValue != "" {
		f, err := rules.ParseFamily(flagValue)
		return []rules.Family{f}, err
	}
	has := map[rules.Family]bool{}
	for _, ip := range cfg.Node.IPs {
		has[rules.FamilyOf(ip)] = true
	}
	if len(has) == 0 {
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
	return out, nil
}
