package nftables

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// TestRenderSettings: the node-wide settings reach the base chains as
// kube-proxy's nftables mode writes them.
func TestRenderSettings(t *testing.T) {
	v4 := func() *rules.Plan {
		return rulestest.OnePort(rules.IPv4, "default", "web", "", rules.TCP, "10.96.0.10", "10.244.1.5", "192.168.1.10")
	}
	tests := []struct {
		name    string
		plan    func() *rules.Plan
		set     func(*rules.Settings)
		want    []string // lines (without tabs) the script must hold
		notWant []string // substrings it must not hold
	}{
		{name: "default mark 0x4000", plan: v4, set: func(*rules.Settings) {},
			want: []string{"meta mark set meta mark | 0x00004000", "meta mark & 0x00004000 == 0x00000000 return", "meta mark set meta mark ^ 0x00004000"}},
		{name: "masquerade bit 0", plan: v4, set: func(s *rules.Settings) { s.MasqueradeMark = 1 },
			want: []string{"meta mark set meta mark | 0x00000001", "meta mark & 0x00000001 == 0x00000000 return", "meta mark set meta mark ^ 0x00000001"}, notWant: []string{"0x00004000"}},
		{name: "no service CIDR: no drop", plan: v4, set: func(*rules.Settings) {}, notWant: []string{"ct state new ip daddr"}},
		{name: "service CIDR: drop in forward and output", plan: v4,
			set: func(s *rules.Settings) { s.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")} },
			want: []string{
				"type filter hook forward priority 0; policy accept;\nct state new jump service-filter\nct state new ip daddr 10.96.0.0/16 drop\n}",
				"type filter hook output priority 0; policy accept;\nct state new jump service-filter\nct state new ip daddr 10.96.0.0/16 drop\n}",
				"type filter hook input priority 0; policy accept;\nct state new jump service-filter\n}",
			}},
		{name: "service CIDR of the other family is left out", plan: v4,
			set:     func(s *rules.Settings) { s.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00:96::/112")} },
			notWant: []string{"fd00:96::", "ct state new ip daddr"}},
		{name: "localhost nodePorts: none in nftables, as in kube-proxy", plan: v4,
			set:     func(s *rules.Settings) { s.LocalhostNodePorts = []netip.Prefix{rules.IPv4Loopback} },
			notWant: []string{"127.0.0."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.plan()
			tt.set(&p.Settings)
			text := strings.ReplaceAll(Render(p).Script(), "\t", "")
			for _, w := range tt.want {
				if !strings.Contains(text, w+"\n") {
					t.Errorf("no %q in:\n%s", w, text)
				}
			}
			for _, n := range tt.notWant {
				if strings.Contains(text, n) {
					t.Errorf("%q in:\n%s", n, text)
				}
			}
		})
	}
}
