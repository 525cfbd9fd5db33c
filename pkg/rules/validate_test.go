package rules

import (
	"net/netip"
	"testing"
)

// TestParseLegacyIPv4: addresses with leading zeros, which older API
// servers accepted, are read as kube-proxy reads them (decimal, never
// octal); nothing else gets through the fallback.
func TestParseLegacyIPv4(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for an error
	}{
		{"172.30.0.041", "172.30.0.41"},
		{"010.096.000.010", "10.96.0.10"},
		{"10.96.0.10", "10.96.0.10"},
		{"10.96.0.0256", ""},
		{"10.96.0.256", ""},
		{"10.96.0", ""},
		{"10.96.0.1.2", ""},
		{"10.96.0.+1", ""},
		{"10.96..1", ""},
		{"0x0a.0.0.1", ""},
		{"10.96.0.01%eth0", ""},
	} {
		got, err := parseIP(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseIP(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("parseIP(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"010.244.000.000/016", ""}, // bits are not an address part
		{"010.244.000.000/16", "10.244.0.0/16"},
		{"10.244.0.1/16", "10.244.0.0/16"},
	} {
		got, err := parseCIDR(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseCIDR(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tc.want) {
			t.Errorf("parseCIDR(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
