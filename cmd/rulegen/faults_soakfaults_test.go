//go:build soakfaults

package main

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/sync"
)

// recordingKernel is a fake writer that remembers what it was given.
type recordingKernel struct {
	applied []*sync.Desired
}

var _ sync.Kernel = &recordingKernel{}

func (k *recordingKernel) Apply(d *sync.Desired) (sync.Written, error) {
	k.applied = append(k.applied, d)
	return sync.Written{}, nil
}
func (k *recordingKernel) Invalidate()               {}
func (k *recordingKernel) Intact() bool              { return true }
func (k *recordingKernel) CheapCheck() bool          { return true }
func (k *recordingKernel) Remove(rules.Family) error { return nil }

func elems(ips ...string) []rn.Element {
	var out []rn.Element
	for _, ip := range ips {
		out = append(out, rn.Element{Addr: netip.MustParseAddr(ip)})
	}
	return out
}

func TestWithFaults(t *testing.T) {
	ruleset := func() *rn.Ruleset {
		return &rn.Ruleset{Family: rules.IPv4, Sets: []*rn.Set{
			{Name: "service-ips", IsMap: true, Elements: elems("10.96.0.9")},
			{Name: "cluster-ips", Elements: elems("10.96.0.1", "10.96.0.2")},
			{Name: "empty"},
		}}
	}
	cases := []struct {
		name     string
		env      map[string]string
		calls    int
		refused  int
		wantSets map[string]int // elements per set in what reached the kernel
	}{
		{name: "no variables: the writer is not wrapped", calls: 10,
			wantSets: map[string]int{"service-ips": 1, "cluster-ips": 2}},
		{name: "refuse 10%: one call in ten, never two in a row", env: map[string]string{envFaultRefuse: "0.1"}, calls: 20, refused: 2,
			wantSets: map[string]int{"service-ips": 1, "cluster-ips": 2}},
		{name: "refuse a half: every other call", env: map[string]string{envFaultRefuse: "0.5"}, calls: 10, refused: 5,
			wantSets: map[string]int{"service-ips": 1, "cluster-ips": 2}},
		{name: "malformed share: ignored", env: map[string]string{envFaultRefuse: "lots"}, calls: 5,
			wantSets: map[string]int{"service-ips": 1, "cluster-ips": 2}},
		{name: "drop: the first element of the first non-empty set by name", env: map[string]string{envFaultDropElement: "1"}, calls: 3,
			wantSets: map[string]int{"service-ips": 1, "cluster-ips": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envFaultRefuse, "")
			t.Setenv(envFaultDropElement, "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fake := &recordingKernel{}
			k := withFaults(fake)
			if len(tc.env) == 0 && k != sync.Kernel(fake) {
				t.Fatalf("withFaults wrapped the writer with no fault asked for")
			}
			refused, last := 0, false
			for range tc.calls {
				in := ruleset()
				_, err := k.Apply(&sync.Desired{NFTables: in})
				if err != nil && !errors.Is(err, errFaultRefused) {
					t.Fatalf("Apply: %v", err)
				}
				if err != nil && last {
					t.Errorf("two calls in a row refused")
				}
				last = err != nil
				if err != nil {
					refused++
				}
				if n := len(in.Sets[1].Elements); n != 2 {
					t.Errorf("the caller's ruleset was changed: cluster-ips has %d elements", n)
				}
			}
			if refused != tc.refused {
				t.Errorf("refused %d of %d calls, want %d", refused, tc.calls, tc.refused)
			}
			if len(fake.applied) != tc.calls-tc.refused {
				t.Errorf("the writer got %d calls, want %d", len(fake.applied), tc.calls-tc.refused)
			}
			for _, d := range fake.applied {
				got := map[string]int{}
				for _, s := range d.NFTables.Sets {
					if len(s.Elements) > 0 {
						got[s.Name] = len(s.Elements)
					}
				}
				for name, n := range tc.wantSets {
					if got[name] != n {
						t.Errorf("set %s reached the kernel with %d elements, want %d", name, got[name], n)
					}
				}
			}
		})
	}
}
