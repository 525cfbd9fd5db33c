package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestFlagErrors: every wrong flag — an unknown name, a malformed value, a
// kube-proxy mode or value rulegen cannot honour, two spellings of one
// setting that disagree — is one line on stderr that names the flag and
// points to --help, and exit status 2.
func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		flag string // named on the error line
	}{
		{"unknown flag", []string{"--hostname-overide=node-a"}, "--hostname-overide"},
		{"unknown shorthand", []string{"-x"}, "-x"},
		{"flag without its value", []string{"--proxy-mode"}, "--proxy-mode"},
		{"proxy mode ipvs", []string{"--proxy-mode=ipvs"}, "--proxy-mode=ipvs"},
		{"proxy mode kernelspace", []string{"--proxy-mode=kernelspace"}, "--proxy-mode=kernelspace"},
		{"proxy mode unknown", []string{"--proxy-mode=userspace"}, "--proxy-mode=userspace"},
		{"proxy mode against backend", []string{"--proxy-mode=iptables", "--backend=nftables"}, "--proxy-mode=iptables and --backend=nftables"},
		{"hostname-override against node-name", []string{"--hostname-override=a", "--node-name=b"}, "--hostname-override=a and --node-name=b"},
		{"hostname-override unexpanded", []string{"--hostname-override=$(NODE_NAME)"}, "--hostname-override=$(NODE_NAME)"},
		{"hostname-override only spaces", []string{"--hostname-override=  "}, "--hostname-override"},
		{"iptables-sync-period zero", []string{"--iptables-sync-period=0s"}, "--iptables-sync-period=0s"},
		{"iptables-sync-period malformed", []string{"--iptables-sync-period=soon"}, "--iptables-sync-period"},
		{"min sync periods disagree", []string{"--iptables-min-sync-period=1s", "--min-sync-period=2s"}, "--iptables-min-sync-period=1s and --min-sync-period=2s"},
		{"bind-address a node IP", []string{"--bind-address=10.0.0.1"}, "--bind-address=10.0.0.1"},
		{"bind-address malformed", []string{"--bind-address=node"}, "--bind-address"},
		{"bind-address-hard-fail false", []string{"--bind-address-hard-fail=false"}, "--bind-address-hard-fail=false"},
		{"init-only", []string{"--init-only"}, "--init-only=true"},
		{"feature gate set", []string{"--feature-gates=KubeProxyNFTablesLocalhostNodePorts=true"}, "--feature-gates"},
		{"feature gate malformed", []string{"--feature-gates=Foo"}, "--feature-gates"},
		{"detect-local-mode unknown", []string{"--detect-local-mode=PodCIDR"}, "--detect-local-mode"},
		{"detect-local-mode BridgeInterface without a bridge", []string{"--detect-local-mode=BridgeInterface"}, "--pod-bridge-interface"},
		{"pod-bridge-interface with a quote", []string{"--detect-local-mode=BridgeInterface", `--pod-bridge-interface=br0"`}, "--pod-bridge-interface"},
		{"pod-bridge-interface too long", []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=bridge-of-16chrs"}, "--pod-bridge-interface"},
		{"detect-local-mode InterfaceNamePrefix without a prefix", []string{"--detect-local-mode=InterfaceNamePrefix"}, "--pod-interface-name-prefix"},
		{"pod-interface-name-prefix with a wildcard", []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=veth*"}, "--pod-interface-name-prefix"},
		{"pod-interface-name-prefix with a space", []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=veth -j"}, "--pod-interface-name-prefix"},
		{"conntrack max per core negative", []string{"--conntrack-max-per-core=-1"}, "--conntrack-max-per-core"},
		{"conntrack min not a number", []string{"--conntrack-min=lots"}, "--conntrack-min"},
		{"conntrack established timeout negative", []string{"--conntrack-tcp-timeout-established=-1h"}, "--conntrack-tcp-timeout-established"},
		{"conntrack be liberal malformed", []string{"--conntrack-tcp-be-liberal=yes"}, "--conntrack-tcp-be-liberal"},
		{"conntrack udp timeout malformed", []string{"--conntrack-udp-timeout=30"}, "--conntrack-udp-timeout"},
		{"healthz-port off", []string{"--healthz-port=0"}, "--healthz-port=0"},
		{"logging format xml", []string{"--logging-format=xml"}, "--logging-format"},
		{"write-config-to", []string{"--write-config-to=/tmp/kube-proxy.yaml"}, "--write-config-to"},
		{"oom-score-adj malformed", []string{"--oom-score-adj=low"}, "--oom-score-adj"},
		{"kube-api-qps malformed", []string{"--kube-api-qps=fast"}, "--kube-api-qps"},
		{"kube-api-burst negative", []string{"--kube-api-burst=-1"}, "--kube-api-burst"},
		{"kube-api-content-type unknown", []string{"--kube-api-content-type=text/html"}, "--kube-api-content-type"},
		{"kube-api-accept-content-types unknown", []string{"--kube-api-accept-content-types=application/json,*/*"}, "--kube-api-accept-content-types"},
		{"ipvs-strict-arp malformed", []string{"--ipvs-strict-arp=yes"}, "--ipvs-strict-arp"},
		{"master not a URL", []string{"--master=apiserver:6443"}, "--master"},
		{"nodeport-addresses localhost", []string{"--nodeport-addresses=localhost"}, "--nodeport-addresses"},
		{"nodeport-addresses malformed", []string{"--nodeport-addresses=10.0.0.0"}, "--nodeport-addresses"},
		{"version malformed", []string{"--version=maybe"}, "--version"},
		{"backend ipvs", []string{"--backend=ipvs"}, "--backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--dry-run", "-f", "-"}, tc.args...)
			code, _, errs := runCLI(t, "", args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, errs)
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimRight(errs, "\n"), "\n") {
				if !strings.HasPrefix(l, "rulegen: warning:") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("want one error line, got %d:\n%s", len(lines), errs)
			}
			if !strings.Contains(lines[0], tc.flag) || !strings.HasSuffix(lines[0], "(see rulegen --help)") {
				t.Errorf("the error line does not name %q and end with the --help hint:\n%s", tc.flag, lines[0])
			}
		})
	}
}

// parseFlags parses args as run does up to the kube-proxy flags.
func parseFlags(t *testing.T, args ...string) (options, string) {
	t.Helper()
	var o options
	var stderr bytes.Buffer
	fs := newFlags(&o, &stderr)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	if err := applyKubeProxyFlags(fs, &stderr); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return o, stderr.String()
}

// TestKubeProxyFlagsReachTheSetting: each kube-proxy spelling sets exactly
// what rulegen's own flag sets, and a value rulegen honours as kube-proxy
// does is accepted (an ignored flag with a warning naming it).
func TestKubeProxyFlagsReachTheSetting(t *testing.T) {
	tests := []struct {
		name       string
		kubeProxy  []string
		rulegen    []string
		warningFor string
	}{
		{name: "hostname-override", kubeProxy: []string{"--hostname-override=node-a"}, rulegen: []string{"--node-name=node-a"}},
		{name: "hostname-override as kube-proxy cleans it", kubeProxy: []string{"--hostname-override= Node-A "}, rulegen: []string{"--node-name=node-a"}},
		{name: "hostname-override empty is unset", kubeProxy: []string{"--hostname-override="}, rulegen: nil},
		{name: "hostname-override and node-name agree", kubeProxy: []string{"--hostname-override=a", "--node-name=a"}, rulegen: []string{"--node-name=a"}},
		{name: "proxy-mode nftables", kubeProxy: []string{"--proxy-mode=nftables"}, rulegen: []string{"--backend=nftables"}},
		{name: "proxy-mode iptables", kubeProxy: []string{"--proxy-mode", "iptables"}, rulegen: []string{"--backend=iptables"}},
		{name: "proxy-mode empty is iptables", kubeProxy: []string{"--proxy-mode="}, rulegen: []string{"--backend=iptables"}},
		{name: "iptables-sync-period", kubeProxy: []string{"--iptables-sync-period=1m"}, rulegen: []string{"--sync-period=60s"}},
		{name: "iptables-min-sync-period", kubeProxy: []string{"--iptables-min-sync-period=1s"}, rulegen: []string{"--min-sync-period=1s"}},
		{name: "master", kubeProxy: []string{"--master=https://10.0.0.1:6443"}, rulegen: []string{"--master=https://10.0.0.1:6443"}},
		{name: "bind-address unspecified", kubeProxy: []string{"--bind-address=0.0.0.0"}},
		{name: "bind-address-hard-fail", kubeProxy: []string{"--bind-address-hard-fail"}},
		{name: "detect-local-mode ClusterCIDR", kubeProxy: []string{"--detect-local-mode=ClusterCIDR", "--cluster-cidr=10.244.0.0/16"}, rulegen: []string{"--cluster-cidr=10.244.0.0/16"}},
		{name: "feature gates empty", kubeProxy: []string{"--feature-gates="}},
		{name: "healthz-port", kubeProxy: []string{"--healthz-port=10256"}},
		{name: "logging-format text", kubeProxy: []string{"--logging-format=text"}},
		{name: "oom-score-adj warns", kubeProxy: []string{"--oom-score-adj=-999"}, warningFor: "--oom-score-adj"},
		{name: "ipvs flag warns", kubeProxy: []string{"--ipvs-scheduler=rr"}, warningFor: "--ipvs-scheduler"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, warnings := parseFlags(t, tc.kubeProxy...)
			want, _ := parseFlags(t, tc.rulegen...)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%q gives\n%+v\n%q gives\n%+v", tc.kubeProxy, got, tc.rulegen, want)
			}
			if tc.warningFor == "" && warnings != "" {
				t.Errorf("unexpected warning: %s", warnings)
			}
			if tc.warningFor != "" && !strings.HasPrefix(warnings, "rulegen: warning: "+tc.warningFor+" ignored: ") {
				t.Errorf("no warning naming %s: %q", tc.warningFor, warnings)
			}
		})
	}
}

// TestKubeadmCommandLine: kube-proxy's DaemonSet as kubeadm writes it runs
// `kube-proxy --config=... --hostname-override=$(NODE_NAME)`; with rulegen
// in its place the node name reaches the rules as --node-name's does.
func TestKubeadmCommandLine(t *testing.T) {
	common := []string{"--dry-run", "-f", "../../examples/", "--cluster-cidr", "10.244.0.0/16"}
	code, viaAlias, errs := runCLI(t, "", append(common, "--hostname-override=node-a")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, viaFlag, _ := runCLI(t, "", append(common, "--node-name=node-a")...)
	_, otherNode, _ := runCLI(t, "", append(common, "--node-name=node-b")...)
	if viaAlias != viaFlag {
		t.Errorf("--hostname-override=node-a and --node-name=node-a render differently")
	}
	if viaAlias == otherNode {
		t.Errorf("the node name does not reach the rules: node-a and node-b render the same")
	}
}

// TestMaster: --master is the API server a live dry run talks to.
func TestMaster(t *testing.T) {
	code, _, errs := runCLI(t, "", "--dry-run", "--master=http://127.0.0.1:1")
	if code != exitSkipped || !strings.Contains(errs, "127.0.0.1:1") {
		t.Errorf("exit %d, want %d with an error reaching 127.0.0.1:1; stderr:\n%s", code, exitSkipped, errs)
	}
}

// TestNodePortAddressesAll: kube-proxy's keyword all is every node IP of
// both families, which is rulegen's default.
func TestNodePortAddressesAll(t *testing.T) {
	common := []string{"--dry-run", "-f", "../../examples/", "--node-name", "node-a"}
	code, all, errs := runCLI(t, "", append(common, "--nodeport-addresses=all")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, none, _ := runCLI(t, "", common...); all != none {
		t.Errorf("--nodeport-addresses=all renders differently from the default")
	}
}

// TestNodePortAddressesPrimary: kube-proxy's keyword primary is the
// Node's first IP of each family: here the first of --node-ip.
func TestNodePortAddressesPrimary(t *testing.T) {
	common := []string{"--dry-run", "-f", "../../examples/", "--node-name", "node-a", "--node-ip", "192.168.1.10,192.168.2.10"}
	tests := []struct {
		name string
		args []string
		same bool // renders as --nodeport-addresses=192.168.1.10/32
	}{
		{name: "primary", args: []string{"--nodeport-addresses=primary"}, same: true},
		{name: "primary twice", args: []string{"--nodeport-addresses=primary,primary"}, same: true},
		{name: "the default: every node IP", args: nil},
	}
	code, want, errs := runCLI(t, "", append(common, "--nodeport-addresses=192.168.1.10/32")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, got, errs := runCLI(t, "", append(common, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if (got == want) != tc.same {
				t.Errorf("renders as the primary IP's /32: %v, want %v\n%s", got == want, tc.same, got)
			}
		})
	}
}

// TestKubeProxyFlagsComplete: the table holds every flag kube-proxy
// v1.37.2 defines, once, and each of its rows matches a flag rulegen
// parses (kube-proxy's own names hidden from rulegen's flag list).
func TestKubeProxyFlagsComplete(t *testing.T) {
	var o options
	fs := newFlags(&o, &bytes.Buffer{})
	seen := map[string]bool{}
	for _, k := range kubeProxyFlags {
		if seen[k.name] {
			t.Errorf("--%s is in the table twice", k.name)
		}
		seen[k.name] = true
		f := fs.Lookup(k.name)
		switch {
		case k.name == "help":
		case f == nil:
			t.Errorf("--%s (%s) is not a rulegen flag", k.name, k.kind)
		case (k.kind == kpSame) == f.Hidden:
			t.Errorf("--%s (%s): hidden %v", k.name, k.kind, f.Hidden)
		}
		if k.kind == kpAlias && fs.Lookup(k.target) == nil {
			t.Errorf("--%s: its target --%s is not a rulegen flag", k.name, k.target)
		}
	}

	gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	mod := strings.TrimSpace(string(gomodcache))
	sources := []string{
		filepath.Join(mod, "k8s.io/kubernetes@v1.37.2/cmd/kube-proxy/app/options.go"),
		filepath.Join(mod, "k8s.io/component-base@v0.37.2/logs/api/v1/options.go"),
	}
	defined := regexp.MustCompile(`fs\.\w*Var\w*\((?:[^,()]|\([^()]*\))+, "([a-z-]+)"`)
	want := []string{"help", "version", "log-flush-frequency"} // cobra, verflag; the flush flag is named by a constant
	for _, src := range sources {
		b, err := os.ReadFile(src)
		if err != nil {
			// make test builds the kube binaries first, which brings this
			// source into the module cache: under CI its absence is a failure.
			netnstest.Unavailable(t, "kube-proxy's source is not in the module cache (%v); `make kube-bins` fetches it", err)
		}
		for _, m := range defined.FindAllStringSubmatch(string(b), -1) {
			want = append(want, m[1])
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	for _, name := range want {
		if !seen[name] {
			t.Errorf("kube-proxy's --%s is not in kubeProxyFlags", name)
		}
	}
	for name := range seen {
		if !slices.Contains(want, name) {
			t.Errorf("--%s is in kubeProxyFlags but kube-proxy has no such flag", name)
		}
	}
}

// TestKubeProxyFlagsREADME: the README's table of kube-proxy's flags is
// the one kubeProxyFlags gives (-update rewrites it).
func TestKubeProxyFlagsREADME(t *testing.T) {
	const path = "../../README.md"
	const begin, end = "<!-- kube-proxy-flags: generated from cmd/rulegen/kubeproxyflags.go -->\n", "<!-- end kube-proxy-flags -->\n"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q and %q", begin, end)
	}
	got, want := readme[i+len(begin):j], kubeProxyFlagsMarkdown()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i+len(begin)]+want+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's kube-proxy flags differ from kubeProxyFlags; run go test ./cmd/rulegen -run TestKubeProxyFlagsREADME -update\n--- README\n%s\n--- table\n%s", got, want)
}

// TestVersion: --version prints "rulegen VERSION (commit SHA)" and exits 0;
// the parts come from -ldflags and Go's build stamp.
func TestVersion(t *testing.T) {
	code, out, errs := runCLI(t, "", "--version", "--proxy-mode=ipvs")
	if code != exitOK || !regexp.MustCompile(`^rulegen \S+ \(commit \S+\)\n$`).MatchString(out) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	stamp := func(main string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: main}}
		for i := 0; i < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	tests := []struct {
		name    string
		version string
		commit  string
		bi      *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"no build info", "", "", nil, false, "rulegen devel (commit unknown)"},
		{"ldflags and a clean commit", "v1.2.3", "", stamp("(devel)", "vcs.revision", "abc123", "vcs.modified", "false"), true, "rulegen v1.2.3 (commit abc123)"},
		{"a dirty tree", "v1.2.3", "", stamp("(devel)", "vcs.revision", "abc123", "vcs.modified", "true"), true, "rulegen v1.2.3 (commit abc123-dirty)"},
		{"go install of a tag", "", "", stamp("v0.4.0"), true, "rulegen v0.4.0 (commit unknown)"},
		{"ldflags win over the module version", "v9", "", stamp("v0.4.0"), true, "rulegen v9 (commit unknown)"},
		{"commit from ldflags without a stamp", "v1", "def456-dirty", stamp("(devel)"), true, "rulegen v1 (commit def456-dirty)"},
		{"Go's stamp wins over ldflags", "v1", "def456", stamp("(devel)", "vcs.revision", "abc123"), true, "rulegen v1 (commit abc123)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatVersion(tc.version, tc.commit, tc.bi, tc.ok); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestConntrackFlags: kube-proxy's --conntrack-* flags, with its defaults,
// reach the settings the daemon writes; 0 is the off switch.
func TestConntrackFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want sync.ConntrackSysctls
	}{
		{name: "kube-proxy's defaults", want: sync.DefaultConntrackSysctls},
		{name: "off switch", args: []string{"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0"},
			want: sync.ConntrackSysctls{Min: 128 * 1024}},
		{name: "every flag", args: []string{"--conntrack-max-per-core=65536", "--conntrack-min=0", "--conntrack-tcp-timeout-established=2h",
			"--conntrack-tcp-timeout-close-wait=30m", "--conntrack-tcp-be-liberal", "--conntrack-udp-timeout=30s", "--conntrack-udp-timeout-stream=2m"},
			want: sync.ConntrackSysctls{MaxPerCore: 65536, TCPEstablishedTimeout: 2 * time.Hour, TCPCloseWaitTimeout: 30 * time.Minute,
				TCPBeLiberal: true, UDPTimeout: 30 * time.Second, UDPStreamTimeout: 2 * time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, warnings := parseFlags(t, tc.args...)
			if o.conntrack != tc.want {
				t.Errorf("%q gives %+v, want %+v", tc.args, o.conntrack, tc.want)
			}
			if warnings != "" {
				t.Errorf("unexpected warning: %s", warnings)
			}
		})
	}
}

// TestDaemonSetsConntrackSysctls runs the daemon in a throwaway namespace
// (with --conntrack-max-per-core=0, so that nothing host-wide is even
// tried) against an API server that is not there: before it gives up, it
// has set the per-namespace sysctls its flags ask for, and left alone
// those set to 0.
func TestDaemonSetsConntrackSysctls(t *testing.T) {
	netnstest.Require(t, "sysctl", "nft")
	ns := netnstest.New(t, "daemonct")
	closeWait, err := ns.Run(nil, "sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_close_wait")
	if err != nil {
		netnstest.Unavailable(t, "nf_conntrack not loaded in this kernel: %v", err)
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "--master=http://127.0.0.1:1", "--node-name=node-a",
		"--healthz-bind-address=", "--metrics-bind-address=", "--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=1234s", "--conntrack-tcp-timeout-close-wait=0", "--conntrack-tcp-be-liberal")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitSkipped {
		t.Fatalf("daemon without an API server: %v, want exit %d\n%s", err, exitSkipped, out)
	}
	for key, want := range map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_established": "1234",
		"net.netfilter.nf_conntrack_tcp_be_liberal":          "1",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait":  strings.TrimSpace(closeWait),
	} {
		if got := strings.TrimSpace(ns.MustRun(nil, "sysctl", "-n", key)); got != want {
			t.Errorf("%s = %s, want %s; daemon output:\n%s", key, got, want, out)
		}
	}
}

// TestDetectLocalMode: with --detect-local-mode NodeCIDR pod traffic is
// told by the Node's spec.podCIDRs, with BridgeInterface and
// InterfaceNamePrefix by the interface it arrives on, never by
// --cluster-cidr.
func TestDetectLocalMode(t *testing.T) {
	const node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  podCIDRs: [10.244.1.0/24]\n" +
		"status:\n  addresses:\n  - type: InternalIP\n    address: 192.168.1.10\n---\n"
	tests := []struct {
		name    string
		args    []string
		want    string
		notWant string
	}{
		{name: "ClusterCIDR (default)", args: nil, want: "ip saddr != 10.244.0.0/16", notWant: "10.244.1.0/24"},
		{name: "ClusterCIDR", args: []string{"--detect-local-mode=ClusterCIDR"}, want: "ip saddr != 10.244.0.0/16", notWant: "10.244.1.0/24"},
		{name: "NodeCIDR", args: []string{"--detect-local-mode=NodeCIDR"}, want: "ip saddr != 10.244.1.0/24", notWant: "10.244.0.0/16"},
		{name: "BridgeInterface", args: []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=cni0"}, want: `iifname != "cni0"`, notWant: "10.244.0.0/16"},
		{name: "InterfaceNamePrefix", args: []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=veth"}, want: `iifname != "veth*"`, notWant: "10.244.0.0/16"},
		{name: "the bridge without its mode is ignored, as kube-proxy", args: []string{"--pod-bridge-interface=cni0"}, want: "ip saddr != 10.244.0.0/16", notWant: "iifname"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--dry-run", "-f", "-", "--node-name", "n1", "--cluster-cidr", "10.244.0.0/16"}, tc.args...)
			code, out, errs := runCLI(t, node+svcYAML("web", "10.96.0.9", "TCP"), args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if !strings.Contains(out, tc.want) || strings.Contains(out, tc.notWant) {
				t.Errorf("stdout: want %q and no %q:\n%s", tc.want, tc.notWant, out)
			}
		})
	}
}
