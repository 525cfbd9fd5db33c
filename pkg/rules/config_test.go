package rules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	bit := func(b int32) *int32 { return &b }
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" for valid
	}{
		{name: "defaults", cfg: Config{}},
		{name: "masquerade bit 0", cfg: Config{MasqueradeBit: bit(0)}},
		{name: "masquerade bit 31", cfg: Config{MasqueradeBit: bit(31)}},
		{name: "masquerade bit -1", cfg: Config{MasqueradeBit: bit(-1)}, wantErr: "masquerade bit: -1 is out of range (0-31)"},
		{name: "masquerade bit 32", cfg: Config{MasqueradeBit: bit(32)}, wantErr: "masquerade bit: 32 is out of range"},
		{name: "one service CIDR per family", cfg: Config{ServiceCIDRs: prefixes("10.96.0.0/16", "fd00:96::/112")}},
		{name: "two IPv4 service CIDRs", cfg: Config{ServiceCIDRs: prefixes("10.96.0.0/16", "10.97.0.0/16")}, wantErr: "service CIDR: more than one ipv4 range (10.97.0.0/16)"},
		{name: "two IPv6 cluster CIDRs", cfg: Config{ClusterCIDRs: prefixes("fd00:1::/64", "fd00:2::/64")}, wantErr: "cluster CIDR: more than one ipv6 range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Node.Name = "node-a"
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigSettings(t *testing.T) {
	bit := func(b int32) *int32 { return &b }
	off := false
	tests := []struct {
		name          string
		cfg           Config
		fam           Family
		wantMark      uint32
		wantCIDRs     []netip.Prefix
		wantLocalhost []netip.Prefix
	}{
		{name: "kube-proxy's defaults", cfg: Config{}, fam: IPv4, wantMark: 0x4000, wantLocalhost: prefixes("127.0.0.0/8")},
		{name: "no localhost nodePorts in IPv6", cfg: Config{}, fam: IPv6, wantMark: 0x4000},
		{name: "masquerade bit 0", cfg: Config{MasqueradeBit: bit(0)}, fam: IPv4, wantMark: 0x1, wantLocalhost: prefixes("127.0.0.0/8")},
		{name: "masquerade bit 31", cfg: Config{MasqueradeBit: bit(31)}, fam: IPv6, wantMark: 0x80000000},
		{name: "service CIDRs of the family only", cfg: Config{ServiceCIDRs: prefixes("10.96.0.0/16", "fd00:96::/112")}, fam: IPv6,
			wantMark: 0x4000, wantCIDRs: prefixes("fd00:96::/112")},
		{name: "localhost nodePorts off", cfg: Config{LocalhostNodePorts: &off}, fam: IPv4, wantMark: 0x4000},
		{name: "nodeport-addresses without loopback", cfg: Config{NodePortAddresses: prefixes("192.168.1.0/24")}, fam: IPv4, wantMark: 0x4000},
		{name: "nodeport-addresses matching every address", cfg: Config{NodePortAddresses: prefixes("0.0.0.0/0")}, fam: IPv4,
			wantMark: 0x4000, wantLocalhost: prefixes("127.0.0.0/8")},
		{name: "nodeport-addresses naming loopback", cfg: Config{NodePortAddresses: prefixes("192.168.1.0/24", "127.0.0.1/32", "fd00::/8")}, fam: IPv4,
			wantMark: 0x4000, wantLocalhost: prefixes("127.0.0.1/32")},
		{name: "nodeport-addresses containing 127.0.0.0", cfg: Config{NodePortAddresses: prefixes("64.0.0.0/2")}, fam: IPv4,
			wantMark: 0x4000, wantLocalhost: prefixes("127.0.0.0/8")},
		{name: "nodeport-addresses primary: a node IP, not loopback", cfg: Config{NodePortPrimary: true}, fam: IPv4, wantMark: 0x4000},
		{name: "nodeport-addresses primary and loopback", cfg: Config{NodePortPrimary: true, NodePortAddresses: prefixes("127.0.0.0/8")}, fam: IPv4,
			wantMark: 0x4000, wantLocalhost: prefixes("127.0.0.0/8")},
		{name: "nodeport-addresses of a part of loopback", cfg: Config{NodePortAddresses: prefixes("127.0.0.0/30")}, fam: IPv4,
			wantMark: 0x4000, wantLocalhost: prefixes("127.0.0.0/30")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.cfg.settings(tt.fam)
			if s.Mark() != tt.wantMark {
				t.Errorf("mark %#x, want %#x", s.Mark(), tt.wantMark)
			}
			if !slices.Equal(s.ServiceCIDRs, tt.wantCIDRs) {
				t.Errorf("service CIDRs %v, want %v", s.ServiceCIDRs, tt.wantCIDRs)
			}
			if !slices.Equal(s.LocalhostNodePorts, tt.wantLocalhost) {
				t.Errorf("localhost nodePorts %v, want %v", s.LocalhostNodePorts, tt.wantLocalhost)
			}
		})
	}
	if m := (Settings{}).Mark(); m != 0x4000 {
		t.Errorf("a plan built by hand (no mark): %#x, want kube-proxy's 0x4000", m)
	}
}
