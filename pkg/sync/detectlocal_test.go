package sync

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/rulegen/rulegen/pkg/rules"
)

// TestPodInterfaceReachesThePlan: Options.PodInterface (the daemon's
// --detect-local-mode BridgeInterface or InterfaceNamePrefix) is what the
// proxier's plans tell pod traffic by, in place of the cluster CIDR.
func TestPodInterfaceReachesThePlan(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pi       rules.PodInterface
		wantCIDR string
	}{
		{name: "ClusterCIDR", wantCIDR: "10.244.0.0/16"},
		{name: "BridgeInterface", pi: rules.PodInterface{Name: "cni0"}, wantCIDR: "invalid Prefix"},
		{name: "InterfaceNamePrefix", pi: rules.PodInterface{Name: "veth", Prefix: true}, wantCIDR: "invalid Prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, _ := newTestProxier(Options{NodeIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, PodInterface: tc.pi})
			p.OnService(testService("a", "10.96.0.1", v1.ProtocolTCP, 0), false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			plan := k.applied[len(k.applied)-1].Plan
			if plan.PodInterface != tc.pi || plan.ClusterCIDR.String() != tc.wantCIDR {
				t.Errorf("plan: interface %+v, pod range %s; want %+v, %s", plan.PodInterface, plan.ClusterCIDR, tc.pi, tc.wantCIDR)
			}
		})
	}
}
