package sync

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/test/netnstest"
)

func TestKubeProxyIPSetNames(t *testing.T) {
	names := kubeProxyIPSetNames()
	for _, tc := range []struct {
		name string
		want bool
	}{
		{name: "KUBE-CLUSTER-IP", want: true},
		{name: "KUBE-6-CLUSTER-IP", want: true},
		{name: "KUBE-6-LOAD-BALANCER-SOURCE-CID", want: true}, // kube-proxy cuts it to 31 bytes
		{name: "KUBE-6-LOAD-BALANCER-SOURCE-CIDR", want: false},
		{name: "KUBE-SRC-ABCDEFGH", want: false}, // kube-router's
		{name: "cali40all-hosts-net", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names[tc.name]; got != tc.want {
				t.Errorf("kubeProxyIPSetNames()[%q] = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

// TestCleanupKubeProxyIPVS, in a throwaway namespace, leaves what
// kube-proxy's IPVS mode leaves (kube-ipvs0, its ipsets, its chains with a
// rule that uses one of the sets) beside other agents' objects, runs
// CleanupKubeProxy and checks that exactly kube-proxy's are gone. This
// kernel has no dummy interfaces: kube-ipvs0 is one end of a veth pair.
// It has no IPVS either (CONFIG_IP_VS): the flush of virtual servers is
// not exercised, only that a kernel without IPVS is no error.
func TestCleanupKubeProxyIPVS(t *testing.T) {
	netnstest.Require(t, "iptables-restore", "iptables-save")
	tests := []struct {
		name          string
		kubeIPVS0     bool
		sets          map[string]string // name -> type
		iptables      string            // iptables-restore input, filter table
		wantSets      []string          // the sets left, sorted
		wantRemovedGE int
	}{
		{
			name:      "IPVS leftovers, a set still used by a rule",
			kubeIPVS0: true,
			sets: map[string]string{
				"KUBE-CLUSTER-IP": "hash:ip,port", "KUBE-IPVS-IPS": "hash:ip", "KUBE-6-LOAD-BALANCER-SOURCE-CID": "hash:ip,port,net",
				"KUBE-HEALTH-CHECK-NODE-PORT": "hash:ip",
				"KUBE-SRC-ABCDEFGH":           "hash:ip", "cali40all-hosts-net": "hash:net",
			},
			iptables: "*filter\n:KUBE-IPVS-FILTER - [0:0]\n" +
				"-A INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER\n" +
				"-A KUBE-IPVS-FILTER -m set --match-set KUBE-IPVS-IPS dst -j RETURN\nCOMMIT\n",
			wantSets:      []string{"KUBE-SRC-ABCDEFGH", "cali40all-hosts-net"},
			wantRemovedGE: 1 + 4 + 2, // interface, sets, chain and jump
		},
		{
			name:     "no kube-proxy leftovers",
			sets:     map[string]string{"KUBE-SRC-ABCDEFGH": "hash:ip"},
			wantSets: []string{"KUBE-SRC-ABCDEFGH"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "kpipvs")
			if tc.kubeIPVS0 {
				ns.IP("link", "add", kubeIPVSDevice, "type", "veth", "peer", "name", "kpipvs-peer")
				ns.IP("addr", "add", "10.96.0.10/32", "dev", kubeIPVSDevice)
			}
			var removed int
			var cleanupErr error
			err := ns.Do(func() error {
				for name, typ := range tc.sets {
					opts := netlink.IpsetCreateOptions{Family: unix.AF_INET}
					if strings.HasPrefix(name, "KUBE-6-") {
						opts.Family = unix.AF_INET6
					}
					if err := netlink.IpsetCreate(name, typ, opts); err != nil {
						return fmt.Errorf("create ipset %s (%s): %w", name, typ, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.iptables != "" {
				if out, err := ns.Run([]byte(tc.iptables), "iptables-restore", "--noflush"); err != nil {
					t.Fatalf("iptables-restore: %v\n%s", err, out)
				}
			}

			if err := ns.Do(func() error { removed, cleanupErr = CleanupKubeProxy(); return nil }); err != nil {
				t.Fatal(err)
			}
			if cleanupErr != nil {
				t.Fatalf("CleanupKubeProxy: %v", cleanupErr)
			}
			if removed < tc.wantRemovedGE {
				t.Errorf("CleanupKubeProxy removed %d objects, want at least %d", removed, tc.wantRemovedGE)
			}
			var left []string
			var linkErr error
			if err := ns.Do(func() error {
				sets, err := netlink.IpsetListAll()
				for _, s := range sets {
					left = append(left, s.SetName)
				}
				_, linkErr = netlink.LinkByName(kubeIPVSDevice)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			slices.Sort(left)
			if !slices.Equal(left, tc.wantSets) {
				t.Errorf("ipsets left: %q, want %q", left, tc.wantSets)
			}
			var notFound netlink.LinkNotFoundError
			if !errors.As(linkErr, &notFound) {
				t.Errorf("interface %s: still there (lookup: %v)", kubeIPVSDevice, linkErr)
			}
			if out := ns.MustRun(nil, "iptables-save", "-t", "filter"); strings.Contains(out, "KUBE-IPVS-FILTER") {
				t.Errorf("KUBE-IPVS-FILTER still there:\n%s", out)
			}
		})
	}
}
