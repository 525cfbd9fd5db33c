package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/test/netnstest"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDryRunExample(t *testing.T) {
	code, out, errs := runCLI(t, "", "--dry-run", "-f", "../../examples/", "--node-name", "node-a", "--cluster-cidr", "10.244.0.0/16")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	for _, want := range []string{
		"10.96.0.10 . tcp . 8080 . 0 : 10.244.1.5 . 8170", // clusterIP:port, targetPort "http" -> 8170
		"10.96.0.10 . tcp . 8080 . 1 : 10.244.2.7 . 8170", // on both endpoints
		"tcp . 33333 . 0 : 10.244.1.5 . 8170",             // nodePort
		"elements = { 192.168.1.10 }",                     // on the node's InternalIP
		"ip saddr != 10.244.0.0/16 jump mark-for-mas",     // off-cluster clients masqueraded
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name      string
		stdin     string
		args      []string
		code      int
		stderr    string
		stdoutHas string
	}{
		{name: "files without a mode", args: []string{"-f", "x.yaml"}, code: exitUsage, stderr: "-f is for --dry-run and --apply"},
		{name: "two modes", args: []string{"--dry-run", "--apply", "-f", "x.yaml"}, code: exitUsage, stderr: "at most one of"},
		{name: "apply without files", args: []string{"--apply"}, code: exitUsage, stderr: "-f PATH"},
		{name: "live dry run outside a cluster", args: []string{"--dry-run"}, code: exitUsage, stderr: "give --kubeconfig"},
		{name: "files and kubeconfig", args: []string{"--dry-run", "-f", "x", "--kubeconfig", "k"}, code: exitUsage, stderr: "not both"},
		{name: "unknown config key", args: []string{"--dry-run", "-f", "-", "--config", "testdata/bad-config.yaml"}, code: exitUsage, stderr: `unknown setting "nodeNmae"`},
		{name: "config file", args: []string{"--dry-run", "-f", "-", "--config", "testdata/config.yaml"},
			stdin: svcYAML("web", "10.96.0.9", "TCP"), code: exitOK, stdoutHas: "-A RG-FILTER"},
		{name: "config file, flag wins", args: []string{"--dry-run", "-f", "-", "--config", "testdata/config.yaml", "--backend", "nftables"},
			stdin: svcYAML("web", "10.96.0.9", "TCP"), code: exitOK, stdoutHas: "set reject-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\telements = { 10.96.0.9 . tcp . 80 }"},
		{name: "unknown flag names it", args: []string{"--hostname-overide=n1"}, code: exitUsage, stderr: "rulegen: unknown flag: --hostname-overide (see rulegen --help)"},
		{name: "bad flag value names it", args: []string{"--dry-run", "--sync-period", "soon"}, code: exitUsage, stderr: `invalid argument "soon" for "--sync-period" flag`},
		{name: "config key twice", args: []string{"--dry-run", "-f", "-", "--config", "testdata/dup-config.yaml"}, code: exitUsage,
			stderr: `--config: testdata/dup-config.yaml: "node-name" and "nodeName" are the same setting (--node-name): give it once`},
		{name: "config: every unknown key", args: []string{"--dry-run", "-f", "-", "--config", "testdata/dup-config.yaml"}, code: exitUsage,
			stderr: `--config: testdata/dup-config.yaml: unknown setting "noSuchThing"`},
		{name: "apply-valid alone", args: []string{"--dry-run", "-f", "-", "--apply-valid"}, code: exitUsage, stderr: "--apply-valid goes with --apply"},
		{name: "explain with skipped input", args: []string{"explain", "default/good", "-f", "-", "--node-name", "n1"},
			stdin: svcYAML("good", "10.96.0.1", "TCP") + "---\n" + svcYAML("bad", "10.96.0.2", "ICMP"), code: exitSkipped,
			stderr: `Service default/bad: spec.ports[0].protocol`, stdoutHas: "Service default/good"},
		{name: "conflict names its file and document", args: []string{"--dry-run", "-f", "-", "--node-name", "n1"},
			stdin: extSvcYAML("a", "10.96.0.1") + "---\n" + extSvcYAML("b", "10.96.0.2"), code: exitSkipped,
			stderr: `rulegen: skipped: <stdin>: document 2: Service default/b: spec.externalIPs`},
		{name: "bad iptables mode", args: []string{"--cleanup", "--iptables-mode", "xt"}, code: exitUsage, stderr: "--iptables-mode"},
		{name: "bad backend", args: []string{"--dry-run", "-f", "-", "--backend", "ipvs"}, code: exitUsage, stderr: "unknown backend"},
		{name: "bad cidr", args: []string{"--dry-run", "-f", "-", "--cluster-cidr", "10.0.0.0"}, code: exitUsage, stderr: "--cluster-cidr"},
		{name: "bad family", args: []string{"--dry-run", "-f", "-", "--ip-family", "ipv5"}, code: exitUsage, stderr: "unknown IP family"},
		{name: "stray argument", args: []string{"--dry-run", "file.yaml"}, code: exitUsage, stderr: "unexpected argument"},
		{name: "missing file", args: []string{"--dry-run", "-f", "/nonexistent.yaml"}, code: exitSkipped, stderr: "nonexistent.yaml"},
		{name: "node without a valid address is not called missing", args: []string{"--dry-run", "-f", "-", "--node-name", "n1"},
			stdin: "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: not-an-ip\n",
			code:  exitSkipped, stderr: "no Node object with a valid InternalIP or ExternalIP address"},
		{
			name:      "invalid object skipped, others rendered",
			args:      []string{"--dry-run", "-f", "-", "--node-name", "n1"},
			stdin:     svcYAML("good", "10.96.0.1", "TCP") + "---\n" + svcYAML("bad", "10.96.0.2", "ICMP"),
			code:      exitSkipped,
			stderr:    `<stdin>: document 2: Service default/bad: spec.ports[0].protocol: unsupported protocol "ICMP"`,
			stdoutHas: "10.96.0.1",
		},
		{
			name:      "kind List from kubectl",
			args:      []string{"--dry-run", "-f", "-", "--node-name", "n1", "--backend", "iptables"},
			stdin:     "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(svcYAML("web", "10.96.0.9", "UDP")), "\n", "\n  ") + "\n",
			code:      exitOK,
			stdoutHas: "-d 10.96.0.9/32 -p udp -m udp --dport 80",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errs)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
			if !strings.Contains(out, tc.stdoutHas) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdoutHas, out)
			}
		})
	}
}

func extSvcYAML(name, ip string) string {
	return svcYAML(name, ip, "TCP") + "  externalIPs: [192.168.50.50]\n"
}

func svcYAML(name, ip, proto string) string {
	return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n  namespace: default\nspec:\n  clusterIP: " + ip +
		"\n  ports:\n  - port: 80\n    protocol: " + proto + "\n"
}

// TestExamplesLoadIntoKernel is the README's promise: the dry-run output of
// the examples loads with `nft -f -` and `iptables-restore --noflush`, here in
// a scratch network namespace, through the real binary and a real pipe.
func TestExamplesLoadIntoKernel(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-restore", "iptables-save")
	bin := buildBinary(t)
	common := []string{"--dry-run", "-f", "../../examples/", "--node-name", "node-a", "--cluster-cidr", "10.244.0.0/16"}
	// dnat is how each lister shows the DNAT to 10.244.1.5:8170 (nftables:
	// an element of a map of endpoints).
	for _, tc := range []struct{ backend, loader, lister, dnat string }{
		{"nftables", "nft -f -", "nft list table ip rulegen", "10.244.1.5 . 8170"},
		{"iptables", "iptables-restore --noflush", "iptables-save -t nat", "10.244.1.5:8170"},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			ns := netnstest.New(t, "examples")
			args := append(append([]string{}, common...), "--backend", tc.backend)
			script := bin + " " + strings.Join(args, " ") + " | ip netns exec " + ns.Name + " " + tc.loader
			cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
			cmd.Stderr = os.Stderr
			if out, err := cmd.Output(); err != nil {
				t.Fatalf("%s: %v\n%s", script, err, out)
			}
			listed := ns.MustRun(nil, "bash", "-c", tc.lister)
			if !strings.Contains(listed, tc.dnat) {
				t.Errorf("kernel ruleset lacks the DNAT to 10.244.1.5:8170:\n%s", listed)
			}
		})
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rulegen")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestApplyInvalidInputWritesNothing: --apply with any problem in its input
// (a mistyped path, an invalid object) must leave the kernel's rules as they
// were; it used to apply an empty ruleset and wipe every service.
// --apply-valid writes the valid objects' rules anyway.
func TestApplyInvalidInputWritesNothing(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-restore", "iptables-save")
	bin := buildBinary(t)
	common := []string{"--node-name", "node-a", "--cluster-cidr", "10.244.0.0/16"}
	extra := svcYAML("extra", "10.96.0.99", "TCP")
	bad := svcYAML("bad", "10.96.0.98", "ICMP")
	for _, tc := range []struct{ backend, lister, dnat string }{
		{"nftables", "nft list table ip rulegen", "10.244.1.5 . 8170"},
		{"iptables", "iptables-save | grep -v '^#'", "10.244.1.5:8170"},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			ns := netnstest.New(t, "apply")
			apply := func(stdin string, args ...string) (int, string) {
				t.Helper()
				argv := append([]string{"netns", "exec", ns.Name, bin, "--apply", "--backend", tc.backend}, append(common, args...)...)
				cmd := exec.Command("ip", argv...)
				cmd.Stdin = strings.NewReader(stdin)
				var errb bytes.Buffer
				cmd.Stderr = &errb
				err := cmd.Run()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				return code, errb.String()
			}
			list := func() string { return ns.MustRun(nil, "bash", "-c", tc.lister) }
			if code, errs := apply("", "-f", "../../examples/"); code != exitOK {
				t.Fatalf("apply of the examples: exit %d\n%s", code, errs)
			}
			before := list()
			if !strings.Contains(before, tc.dnat) {
				t.Fatalf("the examples' DNAT is not in the kernel:\n%s", before)
			}
			for _, step := range []struct {
				name  string
				stdin string
				args  []string
			}{
				{"mistyped path", "", []string{"-f", "../../examples/no-such-file.yaml"}},
				{"one invalid object", extra + "---\n" + bad, []string{"-f", "../../examples/", "-f", "-"}},
			} {
				code, errs := apply(step.stdin, step.args...)
				if code != exitSkipped || !strings.Contains(errs, "nothing written") {
					t.Errorf("%s: exit %d, want %d with \"nothing written\"; stderr:\n%s", step.name, code, exitSkipped, errs)
				}
				if after := list(); after != before {
					t.Errorf("%s: the kernel's rules changed:\nbefore:\n%s\nafter:\n%s", step.name, before, after)
				}
			}
			code, errs := apply(extra+"---\n"+bad, "-f", "../../examples/", "-f", "-", "--apply-valid")
			if code != exitSkipped || !strings.Contains(errs, "Service default/bad") {
				t.Errorf("--apply-valid: exit %d, want %d naming the bad service; stderr:\n%s", code, exitSkipped, errs)
			}
			if after := list(); !strings.Contains(after, "10.96.0.99") || !strings.Contains(after, tc.dnat) {
				t.Errorf("--apply-valid did not write the valid services:\n%s", after)
			}
			// The injection reproducer: names carrying restore lines are
			// skipped, and nothing of them reaches the kernel.
			hostile, err := os.ReadFile("testdata/cli/injection-newline-name-iptables/stdin")
			if err != nil {
				t.Fatal(err)
			}
			code, errs = apply(string(hostile), "-f", "-", "--apply-valid")
			if code != exitSkipped {
				t.Errorf("hostile input: exit %d, want %d; stderr:\n%s", code, exitSkipped, errs)
			}
			after := list()
			for _, bad := range []string{"SOMETHING", "-A INPUT -j", "good-2"} {
				if strings.Contains(after, bad) {
					t.Errorf("hostile input reached the kernel (%q):\n%s", bad, after)
				}
			}
			if !strings.Contains(after, "10.96.0.1") {
				t.Errorf("the valid service of the hostile input is missing:\n%s", after)
			}
		})
	}
}

// TestKubeProxyNodeFlags: --iptables-masquerade-bit,
// --service-cluster-ip-range (alias --service-cidr) and
// --iptables-localhost-nodeports reach the rules, and bad values are usage
// errors that name the setting.
func TestKubeProxyNodeFlags(t *testing.T) {
	martian := `-A RG-BLOCK-LOCALNET -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8`
	tests := []struct {
		name    string
		args    []string
		code    int
		stderr  string
		want    []string
		notWant []string
	}{
		{name: "default mark", args: []string{"--backend", "iptables"}, want: []string{"-j MARK --or-mark 0x4000", martian}},
		{name: "masquerade bit 3", args: []string{"--backend", "iptables", "--iptables-masquerade-bit", "3"}, want: []string{"-j MARK --or-mark 0x8", "--mark 0x8/0x8"}, notWant: []string{"0x4000"}},
		{name: "masquerade bit 31, nftables", args: []string{"--iptables-masquerade-bit", "31"}, want: []string{"meta mark set meta mark | 0x80000000"}},
		{name: "masquerade bit 32", args: []string{"--iptables-masquerade-bit", "32"}, code: exitUsage, stderr: "masquerade bit: 32 is out of range (0-31)"},
		{name: "service CIDR", args: []string{"--service-cluster-ip-range", "10.96.0.0/16,fd00:96::/112"}, want: []string{"ct state new ip daddr 10.96.0.0/16 drop"}},
		{name: "service CIDR by its alias", args: []string{"--service-cidr", "10.96.0.0/16"}, want: []string{"ct state new ip daddr 10.96.0.0/16 drop"}},
		{name: "no service CIDR, no drop", args: nil, notWant: []string{"ct state new ip daddr"}},
		{name: "service CIDR not a CIDR", args: []string{"--service-cluster-ip-range", "10.96.0.0"}, code: exitUsage, stderr: `--service-cluster-ip-range: "10.96.0.0" is not a CIDR`},
		{name: "two IPv4 service CIDRs", args: []string{"--service-cidr", "10.96.0.0/16,10.97.0.0/16"}, code: exitUsage, stderr: "service CIDR: more than one ipv4 range"},
		{name: "localhost nodePorts off", args: []string{"--backend", "iptables", "--iptables-localhost-nodeports=false"}, notWant: []string{"127.0.0.0/8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--dry-run", "-f", "-", "--node-name", "n1", "--node-ip", "192.168.1.10"}, tc.args...)
			code, out, errs := runCLI(t, svcYAML("web", "10.96.0.9", "TCP"), args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errs)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.notWant {
				if strings.Contains(out, n) {
					t.Errorf("stdout holds %q:\n%s", n, out)
				}
			}
		})
	}
}
