package main

// /configz: the daemon's effective configuration, in kube-proxy's shape.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logsapi "k8s.io/component-base/logs/api/v1"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// The keys of /configz: kube-proxy registers its configuration under its
// API group (component-base's configz), rulegen adds its extension's.
const (
	configzKubeProxy = "kubeproxy.config.k8s.io"
	configzRulegen   = "config.rulegen.io"
)

// effectiveConfig is what the daemon runs with, after the flags and the
// --config file: a KubeProxyConfiguration holding, for every field rulegen
// honours, the value in force (the fields it does not honour keep their
// zero value, or the value that says what rulegen does: bindAddressHardFail
// true, oomScoreAdj null, configSyncPeriod 0), and the RulegenConfiguration
// of rulegen's own settings. Written back as a --config file, it gives the
// same settings. rulegen's settings apply to either backend, so the
// iptables and nftables sections hold the same values.
func effectiveConfig(o options) (kpv1alpha1.KubeProxyConfiguration, rulegenConfiguration) {
	// Every node IP, rulegen's default, is 0.0.0.0/0 and ::/0 to
	// kube-proxy (an empty list is primary there, in nftables mode).
	var nodePortAddresses []string
	for _, a := range o.nodePortAddresses {
		if a != "all" {
			nodePortAddresses = append(nodePortAddresses, a)
		}
	}
	if len(nodePortAddresses) < len(o.nodePortAddresses) || len(o.nodePortAddresses) == 0 {
		nodePortAddresses = append(nodePortAddresses, "0.0.0.0/0", "::/0")
	}
	masqBit := o.masqueradeBit
	healthTimeout := o.healthTimeout
	if healthTimeout == 0 { // the default: twice the sync period, as kube-proxy
		healthTimeout = 2 * o.syncPeriod
	}
	localhostNodePorts := o.localhostNodePorts
	c := o.conntrack
	duration := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	kp := kpv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: kubeProxyAPIVersion, Kind: kubeProxyKind},
		HostnameOverride:   o.nodeName,
		BindAddress:        "0.0.0.0",
		HealthzBindAddress: o.healthzAddr, MetricsBindAddress: o.metricsAddr,
		BindAddressHardFail: true,
		EnableProfiling:     o.profiling,
		Mode:                kpv1alpha1.ProxyMode(o.backend),
		IPTables: kpv1alpha1.KubeProxyIPTablesConfiguration{MasqueradeBit: &masqBit, MasqueradeAll: o.masqueradeAll,
			LocalhostNodePorts: &localhostNodePorts, SyncPeriod: metav1.Duration{Duration: o.syncPeriod}, MinSyncPeriod: metav1.Duration{Duration: o.minSyncPeriod}},
		NFTables: kpv1alpha1.KubeProxyNFTablesConfiguration{MasqueradeBit: &masqBit, MasqueradeAll: o.masqueradeAll,
			SyncPeriod: metav1.Duration{Duration: o.syncPeriod}, MinSyncPeriod: metav1.Duration{Duration: o.minSyncPeriod}},
		DetectLocalMode:   kpv1alpha1.LocalMode(o.detectLocalMode),
		ClusterCIDR:       strings.Join(o.clusterCIDRs, ","),
		NodePortAddresses: nodePortAddresses,
		Conntrack: kpv1alpha1.KubeProxyConntrackConfiguration{MaxPerCore: &c.MaxPerCore, Min: &c.Min,
			TCPEstablishedTimeout: duration(c.TCPEstablishedTimeout), TCPCloseWaitTimeout: duration(c.TCPCloseWaitTimeout),
			TCPBeLiberal: c.TCPBeLiberal, UDPTimeout: metav1.Duration{Duration: c.UDPTimeout}, UDPStreamTimeout: metav1.Duration{Duration: c.UDPStreamTimeout}},
	}
	kp.DetectLocal.BridgeInterface, kp.DetectLocal.InterfaceNamePrefix = o.podBridgeInterface, o.podInterfaceNamePrefix
	kp.ClientConnection.Kubeconfig = o.kubeconfig
	kp.ClientConnection.QPS, kp.ClientConnection.Burst = o.client.qps, o.client.burst
	kp.ClientConnection.ContentType, kp.ClientConnection.AcceptContentTypes = o.client.contentType, o.client.acceptContentTypes
	kp.Logging = logsapi.LoggingConfiguration{Format: o.loggingFormat, Verbosity: logsapi.VerbosityLevel(o.verbosity)}
	ext := rulegenConfiguration{
		TypeMeta:       metav1.TypeMeta{APIVersion: rulegenAPIVersion, Kind: rulegenKind},
		FullSyncPeriod: &metav1.Duration{Duration: o.fullSyncPeriod}, HealthTimeout: &metav1.Duration{Duration: healthTimeout},
		IPTablesMode: o.iptablesMode, NodeIPs: o.nodeIPs, IPFamily: o.ipFamily, ServiceClusterIPRange: o.serviceCIDRs,
	}
	return kp, ext
}

// configzBody is the body of /configz: kube-proxy's
// {"kubeproxy.config.k8s.io": <KubeProxyConfiguration>} plus
// {"config.rulegen.io": <RulegenConfiguration>}.
func configzBody(o options) ([]byte, error) {
	kp, ext := effectiveConfig(o)
	b, err := json.Marshal(map[string]any{configzKubeProxy: kp, configzRulegen: ext})
	if err != nil {
		return nil, fmt.Errorf("/configz: %w", err)
	}
	return b, nil
}

// configzHandler answers every request with body, as kube-proxy's /configz
// does (JSON, nosniff, any method). The configuration does not change
// while the daemon runs.
func configzHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(body)
	})
}
