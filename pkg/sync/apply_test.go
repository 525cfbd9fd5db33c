package sync

import (
	"context"
	"errors"
	"slices"
	"strings"
	gosync "sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/sync/iptwriter"
	"github.com/rulegen/rulegen/test/netnstest"
)

// node returns this test's Node object with the given addresses.
func node(addrs ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a})
	}
	return n
}

// TestSyncRemovesDroppedFamily: the rules of a family the node no longer
// has are removed once; a failed removal fails the sync and is retried.
func TestSyncRemovesDroppedFamily(t *testing.T) {
	for _, tc := range []struct {
		name        string
		before      []string // node addresses at the first sync
		after       []string // and at the next ones
		removeErr   error
		wantRemoved []rules.Family // over the second and third syncs
		wantErr     bool
	}{
		{name: "ipv6 address gone", before: []string{"192.168.1.10", "fd00:1::10"}, after: []string{"192.168.1.10"},
			wantRemoved: []rules.Family{rules.IPv6}},
		{name: "ipv4 address gone", before: []string{"192.168.1.10", "fd00:1::10"}, after: []string{"fd00:1::10"},
			wantRemoved: []rules.Family{rules.IPv4}},
		{name: "no family gone", before: []string{"192.168.1.10"}, after: []string{"192.168.1.10", "fd00:1::10"}},
		{name: "removal refused: retried at every sync", before: []string{"192.168.1.10", "fd00:1::10"}, after: []string{"192.168.1.10"},
			removeErr: errors.New("refused"), wantRemoved: []rules.Family{rules.IPv6, rules.IPv6}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{removeErr: tc.removeErr}
			p := NewProxier(Options{Backend: NFTables, NodeName: "node-a"}, k, nil, NewMetrics(), nil, nil, nil)
			p.OnNode(node(tc.before...), false)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			if len(k.removed) != 0 {
				t.Fatalf("first sync removed %v", k.removed)
			}
			p.OnNode(node(tc.after...), false)
			for range 2 {
				if err := p.Sync(); (err != nil) != tc.wantErr {
					t.Errorf("sync: %v, want error %v", err, tc.wantErr)
				}
			}
			if !slices.Equal(k.removed, tc.wantRemoved) {
				t.Errorf("removed %v, want %v", k.removed, tc.wantRemoved)
			}
		})
	}
}

// restoreRunner plays the iptables tools for the iptables writers: no rule
// in the kernel, and iptables-restore refused while its name contains
// refuse.
type restoreRunner struct {
	mu     gosync.Mutex
	refuse string
	inputs map[string][]string // binary -> restore inputs
}

func (r *restoreRunner) Run(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case strings.HasSuffix(name, "-save"):
		return []byte("*" + args[len(args)-1] + "\nCOMMIT\n"), nil
	case strings.HasSuffix(name, "-restore"):
		r.inputs[name] = append(r.inputs[name], stdin)
		if r.refuse != "" && strings.Contains(name, r.refuse) {
			return nil, &iptwriter.CommandError{Command: name, Code: 2, Err: errors.New("exit status 2")}
		}
		return nil, nil
	}
	return nil, &iptwriter.CommandError{Command: name, Code: 1, Err: errors.New("exit status 1")}
}

// TestFailureMakesNextSyncFullForEveryFamily: after a refused update of
// one family, the next sync rewrites every table of every family, the one
// that succeeded too.
func TestFailureMakesNextSyncFullForEveryFamily(t *testing.T) {
	for _, tc := range []struct{ name, refuse string }{
		{name: "ipv6 refused after ipv4 was written", refuse: "ip6tables"},
		{name: "ipv4 refused, ipv6 not tried", refuse: "iptables-nft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &restoreRunner{refuse: tc.refuse, inputs: map[string][]string{}}
			k := &iptKernel{opts: iptwriter.Options{Mode: iptwriter.NFT, Runner: run}, w: map[rules.Family]*iptwriter.Writer{}}
			p := NewProxier(Options{Backend: IPTables, NodeName: "node-a", Families: []rules.Family{rules.IPv4, rules.IPv6}}, k, nil, NewMetrics(), nil, nil, nil)
			p.OnNode(node("192.168.1.10", "fd00:1::10"), false)
			if err := p.Sync(); err == nil {
				t.Fatal("the refused sync did not fail")
			}
			run.refuse = ""
			clear(run.inputs)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			for _, bin := range []string{"iptables-nft-restore", "ip6tables-nft-restore"} {
				in := run.inputs[bin]
				if len(in) != 1 || !strings.Contains(in[0], "*nat\n:RG-SERVICES - [0:0]") || !strings.Contains(in[0], "*filter\n:RG-FILTER - [0:0]") ||
					!strings.Contains(in[0], "-I PREROUTING") {
					t.Errorf("%s: want one full update (every chain of both tables, and the jumps), got %q", bin, in)
				}
			}
		})
	}
}

// TestSyncRemovesDroppedFamilyKernel: in a namespace, with both backends, a
// node that loses its IPv6 address loses rulegen's IPv6 rules, and keeps
// its IPv4 ones.
func TestSyncRemovesDroppedFamilyKernel(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-nft-save", "ip6tables-nft-save")
	for _, tc := range []struct {
		backend Backend
		list    func(ns *netnstest.NS, fam rules.Family) string
		want    string
	}{
		{backend: NFTables, want: "table", list: func(ns *netnstest.NS, fam rules.Family) string {
			out, _ := ns.Run(nil, "nft", "list", "tables", map[rules.Family]string{rules.IPv4: "ip", rules.IPv6: "ip6"}[fam])
			return out
		}},
		{backend: IPTables, want: "RG-", list: func(ns *netnstest.NS, fam rules.Family) string {
			bin := map[rules.Family]string{rules.IPv4: "iptables-nft-save", rules.IPv6: "ip6tables-nft-save"}[fam]
			return ns.MustRun(nil, bin)
		}},
	} {
		t.Run(string(tc.backend), func(t *testing.T) {
			ns := netnstest.New(t, "dropfam")
			err := ns.Do(func() error {
				k, err := NewKernel(tc.backend, iptwriter.NFT)
				if err != nil {
					return err
				}
				p := NewProxier(Options{Backend: tc.backend, NodeName: "node-a"}, k, nil, NewMetrics(), nil, nil, nil)
				p.OnNode(node("192.168.1.10", "fd00:1::10"), false)
				if err := p.Sync(); err != nil {
					return err
				}
				if out := tc.list(ns, rules.IPv6); !strings.Contains(out, tc.want) {
					t.Errorf("no ipv6 rules after the first sync:\n%s", out)
				}
				p.OnNode(node("192.168.1.10"), false)
				return p.Sync()
			})
			if err != nil {
				t.Fatal(err)
			}
			if out := tc.list(ns, rules.IPv6); strings.Contains(out, tc.want) || strings.Contains(out, "rulegen") {
				t.Errorf("ipv6 rules left after the address went:\n%s", out)
			}
			if out := tc.list(ns, rules.IPv4); !strings.Contains(out, tc.want) {
				t.Errorf("ipv4 rules gone:\n%s", out)
			}
		})
	}
}
