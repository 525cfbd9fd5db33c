package e2e

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/test/netnstest"
)

// TestCleanup applies rulegen's rules with both backends on a node that
// already has other rules (a kube-proxy's KUBE- chain and jump, a firewall
// rule, another nftables table), then runs `rulegen --cleanup`: the kernel
// must list exactly what it listed before rulegen came.
func TestCleanup(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-save", "ip6tables-save")
	ns := netnstest.New(t, "cleanup")
	for _, cmd := range [][]string{
		{"iptables", "-t", "nat", "-N", "KUBE-SERVICES"},
		{"iptables", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES"},
		{"iptables", "-A", "INPUT", "-s", "10.0.0.1", "-j", "ACCEPT"},
		{"ip6tables", "-A", "FORWARD", "-s", "fd00::1", "-j", "DROP"},
		{"nft", "add", "table", "inet", "someone-else"},
		{"nft", "add", "chain", "inet", "someone-else", "input", "{ type filter hook input priority 10; }"},
	} {
		ns.MustRun(nil, cmd[0], cmd[1:]...)
	}
	snapshot := func() string {
		return ns.MustRun(nil, "nft", "list", "ruleset") +
			strip(ns.MustRun(nil, "iptables-save")) + strip(ns.MustRun(nil, "ip6tables-save"))
	}
	before := snapshot()
	f := t.TempDir() + "/m.yaml"
	writeFile(t, f, Manifests(allServices...))
	for _, backend := range []string{"nftables", "iptables"} {
		ns.MustRun(nil, bins.rulegen, "--apply", "-f", f, "--node-name", "node-a", "--node-ip", NodeIP+","+NodeIP6,
			"--cluster-cidr", ClusterCIDR+","+ClusterCIDR6, "--backend", backend)
	}
	during := snapshot()
	if !strings.Contains(during, "table ip rulegen") || !strings.Contains(during, "-j RG-SERVICES") {
		t.Fatalf("rules were not applied:\n%s", during)
	}
	ns.MustRun(nil, bins.rulegen, "--cleanup")
	if after := snapshot(); after != before {
		t.Errorf("--cleanup did not restore the ruleset.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	ns.MustRun(nil, bins.rulegen, "--cleanup") // idempotent
}

// strip drops iptables-save's comment lines (they carry a timestamp).
func strip(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
