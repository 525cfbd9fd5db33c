package nftables

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// TestRenderDetectLocal: the two rules that tell pod traffic — the
// masquerade of ClusterIP clients that are not pods, and the short-circuit
// of pods to external destinations (the jump to the short-circuit chain) — match as kube-proxy's nftables
// mode's LocalTrafficDetector does: "ip saddr [!=] CIDR", or "iifname
// [!=] "NAME"" ("NAME*" for a prefix) with the interface modes, where the
// cluster CIDR tells nothing. A name that cannot be written safely leaves
// both rules out, as no pod range does.
func TestRenderDetectLocal(t *testing.T) {
	tests := []struct {
		name    string
		cidr    string
		pi      rules.PodInterface
		want    []string
		notWant []string
	}{
		{name: "cluster CIDR", cidr: "10.244.0.0/16",
			want: []string{"ip daddr @cluster-ips ip saddr != 10.244.0.0/16 jump mark-for-masquerade", "ip saddr 10.244.0.0/16 jump short-circuit"}},
		{name: "bridge", cidr: "10.244.0.0/16", pi: rules.PodInterface{Name: "cni0"},
			want:    []string{`ip daddr @cluster-ips iifname != "cni0" jump mark-for-masquerade`, `iifname "cni0" jump short-circuit`},
			notWant: []string{"10.244.0.0/16"}},
		{name: "prefix", pi: rules.PodInterface{Name: "veth", Prefix: true},
			want: []string{`ip daddr @cluster-ips iifname != "veth*" jump mark-for-masquerade`, `iifname "veth*" jump short-circuit`}},
		{name: "hostile name: no detection", cidr: "10.244.0.0/16", pi: rules.PodInterface{Name: "x\" accept\n"},
			notWant: []string{"iifname", "10.244.0.0/16", `"x`}},
		{name: "nothing tells pods", want: []string{"fib saddr type local jump short-circuit"},
			notWant: []string{"iifname", "@cluster-ips ip saddr", "ip saddr 10."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := Render(rulestest.ETPLocal(tt.cidr, tt.pi)).Script()
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in:\n%s", w, text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(text, w) {
					t.Errorf("%q in:\n%s", w, text)
				}
			}
		})
	}
}
