package main

// The --config file in kube-proxy's format: a KubeProxyConfiguration
// (kubeproxy.config.k8s.io/v1alpha1) exactly as kubeadm writes it into the
// kube-proxy ConfigMap, optionally followed by a RulegenConfiguration
// document for rulegen's own settings. See the README, "The config file".

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	flag "github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	componentbaseconfigv1alpha1 "k8s.io/component-base/config/v1alpha1"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync"
)

// The documents a structured --config file may hold.
const (
	kubeProxyAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"
	kubeProxyKind       = "KubeProxyConfiguration"
	rulegenAPIVersion   = "config.rulegen.io/v1alpha1"
	rulegenKind         = "RulegenConfiguration"
)

// kube-proxy's ports (k8s.io/kubernetes/pkg/cluster/ports: ProxyHealthzPort,
// ProxyStatusPort), appended to a bind address given without one.
const (
	kubeProxyHealthzPort = 10256
	kubeProxyMetricsPort = 10249
)

// rulegenConfiguration is the extension document: rulegen's settings that
// kube-proxy has no field for. Every field is optional; keys are the
// camelCase flag names.
type rulegenConfiguration struct {
	metav1.TypeMeta `json:",inline"`
	// FullSyncPeriod is --full-sync-period.
	FullSyncPeriod *metav1.Duration `json:"fullSyncPeriod,omitempty"`
	// HealthTimeout is --health-timeout.
	HealthTimeout *metav1.Duration `json:"healthTimeout,omitempty"`
	// IPTablesMode is --iptables-mode: auto, nft or legacy.
	IPTablesMode string `json:"iptablesMode,omitempty"`
	// NodeIPs is --node-ip.
	NodeIPs []string `json:"nodeIPs,omitempty"`
	// IPFamily is --ip-family.
	IPFamily string `json:"ipFamily,omitempty"`
	// ServiceClusterIPRange is --service-cluster-ip-range.
	ServiceClusterIPRange []string `json:"serviceClusterIPRange,omitempty"`
}

// setting is one flag value that the config file gives. flags are the
// spellings of the flag (an alias of kube-proxy's first when there is one):
// the first that exists is set, and none is set when any of them was given
// on the command line.
type setting struct {
	field string
	flags []string
	value string
	// unless are flags that, given on the command line, make this setting
	// moot: -f manifests replace the file's kubeconfig as the source.
	unless []string
}

// configResult is what a config file asks for: flag values, and the
// problems found, all at once.
type configResult struct {
	settings []setting
	warnings []string
	errs     []error
}

func (r *configResult) set(field, value string, flags ...string) {
	r.settings = append(r.settings, setting{field: field, flags: flags, value: value})
}

func (r *configResult) warn(field, format string, a ...any) {
	r.warnings = append(r.warnings, field+": "+fmt.Sprintf(format, a...))
}

func (r *configResult) fail(field, format string, a ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
}

// isStructuredConfig tells kube-proxy's format from the flat one of rulegen
// 0.x: a structured file names its apiVersion or kind.
func isStructuredConfig(b []byte) bool {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := reader.Read()
		if err != nil {
			return false
		}
		if isEmptyDocument(doc) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return false
		}
		return tm.APIVersion != "" || tm.Kind != ""
	}
}

// isEmptyDocument tells a YAML document holding nothing but comments or
// blanks (as before a leading "---").
func isEmptyDocument(doc []byte) bool {
	var v any
	return yaml.Unmarshal(doc, &v) == nil && v == nil
}

// looksLikeKubeProxyConfig tells a flat file whose keys are fields of a
// KubeProxyConfiguration that lacks its apiVersion and kind: decoded
// strictly, it has no unknown field and at least one known one.
func looksLikeKubeProxyConfig(b []byte) bool {
	var m map[string]any
	if yaml.Unmarshal(b, &m) != nil || len(m) == 0 {
		return false
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return false
	}
	var c kpv1alpha1.KubeProxyConfiguration
	strict, err := sigsjson.UnmarshalStrict(j, &c, sigsjson.DisallowUnknownFields)
	return err == nil && len(strict) == 0
}

// loadStructuredConfig decodes a KubeProxyConfiguration and an optional
// RulegenConfiguration, strictly (an unknown or repeated field is an error
// naming it), defaults it as kube-proxy does, and returns what it asks of
// rulegen's flags. mode, when not empty, is the backend given on the
// command line: it wins over the file's mode, and picks the section
// (iptables or nftables) whose settings apply.
func loadStructuredConfig(b []byte, mode string) configResult {
	var r configResult
	var kp *kpv1alpha1.KubeProxyConfiguration
	var ext *rulegenConfiguration
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("document %d: %w", n, err))
			return r
		}
		if isEmptyDocument(doc) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			r.errs = append(r.errs, fmt.Errorf("document %d: %w", n, err))
			return r
		}
		switch {
		case tm.APIVersion == kubeProxyAPIVersion && tm.Kind == kubeProxyKind:
			if kp != nil {
				r.fail("kind", "a second %s (document %d): give one", kubeProxyKind, n)
				continue
			}
			kp = &kpv1alpha1.KubeProxyConfiguration{}
			decodeStrict(&r, doc, kp, "")
		case tm.APIVersion == rulegenAPIVersion && tm.Kind == rulegenKind:
			if ext != nil {
				r.fail("kind", "a second %s (document %d): give one", rulegenKind, n)
				continue
			}
			ext = &rulegenConfiguration{}
			decodeStrict(&r, doc, ext, rulegenKind)
		case tm.APIVersion == "":
			r.fail("apiVersion", "missing in document %d (want %s)", n, kubeProxyAPIVersion)
		case tm.Kind == "":
			r.fail("kind", "missing in document %d (want %s)", n, kubeProxyKind)
		case tm.Kind == "ConfigMap":
			r.fail("kind", "document %d is a ConfigMap: give the file its config.conf key holds (the ConfigMap mounted as a volume)", n)
		default:
			r.fail("apiVersion", "document %d is %s %s, not %s %s or %s %s", n, tm.APIVersion, tm.Kind,
				kubeProxyAPIVersion, kubeProxyKind, rulegenAPIVersion, rulegenKind)
		}
	}
	if len(r.errs) > 0 {
		return r
	}
	if kp == nil {
		r.fail("kind", "no %s document", kubeProxyKind)
		return r
	}
	if mode == "iptables" || mode == "nftables" {
		kp.Mode = kpv1alpha1.ProxyMode(mode)
	}
	setKubeProxyDefaults(kp)
	mapKubeProxyConfig(&r, kp)
	if ext != nil {
		mapRulegenConfig(&r, ext)
	}
	return r
}

// decodeStrict decodes one YAML document into v: duplicate keys, unknown
// fields and values of the wrong type are errors naming the field, all
// reported. kind names the document in errors, except the
// KubeProxyConfiguration (kind ""), whose field paths are kube-proxy's.
func decodeStrict(r *configResult, doc []byte, v any, kind string) {
	prefix := ""
	if kind != "" {
		prefix = kind + "."
	}
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		if kind != "" {
			err = fmt.Errorf("%s: %w", kind, err)
		}
		r.errs = append(r.errs, err)
		return
	}
	// metav1.Duration's own error does not say which field it was in: find
	// bad durations first, by path.
	var raw map[string]any
	if err := yaml.Unmarshal(doc, &raw); err == nil {
		before := len(r.errs)
		checkDurations(r, raw, prefix)
		if len(r.errs) > before {
			return
		}
	}
	strict, err := sigsjson.UnmarshalStrict(j, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		if kind != "" {
			err = fmt.Errorf("%s: %w", kind, err)
		}
		r.errs = append(r.errs, err)
		return
	}
	for _, e := range strict {
		if kind != "" {
			e = fmt.Errorf("%s: %w", kind, e)
		}
		r.errs = append(r.errs, e)
	}
}

// durationFields are the metav1.Duration fields of both documents.
var durationFields = []string{
	"configSyncPeriod",
	"iptables.syncPeriod", "iptables.minSyncPeriod",
	"nftables.syncPeriod", "nftables.minSyncPeriod",
	"ipvs.syncPeriod", "ipvs.minSyncPeriod", "ipvs.tcpTimeout", "ipvs.tcpFinTimeout", "ipvs.udpTimeout",
	"conntrack.tcpEstablishedTimeout", "conntrack.tcpCloseWaitTimeout", "conntrack.udpTimeout", "conntrack.udpStreamTimeout",
	rulegenKind + ".fullSyncPeriod", rulegenKind + ".healthTimeout",
}

func checkDurations(r *configResult, raw map[string]any, prefix string) {
	for _, path := range durationFields {
		rel, ok := strings.CutPrefix(path, prefix)
		if !ok || (prefix == "" && strings.HasPrefix(path, rulegenKind+".")) {
			continue
		}
		v, ok := lookup(raw, strings.Split(rel, "."))
		if !ok || v == nil {
			continue
		}
		s, isString := v.(string)
		if !isString {
			r.fail(path, "%v is not a duration (write it as 30s, 5m, 1h)", v)
			continue
		}
		if _, err := time.ParseDuration(s); err != nil {
			r.fail(path, "%q is not a duration (write it as 30s, 5m, 1h)", s)
		}
	}
}

func lookup(m map[string]any, path []string) (any, bool) {
	v, ok := m[path[0]]
	if !ok || len(path) == 1 {
		return v, ok
	}
	sub, isMap := v.(map[string]any)
	if !isMap {
		return nil, false
	}
	return lookup(sub, path[1:])
}

// setKubeProxyDefaults defaults the fields rulegen reads as kube-proxy
// v1.37 does: SetDefaults_KubeProxyConfiguration
// (pkg/proxy/apis/config/v1alpha1/defaults.go) and, for Linux,
// Options.platformApplyDefaults (cmd/kube-proxy/app/server_linux.go).
// Fields rulegen only reports keep their zero value: the checks below know
// what kube-proxy would do with it.
func setKubeProxyDefaults(c *kpv1alpha1.KubeProxyConfiguration) {
	if c.BindAddress == "" {
		c.BindAddress = "0.0.0.0"
	}
	healthzHost, metricsHost := "0.0.0.0", "127.0.0.1"
	if ip := net.ParseIP(c.BindAddress); ip == nil || ip.To4() == nil {
		healthzHost, metricsHost = "[::]", "[::1]"
	}
	c.HealthzBindAddress = defaultAddress(c.HealthzBindAddress, healthzHost, kubeProxyHealthzPort)
	c.MetricsBindAddress = defaultAddress(c.MetricsBindAddress, metricsHost, kubeProxyMetricsPort)
	for _, p := range []*metav1.Duration{&c.IPTables.SyncPeriod, &c.NFTables.SyncPeriod} {
		if p.Duration == 0 {
			p.Duration = 30 * time.Second
		}
	}
	for _, p := range []*metav1.Duration{&c.IPTables.MinSyncPeriod, &c.NFTables.MinSyncPeriod} {
		if p.Duration == 0 {
			p.Duration = time.Second
		}
	}
	if c.IPTables.LocalhostNodePorts == nil {
		t := true
		c.IPTables.LocalhostNodePorts = &t
	}
	for _, p := range []**int32{&c.IPTables.MasqueradeBit, &c.NFTables.MasqueradeBit} {
		if *p == nil {
			b := int32(14)
			*p = &b
		}
	}
	if c.Mode == "" { // platformApplyDefaults: Linux's default mode
		c.Mode = "iptables"
	}
	if c.DetectLocalMode == "" {
		c.DetectLocalMode = "ClusterCIDR"
	}
	if c.ClientConnection.ContentType == "" {
		c.ClientConnection.ContentType = defaultKubeAPIContentType
	}
	if c.ClientConnection.QPS == 0 {
		c.ClientConnection.QPS = defaultKubeAPIQPS
	}
	if c.ClientConnection.Burst == 0 {
		c.ClientConnection.Burst = defaultKubeAPIBurst
	}
}

// mapClientConnection honours the API client's settings as kube-proxy's
// createClient does (the kubeconfig is mapped with the node's identity, in
// mapKubeProxyConfig); the flags check the media types.
func mapClientConnection(r *configResult, c componentbaseconfigv1alpha1.ClientConnectionConfiguration) {
	r.set("clientConnection.qps", strconv.FormatFloat(float64(c.QPS), 'g', -1, 32), "kube-api-qps")
	if c.Burst < 0 {
		r.fail("clientConnection.burst", "%d: must be 0 or more", c.Burst)
	} else {
		r.set("clientConnection.burst", strconv.Itoa(int(c.Burst)), "kube-api-burst")
	}
	r.set("clientConnection.contentType", c.ContentType, "kube-api-content-type")
	if c.AcceptContentTypes != "" {
		r.set("clientConnection.acceptContentTypes", c.AcceptContentTypes, "kube-api-accept-content-types")
	}
}

// mapPodInterface sets detectLocalMode BridgeInterface or
// InterfaceNamePrefix and its interface name, or fails naming field: as
// kube-proxy, the name must not be empty; unlike it, it must also be a
// name rulegen writes safely (rules.InvalidInterfaceName).
func mapPodInterface(r *configResult, pi rules.PodInterface, field, flag string) {
	if why := pi.Invalid(); why != "" {
		r.fail(field, "%q %s (detectLocalMode %s needs it)", pi.Name, why, pi.Mode())
		return
	}
	r.set("detectLocalMode", pi.Mode(), "detect-local-mode")
	r.set(field, pi.Name, flag)
}

// defaultAddress is kube-proxy's defaulting of a bind address: empty gives
// host:port, an address without a port gets port (AppendPortIfNeeded).
func defaultAddress(addr, host string, port int) string {
	switch {
	case addr == "":
		return host + ":" + strconv.Itoa(port)
	case net.ParseIP(addr) != nil:
		return net.JoinHostPort(addr, strconv.Itoa(port))
	}
	return addr
}

// mapKubeProxyConfig turns a defaulted KubeProxyConfiguration into flag
// values, and reports every field rulegen does not honour: a warning when
// kube-proxy would behave as rulegen does anyway (or the value is its
// default), an error when ignoring the value would change what the node
// does with packets.
func mapKubeProxyConfig(r *configResult, c *kpv1alpha1.KubeProxyConfiguration) {
	// Identity and the API server.
	if h := strings.ToLower(strings.TrimSpace(c.HostnameOverride)); h != "" {
		if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
			r.fail("hostnameOverride", "%q is not a valid node name: %s", c.HostnameOverride, strings.Join(msgs, "; "))
		} else {
			r.set("hostnameOverride", h, "hostname-override", "node-name")
		}
	}
	if c.ClientConnection.Kubeconfig != "" {
		r.set("clientConnection.kubeconfig", c.ClientConnection.Kubeconfig, "kubeconfig")
		r.settings[len(r.settings)-1].unless = []string{"filename"}
	}
	mapClientConnection(r, c.ClientConnection)

	// The backend, and the settings of its section.
	var masqueradeAll bool
	var masqueradeBit *int32
	var syncPeriod, minSyncPeriod time.Duration
	section := string(c.Mode)
	switch c.Mode {
	case "iptables":
		masqueradeAll, masqueradeBit = c.IPTables.MasqueradeAll, c.IPTables.MasqueradeBit
		syncPeriod, minSyncPeriod = c.IPTables.SyncPeriod.Duration, c.IPTables.MinSyncPeriod.Duration
		r.set("mode", "iptables", "proxy-mode", "backend")
	case "nftables":
		masqueradeAll, masqueradeBit = c.NFTables.MasqueradeAll, c.NFTables.MasqueradeBit
		syncPeriod, minSyncPeriod = c.NFTables.SyncPeriod.Duration, c.NFTables.MinSyncPeriod.Duration
		r.set("mode", "nftables", "proxy-mode", "backend")
	case "ipvs", "kernelspace":
		r.fail("mode", "%q is not supported: rulegen programs nftables or iptables (mode: nftables or iptables)", c.Mode)
		return
	default:
		r.fail("mode", "unknown mode %q: want nftables or iptables (empty: iptables, kube-proxy's default on Linux)", c.Mode)
		return
	}
	r.set(section+".masqueradeAll", strconv.FormatBool(masqueradeAll), "masquerade-all")
	if *masqueradeBit < 0 || *masqueradeBit > 31 {
		r.fail(section+".masqueradeBit", "%d is not a bit number 0-31", *masqueradeBit)
	} else {
		r.set(section+".masqueradeBit", strconv.Itoa(int(*masqueradeBit)), "iptables-masquerade-bit")
	}
	if syncPeriod <= 0 {
		r.fail(section+".syncPeriod", "%s: must be greater than 0", syncPeriod)
	} else {
		r.set(section+".syncPeriod", syncPeriod.String(), "sync-period")
	}
	if minSyncPeriod < 0 {
		r.fail(section+".minSyncPeriod", "%s: must be 0 or more", minSyncPeriod)
	} else {
		r.set(section+".minSyncPeriod", minSyncPeriod.String(), "min-sync-period")
	}
	// The other backend's section is ignored by kube-proxy too: say so when
	// it holds anything but kube-proxy's defaults.
	if other := map[string]string{"iptables": "nftables", "nftables": "iptables"}[section]; !sectionIsDefault(c, other) {
		r.warn(other, "ignored with mode %s, as kube-proxy ignores it", section)
	}
	if c.Mode == "iptables" {
		r.set("iptables.localhostNodePorts", strconv.FormatBool(*c.IPTables.LocalhostNodePorts), "iptables-localhost-nodeports")
	}
	if ipvsSet(c.IPVS) {
		r.warn("ipvs", "ignored with mode %s, as kube-proxy ignores it", section)
	}

	// Which traffic is local, and which addresses open nodePorts.
	switch c.DetectLocalMode {
	case "ClusterCIDR":
		if c.DetectLocal.BridgeInterface != "" || c.DetectLocal.InterfaceNamePrefix != "" {
			r.warn("detectLocal", "ignored with detectLocalMode ClusterCIDR, as kube-proxy ignores it")
		}
	case "NodeCIDR":
		if c.DetectLocal.BridgeInterface != "" || c.DetectLocal.InterfaceNamePrefix != "" {
			r.warn("detectLocal", "ignored with detectLocalMode NodeCIDR, as kube-proxy ignores it")
		}
		r.set("detectLocalMode", "NodeCIDR", "detect-local-mode")
	case "BridgeInterface":
		if c.DetectLocal.InterfaceNamePrefix != "" {
			r.warn("detectLocal.interfaceNamePrefix", "ignored with detectLocalMode BridgeInterface, as kube-proxy ignores it")
		}
		mapPodInterface(r, rules.PodInterface{Name: c.DetectLocal.BridgeInterface}, "detectLocal.bridgeInterface", "pod-bridge-interface")
	case "InterfaceNamePrefix":
		if c.DetectLocal.BridgeInterface != "" {
			r.warn("detectLocal.bridgeInterface", "ignored with detectLocalMode InterfaceNamePrefix, as kube-proxy ignores it")
		}
		mapPodInterface(r, rules.PodInterface{Name: c.DetectLocal.InterfaceNamePrefix, Prefix: true}, "detectLocal.interfaceNamePrefix", "pod-interface-name-prefix")
	default:
		r.fail("detectLocalMode", "unknown mode %q: want ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix", c.DetectLocalMode)
	}
	if c.ClusterCIDR != "" {
		cidrs := strings.Split(c.ClusterCIDR, ",")
		families := map[bool]bool{}
		ok := true
		for _, s := range cidrs {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				r.fail("clusterCIDR", "%q is not a CIDR", s)
				ok = false
				continue
			}
			if families[p.Addr().Is4()] {
				r.fail("clusterCIDR", "%q: at most one CIDR per IP family", c.ClusterCIDR)
				ok = false
			}
			families[p.Addr().Is4()] = true
		}
		if ok {
			r.set("clusterCIDR", strings.Join(cidrs, ","), "cluster-cidr")
		}
	}
	mapNodePortAddresses(r, c)
	if c.BindAddress != "0.0.0.0" && c.BindAddress != "::" {
		r.fail("bindAddress", "%q is not supported: rulegen takes the node's IPs from its Node object (or --node-ip); use 0.0.0.0 or ::", c.BindAddress)
	}

	// Servers.
	if addr, err := checkBindAddress(c.HealthzBindAddress); err != nil {
		r.fail("healthzBindAddress", "%v", err)
	} else {
		r.set("healthzBindAddress", addr, "healthz-bind-address")
	}
	if addr, err := checkBindAddress(c.MetricsBindAddress); err != nil {
		r.fail("metricsBindAddress", "%v", err)
	} else {
		r.set("metricsBindAddress", addr, "metrics-bind-address")
	}
	r.set("enableProfiling", strconv.FormatBool(c.EnableProfiling), "profiling")
	if !c.BindAddressHardFail {
		r.warn("bindAddressHardFail", "false is not supported: rulegen always exits when it cannot serve healthzBindAddress or metricsBindAddress")
	}
	if c.ShowHiddenMetricsForVersion != "" {
		r.warn("showHiddenMetricsForVersion", "not supported: rulegen has no hidden metrics")
	}

	// Logging: the verbosity and the format are honoured, the rest is rulegen's.
	if c.Logging.Verbosity != 0 {
		r.set("logging.verbosity", strconv.Itoa(int(c.Logging.Verbosity)), "v")
	}
	switch c.Logging.Format {
	case "":
	case "text", "json":
		r.set("logging.format", c.Logging.Format, "logging-format")
	default:
		r.fail("logging.format", "%q is not text or json", c.Logging.Format)
	}
	if c.Logging.FlushFrequency.Duration.Duration != 0 || c.Logging.VModule != nil || c.Logging.Options.JSON.InfoBufferSize.Value() != 0 ||
		c.Logging.Options.Text.InfoBufferSize.Value() != 0 || c.Logging.Options.JSON.SplitStream || c.Logging.Options.Text.SplitStream {
		r.warn("logging", "only logging.verbosity is supported; the other logging fields are ignored")
	}

	for _, g := range sortedKeys(c.FeatureGates) {
		r.fail("featureGates."+g, "not supported: rulegen has no feature gates and behaves as kube-proxy v1.37 with its default gates")
	}
	mapConntrack(r, c.Conntrack)
	if c.OOMScoreAdj == nil || *c.OOMScoreAdj == -999 {
		r.warn("oomScoreAdj", "not supported: rulegen leaves its OOM score alone (kube-proxy sets -999); set it in the pod spec if needed")
	} else {
		r.fail("oomScoreAdj", "%d is not supported: rulegen leaves its OOM score alone", *c.OOMScoreAdj)
	}
	if c.ConfigSyncPeriod.Duration != 0 {
		r.warn("configSyncPeriod", "not supported: rulegen's watches do not resync; syncPeriod checks the kernel instead")
	}
	if c.PortRange != "" {
		r.warn("portRange", "ignored, as kube-proxy ignores it")
	}
	if c.Winkernel != (kpv1alpha1.KubeProxyWinkernelConfiguration{}) {
		r.warn("winkernel", "ignored: Windows only")
	}
	if c.WindowsRunAsService {
		r.warn("windowsRunAsService", "ignored: Windows only")
	}
}

// mapNodePortAddresses honours CIDRs and the keywords all, localhost and
// primary; an empty list in nftables mode means [primary], as kube-proxy's
// platformApplyDefaults makes it.
func mapNodePortAddresses(r *configResult, c *kpv1alpha1.KubeProxyConfiguration) {
	if len(c.NodePortAddresses) == 0 {
		if c.Mode == "nftables" {
			r.set("nodePortAddresses", "primary", "nodeport-addresses")
		}
		return
	}
	var cidrs []string
	for i, s := range c.NodePortAddresses {
		field := fmt.Sprintf("nodePortAddresses[%d]", i)
		switch s {
		case "all":
			cidrs = append(cidrs, "0.0.0.0/0", "::/0")
		case "localhost":
			cidrs = append(cidrs, "127.0.0.0/8", "::1/128")
		case "primary":
			cidrs = append(cidrs, "primary")
		default:
			if _, err := netip.ParsePrefix(s); err != nil {
				r.fail(field, "%q is not a CIDR or one of the keywords all, localhost, primary", s)
				continue
			}
			cidrs = append(cidrs, s)
		}
	}
	r.set("nodePortAddresses", strings.Join(cidrs, ","), "nodeport-addresses")
}

// checkBindAddress checks an IP:port as kube-proxy's validation does; empty
// turns a server off in rulegen and cannot happen after defaulting.
func checkBindAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not IP:port", addr)
	}
	if net.ParseIP(host) == nil {
		return "", fmt.Errorf("%q: %q is not an IP address", addr, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("%q: %q is not a port", addr, port)
	}
	return addr, nil
}

// mapConntrack turns the conntrack section into the --conntrack-* flags,
// with kube-proxy's defaults for the fields left out (or null, as kubeadm
// writes them) and its validation (no negative values). The daemon sets the
// sysctls at start as kube-proxy does; 0 (false) leaves one as it is.
func mapConntrack(r *configResult, c kpv1alpha1.KubeProxyConntrackConfiguration) {
	def := sync.DefaultConntrackSysctls
	count := func(field, flag string, p *int32, dflt int32) {
		v := dflt
		if p != nil {
			v = *p
		}
		if v < 0 {
			r.fail("conntrack."+field, "%d: must be 0 or more", v)
			return
		}
		r.set("conntrack."+field, strconv.Itoa(int(v)), flag)
	}
	timeout := func(field, flag string, p *metav1.Duration, dflt time.Duration) {
		v := dflt
		if p != nil {
			v = p.Duration
		}
		if v < 0 {
			r.fail("conntrack."+field, "%s: must be 0 or more", v)
			return
		}
		r.set("conntrack."+field, v.String(), flag)
	}
	count("maxPerCore", "conntrack-max-per-core", c.MaxPerCore, def.MaxPerCore)
	count("min", "conntrack-min", c.Min, def.Min)
	timeout("tcpEstablishedTimeout", "conntrack-tcp-timeout-established", c.TCPEstablishedTimeout, def.TCPEstablishedTimeout)
	timeout("tcpCloseWaitTimeout", "conntrack-tcp-timeout-close-wait", c.TCPCloseWaitTimeout, def.TCPCloseWaitTimeout)
	timeout("udpTimeout", "conntrack-udp-timeout", &c.UDPTimeout, 0)
	timeout("udpStreamTimeout", "conntrack-udp-timeout-stream", &c.UDPStreamTimeout, 0)
	r.set("conntrack.tcpBeLiberal", strconv.FormatBool(c.TCPBeLiberal), "conntrack-tcp-be-liberal")
}

// sectionIsDefault tells whether the iptables or nftables section of a
// defaulted configuration holds only kube-proxy's defaults.
func sectionIsDefault(c *kpv1alpha1.KubeProxyConfiguration, section string) bool {
	masqAll, bit, sync, minSync := c.IPTables.MasqueradeAll, *c.IPTables.MasqueradeBit, c.IPTables.SyncPeriod.Duration, c.IPTables.MinSyncPeriod.Duration
	if section == "nftables" {
		masqAll, bit, sync, minSync = c.NFTables.MasqueradeAll, *c.NFTables.MasqueradeBit, c.NFTables.SyncPeriod.Duration, c.NFTables.MinSyncPeriod.Duration
	} else if !*c.IPTables.LocalhostNodePorts {
		return false
	}
	return !masqAll && bit == 14 && sync == 30*time.Second && minSync == time.Second
}

func ipvsSet(c kpv1alpha1.KubeProxyIPVSConfiguration) bool {
	return c.SyncPeriod.Duration != 0 || c.MinSyncPeriod.Duration != 0 || c.Scheduler != "" || len(c.ExcludeCIDRs) > 0 ||
		c.StrictARP || c.TCPTimeout.Duration != 0 || c.TCPFinTimeout.Duration != 0 || c.UDPTimeout.Duration != 0
}

// mapRulegenConfig checks the extension document and turns it into flag
// values.
func mapRulegenConfig(r *configResult, c *rulegenConfiguration) {
	const p = rulegenKind + "."
	r.setPositive(p+"fullSyncPeriod", c.FullSyncPeriod, "full-sync-period")
	r.setPositive(p+"healthTimeout", c.HealthTimeout, "health-timeout")
	r.setOneOf(p+"iptablesMode", c.IPTablesMode, []string{"auto", "nft", "legacy"}, "iptables-mode")
	r.setList(p+"nodeIPs", c.NodeIPs, func(s string) error { _, err := netip.ParseAddr(s); return err }, "an IP address", "node-ip")
	r.setOneOf(p+"ipFamily", c.IPFamily, []string{"ipv4", "ipv6"}, "ip-family")
	r.setList(p+"serviceClusterIPRange", c.ServiceClusterIPRange, func(s string) error { _, err := netip.ParsePrefix(s); return err }, "a CIDR", "service-cluster-ip-range")
}

// setPositive sets flag from a duration field, unset when nil; zero or
// negative is an error naming the field.
func (r *configResult) setPositive(field string, d *metav1.Duration, flag string) {
	switch {
	case d == nil:
	case d.Duration <= 0:
		r.fail(field, "%s: must be greater than 0", d.Duration)
	default:
		r.set(field, d.Duration.String(), flag)
	}
}

// setOneOf sets flag from a field that takes one of allowed, unset when
// empty; anything else is an error naming the field.
func (r *configResult) setOneOf(field, v string, allowed []string, flag string) {
	switch {
	case v == "":
	case slices.Contains(allowed, v):
		r.set(field, v, flag)
	default:
		r.fail(field, "%q is not %s or %s", v, strings.Join(allowed[:len(allowed)-1], ", "), allowed[len(allowed)-1])
	}
}

// setList sets flag from a list field (comma-joined), each element checked
// by valid; an element that is not what says is an error naming it.
func (r *configResult) setList(field string, vals []string, valid func(string) error, what, flag string) {
	for i, v := range vals {
		if valid(v) != nil {
			r.fail(fmt.Sprintf("%s[%d]", field, i), "%q is not %s", v, what)
		}
	}
	if len(vals) > 0 {
		r.set(field, strings.Join(vals, ","), flag)
	}
}

// apply sets every flag the command line did not set. A value the flag
// rejects is an error naming the config field.
func (r *configResult) apply(fs *flag.FlagSet) {
	for _, s := range r.settings {
		var target *flag.Flag
		given := false
		for _, name := range s.unless {
			if f := fs.Lookup(name); f != nil && f.Changed {
				given = true
			}
		}
		for _, name := range s.flags {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			// The flags are listed kube-proxy's name first, rulegen's last:
			// any of them given on the command line wins, and the value goes
			// to rulegen's own (an alias is applied before the file is read).
			target = f
			given = given || f.Changed
		}
		if target == nil {
			r.fail(s.field, "rulegen has no flag --%s", s.flags[len(s.flags)-1])
			continue
		}
		if given {
			continue // the command line wins
		}
		if err := fs.Set(target.Name, s.value); err != nil {
			r.fail(s.field, "%v", err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
