package cluster

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/rulegen/rulegen/test/e2e"
)

// TestDeployKustomize renders deploy/ with kubectl's kustomize (no API
// server) and checks what the DaemonSet gets from it: the ConfigMap under
// a name that hashes the config file, so that an edit of deploy/config.yaml
// changes the pod template and rolls the pods; Linux nodes only; a pinned
// image, in the cleanup Job too.
func TestDeployKustomize(t *testing.T) {
	RequireKubeBins(t)
	kubectl := filepath.Join(KubeBinDir(), "kubectl")
	deploy, _ := filepath.Abs("../../deploy")
	// render returns the DaemonSet and the ConfigMaps kustomize makes of dir.
	render := func(t *testing.T, dir string) (appsv1.DaemonSet, map[string]v1.ConfigMap) {
		t.Helper()
		out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
		}
		var ds appsv1.DaemonSet
		cms := map[string]v1.ConfigMap{}
		for _, doc := range strings.Split(string(out), "\n---\n") {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatal(err)
			}
			switch tm.Kind {
			case "DaemonSet":
				if err := yaml.Unmarshal([]byte(doc), &ds); err != nil {
					t.Fatal(err)
				}
			case "ConfigMap":
				var cm v1.ConfigMap
				if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
					t.Fatal(err)
				}
				cms[cm.Name] = cm
			}
		}
		return ds, cms
	}
	configMapOf := func(t *testing.T, ds appsv1.DaemonSet) string {
		t.Helper()
		for _, v := range ds.Spec.Template.Spec.Volumes {
			if v.Name == "config" && v.ConfigMap != nil {
				return v.ConfigMap.Name
			}
		}
		t.Fatalf("DaemonSet %s: no volume \"config\" from a ConfigMap", ds.Name)
		return ""
	}
	ds, cms := render(t, deploy)
	name := configMapOf(t, ds)

	t.Run("config-map-named-by-its-content", func(t *testing.T) {
		cm, ok := cms[name]
		if !ok || !strings.HasPrefix(name, "rulegen-") {
			t.Fatalf("the DaemonSet mounts ConfigMap %q; kustomize made %v", name, slices.Collect(maps.Keys(cms)))
		}
		file, err := os.ReadFile(filepath.Join(deploy, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["config.yaml"] != string(file) {
			t.Errorf("ConfigMap %s: data config.yaml is not deploy/config.yaml", name)
		}
	})

	t.Run("api-server-at-the-control-plane-endpoint", func(t *testing.T) {
		// The bootstrap TestBootstrap runs: config.yaml names the
		// ConfigMap's kubeconfig.conf at the volume's mount point, and that
		// kubeconfig holds a placeholder server for the control-plane
		// endpoint (not the kubernetes Service's ClusterIP) and the
		// ServiceAccount's files, which the pod mounts.
		cm := cms[name]
		file, err := os.ReadFile(filepath.Join(deploy, "kubeconfig.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["kubeconfig.conf"] != string(file) {
			t.Fatalf("ConfigMap %s: data kubeconfig.conf is not deploy/kubeconfig.conf", name)
		}
		var kp kpv1alpha1.KubeProxyConfiguration
		first, _, _ := strings.Cut(cm.Data["config.yaml"], "\n---\n")
		if err := yaml.Unmarshal([]byte(first), &kp); err != nil {
			t.Fatal(err)
		}
		var mount string
		for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
			if m.Name == "config" {
				mount = m.MountPath
			}
		}
		if want := path.Join(mount, "kubeconfig.conf"); kp.ClientConnection.Kubeconfig != want {
			t.Errorf("config.yaml: clientConnection.kubeconfig %q, want %q (the ConfigMap's key at its mount point)", kp.ClientConnection.Kubeconfig, want)
		}
		kc, err := clientcmd.Load(file)
		if err != nil {
			t.Fatalf("deploy/kubeconfig.conf: %v", err)
		}
		cluster := kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster]
		user := kc.AuthInfos[kc.Contexts[kc.CurrentContext].AuthInfo]
		if cluster.Server != "https://control-plane.invalid:6443" {
			t.Errorf("deploy/kubeconfig.conf: server %q, want the placeholder the README names", cluster.Server)
		}
		const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
		if cluster.CertificateAuthority != sa+"ca.crt" || user.TokenFile != sa+"token" {
			t.Errorf("deploy/kubeconfig.conf: CA %q, token file %q, want the ServiceAccount's", cluster.CertificateAuthority, user.TokenFile)
		}
		if a := ds.Spec.Template.Spec.AutomountServiceAccountToken; a != nil && !*a {
			t.Errorf("the DaemonSet does not mount the ServiceAccount's token")
		}
	})

	t.Run("config-change-rolls-the-pods", func(t *testing.T) {
		dir := t.TempDir()
		entries, err := os.ReadDir(deploy)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			b, err := os.ReadFile(filepath.Join(deploy, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if en.Name() == "config.yaml" {
				b = []byte(strings.Replace(string(b), "syncPeriod: 30s", "syncPeriod: 31s", 1))
			}
			if err := os.WriteFile(filepath.Join(dir, en.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		changed, _ := render(t, dir)
		if got := configMapOf(t, changed); got == name {
			t.Errorf("after an edit of config.yaml the DaemonSet still mounts %s: its pods would not roll", got)
		}
	})

	t.Run("linux-nodes-and-a-pinned-image", func(t *testing.T) {
		job, err := os.ReadFile(filepath.Join(deploy, "cleanup-job.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var j batchv1.Job
		if err := yaml.Unmarshal(job, &j); err != nil {
			t.Fatal(err)
		}
		for _, pod := range []struct {
			name string
			spec v1.PodSpec
		}{
			{"DaemonSet rulegen", ds.Spec.Template.Spec},
			{"Job " + j.Name, j.Spec.Template.Spec},
		} {
			if got := pod.spec.NodeSelector["kubernetes.io/os"]; got != "linux" {
				t.Errorf("%s: nodeSelector kubernetes.io/os is %q, want linux", pod.name, got)
			}
			for _, c := range pod.spec.Containers {
				if _, tag, ok := strings.Cut(c.Image, ":"); !ok || tag == "latest" {
					t.Errorf("%s: container %s: image %q is not pinned to a version", pod.name, c.Name, c.Image)
				}
				if c.Image != ds.Spec.Template.Spec.Containers[0].Image {
					t.Errorf("%s: container %s: image %q is not the DaemonSet's", pod.name, c.Name, c.Image)
				}
			}
		}
	})
}

func (e *env) kubectl(args ...string) (string, error) {
	return e.tp.Node.Run(nil, filepath.Join(KubeBinDir(), "kubectl"), append([]string{"--kubeconfig", e.cp.Kubeconfig}, args...)...)
}

// TestDeploy validates deploy/ against the real API server (server-side dry
// run, then a real apply), runs the daemon with the ServiceAccount's token
// bound by the ClusterRoleBinding, and checks that the ClusterRole is
// exactly what rulegen needs: without any one of its permissions, rulegen
// refuses to start and names the missing permission.
func TestDeploy(t *testing.T) {
	e := newEnv(t, "nftables")
	deploy, _ := filepath.Abs("../../deploy")
	t.Run("kubectl-apply-k-dry-run-server", func(t *testing.T) {
		if out, err := e.kubectl("apply", "-k", deploy, "--dry-run=server"); err != nil {
			t.Fatalf("kubectl apply -k deploy/ --dry-run=server: %v\n%s", err, out)
		} else {
			t.Logf("%s", out)
		}
		// The cleanup Job, for node node-a, as its header says to use it.
		job, err := os.ReadFile(filepath.Join(deploy, "cleanup-job.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "job.yaml")
		os.WriteFile(f, []byte(strings.ReplaceAll(string(job), "the-node", "node-a")), 0o644)
		if out, err := e.kubectl("apply", "-f", f, "--dry-run=server"); err != nil {
			t.Fatalf("cleanup job: %v\n%s", err, out)
		}
	})
	if out, err := e.kubectl("apply", "-k", deploy); err != nil {
		t.Fatalf("kubectl apply -k deploy/: %v\n%s", err, out)
	}
	tok, err := e.cp.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(e.ctx(), "rulegen",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saKubeconfig := e.cp.KubeconfigFor("rulegen-sa", tok.Status.Token)

	t.Run("daemon-syncs-with-the-service-account", func(t *testing.T) {
		web := e.createService("web", v1.ServiceTypeClusterIP)
		e.setSlice("web", podA)
		// deploy/config.yaml: the file the DaemonSet mounts (kustomize's
		// configMapGenerator puts it in the ConfigMap unchanged).
		cfg := filepath.Join(deploy, "config.yaml")
		e.daemon = e.tp.Node.StartLogged(e.logFile, bins.rulegen, "--kubeconfig", saKubeconfig, "--node-name", "node-a", "--config", cfg)
		e.answeredBy(addr(web), "pod-a")
		e.stopDaemon(syscall.SIGTERM)
	})

	t.Run("each-permission-is-needed", func(t *testing.T) {
		roles := e.cp.Client.RbacV1().ClusterRoles()
		orig, err := roles.Get(e.ctx(), "rulegen", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			cur, _ := roles.Get(context.Background(), "rulegen", metav1.GetOptions{})
			cur.Rules = orig.Rules
			roles.Update(context.Background(), cur, metav1.UpdateOptions{})
		}()
		type perm struct{ rule, verb int }
		var perms []perm
		for i, r := range orig.Rules {
			for j := range r.Verbs {
				perms = append(perms, perm{i, j})
			}
		}
		if len(perms) != 8 {
			t.Fatalf("the role grants %d permissions; this test expects list+watch on services, endpointslices, nodes, servicecidrs", len(perms))
		}
		for _, p := range perms {
			r := orig.Rules[p.rule]
			verb := r.Verbs[p.verb]
			name := verb + " " + r.Resources[0]
			t.Run("without-"+strings.ReplaceAll(name, " ", "-"), func(t *testing.T) {
				cur, err := roles.Get(e.ctx(), "rulegen", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				cur.Rules = slices.Clone(orig.Rules)
				cut := cur.Rules[p.rule].DeepCopy()
				cut.Verbs = slices.Delete(slices.Clone(cut.Verbs), p.verb, p.verb+1)
				cur.Rules[p.rule] = *cut
				if _, err := roles.Update(e.ctx(), cur, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				// RBAC changes reach the authorizer through a watch: allow a moment.
				time.Sleep(300 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.tp.Node.Name, bins.rulegen, "--kubeconfig", saKubeconfig,
					"--node-name", "node-a", "--healthz-bind-address", "", "--metrics-bind-address", "")
				out, err := cmd.CombinedOutput()
				if ctx.Err() != nil {
					t.Fatalf("rulegen kept running without %s", name)
				}
				if err == nil || !strings.Contains(string(out), "missing permission: "+name) {
					t.Errorf("without %s: want a failed start naming it, got %v:\n%s", name, err, out)
				}
			})
		}
	})
}

// TestMigrationFromKubeProxy moves a node from the real kube-proxy (built
// from the Go module proxy like the API server) to rulegen, as the README
// describes: rulegen starts beside kube-proxy, kube-proxy stops, rulegen
// --cleanup-kube-proxy removes its leftovers. An established connection and
// new connections keep working through every step.
func TestMigrationFromKubeProxy(t *testing.T) {
	for _, mode := range []string{"nftables", "iptables"} {
		t.Run(mode, func(t *testing.T) { testMigration(t, mode) })
	}
}

func testMigration(t *testing.T, mode string) {
	e := newEnv(t, "nftables")
	if _, err := os.Stat(filepath.Join(KubeBinDir(), "kube-proxy")); err != nil {
		t.Fatalf("kube-proxy not built: %v (make kube-bins)", err)
	}
	web := e.createService("web", v1.ServiceTypeClusterIP)
	e.setSlice("web", podA, podB, podR)
	kpLog := filepath.Join(t.TempDir(), "kube-proxy.log")
	kp := e.tp.Node.StartLogged(kpLog, filepath.Join(KubeBinDir(), "kube-proxy"),
		"--kubeconfig", e.cp.Kubeconfig, "--hostname-override", "node-a", "--proxy-mode", mode,
		"--cluster-cidr", e2e.ClusterCIDR, "--conntrack-max-per-core", "0",
		"--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
		"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249", "--v", "1")
	step := func(what string) {
		t.Helper()
		t.Logf("step: %s", what)
		for i := 0; i < 30; i++ { // new connections, bounded
			if r := e.probe(e.tp.Client1, addr(web)); !strings.HasPrefix(r, "ok ") {
				b, _ := os.ReadFile(kpLog)
				t.Fatalf("%s: a new connection failed: %s\nkube-proxy log tail:\n%s", what, r, tail(string(b), 2000))
			}
		}
	}
	e.eventually(60*time.Second, "kube-proxy serving the service", func() (bool, string) {
		r := e.probe(e.tp.Client1, addr(web))
		return strings.HasPrefix(r, "ok "), r
	})
	step("kube-proxy alone")

	hold := exec.Command("ip", "netns", "exec", e.tp.Client1.Name, bins.server, "-hold", "-addr", addr(web), "-for", "12s")
	var holdOut strings.Builder
	hold.Stdout = &holdOut
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { hold.Process.Kill(); hold.Wait() }()
	time.Sleep(300 * time.Millisecond)

	// Both proxies default to kube-proxy's ports (10256 and 10249) on the
	// host network: beside kube-proxy, rulegen takes others (the README's
	// migration path) until kube-proxy is gone.
	e.startDaemon("--healthz-bind-address", "127.0.0.1:10266", "--metrics-bind-address", "127.0.0.1:10267")
	e.eventually(20*time.Second, "rulegen synced beside kube-proxy", func() (bool, string) {
		out, _ := e.tp.Node.Run(nil, "nft", "list", "table", "ip", "rulegen")
		return strings.Contains(out, addr(web)[:strings.LastIndex(addr(web), ":")]), "no rules yet"
	})
	step("kube-proxy and rulegen side by side")
	e.compareWithKubeProxy(t, "127.0.0.1:10256", "127.0.0.1:10249", "127.0.0.1:10266", "127.0.0.1:10267")

	kp.Process.Signal(syscall.SIGTERM)
	kp.Wait()
	step("kube-proxy stopped, its rules still there")

	out, err := e.tp.Node.Run(nil, bins.rulegen, "--cleanup-kube-proxy")
	if err != nil {
		t.Fatalf("rulegen --cleanup-kube-proxy: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	if out, _ := e.tp.Node.Run(nil, "nft", "list", "tables"); strings.Contains(out, "kube-proxy") {
		t.Errorf("kube-proxy's nftables table is still there:\n%s", out)
	}
	if out, _ := e.tp.Node.Run(nil, "iptables-save"); strings.Contains(out, "KUBE-SERVICES") || strings.Contains(out, "KUBE-SVC-") {
		t.Errorf("kube-proxy's iptables chains are still there")
	}
	step("rulegen alone")

	if err := hold.Wait(); err != nil {
		t.Fatal(err)
	}
	if r := holdOut.String(); !strings.HasPrefix(r, "connected ") || !strings.Contains(r, "held ") {
		t.Errorf("the established connection did not survive the migration: %s", r)
	} else {
		t.Logf("established connection: %s", strings.ReplaceAll(strings.TrimSpace(r), "\n", "; "))
	}
}

// compareWithKubeProxy asks kube-proxy and rulegen, both healthy, the same
// questions: /healthz and /livez give the same status code and the same
// JSON keys; the metrics of what both do have the same names.
func (e *env) compareWithKubeProxy(t *testing.T, kpHealth, kpMetrics, rgHealth, rgMetrics string) {
	t.Helper()
	keys := func(r string) (string, []string) {
		code, body, _ := strings.Cut(r, " ")
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			return code, []string{"not JSON: " + body}
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return code, ks
	}
	for _, path := range []string{"/healthz", "/livez"} {
		kpCode, kpKeys := keys(e.get(e.tp.Node, "http://"+kpHealth+path))
		rgCode, rgKeys := keys(e.get(e.tp.Node, "http://"+rgHealth+path))
		if kpCode != rgCode || !slices.Equal(kpKeys, rgKeys) {
			t.Errorf("%s: kube-proxy %s %v, rulegen %s %v", path, kpCode, kpKeys, rgCode, rgKeys)
		}
	}
	e.compareMetricNames(t, kpMetrics, rgMetrics)
}

// compareMetricNames checks that the metrics of the features both proxies
// have exist under the same names in both (by their # TYPE lines): those
// every healthy node has, and extra ones the test made both expose. It
// logs the kubeproxy_ metrics only kube-proxy exposes.
func (e *env) compareMetricNames(t *testing.T, kpMetrics, rgMetrics string, extra ...string) {
	t.Helper()
	names := func(addr string) map[string]bool {
		out := map[string]bool{}
		for _, l := range strings.Split(e.get(e.tp.Node, "http://"+addr+"/metrics"), "\n") {
			if n, ok := strings.CutPrefix(l, "# TYPE "); ok {
				out[strings.Fields(n)[0]] = true
			}
		}
		return out
	}
	kp, rg := names(kpMetrics), names(rgMetrics)
	// Shared features whose series exist in both after a sync and a probe
	// (a vector with no sample yet is not exposed, by either).
	for _, n := range append([]string{"kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
		"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "kubeproxy_sync_proxy_rules_endpoint_changes_total",
		"kubeproxy_sync_proxy_rules_endpoint_changes_pending", "kubeproxy_sync_proxy_rules_service_changes_total",
		"kubeproxy_sync_proxy_rules_service_changes_pending", "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
		"kubeproxy_proxy_healthz_total", "kubeproxy_proxy_livez_total", "rest_client_requests_total",
		"rest_client_request_duration_seconds", "go_goroutines", "process_cpu_seconds_total"}, extra...) {
		if !kp[n] || !rg[n] {
			t.Errorf("%s: exposed by kube-proxy %v, by rulegen %v; want both", n, kp[n], rg[n])
		}
	}
	var onlyKP, both []string
	for n := range kp {
		if strings.HasPrefix(n, "kubeproxy_") {
			if rg[n] {
				both = append(both, n)
			} else {
				onlyKP = append(onlyKP, n)
			}
		}
	}
	slices.Sort(onlyKP)
	slices.Sort(both)
	t.Logf("kubeproxy_ metrics both expose now (%d): %v", len(both), both)
	t.Logf("kubeproxy_ metrics only kube-proxy exposes now: %v", onlyKP)
}
