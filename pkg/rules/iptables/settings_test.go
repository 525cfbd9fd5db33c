package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// TestRenderSettings: the node-wide settings are written as kube-proxy's
// iptables mode writes them (syncProxyRules).
func TestRenderSettings(t *testing.T) {
	plan := func(fam rules.Family) func() *rules.Plan {
		return func() *rules.Plan {
			if fam == rules.IPv6 {
				return rulestest.OnePort(fam, "default", "web", "", rules.TCP, "fd00:96::10", "fd00:244:1::5", "fd00:1::10")
			}
			return rulestest.OnePort(fam, "default", "web", "", rules.TCP, "10.96.0.10", "10.244.1.5", "192.168.1.10")
		}
	}
	loopback := func(s *rules.Settings) { s.LocalhostNodePorts = []netip.Prefix{rules.IPv4Loopback} }
	healthCheck := func(p *rules.Plan) {
		sp := *p.Services[0].ServicePort
		sp.HealthCheckNodePort = 31000
		p.Services[0].ServicePort = &sp
		p.Services = append(p.Services, p.Services[0]) // a second port of the service: one rule still
	}
	martian := `-A RG-BLOCK-LOCALNET -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`
	tests := []struct {
		name    string
		plan    func() *rules.Plan
		set     func(*rules.Settings)
		edit    func(*rules.Plan)
		want    []string // whole lines
		notWant []string // substrings
	}{
		{name: "default mark 0x4000", plan: plan(rules.IPv4),
			want: []string{"-A RG-MARK-MASQ -j MARK --or-mark 0x4000", "-A RG-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN", "-A RG-POSTROUTING -j MARK --xor-mark 0x4000",
				`-A RG-FORWARD -m comment --comment "rulegen forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT`}},
		{name: "masquerade bit 20", plan: plan(rules.IPv4), set: func(s *rules.Settings) { s.MasqueradeMark = 1 << 20 },
			want: []string{"-A RG-MARK-MASQ -j MARK --or-mark 0x100000", "-A RG-POSTROUTING -m mark ! --mark 0x100000/0x100000 -j RETURN", "-A RG-POSTROUTING -j MARK --xor-mark 0x100000",
				`-A RG-FORWARD -m comment --comment "rulegen forwarding rules" -m mark --mark 0x100000/0x100000 -j ACCEPT`},
			notWant: []string{"0x4000"}},
		{name: "forward chain: INVALID dropped, marked and established accepted", plan: plan(rules.IPv6),
			want: []string{"-A RG-FORWARD -m conntrack --ctstate INVALID -j DROP",
				`-A RG-FORWARD -m comment --comment "rulegen forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
				`-I FORWARD -m comment --comment "rulegen forwarding rules" -j RG-FORWARD`}},
		{name: "liberal conntrack: INVALID kept", plan: plan(rules.IPv4), set: func(s *rules.Settings) { s.KeepInvalid = true },
			notWant: []string{"INVALID"}},
		{name: "localhost nodePorts", plan: plan(rules.IPv4), set: loopback,
			want: []string{`-A RG-SERVICES -m comment --comment "rulegen service nodeports on localhost" -d 127.0.0.0/8 -j RG-NODEPORTS`, martian,
				`-I INPUT -m comment --comment "rulegen block incoming localnet connections" -j RG-BLOCK-LOCALNET`,
				`-I OUTPUT -m comment --comment "rulegen block incoming localnet connections" -j RG-BLOCK-LOCALNET`}},
		{name: "no localhost nodePorts", plan: plan(rules.IPv4), set: func(s *rules.Settings) { s.LocalhostNodePorts = nil }, notWant: []string{"127.0.0.0/8"}},
		{name: "no localhost nodePorts in IPv6, whatever the plan says", plan: plan(rules.IPv6), set: loopback, notWant: []string{"127.0.0.0/8"}},
		{name: "health check node port accepted once", plan: plan(rules.IPv4), edit: healthCheck,
			want: []string{`-A RG-HEALTH-CHECKS -m comment --comment "default/web health check node port" -p tcp -m tcp --dport 31000 -j ACCEPT`,
				`-I INPUT -m comment --comment "rulegen health check node ports" -j RG-HEALTH-CHECKS`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.plan()
			if tt.set != nil {
				tt.set(&p.Settings)
			}
			if tt.edit != nil {
				tt.edit(p)
			}
			text := Render(p).Restore(nil)
			lines := map[string]int{}
			for _, l := range strings.Split(text, "\n") {
				lines[l]++
			}
			for _, w := range tt.want {
				if lines[w] != 1 {
					t.Errorf("line %q found %d times, want once, in:\n%s", w, lines[w], text)
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
