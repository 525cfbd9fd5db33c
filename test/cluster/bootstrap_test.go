package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/rulegen/rulegen/test/e2e"
	"github.com/rulegen/rulegen/test/netnstest"
)

// The bootstrap test's control plane: kube-apiserver in a namespace of its
// own ("apiserver"), linked to the node only, at the control-plane endpoint
// address. The kubernetes Service's ClusterIP (the first of
// --service-cluster-ip-range) is routed by the node to "remote", which
// drops it: only rules that rulegen writes make it reach the API server.
const (
	apiEndpoint  = "192.168.60.10" // the control-plane endpoint, in "apiserver"
	apiNodeSide  = "192.168.60.1"  // the node's end of the link
	apiClusterIP = "10.96.0.1"     // the kubernetes Service's ClusterIP
)

// TestBootstrap is a node without kube-proxy starting rulegen as deploy/
// configures it: nothing serves the kubernetes Service's ClusterIP before
// rulegen runs, so rulegen must reach the API server at its real address.
// The API server runs in its own namespace and keeps the kubernetes
// Service and its EndpointSlice itself. In-cluster config as the kubelet
// sets it up (KUBERNETES_SERVICE_HOST = the ClusterIP) gets no answer, and
// rulegen says so, naming the server, instead of waiting silently. Both
// documented ways out then work: deploy/kubeconfig.conf pointing at the
// control-plane endpoint (deploy/config.yaml's clientConnection.kubeconfig,
// kubeadm's way for kube-proxy), and in-cluster config with
// KUBERNETES_SERVICE_HOST/PORT set to the endpoint. Each syncs, serves a
// ClusterIP service to a client with real packets, and then serves the
// kubernetes Service's ClusterIP too — which did not answer before it
// started, so rulegen cannot have used it.
//
// In-cluster config reads the ServiceAccount's token and CA from
// /var/run/secrets/kubernetes.io/serviceaccount: the daemon runs in a mount
// namespace of its own (ip netns exec makes one, a slave of the host's)
// with a tmpfs on /run holding them, so the host's files are untouched.
func TestBootstrap(t *testing.T) {
	netnstest.Require(t, "nft", "mount")
	RequireKubeBins(t)
	tp := e2e.NewTopology(t, bins.server)
	api := netnstest.New(t, "apiserver")
	tp.Node.IP("link", "add", "vapi", "type", "veth", "peer", "name", "eth0", "netns", api.Name)
	tp.Node.IP("addr", "add", apiNodeSide+"/24", "dev", "vapi")
	tp.Node.IP("link", "set", "vapi", "up")
	api.IP("addr", "add", apiEndpoint+"/24", "dev", "eth0")
	api.IP("link", "set", "eth0", "up")
	api.IP("route", "add", "default", "via", apiNodeSide)
	cp := StartControlPlaneAt(t, api, apiEndpoint)
	e := &env{t: t, tp: tp, cp: cp, backend: "nftables", logFile: filepath.Join(t.TempDir(), "rulegen.log")}
	e.createNode()

	deploy, _ := filepath.Abs("../../deploy")
	if out, err := e.kubectl("apply", "-f", filepath.Join(deploy, "rbac.yaml")); err != nil {
		t.Fatalf("kubectl apply -f deploy/rbac.yaml: %v\n%s", err, out)
	}
	tok, err := cp.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(e.ctx(), "rulegen",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// sa stands for the ServiceAccount volume the kubelet mounts at
	// /var/run/secrets/kubernetes.io/serviceaccount.
	sa := filepath.Join(t.TempDir(), "serviceaccount")
	if err := os.Mkdir(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sa, "ca.crt"), string(ca))
	writeFile(t, filepath.Join(sa, "token"), tok.Status.Token)

	web := e.createService("web", v1.ServiceTypeClusterIP)
	e.setSlice("web", podA)

	t.Run("the-api-server-keeps-the-kubernetes-service", func(t *testing.T) {
		e.in(t).eventually(30*time.Second, "kubernetes Service and EndpointSlice at the endpoint", func() (bool, string) {
			svc, err := cp.Client.CoreV1().Services("default").Get(e.ctx(), "kubernetes", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if svc.Spec.ClusterIP != apiClusterIP {
				return false, "ClusterIP " + svc.Spec.ClusterIP
			}
			slices, err := cp.Client.DiscoveryV1().EndpointSlices("default").List(e.ctx(),
				metav1.ListOptions{LabelSelector: discovery.LabelServiceName + "=kubernetes"})
			if err != nil {
				return false, err.Error()
			}
			for _, s := range slices.Items {
				for _, ep := range s.Endpoints {
					if len(ep.Addresses) > 0 && ep.Addresses[0] == apiEndpoint && len(s.Ports) > 0 && *s.Ports[0].Port == 6443 {
						return true, ""
					}
				}
			}
			return false, "no EndpointSlice with " + apiEndpoint + ":6443"
		})
	})
	t.Run("before-rulegen-only-the-endpoint-answers", func(t *testing.T) {
		e.in(t).beforeRulegen()
	})
	t.Run("in-cluster-config-at-the-cluster-ip-fails-clearly", func(t *testing.T) {
		// What the kubelet puts in every container's environment.
		e.startInCluster(sa, apiClusterIP, "443", "")
		server := "server=https://" + apiClusterIP + ":443"
		e.in(t).eventually(25*time.Second, "a warning naming the unreachable server", func() (bool, string) {
			b, _ := os.ReadFile(e.logFile)
			l := string(b)
			return strings.Contains(l, "cannot reach the API server; retrying") && strings.Contains(l, server) &&
				strings.Contains(l, "KUBERNETES_SERVICE_HOST"), "not logged yet"
		})
		e.stopDaemon(syscall.SIGTERM)
		b, _ := os.ReadFile(e.logFile)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "retrying") {
				t.Logf("%s", l)
				break
			}
		}
		e.in(t).beforeRulegen()
	})

	configYAML, err := os.ReadFile(filepath.Join(deploy, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const clientConnection = "clientConnection:\n  kubeconfig: /etc/rulegen/kubeconfig.conf\n"
	if n := strings.Count(string(configYAML), clientConnection); n != 1 {
		t.Fatalf("deploy/config.yaml: %q occurs %d times, want once", clientConnection, n)
	}
	for _, form := range []struct {
		name  string
		start func(e *env, dir string)
	}{
		{"kubeconfig-in-the-config-map", func(e *env, dir string) {
			// deploy/'s ConfigMap, mounted at dir: config.yaml names
			// kubeconfig.conf, whose server the operator set to the
			// control-plane endpoint.
			writeFile(e.t, filepath.Join(dir, "config.yaml"), strings.Replace(string(configYAML),
				"kubeconfig: /etc/rulegen/kubeconfig.conf", "kubeconfig: "+filepath.Join(dir, "kubeconfig.conf"), 1))
			writeFile(e.t, filepath.Join(dir, "kubeconfig.conf"), deployFile(e.t, "kubeconfig.conf", []edit{
				{"server: https://control-plane.invalid:6443", "server: https://" + apiEndpoint + ":6443", "the operator's edit: the control-plane endpoint"},
				{"certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
					"certificate-authority: " + filepath.Join(sa, "ca.crt"), "the ServiceAccount volume's mount point"},
				{"tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
					"tokenFile: " + filepath.Join(sa, "token"), "the ServiceAccount volume's mount point"},
			}))
			// deploy/daemonset.yaml's arguments.
			e.daemon = e.tp.Node.StartLogged(e.logFile, bins.rulegen, "--config="+filepath.Join(dir, "config.yaml"), "--hostname-override=node-a")
			// /configz on the metrics address shows what it runs with, in
			// kube-proxy's shape.
			e.eventually(10*time.Second, "/configz", func() (bool, string) {
				r := e.get(e.tp.Node, "http://127.0.0.1:10249/configz")
				return strings.HasPrefix(r, "200 ") && strings.Contains(r, `"kubeproxy.config.k8s.io":{"kind":"KubeProxyConfiguration"`) &&
					strings.Contains(r, `"kubeconfig":"`+filepath.Join(dir, "kubeconfig.conf")+`"`) && strings.Contains(r, `"mode":"nftables"`) &&
					strings.Contains(r, `"hostnameOverride":"node-a"`) && strings.Contains(r, `"config.rulegen.io":{"kind":"RulegenConfiguration"`), r
			})
		}},
		{"in-cluster-config-with-the-endpoint", func(e *env, dir string) {
			// daemonset.yaml's alternative: no clientConnection, and
			// KUBERNETES_SERVICE_HOST/PORT set to the endpoint in the pod spec.
			writeFile(e.t, filepath.Join(dir, "config.yaml"), strings.Replace(string(configYAML), clientConnection, "", 1))
			e.startInCluster(sa, apiEndpoint, "6443", filepath.Join(dir, "config.yaml"))
		}},
	} {
		t.Run(form.name, func(t *testing.T) {
			e := e.in(t)
			e.logFile = filepath.Join(t.TempDir(), "rulegen.log")
			e.beforeRulegen()
			form.start(e, t.TempDir())
			d := e.answeredBy(addr(web), "pod-a")
			t.Logf("ClusterIP %s answered %s after the start", addr(web), d.Round(time.Millisecond))
			b, _ := os.ReadFile(e.logFile)
			if want := `msg="connecting to the API server" server=https://` + apiEndpoint + ":6443"; !strings.Contains(string(b), want) {
				t.Errorf("the log lacks %q", want)
			}
			if strings.Contains(string(b), apiClusterIP) {
				t.Errorf("the log mentions the kubernetes Service's ClusterIP %s", apiClusterIP)
			}
			// Now rulegen serves the kubernetes Service's ClusterIP too
			// (for the node's other clients, and for pods).
			e.eventually(10*time.Second, "the API server at the kubernetes ClusterIP", func() (bool, string) {
				r, err := readyz(e.tp.Node, apiClusterIP+":443", cp.CAFile())
				return err == nil && r == "ok", r
			})
			e.stopDaemon(syscall.SIGTERM)
			// The rules outlive the daemon: remove them, so that the next
			// start begins on a node that serves no ClusterIP again.
			if out, err := e.tp.Node.Run(nil, bins.rulegen, "--cleanup"); err != nil {
				t.Fatalf("rulegen --cleanup: %v\n%s", err, out)
			}
			if t.Failed() {
				e.dumpLog()
			}
		})
	}
}

// beforeRulegen checks the node as rulegen finds it on a fresh boot: no
// rulegen table, the API server answering at the endpoint, and nothing at
// the kubernetes Service's ClusterIP.
func (e *env) beforeRulegen() {
	e.t.Helper()
	if out, err := e.tp.Node.Run(nil, "nft", "list", "table", "ip", "rulegen"); err == nil {
		e.t.Fatalf("the node has rulegen's table already:\n%s", tail(out, 1000))
	}
	if r, err := readyz(e.tp.Node, apiEndpoint+":6443", e.cp.CAFile()); err != nil || r != "ok" {
		e.t.Fatalf("the API server at the endpoint %s:6443: %q %v", apiEndpoint, r, err)
	}
	if r, err := readyz(e.tp.Node, apiClusterIP+":443", e.cp.CAFile()); err == nil {
		e.t.Fatalf("the kubernetes ClusterIP answers before rulegen runs: %q", r)
	}
}

// startInCluster starts rulegen in the node with in-cluster config: the
// ServiceAccount's files from sa at the path rest.InClusterConfig reads
// (on a tmpfs over /run, /var/run's target, in the daemon's own mount
// namespace) and KUBERNETES_SERVICE_HOST/PORT as given. config, if not
// empty, is the --config file.
func (e *env) startInCluster(sa, host, port, config string) {
	e.t.Helper()
	const dir = "/var/run/secrets/kubernetes.io/serviceaccount"
	script := `set -e
mount -t tmpfs -o size=1m,mode=0755 rulegen-test /run
mkdir -p ` + dir + `
cp "$1/token" "$1/ca.crt" ` + dir + `/
shift
exec "$@"`
	args := []string{"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port, "sh", "-c", script, "sh", sa, bins.rulegen, "--hostname-override=node-a"}
	if config != "" {
		args = append(args, "--config="+config)
	} else {
		args = append(args, "--backend=nftables", "--cluster-cidr="+e2e.ClusterCIDR)
	}
	e.daemon = e.tp.Node.StartLogged(e.logFile, "env", args...)
}

// readyz asks the API server at addr (host:port) for /readyz from inside
// ns, as the admin, verifying its certificate with caFile; at most 2 s.
func readyz(ns *netnstest.NS, addr, caFile string) (string, error) {
	cfg := &rest.Config{Host: "https://" + addr, BearerToken: AdminToken, Timeout: 2 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}, Dial: ns.DialContext}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return string(b), err
}

// deployFile returns a file of deploy/ with the edits made.
func deployFile(t testing.TB, name string, edits []edit) string {
	return editedFile(t, filepath.Join("../../deploy", name), edits)
}
