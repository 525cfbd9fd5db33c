// Package cluster tests the rulegen daemon against a real kube-apiserver
// and etcd (built from the Go module proxy by `make kube-bins`), both
// running on the loopback of the node namespace of the e2e topology (or,
// for TestBootstrap, in a namespace of their own at a control-plane
// endpoint address), with real packets through the rules the daemon
// writes.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rulegen/rulegen/test/netnstest"
)

// KubeBinDir is where `make kube-bins` puts kube-apiserver, etcd ("server"),
// kube-proxy and kubectl; RULEGEN_KUBE_BIN overrides it.
func KubeBinDir() string {
	if d := os.Getenv("RULEGEN_KUBE_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "rulegen", "kube-v1.37.2")
}

// RequireKubeBins skips (outside CI) or fails (under CI) when the control
// plane binaries have not been built.
func RequireKubeBins(t testing.TB) {
	t.Helper()
	for _, b := range []string{"kube-apiserver", "server"} {
		if _, err := os.Stat(filepath.Join(KubeBinDir(), b)); err != nil {
			msg := fmt.Sprintf("cluster test needs %s in %s: run `make kube-bins` (make test does)", b, KubeBinDir())
			if netnstest.InCI() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// AdminToken authenticates the tests and the daemon as a cluster admin.
const AdminToken = "rulegen-test-admin-token"

// ControlPlane is etcd plus kube-apiserver in one namespace.
type ControlPlane struct {
	t          testing.TB
	ns         *netnstest.NS
	dir        string
	apiserver  *exec.Cmd
	etcd       *exec.Cmd
	address    string // kube-apiserver's bind and advertise address
	reconciler string // kube-apiserver's --endpoint-reconciler-type
	Kubeconfig string
	Client     kubernetes.Interface
}

// StartControlPlane starts etcd and kube-apiserver on 127.0.0.1 of ns and
// waits (at most 60 s) until the API server is ready. The kubernetes
// Service gets no endpoints (--endpoint-reconciler-type none): the
// loopback is no address for one.
func StartControlPlane(t testing.TB, ns *netnstest.NS) *ControlPlane {
	t.Helper()
	return startControlPlane(t, ns, "127.0.0.1", "none")
}

// StartControlPlaneAt starts etcd on the loopback of ns and kube-apiserver
// on address, its bind and advertise address (the control-plane
// endpoint), and waits (at most 60 s) until the API server is ready. As in
// a real cluster, the API server itself keeps the kubernetes Service and
// its Endpoints and EndpointSlice pointing at address:6443 (endpoint
// reconciler lease), and its self-signed serving certificate holds address
// and the Service's ClusterIP.
func StartControlPlaneAt(t testing.TB, ns *netnstest.NS, address string) *ControlPlane {
	t.Helper()
	return startControlPlane(t, ns, address, "lease")
}

// CAFile is the file that verifies the API server's serving certificate
// (the certificate and the self-signed CA that issued it).
func (cp *ControlPlane) CAFile() string { return filepath.Join(cp.dir, "certs", "apiserver.crt") }

func startControlPlane(t testing.TB, ns *netnstest.NS, address, reconciler string) *ControlPlane {
	t.Helper()
	cp := &ControlPlane{t: t, ns: ns, dir: t.TempDir(), address: address, reconciler: reconciler}
	bin := KubeBinDir()
	cp.etcd = ns.StartLogged(filepath.Join(cp.dir, "etcd.log"), filepath.Join(bin, "server"),
		"--data-dir", filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--log-level", "warn",
		// A throwaway test store: no fsync per write (creating tens of
		// thousands of objects is otherwise bound by the disk).
		"--unsafe-no-fsync")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(cp.dir, "sa.key")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	tokens := filepath.Join(cp.dir, "tokens.csv")
	os.WriteFile(tokens, []byte(AdminToken+",admin,admin,system:masters\n"), 0o600)
	cp.startAPIServer(keyFile, tokens)

	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	cp.writeKubeconfig(cp.Kubeconfig, AdminToken)
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	// The client runs in the test process, which is not in the node
	// namespace: it reaches the API server through a dialer that enters it.
	cfg.Dial = ns.DialContext
	cp.Client = kubernetes.NewForConfigOrDie(cfg)
	cp.WaitReady()
	return cp
}

func (cp *ControlPlane) startAPIServer(keyFile, tokens string) {
	cp.apiserver = cp.ns.StartLogged(filepath.Join(cp.dir, "apiserver.log"), filepath.Join(KubeBinDir(), "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", cp.address, "--advertise-address", cp.address, "--secure-port", "6443",
		"--endpoint-reconciler-type", cp.reconciler,
		"--cert-dir", filepath.Join(cp.dir, "certs"),
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--service-node-port-range", "30000-32767",
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", keyFile, "--service-account-signing-key-file", keyFile,
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins", "ServiceAccount",
		"--v", "0")
}

// WaitReady waits (at most 60 s) until /readyz answers ok.
func (cp *ControlPlane) WaitReady() {
	cp.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(cp.dir, "apiserver.log"))
	cp.t.Fatalf("kube-apiserver not ready after 60s; log tail:\n%s", tail(string(log), 3000))
}

// PIDs returns the process IDs of kube-apiserver and etcd (`ip netns exec`
// executes each in place).
func (cp *ControlPlane) PIDs() (apiserver, etcd int) {
	return cp.apiserver.Process.Pid, cp.etcd.Process.Pid
}

// StopAPIServer stops kube-apiserver (by PID); StartAPIServer starts it again.
func (cp *ControlPlane) StopAPIServer() {
	netnstest.Stop(cp.apiserver, syscall.SIGKILL, 15*time.Second) // as a crash: no goodbye to the watchers
}

// StartAPIServer restarts kube-apiserver after StopAPIServer and waits until ready.
func (cp *ControlPlane) StartAPIServer() {
	cp.startAPIServer(filepath.Join(cp.dir, "sa.key"), filepath.Join(cp.dir, "tokens.csv"))
	cp.WaitReady()
}

// WriteKubeconfig writes a kubeconfig for a bearer token.
func (cp *ControlPlane) writeKubeconfig(path, token string) {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://%s", insecure-skip-tls-verify: true}
users:
- name: user
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: user}
current-context: test
`, net.JoinHostPort(cp.address, "6443"), token)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		cp.t.Fatal(err)
	}
}

// KubeconfigFor writes a kubeconfig for another token and returns its path.
func (cp *ControlPlane) KubeconfigFor(name, token string) string {
	p := filepath.Join(cp.dir, name+".kubeconfig")
	cp.writeKubeconfig(p, token)
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
