package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	componentbaseconfigv1alpha1 "k8s.io/component-base/config/v1alpha1"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/rulegen/rulegen/pkg/sync"
)

// loadTestConfig writes text to a file, parses args, and loads the file as
// --config does.
func loadTestConfig(t *testing.T, text string, args ...string) (options, []string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return loadTestConfigFile(t, path, args...)
}

func loadTestConfigFile(t *testing.T, path string, args ...string) (options, []string, error) {
	t.Helper()
	var o options
	fs := newFlags(&o, io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	warnings, err := loadConfig(fs, path)
	return o, warnings, err
}

// warnedFields returns the field each warning names (the text between the
// path and the next ": ").
func warnedFields(path string, warnings []string) []string {
	var fields []string
	for _, w := range warnings {
		rest := strings.TrimPrefix(w, path+": ")
		field, _, _ := strings.Cut(rest, ": ")
		fields = append(fields, field)
	}
	return fields
}

// TestKubeadmConfig loads kube-proxy's ConfigMap as kubeadm v1.37 writes it:
// every setting is kube-proxy's default for it, and the fields rulegen does
// not honour are named in warnings, none in errors.
func TestKubeadmConfig(t *testing.T) {
	const path = "testdata/kubeadm/config.conf"
	o, warnings, err := loadTestConfigFile(t, path)
	if err != nil {
		t.Fatalf("kubeadm's config.conf: %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"mode -> --backend", o.backend, "iptables"},
		{"clusterCIDR", o.clusterCIDRs, []string{"10.244.0.0/16"}},
		{"clientConnection.kubeconfig", o.kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf"},
		{"healthzBindAddress (defaulted)", o.healthzAddr, "0.0.0.0:10256"},
		{"metricsBindAddress (defaulted)", o.metricsAddr, "127.0.0.1:10249"},
		{"iptables.syncPeriod (defaulted)", o.syncPeriod, 30 * time.Second},
		{"iptables.minSyncPeriod (defaulted)", o.minSyncPeriod, time.Second},
		{"iptables.masqueradeBit (defaulted)", o.masqueradeBit, int32(14)},
		{"iptables.localhostNodePorts (defaulted)", o.localhostNodePorts, true},
		{"iptables.masqueradeAll", o.masqueradeAll, false},
		{"enableProfiling", o.profiling, false},
		{"nodePortAddresses", len(o.nodePortAddresses), 0},
		{"logging.verbosity", o.verbosity, 0},
		{"conntrack (null: kube-proxy's defaults)", o.conntrack, sync.DefaultConntrackSysctls},
		{"clientConnection (zeros: kube-proxy's defaults)", o.client, clientConnection{qps: 5, burst: 10, contentType: "application/vnd.kubernetes.protobuf"}},
	} {
		if !equalAny(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	want := []string{"bindAddressHardFail", "oomScoreAdj"}
	if got := warnedFields(path, warnings); !slices.Equal(got, want) {
		t.Errorf("warnings name %q, want %q:\n%s", got, want, strings.Join(warnings, "\n"))
	}

	// kubeconfig.conf, the ConfigMap's other key, points at the control
	// plane, not at a ClusterIP.
	kc, err := clientcmd.LoadFromFile("testdata/kubeadm/kubeconfig.conf")
	if err != nil {
		t.Fatalf("kubeconfig.conf: %v", err)
	}
	if got := kc.Clusters["default"].Server; got != "https://10.0.0.10:6443" {
		t.Errorf("kubeconfig.conf: server %q", got)
	}
}

// TestKubeadmConfigIsVerbatim rebuilds config.conf as kubeadm v1.37 does:
// its componentconfigs kubeProxyConfig.Default fills bindAddress (0.0.0.0
// for an IPv4 advertise address), clusterCIDR (the pod subnet),
// clientConnection.kubeconfig and mode (iptables when unset), then marshals
// the published type to YAML (JSON, then YAML: every field, zero or not,
// keys sorted), and the ConfigMap's "|-" drops the final newline.
func TestKubeadmConfigIsVerbatim(t *testing.T) {
	c := kpv1alpha1.KubeProxyConfiguration{
		TypeMeta:         metav1.TypeMeta{APIVersion: kubeProxyAPIVersion, Kind: kubeProxyKind},
		FeatureGates:     map[string]bool{},
		BindAddress:      "0.0.0.0",
		ClusterCIDR:      "10.244.0.0/16",
		ClientConnection: componentbaseconfigv1alpha1.ClientConnectionConfiguration{Kubeconfig: "/var/lib/kube-proxy/kubeconfig.conf"},
		Mode:             "iptables",
	}
	b, err := yaml.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("testdata/kubeadm/config.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(file), strings.TrimSuffix(string(b), "\n"); got != want {
		t.Errorf("testdata/kubeadm/config.conf is not what kubeadm writes; want:\n%s", want)
	}
}

func equalAny(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

const kpHeader = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

// TestConfigReports: every wrong or unsupported input is reported with the
// field it is in: an error when rulegen would treat traffic differently
// from kube-proxy, a warning when it would not.
func TestConfigReports(t *testing.T) {
	tests := []struct {
		name string
		text string // after kpHeader unless it starts with apiVersion, kind or #
		err  string // substring of the error; "" = no error
		warn string // substring of some warning
		// noWarn is a substring no warning may hold
		noWarn string
	}{
		{name: "comments and empty documents", text: "# kube-proxy\n---\n" + kpHeader + "mode: nftables\n---\n# the end\n"},
		{name: "settings of the mode's own section", text: "iptables:\n  syncPeriod: 10s\n  masqueradeAll: true\n", noWarn: "ignored with mode"},
		{name: "the other section's defaults", text: "mode: nftables\niptables:\n  masqueradeBit: 14\n  syncPeriod: 30s\n  localhostNodePorts: true\n", noWarn: "ignored with mode"},
		{name: "the other section's localhostNodePorts", text: "mode: nftables\niptables:\n  localhostNodePorts: false\n", warn: "iptables: ignored with mode nftables"},
		{name: "mode ipvs", text: "mode: ipvs\n", err: `mode: "ipvs" is not supported`},
		{name: "mode kernelspace", text: "mode: kernelspace\n", err: `mode: "kernelspace" is not supported`},
		{name: "unknown mode", text: "mode: userspace\n", err: `mode: unknown mode "userspace"`},
		{name: "detectLocal ignored with NodeCIDR", text: "detectLocalMode: NodeCIDR\ndetectLocal:\n  bridgeInterface: cbr0\n", warn: "detectLocal: ignored with detectLocalMode NodeCIDR"},
		{name: "detectLocalMode BridgeInterface", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n", noWarn: ": detectLocal"},
		{name: "detectLocalMode BridgeInterface without a bridge", text: "detectLocalMode: BridgeInterface\n", err: `detectLocal.bridgeInterface: "" must not be empty`},
		{name: "bridgeInterface that is no interface name", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: \"cbr0\\\" accept\"\n", err: `detectLocal.bridgeInterface: "cbr0\" accept" may hold only ASCII letters`},
		{name: "bridgeInterface too long", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: bridge-of-16chrs\n", err: `detectLocal.bridgeInterface: "bridge-of-16chrs" is longer than 15 characters`},
		{name: "bridgeInterface ..", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: ..\n", err: `detectLocal.bridgeInterface: ".." is not an interface name`},
		{name: "interfaceNamePrefix ignored with BridgeInterface", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n  interfaceNamePrefix: veth\n", warn: "detectLocal.interfaceNamePrefix: ignored with detectLocalMode BridgeInterface"},
		{name: "detectLocalMode InterfaceNamePrefix", text: "detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n", noWarn: ": detectLocal"},
		{name: "detectLocalMode InterfaceNamePrefix without a prefix", text: "detectLocalMode: InterfaceNamePrefix\n", err: `detectLocal.interfaceNamePrefix: "" must not be empty`},
		{name: "interfaceNamePrefix with a wildcard", text: "detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth+\n", err: `detectLocal.interfaceNamePrefix: "veth+" may hold only`},
		{name: "interfaceNamePrefix of 15", text: "detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: abcdefghijklmno\n", err: `detectLocal.interfaceNamePrefix: "abcdefghijklmno" is longer than 14 characters`},
		{name: "bridgeInterface ignored with InterfaceNamePrefix", text: "detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  bridgeInterface: cbr0\n  interfaceNamePrefix: veth\n", warn: "detectLocal.bridgeInterface: ignored with detectLocalMode InterfaceNamePrefix"},
		{name: "unknown detectLocalMode", text: "detectLocalMode: PodCIDR\n", err: `detectLocalMode: unknown mode "PodCIDR"`},
		{name: "detectLocal ignored with ClusterCIDR", text: "detectLocal:\n  bridgeInterface: cbr0\n", warn: "detectLocal: ignored with detectLocalMode ClusterCIDR"},
		{name: "unknown field", text: "nodeNmae: n1\n", err: `unknown field "nodeNmae"`},
		{name: "unknown nested field", text: "iptables:\n  masqBit: 14\n", err: `unknown field "iptables.masqBit"`},
		{name: "every unknown field", text: "a: 1\nconntrack:\n  b: 2\n", err: `unknown field "conntrack.b"`},
		{name: "field in the wrong case", text: "clusterCidr: 10.244.0.0/16\n", err: `unknown field "clusterCidr"`},
		{name: "key twice", text: "mode: iptables\nmode: nftables\n", err: `"mode" already set`},
		{name: "wrong type", text: "iptables:\n  masqueradeBit: high\n", err: "iptables.masqueradeBit"},
		{name: "list as a string", text: "nodePortAddresses: 10.0.0.0/8\n", err: "nodePortAddresses"},
		{name: "masqueradeBit out of range", text: "iptables:\n  masqueradeBit: 32\n", err: "iptables.masqueradeBit: 32 is not a bit number 0-31"},
		{name: "nftables masqueradeBit in nftables mode", text: "mode: nftables\nnftables:\n  masqueradeBit: -1\n", err: "nftables.masqueradeBit: -1"},
		{name: "bad duration", text: "iptables:\n  syncPeriod: soon\n", err: `iptables.syncPeriod: "soon" is not a duration`},
		{name: "duration as a number", text: "nftables:\n  minSyncPeriod: 5\n", err: `nftables.minSyncPeriod: 5 is not a duration`},
		{name: "negative sync period", text: "iptables:\n  syncPeriod: -1s\n", err: "iptables.syncPeriod: -1s: must be greater than 0"},
		{name: "negative min sync period", text: "iptables:\n  minSyncPeriod: -1s\n", err: "iptables.minSyncPeriod: -1s: must be 0 or more"},
		{name: "clusterCIDR not a CIDR", text: "clusterCIDR: 10.244.0.0\n", err: `clusterCIDR: "10.244.0.0" is not a CIDR`},
		{name: "clusterCIDR two of a family", text: "clusterCIDR: 10.244.0.0/16,10.245.0.0/16\n", err: "clusterCIDR: \"10.244.0.0/16,10.245.0.0/16\": at most one CIDR per IP family"},
		{name: "nodePortAddresses not a CIDR", text: "nodePortAddresses: [10.0.0.0/8, eth0]\n", err: `nodePortAddresses[1]: "eth0" is not a CIDR`},
		{name: "nftables without nodePortAddresses", text: "mode: nftables\n", noWarn: ": nodePortAddresses:"},
		{name: "healthz address without a host", text: "healthzBindAddress: localhost:10256\n", err: `healthzBindAddress: "localhost:10256": "localhost" is not an IP address`},
		{name: "metrics address bad port", text: "metricsBindAddress: 127.0.0.1:http\n", err: `metricsBindAddress: "127.0.0.1:http": "http" is not a port`},
		{name: "bindAddress a node IP", text: "bindAddress: 10.0.0.5\n", err: `bindAddress: "10.0.0.5" is not supported`},
		{name: "hostnameOverride not a node name", text: "hostnameOverride: node_1\n", err: `hostnameOverride: "node_1" is not a valid node name`},
		{name: "feature gate", text: "featureGates:\n  KubeProxyNFTablesLocalhostNodePorts: true\n", err: "featureGates.KubeProxyNFTablesLocalhostNodePorts: not supported"},
		{name: "conntrack maxPerCore negative", text: "conntrack:\n  maxPerCore: -1\n", err: "conntrack.maxPerCore: -1: must be 0 or more"},
		{name: "conntrack min negative", text: "conntrack:\n  min: -1\n", err: "conntrack.min: -1: must be 0 or more"},
		{name: "conntrack udpTimeout negative", text: "conntrack:\n  udpTimeout: -30s\n", err: "conntrack.udpTimeout: -30s: must be 0 or more"},
		{name: "conntrack tcpCloseWaitTimeout not a duration", text: "conntrack:\n  tcpCloseWaitTimeout: 3600\n", err: "conntrack.tcpCloseWaitTimeout: 3600 is not a duration"},
		{name: "conntrack settings are honoured, not reported", text: "conntrack:\n  maxPerCore: 65536\n  tcpBeLiberal: true\n  udpTimeout: 30s\n  tcpEstablishedTimeout: 24h\n", noWarn: "conntrack."},
		{name: "oomScoreAdj not default", text: "oomScoreAdj: -500\n", err: "oomScoreAdj: -500 is not supported"},
		{name: "logging format xml", text: "logging:\n  format: xml\n", err: `logging.format: "xml" is not text or json`},
		{name: "ipvs settings in iptables mode", text: "ipvs:\n  scheduler: rr\n", warn: "ipvs: ignored with mode iptables"},
		{name: "nftables settings in iptables mode", text: "nftables:\n  syncPeriod: 10s\n", warn: "nftables: ignored with mode iptables"},
		{name: "winkernel", text: "winkernel:\n  networkName: l2bridge\n", warn: "winkernel: ignored: Windows only"},
		{name: "portRange", text: "portRange: 30000-32767\n", warn: "portRange: ignored"},
		{name: "showHiddenMetricsForVersion", text: "showHiddenMetricsForVersion: \"1.36\"\n", warn: "showHiddenMetricsForVersion: not supported"},
		{name: "configSyncPeriod", text: "configSyncPeriod: 1m\n", warn: "configSyncPeriod: not supported"},
		{name: "client settings are honoured, not reported", text: "clientConnection:\n  qps: 20\n  burst: 40\n  contentType: application/json\n  acceptContentTypes: application/json\n", noWarn: "clientConnection"},
		{name: "client burst negative", text: "clientConnection:\n  burst: -1\n", err: "clientConnection.burst: -1: must be 0 or more"},
		{name: "client content type unknown", text: "clientConnection:\n  contentType: application/xml\n", err: `clientConnection.contentType: invalid argument "application/xml"`},
		{name: "client accept content types unknown", text: "clientConnection:\n  acceptContentTypes: application/json,text/html\n", err: `clientConnection.acceptContentTypes: invalid argument "application/json,text/html"`},
		{name: "wrong apiVersion", text: "apiVersion: kubeproxy.config.k8s.io/v1beta1\nkind: KubeProxyConfiguration\n", err: "apiVersion: document 1 is kubeproxy.config.k8s.io/v1beta1 KubeProxyConfiguration"},
		{name: "kind missing", text: "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: iptables\n", err: "kind: missing in document 1"},
		{name: "apiVersion missing", text: "kind: KubeProxyConfiguration\n", err: "apiVersion: missing in document 1"},
		{name: "two KubeProxyConfigurations", text: "---\n" + kpHeader, err: "kind: a second KubeProxyConfiguration (document 2)"},
		{name: "the whole ConfigMap", text: "apiVersion: v1\nkind: ConfigMap\n", err: "kind: document 1 is a ConfigMap: give the file its config.conf key holds"},
		{name: "only the extension", text: "apiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\n", err: "kind: no KubeProxyConfiguration document"},
		{name: "extension unknown field", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\nfullSyncPeriodd: 1h\n", err: `RulegenConfiguration: unknown field "fullSyncPeriodd"`},
		{name: "extension bad duration", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\nhealthTimeout: soon\n", err: `RulegenConfiguration.healthTimeout: "soon" is not a duration`},
		{name: "extension zero period", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\nfullSyncPeriod: 0s\n", err: "RulegenConfiguration.fullSyncPeriod: 0s: must be greater than 0"},
		{name: "extension value the flag rejects", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\nnodeIPs: [10.0.0.1, x]\n", err: `RulegenConfiguration.nodeIPs[1]: "x" is not an IP address`},
		{name: "extension iptablesMode", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\niptablesMode: xt\n", err: `RulegenConfiguration.iptablesMode: "xt" is not auto, nft or legacy`},
		{name: "extension ipFamily", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\nipFamily: ipv5\n", err: `RulegenConfiguration.ipFamily: "ipv5" is not ipv4 or ipv6`},
		{name: "extension serviceClusterIPRange", text: "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\nserviceClusterIPRange: [10.96.0.0]\n", err: `RulegenConfiguration.serviceClusterIPRange[0]: "10.96.0.0" is not a CIDR`},
		{name: "conntrack maxPerCore 0 leaves it alone", text: "conntrack:\n  maxPerCore: 0\n  tcpEstablishedTimeout: 0s\n  tcpCloseWaitTimeout: 0s\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if !strings.HasPrefix(text, "apiVersion") && !strings.HasPrefix(text, "kind") && !strings.HasPrefix(text, "#") {
				text = kpHeader + text
			}
			_, warnings, err := loadTestConfig(t, text)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && err == nil:
				t.Errorf("no error, want one with %q", tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Errorf("error lacks %q:\n%v", tc.err, err)
			}
			if tc.warn != "" && !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, tc.warn) }) {
				t.Errorf("no warning with %q:\n%s", tc.warn, strings.Join(warnings, "\n"))
			}
			if tc.noWarn != "" && slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, tc.noWarn) }) {
				t.Errorf("a warning has %q:\n%s", tc.noWarn, strings.Join(warnings, "\n"))
			}
			if tc.err == "" && tc.warn == "" && tc.noWarn == "" {
				for _, w := range warnings {
					if strings.Contains(w, "conntrack.") {
						t.Errorf("conntrack reported though every sysctl is left alone: %s", w)
					}
				}
			}
		})
	}
}

// TestConfigSettings: what a KubeProxyConfiguration sets, and that the
// command line wins over it.
func TestConfigSettings(t *testing.T) {
	const ext = "---\napiVersion: config.rulegen.io/v1alpha1\nkind: RulegenConfiguration\n"
	tests := []struct {
		name  string
		text  string
		args  []string
		check func(o options) string // "" when right
	}{
		{name: "empty mode is iptables, kube-proxy's default on Linux", text: "mode: \"\"\n",
			check: func(o options) string { return want(o.backend, "iptables") }},
		{name: "nftables mode reads the nftables section", text: "mode: nftables\nnodePortAddresses: [10.0.0.0/8]\nnftables:\n  masqueradeBit: 13\n  masqueradeAll: true\n  syncPeriod: 10s\n  minSyncPeriod: 2s\niptables:\n  masqueradeBit: 12\n  masqueradeAll: false\n  syncPeriod: 10s\n  minSyncPeriod: 2s\n",
			check: func(o options) string {
				return want(o.backend, "nftables") + want(o.masqueradeBit, int32(13)) + want(o.masqueradeAll, true) +
					want(o.syncPeriod, 10*time.Second) + want(o.minSyncPeriod, 2*time.Second)
			}},
		{name: "iptables mode reads the iptables section", text: "iptables:\n  masqueradeBit: 12\n  localhostNodePorts: false\n  masqueradeAll: true\n",
			check: func(o options) string {
				return want(o.masqueradeBit, int32(12)) + want(o.localhostNodePorts, false) + want(o.masqueradeAll, true)
			}},
		{name: "hostnameOverride is the node name, lower case", text: "hostnameOverride: \" Node-A \"\n",
			check: func(o options) string { return want(o.nodeName, "node-a") }},
		{name: "dual-stack clusterCIDR", text: "clusterCIDR: 10.244.0.0/16,fd00:10:244::/56\n",
			check: func(o options) string {
				return want(strings.Join(o.clusterCIDRs, " "), "10.244.0.0/16 fd00:10:244::/56")
			}},
		{name: "nodePortAddresses keywords", text: "nodePortAddresses: [all, localhost, 192.168.0.0/16]\n",
			check: func(o options) string {
				return want(strings.Join(o.nodePortAddresses, " "), "0.0.0.0/0 ::/0 127.0.0.0/8 ::1/128 192.168.0.0/16")
			}},
		{name: "detectLocalMode NodeCIDR", text: "detectLocalMode: NodeCIDR\n",
			check: func(o options) string { return want(o.detectLocalMode, "NodeCIDR") }},
		{name: "detectLocalMode BridgeInterface", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cni0\n  interfaceNamePrefix: veth\n",
			check: func(o options) string {
				return want(o.detectLocalMode, "BridgeInterface") + want(o.podBridgeInterface, "cni0") + want(o.podInterfaceNamePrefix, "")
			}},
		{name: "detectLocalMode InterfaceNamePrefix", text: "detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  bridgeInterface: cni0\n  interfaceNamePrefix: veth\n",
			check: func(o options) string {
				return want(o.detectLocalMode, "InterfaceNamePrefix") + want(o.podInterfaceNamePrefix, "veth") + want(o.podBridgeInterface, "")
			}},
		{name: "the command line's bridge wins", text: "detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cni0\n", args: []string{"--pod-bridge-interface=cbr0"},
			check: func(o options) string {
				return want(o.detectLocalMode, "BridgeInterface") + want(o.podBridgeInterface, "cbr0")
			}},
		{name: "nodePortAddresses primary", text: "nodePortAddresses: [primary, 10.0.0.0/8]\n",
			check: func(o options) string { return want(strings.Join(o.nodePortAddresses, " "), "primary 10.0.0.0/8") }},
		{name: "nftables mode: empty nodePortAddresses is primary", text: "mode: nftables\n",
			check: func(o options) string { return want(strings.Join(o.nodePortAddresses, " "), "primary") }},
		{name: "iptables mode: empty nodePortAddresses is every node IP", text: "mode: iptables\n",
			check: func(o options) string { return want(strings.Join(o.nodePortAddresses, " "), "") }},
		{name: "the command line wins over the nftables default", text: "mode: nftables\n", args: []string{"--nodeport-addresses=all"},
			check: func(o options) string { return want(strings.Join(o.nodePortAddresses, " "), "all") }},
		{name: "bind addresses without a port get kube-proxy's", text: "healthzBindAddress: 10.0.0.1\nmetricsBindAddress: 0.0.0.0\n",
			check: func(o options) string {
				return want(o.healthzAddr, "10.0.0.1:10256") + want(o.metricsAddr, "0.0.0.0:10249")
			}},
		{name: "IPv6 bindAddress moves the default servers", text: "bindAddress: \"::\"\n",
			check: func(o options) string { return want(o.healthzAddr, "[::]:10256") + want(o.metricsAddr, "[::1]:10249") }},
		{name: "profiling and verbosity", text: "enableProfiling: true\nlogging:\n  verbosity: 2\n",
			check: func(o options) string { return want(o.profiling, true) + want(o.verbosity, 2) }},
		{name: "logging format", text: "logging:\n  format: json\n",
			check: func(o options) string { return want(o.loggingFormat, "json") }},
		{name: "the rulegen extension", text: ext + "fullSyncPeriod: 2h\nhealthTimeout: 90s\niptablesMode: legacy\nnodeIPs: [10.0.0.1]\nipFamily: ipv4\nserviceClusterIPRange: [10.96.0.0/12]\n",
			check: func(o options) string {
				return want(o.fullSyncPeriod, 2*time.Hour) + want(o.healthTimeout, 90*time.Second) + want(o.iptablesMode, "legacy") +
					want(strings.Join(o.nodeIPs, " "), "10.0.0.1") + want(o.ipFamily, "ipv4") + want(strings.Join(o.serviceCIDRs, " "), "10.96.0.0/12")
			}},
		{name: "conntrack maps onto the --conntrack-* flags", text: "conntrack:\n  maxPerCore: 65536\n  min: 0\n  tcpEstablishedTimeout: 2h\n  tcpCloseWaitTimeout: 0s\n  tcpBeLiberal: true\n  udpTimeout: 30s\n  udpStreamTimeout: 2m\n",
			check: func(o options) string {
				return want(o.conntrack, sync.ConntrackSysctls{MaxPerCore: 65536, TCPEstablishedTimeout: 2 * time.Hour,
					TCPBeLiberal: true, UDPTimeout: 30 * time.Second, UDPStreamTimeout: 2 * time.Minute})
			}},
		{name: "clientConnection maps onto the API client's flags", text: "clientConnection:\n  qps: 20.5\n  burst: 40\n  contentType: application/json\n  acceptContentTypes: application/json;q=0.9,application/vnd.kubernetes.protobuf\n",
			check: func(o options) string {
				return want(o.client, clientConnection{qps: 20.5, burst: 40, contentType: "application/json", acceptContentTypes: "application/json;q=0.9,application/vnd.kubernetes.protobuf"})
			}},
		{name: "clientConnection left out is kube-proxy's defaults", text: "mode: iptables\n",
			check: func(o options) string {
				return want(o.client, clientConnection{qps: 5, burst: 10, contentType: "application/vnd.kubernetes.protobuf"})
			}},
		{name: "the command line's client flags win", text: "clientConnection:\n  qps: 20\n  contentType: application/json\n",
			args: []string{"--kube-api-qps=7", "--kube-api-content-type=application/vnd.kubernetes.protobuf"},
			check: func(o options) string {
				return want(o.client.qps, float32(7)) + want(o.client.contentType, "application/vnd.kubernetes.protobuf")
			}},
		{name: "conntrack left out is kube-proxy's defaults", text: "mode: iptables\n",
			check: func(o options) string { return want(o.conntrack, sync.DefaultConntrackSysctls) }},
		{name: "the command line's conntrack flags win", text: "conntrack:\n  maxPerCore: 65536\n  udpTimeout: 30s\n",
			args: []string{"--conntrack-max-per-core=0", "--conntrack-udp-timeout=0"},
			check: func(o options) string {
				return want(o.conntrack.MaxPerCore, int32(0)) + want(o.conntrack.UDPTimeout, time.Duration(0))
			}},
		{name: "the command line's backend picks the section", text: "mode: iptables\nnftables:\n  masqueradeBit: 13\n",
			args:  []string{"--backend", "nftables"},
			check: func(o options) string { return want(o.backend, "nftables") + want(o.masqueradeBit, int32(13)) }},
		{name: "command line wins", text: "mode: iptables\nclusterCIDR: 10.244.0.0/16\nhostnameOverride: from-file\nlogging:\n  verbosity: 3\n" + ext + "fullSyncPeriod: 2h\n",
			args: []string{"--backend", "nftables", "--cluster-cidr", "10.0.0.0/8", "--node-name", "from-flag", "-v", "1", "--full-sync-period", "5m"},
			check: func(o options) string {
				return want(o.backend, "nftables") + want(strings.Join(o.clusterCIDRs, " "), "10.0.0.0/8") + want(o.nodeName, "from-flag") +
					want(o.verbosity, 1) + want(o.fullSyncPeriod, 5*time.Minute)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := loadTestConfig(t, kpHeader+tc.text, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(o); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func want(got, want any) string {
	if got == want {
		return ""
	}
	return fmt.Sprintf("got %#v, want %#v; ", got, want)
}

// TestFlatConfigDeprecated: rulegen 0.x's flat file still works for one
// release, with a warning that names the new format.
func TestFlatConfigDeprecated(t *testing.T) {
	o, warnings, err := loadTestConfig(t, "nodeName: n1\nsync-period: 10s\nclusterCidr: [10.244.0.0/16]\n")
	if err != nil {
		t.Fatal(err)
	}
	if o.nodeName != "n1" || o.syncPeriod != 10*time.Second || strings.Join(o.clusterCIDRs, ",") != "10.244.0.0/16" {
		t.Errorf("flat settings not applied: node %q, sync %s, cidrs %v", o.nodeName, o.syncPeriod, o.clusterCIDRs)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "the flat format (keys named after flags) is deprecated") ||
		!strings.Contains(warnings[0], "KubeProxyConfiguration") {
		t.Errorf("want one deprecation warning naming KubeProxyConfiguration, got %q", warnings)
	}
}

// TestKubeProxyConfigWithoutTypeMeta: kube-proxy's fields without apiVersion
// and kind are read as the flat format, which names the fix.
func TestKubeProxyConfigWithoutTypeMeta(t *testing.T) {
	_, _, err := loadTestConfig(t, "mode: nftables\nclusterCIDR: 10.244.0.0/16\n")
	if err == nil || !strings.Contains(err.Error(), `unknown setting "mode"`) ||
		!strings.Contains(err.Error(), "these are KubeProxyConfiguration fields: add apiVersion: kubeproxy.config.k8s.io/v1alpha1 and kind: KubeProxyConfiguration") {
		t.Errorf("want the flat format's error and a hint to add apiVersion and kind, got %v", err)
	}
	_, _, err = loadTestConfig(t, "nodeNmae: n1\n")
	if err == nil || strings.Contains(err.Error(), "these are KubeProxyConfiguration fields") {
		t.Errorf("a flat file with a typo: want no hint about KubeProxyConfiguration, got %v", err)
	}
}

// TestConfigCLI runs the command with a KubeProxyConfiguration: its mode
// picks the backend, warnings go to stderr, an error exits 2 naming the
// field.
func TestConfigCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(good, []byte(kpHeader+"mode: nftables\nclusterCIDR: 10.244.0.0/16\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(kpHeader+"mode: ipvs\nfoo: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, svcYAML("web", "10.96.0.9", "TCP"), "--dry-run", "-f", "-", "--node-name", "n1", "--config", good)
	if code != exitOK || !strings.Contains(out, "10.96.0.9 . tcp . 80") {
		t.Errorf("good config: exit %d, stdout lacks the nftables rule:\n%s\n%s", code, out, errs)
	}
	if strings.Contains(errs, "nodePortAddresses") {
		t.Errorf("good config: stderr reports nodePortAddresses (empty in nftables mode is primary):\n%s", errs)
	}
	// kubeadm's file names a kubeconfig; -f manifests on the command line
	// are the source instead.
	code, out, errs = runCLI(t, svcYAML("web", "10.96.0.9", "TCP"), "--dry-run", "-f", "-", "--node-name", "n1", "--config", "testdata/kubeadm/config.conf")
	if code != exitOK || !strings.Contains(out, "-d 10.96.0.9/32 -p tcp") {
		t.Errorf("kubeadm config with -f: exit %d, stdout lacks the iptables rule:\n%s\n%s", code, out, errs)
	}
	code, _, errs = runCLI(t, "", "--dry-run", "-f", "-", "--config", bad)
	if code != exitUsage || !strings.Contains(errs, `rulegen: --config: `+bad+`: unknown field "foo"`) {
		t.Errorf("bad config: exit %d, stderr:\n%s", code, errs)
	}
}

// TestReadmeConfigExample loads the README's example of a config file with
// the extension document, so that the documented format stays the real one.
func TestReadmeConfigExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### The config file (`--config`)")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	example, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README: no yaml example under \"The config file\"")
	}
	o, warnings, err := loadTestConfig(t, example)
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if o.backend != "nftables" || o.fullSyncPeriod != time.Hour || o.iptablesMode != "auto" || strings.Join(o.serviceCIDRs, ",") != "10.96.0.0/12" {
		t.Errorf("README example: backend %q, full sync %s, iptables mode %q, service CIDRs %v", o.backend, o.fullSyncPeriod, o.iptablesMode, o.serviceCIDRs)
	}
	t.Logf("warnings:\n%s", strings.Join(warnings, "\n"))
}
