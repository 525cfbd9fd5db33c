package sync

import (
	"net/netip"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rulegen/rulegen/pkg/rules"
)

// TestServiceCIDRObjects: the ranges of ServiceCIDR objects join those of
// --service-cluster-ip-range in the plan (and so in the nftables drop of
// unallocated ClusterIPs); an update replaces an object's ranges, a delete
// removes them, an invalid range is reported and the valid ones kept.
func TestServiceCIDRObjects(t *testing.T) {
	cidr := func(name string, cidrs ...string) *networkingv1.ServiceCIDR {
		return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
	}
	type event struct {
		obj     *networkingv1.ServiceCIDR
		deleted bool
	}
	tests := []struct {
		name         string
		flag         []string
		events       []event
		fam          rules.Family
		want         []string
		wantReported int
	}{
		{name: "flag only", flag: []string{"10.96.0.0/16"}, fam: rules.IPv4, want: []string{"10.96.0.0/16"}},
		{name: "object only, its family", events: []event{{obj: cidr("kubernetes", "10.96.0.0/16", "fd00:96::/112")}}, fam: rules.IPv6, want: []string{"fd00:96::/112"}},
		{name: "flag and objects, each range once", flag: []string{"10.96.0.0/16"},
			events: []event{{obj: cidr("kubernetes", "10.96.0.0/16")}, {obj: cidr("extra", "10.100.0.0/24")}}, fam: rules.IPv4, want: []string{"10.96.0.0/16", "10.100.0.0/24"}},
		{name: "update replaces", events: []event{{obj: cidr("extra", "10.100.0.0/24")}, {obj: cidr("extra", "10.101.0.0/24")}}, fam: rules.IPv4, want: []string{"10.101.0.0/24"}},
		{name: "delete removes", events: []event{{obj: cidr("extra", "10.100.0.0/24")}, {obj: cidr("extra", "10.100.0.0/24"), deleted: true}}, fam: rules.IPv4},
		{name: "invalid range reported, valid kept", events: []event{{obj: cidr("bad", "10.100.0.0", "10.101.0.0/24")}}, fam: rules.IPv4,
			want: []string{"10.101.0.0/24"}, wantReported: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Families: []rules.Family{tc.fam}}
			for _, f := range tc.flag {
				opts.ServiceCIDRs = append(opts.ServiceCIDRs, netip.MustParsePrefix(f))
			}
			p, k, _ := newTestProxier(opts)
			p.OnService(testService("a", "10.96.0.1", "TCP", 0), false)
			for _, e := range tc.events {
				p.OnServiceCIDR(e.obj, e.deleted)
			}
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			var want []netip.Prefix
			for _, w := range tc.want {
				want = append(want, netip.MustParsePrefix(w))
			}
			if got := k.applied[len(k.applied)-1].Plan.ServiceCIDRs; !slices.Equal(got, want) {
				t.Errorf("service CIDRs %v, want %v", got, want)
			}
			if len(p.reported) != tc.wantReported {
				t.Errorf("reported %v, want %d", p.reported, tc.wantReported)
			}
		})
	}
}
