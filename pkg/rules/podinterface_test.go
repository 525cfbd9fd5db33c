package rules

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPodInterfaceCheck: the interface names the detect-local modes
// BridgeInterface and InterfaceNamePrefix accept, and why others are
// refused, naming the setting.
func TestPodInterfaceCheck(t *testing.T) {
	tests := []struct {
		name    string
		pi      PodInterface
		wantErr string // "" for valid
	}{
		{name: "a bridge", pi: PodInterface{Name: "cni0"}},
		{name: "dots, dashes and underscores", pi: PodInterface{Name: "br-1_a.b"}},
		{name: "a bridge of 15", pi: PodInterface{Name: "abcdefghijklmno"}},
		{name: "a prefix", pi: PodInterface{Name: "veth", Prefix: true}},
		{name: "a prefix of 14", pi: PodInterface{Name: "abcdefghijklmn", Prefix: true}},
		{name: "empty bridge", pi: PodInterface{}, wantErr: `bridge interface: "" must not be empty`},
		{name: "empty prefix", pi: PodInterface{Prefix: true}, wantErr: `interface name prefix: "" must not be empty`},
		{name: "a bridge of 16", pi: PodInterface{Name: "abcdefghijklmnop"}, wantErr: "is longer than 15 characters"},
		{name: "a prefix of 15", pi: PodInterface{Name: "abcdefghijklmno", Prefix: true}, wantErr: "is longer than 14 characters"},
		{name: "dot", pi: PodInterface{Name: "."}, wantErr: "is not an interface name"},
		{name: "dot dot", pi: PodInterface{Name: ".."}, wantErr: "is not an interface name"},
		{name: "slash", pi: PodInterface{Name: "a/b"}, wantErr: "may hold only"},
		{name: "colon", pi: PodInterface{Name: "eth0:1"}, wantErr: "may hold only"},
		{name: "space", pi: PodInterface{Name: "br 0"}, wantErr: "may hold only"},
		{name: "quote", pi: PodInterface{Name: `br0" accept`}, wantErr: `"br0\" accept" may hold only`},
		{name: "nft wildcard", pi: PodInterface{Name: "veth*", Prefix: true}, wantErr: "may hold only"},
		{name: "iptables wildcard", pi: PodInterface{Name: "br0+"}, wantErr: "may hold only"},
		{name: "newline", pi: PodInterface{Name: "br0\n-A"}, wantErr: "may hold only"},
		{name: "non-ASCII", pi: PodInterface{Name: "brü"}, wantErr: "may hold only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pi.Check()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
			cfg := Config{Node: Node{Name: "node-a"}, PodInterface: tt.pi}
			if tt.pi.Name == "" {
				return // no interface detection: nothing for Validate to check
			}
			if err := cfg.Validate(); (err != nil) != (tt.wantErr != "") {
				t.Errorf("Config.Validate: %v, want an error: %v", err, tt.wantErr != "")
			}
		})
	}
	both := Config{Node: Node{Name: "node-a"}, PodInterface: PodInterface{Name: "cni0"}, DetectLocalNodeCIDR: true}
	if err := both.Validate(); err == nil || !strings.Contains(err.Error(), "BridgeInterface and NodeCIDR") {
		t.Errorf("two detect-local modes: %v", err)
	}
}

// TestPlanPodInterface: with a pod interface, the plan tells pod traffic
// by it in both families and has no pod range, whatever the cluster CIDRs
// or the Node's pod CIDRs; PrintablePlan drops a name it cannot write.
func TestPlanPodInterface(t *testing.T) {
	cluster := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/32")}
	tests := []struct {
		name      string
		pi        PodInterface
		fam       Family
		wantPI    PodInterface
		wantCIDR  netip.Prefix
		printable PodInterface // after PrintablePlan
	}{
		{name: "no interface: the cluster CIDR", fam: IPv4, wantCIDR: cluster[0]},
		{name: "bridge, IPv4", pi: PodInterface{Name: "cni0"}, fam: IPv4, wantPI: PodInterface{Name: "cni0"}, printable: PodInterface{Name: "cni0"}},
		{name: "prefix, IPv6", pi: PodInterface{Name: "veth", Prefix: true}, fam: IPv6, wantPI: PodInterface{Name: "veth", Prefix: true}, printable: PodInterface{Name: "veth", Prefix: true}},
		{name: "hostile name reaches the plan, not the renderers", pi: PodInterface{Name: "br0\" accept"}, fam: IPv4, wantPI: PodInterface{Name: "br0\" accept"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Node: Node{Name: "node-a", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}, ClusterCIDRs: cluster, PodInterface: tt.pi}
			p := NewPlan(NewState(), cfg, tt.fam)
			if p.PodInterface != tt.wantPI || p.ClusterCIDR != tt.wantCIDR {
				t.Errorf("plan: interface %+v, pod range %v; want %+v, %v", p.PodInterface, p.ClusterCIDR, tt.wantPI, tt.wantCIDR)
			}
			pp := PrintablePlan(p)
			if pp.PodInterface != tt.printable {
				t.Errorf("printable plan: interface %+v, want %+v", pp.PodInterface, tt.printable)
			}
			if (pp == p) != (tt.printable == tt.wantPI) {
				t.Errorf("PrintablePlan copied a clean plan, or kept a dirty one")
			}
		})
	}
}

// TestPodInterfaceMatches: which input interfaces carry pod traffic.
func TestPodInterfaceMatches(t *testing.T) {
	tests := []struct {
		name  string
		pi    PodInterface
		iface string
		want  bool
	}{
		{name: "the bridge", pi: PodInterface{Name: "cni0"}, iface: "cni0", want: true},
		{name: "a longer name is not the bridge", pi: PodInterface{Name: "cni0"}, iface: "cni00"},
		{name: "a prefix matches longer names", pi: PodInterface{Name: "veth", Prefix: true}, iface: "veth1a2b", want: true},
		{name: "a prefix matches itself", pi: PodInterface{Name: "veth", Prefix: true}, iface: "veth", want: true},
		{name: "another name", pi: PodInterface{Name: "veth", Prefix: true}, iface: "eth0"},
		{name: "no input interface", pi: PodInterface{Name: "veth", Prefix: true}, iface: ""},
		{name: "no detection", pi: PodInterface{}, iface: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pi.Matches(tt.iface); got != tt.want {
				t.Errorf("Matches(%q) = %v, want %v", tt.iface, got, tt.want)
			}
		})
	}
}
