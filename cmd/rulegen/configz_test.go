package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	logsapi "k8s.io/component-base/logs/api/v1"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// parseOptions parses args (and the --config file among them) as run does.
func parseOptions(t *testing.T, args ...string) options {
	t.Helper()
	var o options
	fs := newFlags(&o, io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := applyKubeProxyFlags(fs, io.Discard); err != nil {
		t.Fatal(err)
	}
	if o.config != "" {
		if _, err := loadConfig(fs, o.config); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// TestConfigz: /configz answers as kube-proxy's does (JSON, nosniff) with
// the effective KubeProxyConfiguration under "kubeproxy.config.k8s.io" —
// the published type, decoded strictly — and rulegen's own settings under
// "config.rulegen.io"; written back as a --config file, the two documents
// give the same effective configuration. (Except --min-sync-period 0, the
// flag's default, which the file format cannot say: kube-proxy defaults a
// zero minSyncPeriod to 1s. The cases without a file give it.)
func TestConfigz(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(kp kpv1alpha1.KubeProxyConfiguration, ext rulegenConfiguration) string
	}{
		{name: "kubeadm's file and command line", args: []string{"--config=testdata/kubeadm/config.conf", "--hostname-override=node-a"},
			check: func(kp kpv1alpha1.KubeProxyConfiguration, ext rulegenConfiguration) string {
				return want(kp.APIVersion+" "+kp.Kind, "kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration") +
					want(string(kp.Mode), "iptables") + want(kp.HostnameOverride, "node-a") + want(kp.ClusterCIDR, "10.244.0.0/16") +
					want(kp.ClientConnection.Kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf") +
					want(kp.ClientConnection.ContentType, "application/vnd.kubernetes.protobuf") + want(kp.ClientConnection.QPS, float32(5)) +
					want(kp.ClientConnection.Burst, int32(10)) + want(kp.HealthzBindAddress, "0.0.0.0:10256") +
					want(kp.IPTables.SyncPeriod.Duration.String(), "30s") + want(*kp.Conntrack.MaxPerCore, int32(32768)) +
					want(kp.Conntrack.TCPEstablishedTimeout.Duration.String(), "24h0m0s") + want(kp.BindAddressHardFail, true) +
					want(ext.APIVersion+" "+ext.Kind, "config.rulegen.io/v1alpha1 RulegenConfiguration") +
					want(ext.FullSyncPeriod.Duration.String(), "1h0m0s") + want(ext.IPTablesMode, "auto") +
					want(ext.HealthTimeout.Duration.String(), "1m0s") // twice syncPeriod
			}},
		{name: "flags only", args: []string{"--node-name=n1", "--backend=nftables", "--cluster-cidr=10.244.0.0/16,fd00:244::/32", "--nodeport-addresses=primary",
			"--sync-period=10s", "--min-sync-period=1s", "--kube-api-content-type=application/json", "-v=2", "--logging-format=json",
			"--full-sync-period=2h", "--node-ip=10.0.0.5", "--service-cluster-ip-range=10.96.0.0/12", "--conntrack-udp-timeout=30s", "--kubeconfig=/k"},
			check: func(kp kpv1alpha1.KubeProxyConfiguration, ext rulegenConfiguration) string {
				return want(string(kp.Mode), "nftables") + want(kp.HostnameOverride, "n1") + want(kp.ClusterCIDR, "10.244.0.0/16,fd00:244::/32") +
					want(strings.Join(kp.NodePortAddresses, " "), "primary") + want(kp.NFTables.SyncPeriod.Duration.String(), "10s") +
					want(kp.ClientConnection.ContentType, "application/json") + want(kp.Logging.Verbosity, logsapi.VerbosityLevel(2)) +
					want(kp.Logging.Format, "json") + want(kp.Conntrack.UDPTimeout.Duration.String(), "30s") +
					want(ext.FullSyncPeriod.Duration.String(), "2h0m0s") + want(strings.Join(ext.NodeIPs, " "), "10.0.0.5") +
					want(strings.Join(ext.ServiceClusterIPRange, " "), "10.96.0.0/12")
			}},
		{name: "every node IP is kube-proxy's all-addresses CIDRs", args: []string{"--node-name=n1", "--backend=nftables", "--min-sync-period=1s"},
			check: func(kp kpv1alpha1.KubeProxyConfiguration, _ rulegenConfiguration) string {
				return want(strings.Join(kp.NodePortAddresses, " "), "0.0.0.0/0 ::/0")
			}},
		{name: "detect-local by interface", args: []string{"--node-name=n1", "--backend=nftables", "--min-sync-period=1s",
			"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=veth"},
			check: func(kp kpv1alpha1.KubeProxyConfiguration, _ rulegenConfiguration) string {
				return want(string(kp.DetectLocalMode), "InterfaceNamePrefix") + want(kp.DetectLocal.InterfaceNamePrefix, "veth") +
					want(kp.DetectLocal.BridgeInterface, "")
			}},
		{name: "the all keyword too", args: []string{"--node-name=n1", "--nodeport-addresses=all", "--min-sync-period=2s"},
			check: func(kp kpv1alpha1.KubeProxyConfiguration, _ rulegenConfiguration) string {
				return want(strings.Join(kp.NodePortAddresses, " "), "0.0.0.0/0 ::/0")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := parseOptions(t, tc.args...)
			body, err := configzBody(o)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			configzHandler(body).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/configz", nil))
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("answer %d, headers %v", rec.Code, rec.Header())
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &top); err != nil {
				t.Fatal(err)
			}
			if keys := slices.Sorted(func(yield func(string) bool) {
				for k := range top {
					if !yield(k) {
						return
					}
				}
			}); !slices.Equal(keys, []string{"config.rulegen.io", "kubeproxy.config.k8s.io"}) {
				t.Fatalf("/configz keys %q", keys)
			}
			var kp kpv1alpha1.KubeProxyConfiguration
			var ext rulegenConfiguration
			for _, d := range []struct {
				key string
				v   any
			}{{"kubeproxy.config.k8s.io", &kp}, {"config.rulegen.io", &ext}} {
				strict, err := sigsjson.UnmarshalStrict(top[d.key], d.v, sigsjson.DisallowUnknownFields)
				if err != nil || len(strict) > 0 {
					t.Fatalf("%s: %v %v", d.key, err, strict)
				}
			}
			if msg := tc.check(kp, ext); msg != "" {
				t.Error(msg)
			}

			// Back as a --config file: the same effective configuration.
			kpYAML, err := yaml.Marshal(kp)
			if err != nil {
				t.Fatal(err)
			}
			extYAML, err := yaml.Marshal(ext)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, append(append(kpYAML, "---\n"...), extYAML...), 0o600); err != nil {
				t.Fatal(err)
			}
			again, err := configzBody(parseOptions(t, "--config="+path))
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(body) {
				t.Errorf("/configz as a config file gives another configuration:\n%s\nwant\n%s", again, body)
			}
		})
	}
}
