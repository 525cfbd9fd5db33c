package iptables

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// TestRenderDetectLocal: the two rules that tell pod traffic — the
// masquerade of ClusterIP clients that are not pods, and the short-circuit
// of pods to an external destination — match as kube-proxy's iptables
// mode's LocalTrafficDetector does: "[!] -s CIDR", or "[!] -i NAME"
// ("NAME+" for a prefix) with the interface modes, where the cluster CIDR
// tells nothing. A name that cannot be written safely leaves both rules
// out, as no pod range does.
func TestRenderDetectLocal(t *testing.T) {
	tests := []struct {
		name    string
		cidr    string
		pi      rules.PodInterface
		want    []string
		notWant []string
	}{
		{name: "cluster CIDR", cidr: "10.244.0.0/16",
			want: []string{`cluster IP" ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j RG-MARK-MASQ`, `external destinations" -s 10.244.0.0/16 -j RG-SVC-`}},
		{name: "bridge", cidr: "10.244.0.0/16", pi: rules.PodInterface{Name: "cni0"},
			want:    []string{`cluster IP" ! -i cni0 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j RG-MARK-MASQ`, `external destinations" -i cni0 -j RG-SVC-`},
			notWant: []string{"10.244.0.0/16"}},
		{name: "prefix", pi: rules.PodInterface{Name: "veth", Prefix: true},
			want: []string{`cluster IP" ! -i veth+ -d 10.96.0.10/32`, `external destinations" -i veth+ -j RG-SVC-`}},
		{name: "hostile name: no detection", cidr: "10.244.0.0/16", pi: rules.PodInterface{Name: "x -j ACCEPT\n"},
			notWant: []string{" -i ", "10.244.0.0/16", "x -j"}},
		{name: "nothing tells pods", notWant: []string{" -i ", "! -s 10."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := Render(rulestest.ETPLocal(tt.cidr, tt.pi)).Restore(nil)
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
