package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rulegen/rulegen/test/e2e"
)

// kubeadmData is kube-proxy's ConfigMap as kubeadm v1.37 writes it, one
// file per key (see its README).
const kubeadmData = "../../cmd/rulegen/testdata/kubeadm"

// edit is one substitution in a file of kubeadm's ConfigMap: old must
// occur exactly once, so that a change of the verbatim file fails here
// instead of silently testing something else.
type edit struct{ old, new, why string }

// TestKubeadmDropIn is the drop-in promise: kube-proxy's ConfigMap as
// kubeadm writes it (config.conf + kubeconfig.conf), kube-proxy's
// ServiceAccount and ClusterRoleBinding as kubeadm creates them, and
// kube-proxy's DaemonSet command line with only the binary swapped
// (`--config=<the ConfigMap's mount>/config.conf --hostname-override=$(NODE_NAME)`,
// nothing else) serve a ClusterIP and a NodePort service with real
// packets, in kubeadm's mode (iptables) and in nftables mode. The daemon
// prints the expected warnings for the fields it does not honour, and no
// error.
func TestKubeadmDropIn(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) { testKubeadmDropIn(t, mode) })
	}
}

func testKubeadmDropIn(t *testing.T, mode string) {
	e := newEnv(t, mode)
	token := e.kubeadmKubeProxyAccount()

	// dir stands for the ConfigMap's volume, mounted at /var/lib/kube-proxy
	// by kubeadm's DaemonSet, and for the ServiceAccount's volume at
	// /var/run/secrets/kubernetes.io/serviceaccount.
	dir := t.TempDir()
	sa := filepath.Join(dir, "serviceaccount")
	if err := os.Mkdir(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	// The API server's serving certificate file holds the certificate and
	// the self-signed CA that issued it (kube-apiserver --cert-dir).
	ca, err := os.ReadFile(filepath.Join(e.cp.dir, "certs", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sa, "ca.crt"), string(ca))
	writeFile(t, filepath.Join(sa, "token"), token)

	writeFile(t, filepath.Join(dir, "config.conf"), kubeadmFile(t, "config.conf", []edit{
		// What an operator edits in kubeadm's ConfigMap.
		{"clusterCIDR: 10.244.0.0/16", "clusterCIDR: " + e2e.ClusterCIDR + "," + e2e.ClusterCIDR6,
			"the topology's pod ranges (dual-stack, as kubeadm writes a dual-stack podSubnet)"},
		{"mode: iptables", "mode: " + mode, "the backend under test"},
		// Where the test mounts the ConfigMap.
		{"kubeconfig: /var/lib/kube-proxy/kubeconfig.conf", "kubeconfig: " + filepath.Join(dir, "kubeconfig.conf"),
			"the ConfigMap's mount point"},
	}))
	writeFile(t, filepath.Join(dir, "kubeconfig.conf"), kubeadmFile(t, "kubeconfig.conf", []edit{
		{"server: https://10.0.0.10:6443", "server: https://127.0.0.1:6443", "the test API server's endpoint"},
		{"certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
			"certificate-authority: " + filepath.Join(sa, "ca.crt"), "the ServiceAccount volume's mount point"},
		{"tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
			"tokenFile: " + filepath.Join(sa, "token"), "the ServiceAccount volume's mount point"},
	}))

	// kubeadm's DaemonSet command line, kube-proxy's binary swapped for
	// rulegen's; $(NODE_NAME) is the pod's spec.nodeName.
	e.daemon = e.tp.Node.StartLogged(e.logFile, bins.rulegen, "--config="+filepath.Join(dir, "config.conf"), "--hostname-override=node-a")

	web := e.createService("web", v1.ServiceTypeClusterIP)
	e.setSlice("web", podA, podR)
	np := e.createService("np", v1.ServiceTypeNodePort)
	e.setSlice("np", podB)

	t.Run("clusterip", func(t *testing.T) {
		d := e.in(t).answeredBy(addr(web), "pod-a", "pod-r")
		t.Logf("ClusterIP %s answered %s after the slices were written", addr(web), d.Round(time.Millisecond))
	})
	t.Run("nodeport", func(t *testing.T) {
		e.in(t).answeredBy(fmt.Sprintf("%s:%d", e2e.NodeIP, np.Spec.Ports[0].NodePort), "pod-b")
	})
	t.Run("rules-in-the-configured-mode", func(t *testing.T) {
		// Either backend serves the packets above: the kernel shows which
		// one the file's mode chose.
		nft, _ := e.tp.Node.Run(nil, "nft", "list", "table", "ip", "rulegen")
		ipt, _ := e.tp.Node.Run(nil, "iptables-save", "-t", "nat")
		inNft, inIpt := strings.Contains(nft, web.Spec.ClusterIP), strings.Contains(ipt, web.Spec.ClusterIP)
		if inNft != (mode == "nftables") || inIpt != (mode == "iptables") {
			t.Errorf("mode %s: %s in the nftables table %v, in iptables' nat table %v", mode, web.Spec.ClusterIP, inNft, inIpt)
		}
	})
	t.Run("healthz-on-kube-proxys-default", func(t *testing.T) {
		// kubeadm's file leaves healthzBindAddress empty: kube-proxy's
		// default, every address on port 10256, where load balancers probe.
		url := "http://" + e2e.NodeIP + ":10256/healthz"
		e.in(t).eventually(10*time.Second, url, func() (bool, string) {
			r := e.get(e.tp.Client1, url)
			return strings.HasPrefix(r, "200 ") && strings.Contains(r, `"healthy":true`), r
		})
	})
	t.Run("only-the-expected-warnings", func(t *testing.T) {
		b, err := os.ReadFile(e.logFile)
		if err != nil {
			t.Fatal(err)
		}
		// Every line is either a --config warning, or a structured log line
		// below WARN: anything else (rulegen's "rulegen: <error>", a WARN or
		// ERROR record, a klog line outside the structured logger) is not
		// what a clean start prints.
		warnPrefix := "rulegen: --config: warning: " + filepath.Join(dir, "config.conf") + ": "
		var warned []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if w, ok := strings.CutPrefix(l, warnPrefix); ok {
				field, _, _ := strings.Cut(w, ": ")
				warned = append(warned, field)
			} else if !quietLogLine(l) {
				t.Errorf("unexpected log line: %s", l)
			}
		}
		// The fields of kubeadm's file rulegen does not honour, each with a
		// value that behaves as kube-proxy's default would (a warning, not
		// an error); the same list as cmd/rulegen's TestKubeadmConfig.
		// (The conntrack.* fields are honoured: rulegen sets the sysctls
		// as kube-proxy does.)
		want := []string{"bindAddressHardFail", "oomScoreAdj"}
		// (In nftables mode the empty nodePortAddresses is [primary] to
		// both, so it is no warning either.)
		if !slices.Equal(warned, want) {
			t.Errorf("config warnings name %q, want %q", warned, want)
		}
		if t.Failed() {
			e.dumpLog()
		}
	})
}

// in returns e for a subtest: its failures end the subtest, not its parent.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// quietLogLine reports whether l is a record of the daemon's structured
// logger (text or JSON) at a level below WARN.
func quietLogLine(l string) bool {
	for _, lvl := range []string{"DEBUG", "INFO"} {
		text := strings.HasPrefix(l, "time=") && strings.Contains(l, " level="+lvl+" ")
		json := strings.HasPrefix(l, "{") && strings.Contains(l, `"level":"`+lvl+`"`)
		if text || json {
			return true
		}
	}
	return false
}

// kubeadmKubeProxyAccount creates what kubeadm's kube-proxy addon phase
// creates for kube-proxy's credentials — the ServiceAccount
// kube-system/kube-proxy and the ClusterRoleBinding kubeadm:node-proxier to
// the API server's bootstrap ClusterRole system:node-proxier — and returns
// a token of that ServiceAccount (what the kubelet projects into the pod).
func (e *env) kubeadmKubeProxyAccount() string {
	e.t.Helper()
	sa := &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"}}
	if _, err := e.cp.Client.CoreV1().ServiceAccounts("kube-system").Create(e.ctx(), sa, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:node-proxier"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-proxier"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "kube-proxy", Namespace: "kube-system"}},
	}
	if _, err := e.cp.Client.RbacV1().ClusterRoleBindings().Create(e.ctx(), crb, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	tok, err := e.cp.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(e.ctx(), "kube-proxy",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.Status.Token
}

// kubeadmFile returns a file of kubeadm's ConfigMap with the edits made.
func kubeadmFile(t *testing.T, name string, edits []edit) string {
	return editedFile(t, filepath.Join(kubeadmData, name), edits)
}

// editedFile returns the file at path with each edit made; every edit's old
// text must occur exactly once, so that a changed file fails loudly.
func editedFile(t testing.TB, path string, edits []edit) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, ed := range edits {
		if n := strings.Count(s, ed.old); n != 1 {
			t.Fatalf("%s: %q occurs %d times, want once (to substitute %s)", path, ed.old, n, ed.why)
		}
		s = strings.Replace(s, ed.old, ed.new, 1)
		t.Logf("%s: %q -> %q (%s)", path, ed.old, ed.new, ed.why)
	}
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestQuietLogLine: what the drop-in test counts as a clean start's log.
func TestQuietLogLine(t *testing.T) {
	for _, c := range []struct {
		name, line string
		quiet      bool
	}{
		{"text-info", `time=2026-12-04T13:24:49.046Z level=INFO msg=starting backend=nftables`, true},
		{"text-debug", `time=2026-12-04T13:24:49.046Z level=DEBUG msg=synced`, true},
		{"json-info", `{"time":"2026-12-04T13:24:49Z","level":"INFO","msg":"starting"}`, true},
		{"text-warn", `time=2026-12-04T13:24:49.046Z level=WARN msg="list failed"`, false},
		{"text-error", `time=2026-12-04T13:24:49.046Z level=ERROR msg="sync failed" err="exit status 1"`, false},
		{"json-error", `{"time":"2026-12-04T13:24:49Z","level":"ERROR","msg":"sync failed"}`, false},
		{"klog-error", `E1204 13:24:49.046000   42 reflector.go:200] "Failed to watch" err="forbidden"`, false},
		{"rulegen-error", `rulegen: missing permission: list servicecidrs`, false},
		{"info-word-in-message", `rulegen: level=INFO is not a record`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := quietLogLine(c.line); got != c.quiet {
				t.Errorf("quietLogLine(%q) = %v, want %v", c.line, got, c.quiet)
			}
		})
	}
}
