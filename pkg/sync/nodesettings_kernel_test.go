package sync

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestNodeWarningsRouteLocalnet, in a throwaway namespace: with the
// iptables backend and localhost nodePorts on, route_localnet=0 is
// reported (rulegen does not set it); with it set, with nftables, with
// --iptables-localhost-nodeports=false or with IPv6 only, nothing is.
func TestNodeWarningsRouteLocalnet(t *testing.T) {
	netnstest.Require(t, "sysctl")
	off := false
	tests := []struct {
		name        string
		localnet    string
		backend     Backend
		cfg         rules.Config
		fams        []rules.Family
		wantWarning bool
	}{
		{name: "iptables, route_localnet 0", localnet: "0", backend: IPTables, fams: []rules.Family{rules.IPv4}, wantWarning: true},
		{name: "iptables, route_localnet 1", localnet: "1", backend: IPTables, fams: []rules.Family{rules.IPv4}},
		{name: "nftables: no localhost nodePorts", localnet: "0", backend: NFTables, fams: []rules.Family{rules.IPv4}},
		{name: "localhost nodePorts off", localnet: "0", backend: IPTables, cfg: rules.Config{LocalhostNodePorts: &off}, fams: []rules.Family{rules.IPv4}},
		{name: "IPv6 only", localnet: "0", backend: IPTables, fams: []rules.Family{rules.IPv6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "localnet")
			ns.Sysctl("net.ipv4.conf.all.route_localnet", tc.localnet)
			ns.Sysctl("net.ipv4.ip_forward", "1")
			ns.Sysctl("net.ipv6.conf.all.forwarding", "1")
			var warnings []string
			if err := ns.Do(func() error { warnings = NodeWarnings(tc.backend, &tc.cfg, tc.fams); return nil }); err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(strings.Join(warnings, "\n"), "route_localnet is 0")
			if got != tc.wantWarning {
				t.Errorf("route_localnet warning: %v, want %v (warnings: %q)", got, tc.wantWarning, warnings)
			}
		})
	}
}

// TestConntrackTCPBeLiberal reads the sysctl of the caller's namespace.
func TestConntrackTCPBeLiberal(t *testing.T) {
	netnstest.Require(t, "sysctl", "conntrack")
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{name: "strict (the kernel's default)", value: "0", want: false},
		{name: "liberal", value: "1", want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "liberal")
			if out, err := ns.Run(nil, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_be_liberal="+tc.value); err != nil {
				netnstest.Unavailable(t, "nf_conntrack not loaded in this kernel: %v: %s", err, out)
			}
			var got bool
			if err := ns.Do(func() error { got = ConntrackTCPBeLiberal(); return nil }); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ConntrackTCPBeLiberal() = %v, want %v", got, tc.want)
			}
		})
	}
}
