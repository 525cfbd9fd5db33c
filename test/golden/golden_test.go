// Package golden pins the rules rulegen writes for each kind of Service.
//
// Each directory under testdata/ is one scenario (see testdata/README.md for
// the address plan). The test renders it with both backends and compares
// with the expected files; `go test ./test/golden -update` rewrites them.
package golden

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/rulegen/rulegen/pkg/manifest"
	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/test/netnstest"
)

var update = flag.Bool("update", false, "rewrite the expected files from the current output")

// config is a scenario's config.yaml; zero fields take the defaults.
type config struct {
	NodeName          string   `json:"nodeName"`
	NodeIPs           []string `json:"nodeIPs"`
	ClusterCIDRs      []string `json:"clusterCIDRs"`
	Families          []string `json:"families"`
	MasqueradeAll     bool     `json:"masqueradeAll"`
	NodePortAddresses []string `json:"nodePortAddresses"`
	// TraceFromInside adds to trace.txt a pod's and the node's connections
	// to the external destinations (nodePort, external and LB IPs), and
	// the node's connection to an LB IP from that LB IP (a node holding
	// the LB IP as a local address).
	TraceFromInside bool `json:"traceFromInside"`
	// The settings below are nil or empty by default: kube-proxy's
	// defaults (see rules.Config).
	MasqueradeBit         *int32   `json:"masqueradeBit"`
	ServiceCIDRs          []string `json:"serviceCIDRs"`
	LocalhostNodePorts    *bool    `json:"localhostNodePorts"`
	ConntrackTCPBeLiberal bool     `json:"conntrackTCPBeLiberal"`
	// BridgeInterface and InterfaceNamePrefix (at most one) are
	// kube-proxy's detectLocal fields: pod traffic is told by the
	// interface it arrives on, not by clusterCIDRs.
	BridgeInterface     string `json:"bridgeInterface"`
	InterfaceNamePrefix string `json:"interfaceNamePrefix"`
}

type scenario struct {
	name, dir       string
	cfg             *rules.Config
	families        []rules.Family
	traceFromInside bool
}

func scenarios(t *testing.T) []scenario {
	t.Helper()
	dirs, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var out []scenario
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join("testdata", d.Name())
		c := config{
			NodeName:     "node-a",
			NodeIPs:      []string{"192.168.1.10", "fd00:1::10"},
			ClusterCIDRs: []string{"10.244.0.0/16", "fd00:244::/32"},
			Families:     []string{"ipv4"},
		}
		if b, err := os.ReadFile(filepath.Join(dir, "config.yaml")); err == nil {
			if err := yaml.UnmarshalStrict(b, &c); err != nil {
				t.Fatalf("%s/config.yaml: %v", dir, err)
			}
		}
		cfg := &rules.Config{Node: rules.Node{Name: c.NodeName}, MasqueradeAll: c.MasqueradeAll,
			MasqueradeBit: c.MasqueradeBit, LocalhostNodePorts: c.LocalhostNodePorts, ConntrackTCPBeLiberal: c.ConntrackTCPBeLiberal}
		for _, s := range c.ServiceCIDRs {
			cfg.ServiceCIDRs = append(cfg.ServiceCIDRs, netip.MustParsePrefix(s))
		}
		switch {
		case c.BridgeInterface != "" && c.InterfaceNamePrefix != "":
			t.Fatalf("%s/config.yaml: bridgeInterface and interfaceNamePrefix are two detect-local modes", dir)
		case c.BridgeInterface != "":
			cfg.PodInterface = rules.PodInterface{Name: c.BridgeInterface}
		case c.InterfaceNamePrefix != "":
			cfg.PodInterface = rules.PodInterface{Name: c.InterfaceNamePrefix, Prefix: true}
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s/config.yaml: %v", dir, err)
		}
		for _, s := range c.NodeIPs {
			cfg.Node.IPs = append(cfg.Node.IPs, netip.MustParseAddr(s))
		}
		for _, s := range c.ClusterCIDRs {
			cfg.ClusterCIDRs = append(cfg.ClusterCIDRs, netip.MustParsePrefix(s))
		}
		for _, s := range c.NodePortAddresses {
			cfg.NodePortAddresses = append(cfg.NodePortAddresses, netip.MustParsePrefix(s))
		}
		sc := scenario{name: d.Name(), dir: dir, cfg: cfg, traceFromInside: c.TraceFromInside}
		for _, f := range c.Families {
			fam, err := rules.ParseFamily(f)
			if err != nil {
				t.Fatalf("%s/config.yaml: %v", dir, err)
			}
			sc.families = append(sc.families, fam)
		}
		out = append(out, sc)
	}
	if len(out) < 25 {
		t.Fatalf("only %d golden scenarios; the suite promises at least 25", len(out))
	}
	return out
}

// render returns everything a scenario renders, by file name.
func render(t *testing.T, sc scenario, reverse bool) map[string]string {
	t.Helper()
	out, _ := renderAll(t, sc, reverse)
	return out
}

// renderAll also returns the rulesets, by the same file names.
func renderAll(t *testing.T, sc scenario, reverse bool) (map[string]string, map[string]*sync.Desired) {
	t.Helper()
	desired := map[string]*sync.Desired{}
	objs, errs := manifest.Load([]string{filepath.Join(sc.dir, "input.yaml")}, nil)
	if reverse { // input order must not matter
		slices.Reverse(objs.Services)
		slices.Reverse(objs.Slices)
	}
	st, convErrs := objs.BuildState()
	errs = append(errs, convErrs...)
	cfg := scenarioConfig(t, sc, objs)
	out := map[string]string{}
	for _, fam := range sc.families {
		for _, b := range []sync.Backend{sync.NFTables, sync.IPTables} {
			d := sync.Render(st, &cfg, b, fam)
			if b == sync.NFTables { // conflicts are the same for both backends
				errs = append(errs, d.Plan.Conflicts...)
			}
			out[fileName(b, fam)] = d.Text()
			desired[fileName(b, fam)] = d
		}
	}
	if len(errs) > 0 {
		var lines []string
		for _, e := range errs {
			lines = append(lines, strings.ReplaceAll(e.Error(), sc.dir+string(filepath.Separator), ""))
		}
		if !reverse {
			out["errors.txt"] = strings.Join(lines, "\n") + "\n"
		}
	}
	return out, desired
}

// scenarioConfig is a scenario's node configuration, with the zone of its
// Node object when the manifests hold one.
func scenarioConfig(t *testing.T, sc scenario, objs *manifest.Objects) rules.Config {
	t.Helper()
	cfg := *sc.cfg
	if n := objs.Node(cfg.Node.Name); n != nil {
		node, err := rules.NodeFromObject(n)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Node.Zone = node.Zone
	}
	return cfg
}

func fileName(b sync.Backend, fam rules.Family) string {
	if b == sync.NFTables {
		return "nftables-" + fam.String() + ".nft"
	}
	return "iptables-" + fam.String() + ".rules"
}

func TestGolden(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			got := render(t, sc, false)
			if *update {
				old, _ := filepath.Glob(filepath.Join(sc.dir, "*.nft"))
				more, _ := filepath.Glob(filepath.Join(sc.dir, "*.rules"))
				for _, f := range append(append(old, more...), filepath.Join(sc.dir, "errors.txt")) {
					os.Remove(f)
				}
				for name, text := range got {
					if err := os.WriteFile(filepath.Join(sc.dir, name), []byte(text), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			want := map[string]string{}
			files, _ := os.ReadDir(sc.dir)
			for _, f := range files {
				if n := f.Name(); strings.HasSuffix(n, ".nft") || strings.HasSuffix(n, ".rules") || n == "errors.txt" {
					b, err := os.ReadFile(filepath.Join(sc.dir, n))
					if err != nil {
						t.Fatal(err)
					}
					want[n] = string(b)
				}
			}
			for name, text := range got {
				w, ok := want[name]
				switch {
				case !ok:
					t.Errorf("%s: not in testdata (run with -update and review)", name)
				case w != text:
					t.Errorf("%s differs from testdata (run with -update and review the diff):\n%s", name, diff(w, text))
				}
				delete(want, name)
			}
			for name := range want {
				t.Errorf("%s: expected by testdata but not produced", name)
			}
		})
	}
}

// TestDeterministic renders every scenario twice, once with the input in
// reverse order, and requires byte-identical rules.
func TestDeterministic(t *testing.T) {
	for _, sc := range scenarios(t) {
		a, b := render(t, sc, false), render(t, sc, true)
		for name, text := range b {
			if a[name] != text {
				t.Errorf("%s/%s: output depends on input order or run:\n%s", sc.name, name, diff(a[name], text))
			}
		}
	}
}

// TestSyntax has the kernel's own tools check every golden output, in a
// throwaway network namespace: `nft -c -f` and `iptables-restore --test`.
func TestSyntax(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-restore", "ip6tables-restore")
	ns := netnstest.New(t, "syntax")
	checked := 0
	for _, sc := range scenarios(t) {
		files, _ := filepath.Glob(filepath.Join(sc.dir, "*-ipv*"))
		for _, f := range files {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var out string
			switch {
			case strings.HasSuffix(f, ".nft"):
				out, err = ns.Run(text, "nft", "-c", "-f", "-")
			case strings.HasSuffix(f, "-ipv4.rules"):
				out, err = ns.Run(text, "iptables-restore", "--noflush", "--test")
			case strings.HasSuffix(f, "-ipv6.rules"):
				out, err = ns.Run(text, "ip6tables-restore", "--noflush", "--test")
			}
			if err != nil {
				t.Errorf("%s: rejected by the kernel tools: %v\n%s", f, err, out)
			}
			checked++
		}
	}
	t.Logf("checked %d golden outputs", checked)
}

// diff shows the first differing lines of two texts.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b bytes.Buffer
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 12; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("  line " + strconv.Itoa(i+1) + ":\n    want: " + wl + "\n    got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}
