// Command rulegen is a Kubernetes service proxy: it turns Services and
// EndpointSlices into nftables or iptables DNAT rules. This package holds
// only flags and wiring; the work is in pkg/.
//
//	main.go    flags, the config file, and the choice of mode
//	oneshot.go --dry-run, --apply and --cleanup
//	daemon.go  the node daemon
//	client.go  the API client: where the API server is, its settings, and the first contact
//	configz.go the daemon's /configz
package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/pkg/sync/iptwriter"
)

// Exit statuses.
const (
	exitOK      = 0
	exitSkipped = 1 // ran, but some input was invalid and skipped (or the kernel refused)
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	dryRun, apply, cleanup bool
	applyValid             bool
	profiling              bool
	cleanupKubeProxy       bool
	config                 string
	iptablesMode           string
	files                  []string
	kubeconfig             string
	master                 string
	client                 clientConnection
	version                bool
	nodeName               string
	nodeIPs                []string
	clusterCIDRs           []string
	backend                string
	ipFamily               string
	nodePortAddresses      []string
	masqueradeAll          bool
	detectLocalMode        string
	podBridgeInterface     string
	podInterfaceNamePrefix string
	masqueradeBit          int32
	serviceCIDRs           []string
	localhostNodePorts     bool
	minSyncPeriod          time.Duration
	syncPeriod             time.Duration
	fullSyncPeriod         time.Duration
	healthTimeout          time.Duration
	healthzAddr            string
	metricsAddr            string
	verbosity              int
	loggingFormat          string
	conntrack              sync.ConntrackSysctls
}

func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rulegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the rules rulegen would write (from -f manifests, or from the cluster with --kubeconfig), and change nothing")
	fs.BoolVar(&o.apply, "apply", false, "render the manifests given with -f and write the rules once to this network namespace")
	fs.BoolVar(&o.applyValid, "apply-valid", false, "with --apply: write the rules of the valid objects even when some input is invalid or conflicting (default: any such problem writes nothing)")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove everything rulegen installed (its nftables tables, RG- chains and jump rules, both backends and families) and exit")
	fs.BoolVar(&o.cleanupKubeProxy, "cleanup-kube-proxy", false, "DESTRUCTIVE: remove kube-proxy's rules (its nftables tables, its KUBE- iptables chains and the jumps to them, and in IPVS mode its virtual servers, ipsets and kube-ipvs0) and exit; only once kube-proxy is stopped and rulegen serves the node")
	fs.StringVar(&o.config, "config", "", "kube-proxy's config file (a KubeProxyConfiguration, as kubeadm writes it), optionally followed by a RulegenConfiguration document; flags given on the command line win")
	fs.StringVar(&o.iptablesMode, "iptables-mode", "auto", "iptables flavour for the iptables backend: auto (the one holding more rules), nft or legacy")
	fs.StringArrayVarP(&o.files, "filename", "f", nil, "read Services, EndpointSlices and Nodes from this file, directory or - (stdin); YAML or JSON, multi-document, kind List; repeatable")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: the in-cluster service account)")
	fs.StringVar(&o.master, "master", "", "the API server's URL, overriding the kubeconfig's (as kube-proxy's --master)")
	addClientFlags(fs, &o.client)
	fs.BoolVar(&o.version, "version", false, "print the version and the git commit, and exit")
	fs.StringVar(&o.nodeName, "node-name", strings.ToLower(host), "this node's name: endpoints with this nodeName are local")
	fs.StringSliceVar(&o.nodeIPs, "node-ip", nil, "this node's IP addresses (default: from the Node object's status); repeatable or comma-separated")
	fs.StringSliceVar(&o.clusterCIDRs, "cluster-cidr", nil, "pod CIDR, at most one per family: traffic from outside it to a ClusterIP is masqueraded, traffic from inside it is pod traffic")
	fs.StringVar(&o.backend, "backend", "nftables", "kernel interface: nftables or iptables")
	fs.StringVar(&o.ipFamily, "ip-family", "", "program only this family: ipv4 or ipv6 (default: every family of the node's IPs)")
	fs.StringSliceVar(&o.nodePortAddresses, "nodeport-addresses", nil, "open nodePorts only on node IPs inside these CIDRs or keywords (all; primary: the Node's first InternalIP of each family), per family: a family with no range here uses every node IP of it (default: every node IP, in both modes; a --config file in nftables mode defaults to primary, as kube-proxy)")
	fs.BoolVar(&o.masqueradeAll, "masquerade-all", false, "masquerade all traffic to ClusterIPs")
	fs.StringVar(&o.detectLocalMode, "detect-local-mode", "ClusterCIDR", "how pod traffic is told, as kube-proxy: ClusterCIDR (--cluster-cidr), NodeCIDR (the Node object's spec.podCIDRs), BridgeInterface (arrives on --pod-bridge-interface) or InterfaceNamePrefix (arrives on an interface named --pod-interface-name-prefix*)")
	fs.StringVar(&o.podBridgeInterface, "pod-bridge-interface", "", "with --detect-local-mode=BridgeInterface: the bridge the local pods' traffic arrives on (e.g. cni0)")
	fs.StringVar(&o.podInterfaceNamePrefix, "pod-interface-name-prefix", "", "with --detect-local-mode=InterfaceNamePrefix: the prefix of the names of the interfaces the local pods' traffic arrives on (e.g. veth)")
	fs.Int32Var(&o.masqueradeBit, "iptables-masquerade-bit", rules.DefaultMasqueradeBit, "the bit of the fwmark space that marks packets to masquerade, 0-31 (both backends; it must match kube-proxy's during a migration)")
	fs.StringSliceVar(&o.serviceCIDRs, "service-cluster-ip-range", nil, "the ClusterIP ranges, at most one per family (comma-separated; alias --service-cidr): with nftables, new connections to an address in them that no service holds are dropped, as kube-proxy's nftables mode does")
	fs.BoolVar(&o.localhostNodePorts, "iptables-localhost-nodeports", true, "iptables backend, IPv4: also open nodePorts on 127.0.0.0/8 (when --nodeport-addresses is empty or covers it), as kube-proxy does; needs net.ipv4.conf.all.route_localnet=1, which rulegen does not set")
	// kube-apiserver's flag is --service-cluster-ip-range; --service-cidr
	// is accepted as another spelling of it.
	fs.SetNormalizeFunc(func(_ *flag.FlagSet, name string) flag.NormalizedName {
		if name == "service-cidr" {
			name = "service-cluster-ip-range"
		}
		return flag.NormalizedName(name)
	})
	fs.DurationVar(&o.minSyncPeriod, "min-sync-period", 0, "daemon: least time between two syncs; changes arriving meanwhile are applied together (0: apply every change at once)")
	fs.DurationVar(&o.syncPeriod, "sync-period", 30*time.Second, "daemon: interval of periodic syncs, which also check that the kernel still holds rulegen's rules and repair them")
	fs.DurationVar(&o.fullSyncPeriod, "full-sync-period", time.Hour, "daemon: interval of full rewrites of the ruleset (other syncs send only what changed)")
	fs.DurationVar(&o.healthTimeout, "health-timeout", 0, "daemon: /healthz and /livez fail when a change has waited this long for a successful sync (0: twice --sync-period, as kube-proxy)")
	fs.StringVar(&o.healthzAddr, "healthz-bind-address", "0.0.0.0:10256", "daemon: address of /healthz and /livez (empty: off)")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", "127.0.0.1:10249", "daemon: address of /metrics (empty: off)")
	fs.BoolVar(&o.profiling, "profiling", false, "daemon: also serve Go's /debug/pprof/ (CPU and heap profiles) on the metrics address")
	fs.IntVarP(&o.verbosity, "v", "v", 0, "log verbosity, as kube-proxy's: 0 info, from 1 every sync (debug), from 9 also the full ruleset after each sync")
	fs.StringVar(&o.loggingFormat, "logging-format", "text", "daemon: log format, text (key=value) or json; client-go's lines come out in the same format")
	addConntrackFlags(fs, &o.conntrack)
	addKubeProxyFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n"+
			"  rulegen [--kubeconfig FILE] [flags]               run as the node daemon\n"+
			"  rulegen --dry-run -f PATH [-f PATH...] [flags]   print the rules for manifests, change nothing\n"+
			"  rulegen --dry-run --kubeconfig FILE [flags]      print the rules for the live cluster, change nothing\n"+
			"  rulegen --apply -f PATH [-f PATH...] [flags]     write the rules for manifests once\n"+
			"  rulegen --cleanup                                remove everything rulegen installed\n"+
			"  rulegen --cleanup-kube-proxy                     remove kube-proxy's rules (destructive; migration)\n"+
			"  rulegen trace --src IP --dst IP:PORT[/PROTO] [--from pod|node|external] (-f PATH | --kubeconfig FILE)\n"+
			"                                                   say what happens to a packet, offline\n"+
			"  rulegen explain NAMESPACE/NAME (-f PATH | --kubeconfig FILE)\n"+
			"                                                   explain one service's ports, endpoints and rules\n"+
			"  rulegen completion bash|zsh                      print a shell completion script\n\n"+
			"Rules go to stdout, logs and problems to stderr. Exit status: 0 ok; 1 some input\n"+
			"was invalid and skipped, or the kernel refused the rules (--apply writes nothing\n"+
			"when any input is invalid, unless --apply-valid); 2 usage error.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, kubeProxyUsage())
	}
	return fs
}

// settings are the parsed, checked flags shared by every mode.
type settings struct {
	backend  sync.Backend
	iptMode  iptwriter.Mode
	cfg      *rules.Config
	families []rules.Family // from --ip-family; empty: decided later
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	var sub string // "trace" or "explain"
	if len(args) > 0 && args[0] == "completion" {
		if len(args) != 2 {
			fmt.Fprintln(stderr, "rulegen: completion: give one shell, bash or zsh (see rulegen --help)")
			return exitUsage
		}
		script, err := completionScript(args[1])
		if err != nil {
			fmt.Fprintf(stderr, "rulegen: %v (see rulegen --help)\n", err)
			return exitUsage
		}
		fmt.Fprint(stdout, script)
		return exitOK
	}
	if len(args) > 0 && (args[0] == "trace" || args[0] == "explain") {
		sub, args = args[0], args[1:]
	}
	fs := newFlags(&o, stderr)
	var q query
	if sub != "" {
		addQueryFlags(fs, sub, &q)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		// pflag in ContinueOnError mode prints nothing: say which flag, once.
		fmt.Fprintf(stderr, "rulegen: %v (see rulegen --help)\n", err)
		return exitUsage
	}
	if o.version {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	// kube-proxy's flags first, so that an alias counts as given on the
	// command line when the config file is read.
	if err := applyKubeProxyFlags(fs, stderr); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "rulegen: %s (see rulegen --help)\n", line)
		}
		return exitUsage
	}
	if o.master != "" {
		if u, err := url.Parse(o.master); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			fmt.Fprintf(stderr, "rulegen: --master: %q is not an http or https URL (see rulegen --help)\n", o.master)
			return exitUsage
		}
	}
	usage := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		if !strings.Contains(msg, "rulegen --help") {
			msg += " (see rulegen --help)"
		}
		fmt.Fprintf(stderr, "rulegen: %s\n", msg)
		return exitUsage
	}
	if o.config != "" {
		warnings, err := loadConfig(fs, o.config)
		for _, w := range warnings {
			fmt.Fprintf(stderr, "rulegen: --config: warning: %s\n", w)
		}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(stderr, "rulegen: --config: %s\n", line)
			}
			return exitUsage
		}
	}
	if sub == "explain" && fs.NArg() == 1 {
		q.service = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usage("unexpected argument %q (manifests are given with -f)", fs.Arg(0))
	}
	modes := 0
	for _, m := range []bool{o.dryRun, o.apply, o.cleanup, o.cleanupKubeProxy} {
		if m {
			modes++
		}
	}
	if modes > 1 {
		return usage("give at most one of --dry-run, --apply, --cleanup, --cleanup-kube-proxy; see rulegen --help")
	}
	var s settings
	s.iptMode = iptwriter.Mode(o.iptablesMode)
	switch s.iptMode {
	case iptwriter.Auto, iptwriter.NFT, iptwriter.Legacy:
	default:
		return usage("--iptables-mode: %q is not auto, nft or legacy", o.iptablesMode)
	}
	if o.cleanup {
		return cleanup(s, stderr)
	}
	if o.cleanupKubeProxy {
		n, err := sync.CleanupKubeProxy()
		if err != nil {
			fmt.Fprintf(stderr, "rulegen: cleanup of kube-proxy: %v\n", err)
			return exitSkipped
		}
		fmt.Fprintf(stderr, "rulegen: removed %d kube-proxy objects (tables, chains, jump rules, IPVS leftovers)\n", n)
		return exitOK
	}
	var err error
	if s.backend, err = sync.ParseBackend(o.backend); err != nil {
		return usage("--backend: %v", err)
	}
	s.cfg = &rules.Config{Node: rules.Node{Name: o.nodeName}, MasqueradeAll: o.masqueradeAll,
		MasqueradeBit: &o.masqueradeBit, LocalhostNodePorts: &o.localhostNodePorts}
	for _, v := range o.serviceCIDRs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return usage("--service-cluster-ip-range: %q is not a CIDR", v)
		}
		s.cfg.ServiceCIDRs = append(s.cfg.ServiceCIDRs, p.Masked())
	}
	for _, v := range o.clusterCIDRs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return usage("--cluster-cidr: %q is not a CIDR", v)
		}
		s.cfg.ClusterCIDRs = append(s.cfg.ClusterCIDRs, p.Masked())
	}
	switch o.detectLocalMode {
	case "", "ClusterCIDR":
	case "NodeCIDR":
		s.cfg.DetectLocalNodeCIDR = true
	case "BridgeInterface":
		s.cfg.PodInterface = rules.PodInterface{Name: o.podBridgeInterface}
		if why := s.cfg.PodInterface.Invalid(); why != "" {
			return usage("--pod-bridge-interface: %q %s (--detect-local-mode=BridgeInterface needs the bridge's name)", o.podBridgeInterface, why)
		}
	case "InterfaceNamePrefix":
		s.cfg.PodInterface = rules.PodInterface{Name: o.podInterfaceNamePrefix, Prefix: true}
		if why := s.cfg.PodInterface.Invalid(); why != "" {
			return usage("--pod-interface-name-prefix: %q %s (--detect-local-mode=InterfaceNamePrefix needs the prefix)", o.podInterfaceNamePrefix, why)
		}
	default:
		return usage("--detect-local-mode: %q is not supported; want ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix", o.detectLocalMode)
	}
	for _, v := range o.nodePortAddresses {
		switch v {
		case "all": // kube-proxy's keyword: every node IP of both families
			v = "0.0.0.0/0"
			s.cfg.NodePortAddresses = append(s.cfg.NodePortAddresses, netip.MustParsePrefix("::/0"))
		case "primary": // kube-proxy's keyword: the Node's primary IP of each family
			s.cfg.NodePortPrimary = true
			continue
		case "localhost":
			return usage("--nodeport-addresses: the keyword %q is not supported; give CIDRs, all or primary", v)
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return usage("--nodeport-addresses: %q is not a CIDR", v)
		}
		s.cfg.NodePortAddresses = append(s.cfg.NodePortAddresses, p.Masked())
	}
	for _, v := range o.nodeIPs {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return usage("--node-ip: %q is not an IP address", v)
		}
		s.cfg.Node.IPs = append(s.cfg.Node.IPs, ip.Unmap())
	}
	if err := s.cfg.Validate(); err != nil {
		return usage("%v", err)
	}
	if o.apply || (!o.dryRun && sub == "") {
		// Writing to this node: like kube-proxy (NewProxier), leave
		// INVALID packets alone when conntrack is liberal. A dry run
		// assumes the kernel's default (strict).
		s.cfg.ConntrackTCPBeLiberal = sync.ConntrackTCPBeLiberal()
	}
	if o.ipFamily != "" {
		f, err := rules.ParseFamily(o.ipFamily)
		if err != nil {
			return usage("--ip-family: %v", err)
		}
		s.families = []rules.Family{f}
	}
	if o.loggingFormat != "text" && o.loggingFormat != "json" {
		return usage("--logging-format: %q is not text or json", o.loggingFormat)
	}
	if o.applyValid && !o.apply {
		return usage("--apply-valid goes with --apply")
	}
	switch {
	case sub != "":
		if o.dryRun || o.apply || o.cleanup {
			return usage("%s reads only; it takes no --dry-run, --apply or --cleanup", sub)
		}
		return runQuery(sub, q, o, s, stdin, stdout, stderr)
	case (o.dryRun || o.apply) && len(o.files) > 0:
		if o.kubeconfig != "" {
			return usage("give either -f manifests or --kubeconfig, not both")
		}
		return dryRunOrApply(o, s, stdin, stdout, stderr)
	case o.apply:
		return usage("--apply needs manifests: -f PATH")
	case o.dryRun:
		return dryRunOrApply(o, s, stdin, stdout, stderr)
	case len(o.files) > 0:
		return usage("-f is for --dry-run and --apply; the daemon watches the cluster")
	}
	return daemon(o, s, stderr)
}
