package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	flag "github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rulegen/rulegen/pkg/sync"
)

// kubeProxyFlags is every flag of kube-proxy v1.37.2 on Linux (AddFlags in
// cmd/kube-proxy/app/options.go, the logging flags of component-base, and
// --version and --help), and what rulegen does with it. It is the one
// place that decides; the README's list is generated from it
// (TestKubeProxyFlagsREADME) and TestKubeProxyFlagsComplete checks it
// against kube-proxy's source.
//
// kube-proxy ignores most of its flags when --config is given; rulegen
// does not: a flag on the command line wins over the file.
var kubeProxyFlags = []kubeProxyFlag{
	{name: "config", kind: kpSame, reason: "the configuration file"},
	{name: "cleanup", kind: kpSame, reason: "remove the proxy's own rules and exit (rulegen's, not kube-proxy's: that is `--cleanup-kube-proxy`)"},
	{name: "kubeconfig", kind: kpSame, reason: "the cluster's kubeconfig"},
	{name: "master", kind: kpSame, reason: "the API server's URL, overriding the kubeconfig's"},
	{name: "kube-api-qps", kind: kpSame, reason: "the API client's requests per second (default 5, as kube-proxy)"},
	{name: "kube-api-burst", kind: kpSame, reason: "the API client's burst (default 10, as kube-proxy)"},
	{name: "kube-api-content-type", kind: kpSame, reason: "the API client's media type (default protobuf, `application/vnd.kubernetes.protobuf`, as kube-proxy; or `application/json`)"},
	{name: "cluster-cidr", kind: kpSame, reason: "the pod ranges, comma-separated"},
	{name: "healthz-bind-address", kind: kpSame, reason: "address of `/healthz` and `/livez` (default 0.0.0.0:10256, as kube-proxy)"},
	{name: "metrics-bind-address", kind: kpSame, reason: "address of `/metrics` (default 127.0.0.1:10249, as kube-proxy)"},
	{name: "nodeport-addresses", kind: kpSame, reason: "CIDRs and the keywords `all` and `primary` (the Node's first IP of each family); `localhost` is an error. Unset means every node IP in both modes (kube-proxy: `primary` in nftables mode); a `--config` file in nftables mode defaults to `primary` as kube-proxy"},
	{name: "detect-local-mode", kind: kpSame, reason: "ClusterCIDR (from `--cluster-cidr`), NodeCIDR (the Node's `spec.podCIDRs`), BridgeInterface and InterfaceNamePrefix"},
	{name: "pod-bridge-interface", kind: kpSame, reason: "with `--detect-local-mode=BridgeInterface`: traffic arriving on this bridge is pod traffic. Unlike kube-proxy, the name must be one Linux accepts, of ASCII letters, digits, `-`, `_` and `.` (at most 15)"},
	{name: "pod-interface-name-prefix", kind: kpSame, reason: "with `--detect-local-mode=InterfaceNamePrefix`: traffic arriving on an interface whose name begins with this is pod traffic. Unlike kube-proxy, of ASCII letters, digits, `-`, `_` and `.` (at most 14, so that iptables' `PREFIX+` fits)"},
	{name: "masquerade-all", kind: kpSame, reason: "masquerade all traffic to ClusterIPs"},
	{name: "iptables-masquerade-bit", kind: kpSame, reason: "the masquerade fwmark bit, in both backends"},
	{name: "iptables-localhost-nodeports", kind: kpSame, reason: "nodePorts on 127.0.0.0/8 with the iptables backend"},
	{name: "profiling", kind: kpSame, reason: "`/debug/pprof/` on the metrics address"},
	{name: "v", kind: kpSame, reason: "log verbosity, with kube-proxy's levels (the ruleset only from 9)"},
	{name: "help", kind: kpSame, reason: "print the flags and exit"},
	{name: "version", kind: kpSame, reason: "print the version and the git commit and exit"},
	{name: "conntrack-max-per-core", kind: kpSame, reason: "daemon: nf_conntrack_max is raised to this × the node's CPUs (at least --conntrack-min, at most 1Mi), as kube-proxy; 0 leaves it as-is"},
	{name: "conntrack-min", kind: kpSame, reason: "daemon: the least nf_conntrack_max to ensure (ignored with --conntrack-max-per-core=0)"},
	{name: "conntrack-tcp-timeout-established", kind: kpSame, reason: "daemon: sets nf_conntrack_tcp_timeout_established (default 24h); 0 leaves it as-is"},
	{name: "conntrack-tcp-timeout-close-wait", kind: kpSame, reason: "daemon: sets nf_conntrack_tcp_timeout_close_wait (default 1h); 0 leaves it as-is"},
	{name: "conntrack-tcp-be-liberal", kind: kpSame, reason: "daemon: sets nf_conntrack_tcp_be_liberal to 1, and the iptables backend then drops no INVALID packets, as kube-proxy; false leaves it as-is"},
	{name: "conntrack-udp-timeout", kind: kpSame, reason: "daemon: sets nf_conntrack_udp_timeout; 0 (the default) leaves it as-is"},
	{name: "conntrack-udp-timeout-stream", kind: kpSame, reason: "daemon: sets nf_conntrack_udp_timeout_stream; 0 (the default) leaves it as-is"},

	{name: "hostname-override", kind: kpAlias, typ: "string", target: "node-name", convert: hostnameOverride,
		reason: "this node's name, trimmed and lower-cased as kube-proxy does; it must be a valid node name"},
	{name: "proxy-mode", kind: kpAlias, typ: "string", target: "backend", convert: proxyMode,
		reason: "`iptables` (also when empty, kube-proxy's default on Linux) or `nftables`; `ipvs` and `kernelspace` are an error"},
	{name: "iptables-sync-period", kind: kpAlias, typ: "duration", target: "sync-period", convert: positiveDuration,
		reason: "kube-proxy's periodic resync, in both backends"},
	{name: "iptables-min-sync-period", kind: kpAlias, typ: "duration", target: "min-sync-period", convert: asIs,
		reason: "kube-proxy's least time between syncs, in both backends"},

	{name: "ipvs-sync-period", kind: kpIgnored, typ: "duration", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-min-sync-period", kind: kpIgnored, typ: "duration", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-scheduler", kind: kpIgnored, typ: "string", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-exclude-cidrs", kind: kpIgnored, typ: "strings", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-strict-arp", kind: kpIgnored, typ: "bool", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-tcp-timeout", kind: kpIgnored, typ: "duration", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-tcpfin-timeout", kind: kpIgnored, typ: "duration", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "ipvs-udp-timeout", kind: kpIgnored, typ: "duration", reason: "kube-proxy reads it only in ipvs mode, which rulegen does not have"},
	{name: "oom-score-adj", kind: kpIgnored, typ: "int32", reason: "rulegen does not change its OOM score; set the pod's priority instead"},
	{name: "config-sync-period", kind: kpIgnored, typ: "duration", reason: "the informers' resync period, which changes no rule"},
	{name: "show-hidden-metrics-for-version", kind: kpIgnored, typ: "string", reason: "rulegen has no hidden metrics"},
	{name: "log-flush-frequency", kind: kpIgnored, typ: "duration", reason: "rulegen's logs are not buffered"},
	{name: "log-text-info-buffer-size", kind: kpIgnored, typ: "string", reason: "rulegen's logs are not buffered"},
	{name: "log-json-info-buffer-size", kind: kpIgnored, typ: "string", reason: "rulegen's logs are not buffered"},
	{name: "vmodule", kind: kpIgnored, typ: "string", reason: "per-file verbosity; rulegen has only -v"},

	{name: "bind-address", kind: kpUnsupported, typ: "ip", check: unspecifiedIP,
		reason: "only 0.0.0.0 or :: (kube-proxy's default); rulegen takes the node's IPs from its Node object, or all of them from --node-ip"},
	{name: "bind-address-hard-fail", kind: kpUnsupported, typ: "bool", check: only("true"),
		reason: "only true: rulegen always exits when it cannot bind its health or metrics address"},
	{name: "init-only", kind: kpUnsupported, typ: "bool", check: only("false"),
		reason: "only false: rulegen has no separate privileged initialisation"},
	{name: "write-config-to", kind: kpUnsupported, typ: "string", check: only(""),
		reason: "rulegen does not write a default configuration"},
	{name: "feature-gates", kind: kpUnsupported, typ: "map", check: only(""),
		reason: "only empty: rulegen has no feature gates; it behaves as kube-proxy v1.37.2 with the default gates"},
	{name: "healthz-port", kind: kpUnsupported, typ: "int32", check: nonZeroPort,
		reason: "deprecated in kube-proxy; a port other than 0 changes nothing there, as the bind address carries a port; 0 (off) is --healthz-bind-address=\"\""},
	{name: "metrics-port", kind: kpUnsupported, typ: "int32", check: nonZeroPort,
		reason: "deprecated in kube-proxy; a port other than 0 changes nothing there, as the bind address carries a port; 0 (off) is --metrics-bind-address=\"\""},
	{name: "logging-format", kind: kpSame, reason: "text (key=value) or json; client-go's lines in the same format"},
	{name: "log-text-split-stream", kind: kpUnsupported, typ: "bool", check: only("false"),
		reason: "only false: rulegen writes every log line to stderr"},
	{name: "log-json-split-stream", kind: kpUnsupported, typ: "bool", check: only("false"),
		reason: "only false: rulegen writes every log line to stderr"},
}

// kpKind says what rulegen does with one of kube-proxy's flags.
type kpKind int

const (
	kpSame        kpKind = iota // a rulegen flag with kube-proxy's name and meaning
	kpAlias                     // kube-proxy's name for a rulegen flag: sets that flag
	kpIgnored                   // accepted; changes nothing in rulegen; a warning says so
	kpUnsupported               // accepted only with values that behave as rulegen does, else an error
)

func (k kpKind) String() string {
	return [...]string{"same", "alias", "ignored with a warning", "unsupported"}[k]
}

// kubeProxyFlag is one row of kubeProxyFlags.
type kubeProxyFlag struct {
	name   string
	kind   kpKind
	typ    string // how the value is parsed: string, strings, bool, duration, int32, float32, ip, map
	target string // kpAlias: the rulegen flag it sets
	reason string
	// convert (kpAlias) turns the canonical value into the target's value.
	convert func(string) (string, error)
	// check (kpUnsupported) fails unless the value behaves as rulegen does.
	check func(v string, fs *flag.FlagSet) error
}

// kpValue holds a kube-proxy flag that has no rulegen variable: its value
// is parsed as kube-proxy parses it, so that a malformed value is a parse
// error naming the flag, and kept in canonical form (durations as
// time.Duration prints them, booleans as true or false).
type kpValue struct {
	typ string
	val string
}

func (v *kpValue) String() string { return v.val }
func (v *kpValue) Type() string   { return v.typ }

func (v *kpValue) Set(s string) error {
	switch v.typ {
	case "bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("must be true or false")
		}
		s = strconv.FormatBool(b)
	case "duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New(`must be a duration like "30s" or "5m"`)
		}
		s = d.String()
	case "int32":
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return errors.New("must be a 32-bit integer")
		}
		s = strconv.FormatInt(n, 10)
	case "float32":
		if _, err := strconv.ParseFloat(s, 32); err != nil {
			return errors.New("must be a number")
		}
	case "ip":
		a, err := netip.ParseAddr(s)
		if err != nil {
			return errors.New("must be an IP address")
		}
		s = a.String()
	case "map":
		for _, kv := range strings.Split(s, ",") {
			if kv == "" {
				continue
			}
			k, b, ok := strings.Cut(kv, "=")
			if _, err := strconv.ParseBool(b); !ok || k == "" || err != nil {
				return fmt.Errorf("%q is not key=true or key=false", kv)
			}
		}
	}
	v.val = s
	return nil
}

// addKubeProxyFlags registers kube-proxy's flags that rulegen has no flag
// of its own for. They are hidden from PrintDefaults; the usage lists them
// in a section of their own.
func addKubeProxyFlags(fs *flag.FlagSet) {
	for _, k := range kubeProxyFlags {
		if k.kind == kpSame {
			continue
		}
		v := &kpValue{typ: k.typ}
		switch k.typ {
		case "bool":
			v.val = "false"
		case "duration":
			v.val = "0s"
		case "int32":
			v.val = "0"
		}
		f := fs.VarPF(v, k.name, "", "kube-proxy's --"+k.name+": "+k.reason)
		if k.typ == "bool" {
			f.NoOptDefVal = "true"
		}
		f.Hidden = true
	}
}

// applyKubeProxyFlags acts on the kube-proxy flags given on the command
// line: an alias sets its rulegen flag (it is an error when both are given
// with different values), an ignored flag prints a warning, and an
// unsupported one with a value rulegen cannot honour is an error. Every
// error names its flag; all are returned at once.
func applyKubeProxyFlags(fs *flag.FlagSet, stderr io.Writer) error {
	var errs []error
	for _, k := range kubeProxyFlags {
		if k.kind == kpSame || !fs.Changed(k.name) {
			continue
		}
		v := fs.Lookup(k.name).Value.String()
		switch k.kind {
		case kpAlias:
			tv, err := k.convert(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("--%s=%s: %w", k.name, v, err))
				continue
			}
			if tv == "" {
				continue // kube-proxy: an empty value is no value
			}
			if fs.Changed(k.target) {
				if cur := fs.Lookup(k.target).Value.String(); cur != tv {
					errs = append(errs, fmt.Errorf("--%s=%s and --%s=%s are the same setting with different values: give one", k.name, v, k.target, cur))
				}
				continue
			}
			if err := fs.Set(k.target, tv); err != nil {
				errs = append(errs, fmt.Errorf("--%s=%s: %w", k.name, v, err))
			}
		case kpIgnored:
			fmt.Fprintf(stderr, "rulegen: warning: --%s ignored: %s\n", k.name, k.reason)
		case kpUnsupported:
			if err := k.check(v, fs); err != nil {
				errs = append(errs, fmt.Errorf("--%s=%s: not supported: %s", k.name, v, k.reason))
			}
		}
	}
	return errors.Join(errs...)
}

// kubeProxyUsage is the usage section of kube-proxy's flags, by kind.
func kubeProxyUsage() string {
	var b strings.Builder
	b.WriteString("\nkube-proxy's flags (rulegen is a drop-in; the README lists each with its reason):\n")
	for _, kind := range []kpKind{kpAlias, kpIgnored, kpUnsupported} {
		var names []string
		for _, k := range kubeProxyFlags {
			if k.kind != kind {
				continue
			}
			n := "--" + k.name
			if kind == kpAlias {
				n += " (= --" + k.target + ")"
			}
			names = append(names, n)
		}
		fmt.Fprintf(&b, "  %s: %s\n", kind, strings.Join(names, ", "))
	}
	return b.String()
}

// kubeProxyFlagsMarkdown is the README's table of kube-proxy's flags.
func kubeProxyFlagsMarkdown() string {
	var b strings.Builder
	b.WriteString("| kube-proxy flag | in rulegen | |\n| --- | --- | --- |\n")
	for _, k := range kubeProxyFlags {
		kind := k.kind.String()
		if k.kind == kpAlias {
			kind = "alias of `--" + k.target + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s |\n", k.name, kind, k.reason)
	}
	return b.String()
}

func asIs(v string) (string, error) { return v, nil }

// hostnameOverride is kube-proxy's processing (trimmed, lower-cased), plus
// a check that the result can be a Node's name: an unexpanded
// $(NODE_NAME) must not silently make every endpoint remote.
func hostnameOverride(v string) (string, error) {
	if v == "" {
		return "", nil // kube-proxy: unset, the host name
	}
	n := strings.ToLower(strings.TrimSpace(v))
	if n == "" {
		return "", errors.New("empty after trimming spaces")
	}
	if len(validation.IsDNS1123Subdomain(n)) > 0 {
		return "", fmt.Errorf("%q is not a valid node name (a DNS subdomain: lower-case letters, digits, '-' and '.')", n)
	}
	return n, nil
}

// proxyMode maps kube-proxy's modes to rulegen's backends.
func proxyMode(v string) (string, error) {
	switch v {
	case "", "iptables":
		return "iptables", nil // kube-proxy's default on Linux
	case "nftables":
		return "nftables", nil
	case "ipvs":
		return "", errors.New("not supported: rulegen has no IPVS mode; use nftables or iptables")
	case "kernelspace":
		return "", errors.New("not supported: kernelspace is kube-proxy's Windows mode; use nftables or iptables")
	}
	return "", fmt.Errorf("unknown proxy mode %q (want iptables or nftables)", v)
}

func positiveDuration(v string) (string, error) {
	if d, _ := time.ParseDuration(v); d <= 0 {
		return "", errors.New("must be greater than 0")
	}
	return v, nil
}

// only accepts the given canonical values.
func only(ok ...string) func(string, *flag.FlagSet) error {
	return func(v string, _ *flag.FlagSet) error {
		for _, o := range ok {
			if v == o {
				return nil
			}
		}
		return errors.New("not supported")
	}
}

func unspecifiedIP(v string, _ *flag.FlagSet) error {
	if a, err := netip.ParseAddr(v); err == nil && a.IsUnspecified() {
		return nil
	}
	return errors.New("not supported")
}

func nonZeroPort(v string, _ *flag.FlagSet) error {
	if v == "0" {
		return errors.New("not supported")
	}
	return nil
}

// addConntrackFlags registers kube-proxy's --conntrack-* flags, with its
// defaults: the daemon sets the conntrack sysctls at start as kube-proxy
// does (sync.SetConntrackSysctls), and 0 (false) leaves one as it is.
// Negative values are parse errors, as kube-proxy's validation rejects
// them.
func addConntrackFlags(fs *flag.FlagSet, c *sync.ConntrackSysctls) {
	*c = sync.DefaultConntrackSysctls
	fs.Var((*nonNegativeInt32)(&c.MaxPerCore), "conntrack-max-per-core",
		"daemon: maximum number of NAT connections to track per CPU core; nf_conntrack_max is raised to it times the node's CPUs, at most 1Mi (0 to leave the limit as-is and ignore --conntrack-min)")
	fs.Var((*nonNegativeInt32)(&c.Min), "conntrack-min",
		"daemon: minimum number of conntrack entries to allocate, regardless of --conntrack-max-per-core (set --conntrack-max-per-core=0 to leave the limit as-is)")
	fs.Var((*nonNegativeDuration)(&c.TCPEstablishedTimeout), "conntrack-tcp-timeout-established",
		"daemon: idle timeout for established TCP connections, nf_conntrack_tcp_timeout_established (0 to leave as-is)")
	fs.Var((*nonNegativeDuration)(&c.TCPCloseWaitTimeout), "conntrack-tcp-timeout-close-wait",
		"daemon: NAT timeout for TCP connections in the CLOSE_WAIT state, nf_conntrack_tcp_timeout_close_wait (0 to leave as-is)")
	fs.BoolVar(&c.TCPBeLiberal, "conntrack-tcp-be-liberal", c.TCPBeLiberal,
		"daemon: enable liberal mode for tracking TCP packets by setting nf_conntrack_tcp_be_liberal to 1 (INVALID packets are then not dropped)")
	fs.Var((*nonNegativeDuration)(&c.UDPTimeout), "conntrack-udp-timeout",
		"daemon: idle timeout for UNREPLIED UDP connections, nf_conntrack_udp_timeout (0 to leave as-is)")
	fs.Var((*nonNegativeDuration)(&c.UDPStreamTimeout), "conntrack-udp-timeout-stream",
		"daemon: idle timeout for ASSURED UDP connections, nf_conntrack_udp_timeout_stream (0 to leave as-is)")
}

// nonNegativeInt32 is a flag value of type int32 that must be 0 or more.
type nonNegativeInt32 int32

func (v *nonNegativeInt32) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *nonNegativeInt32) Type() string   { return "int32" }

func (v *nonNegativeInt32) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	switch {
	case err != nil:
		return errors.New("must be a 32-bit integer")
	case n < 0:
		return errors.New("must be 0 or more")
	}
	*v = nonNegativeInt32(n)
	return nil
}

// nonNegativeDuration is a flag value of type duration that must be 0 or
// more.
type nonNegativeDuration time.Duration

func (v *nonNegativeDuration) String() string { return time.Duration(*v).String() }
func (v *nonNegativeDuration) Type() string   { return "duration" }

func (v *nonNegativeDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New(`must be a duration like "30s" or "5m"`)
	case d < 0:
		return errors.New("must be 0 or more")
	}
	*v = nonNegativeDuration(d)
	return nil
}
