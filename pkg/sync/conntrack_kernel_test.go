package sync

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestNetlinkConntrackDeletesNodePortEntriesOfTheirFamily, in the kernel:
// a nodePort spec (no address) deletes the UDP entries to that port in
// the conntrack table of its own family, and nothing else.
func TestNetlinkConntrackDeletesNodePortEntriesOfTheirFamily(t *testing.T) {
	netnstest.Require(t, "conntrack")
	// One entry per (family, nodePort): client .10 to node .1, answered by
	// an endpoint (each from its own client port: reply tuples must differ).
	entries := []struct{ src, sport, dst, dport, ep string }{
		{"10.0.0.10", "40001", "10.0.0.1", "30053", "10.128.0.1"},
		{"10.0.0.10", "40002", "10.0.0.1", "30054", "10.128.0.1"},
		{"fd00::10", "40001", "fd00::1", "30053", "fd00:128::1"},
		{"fd00::10", "40002", "fd00::1", "30054", "fd00:128::1"},
	}
	for _, tc := range []struct {
		name string
		spec ConntrackSpec
		gone string // the only entry deleted: "<dst> <dport>"
	}{
		{"IPv6 nodePort", ConntrackSpec{Family: rules.IPv6, OrigPort: 30053}, "fd00::1 30053"},
		{"IPv4 nodePort", ConntrackSpec{Family: rules.IPv4, OrigPort: 30054}, "10.0.0.1 30054"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "ct")
			for _, e := range entries {
				ns.MustRun(nil, "conntrack", "-I", "-p", "udp", "-s", e.src, "-d", e.dst, "--sport", e.sport, "--dport", e.dport,
					"-r", e.ep, "-q", e.src, "--reply-port-src", "8080", "--reply-port-dst", e.sport, "-t", "120")
			}
			var n uint
			if err := ns.Do(func() error {
				var err error
				n, err = NetlinkConntrack{}.DeleteUDP([]ConntrackSpec{tc.spec})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			list := ns.MustRun(nil, "conntrack", "-L", "-f", "ipv4") + ns.MustRun(nil, "conntrack", "-L", "-f", "ipv6")
			for _, e := range entries {
				present := strings.Contains(list, "dst="+e.dst+" sport="+e.sport+" dport="+e.dport+" ")
				if want := e.dst+" "+e.dport != tc.gone; present != want {
					t.Errorf("entry to %s port %s: present %v, want %v", e.dst, e.dport, present, want)
				}
			}
			if n != 1 {
				t.Errorf("DeleteUDP says it deleted %d entries, want 1\n%s", n, list)
			}
		})
	}
}
