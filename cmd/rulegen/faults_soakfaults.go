//go:build soakfaults

package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/sync"
)

// This file exists only in the soak build (go build -tags soakfaults): the
// soak harness (test/soak) starts that binary with these variables set. A
// release build has faults_default.go instead, which leaves the writer alone.
const (
	// envFaultRefuse is the share (0..1) of Apply calls refused without
	// writing anything, returned as a failed transaction.
	envFaultRefuse = "RULEGEN_FAULT_REFUSE"
	// envFaultDropElement=1 silently leaves one set or map element out of
	// every nftables Apply (and reports success): a writer bug the soak's
	// convergence check must catch.
	envFaultDropElement = "RULEGEN_FAULT_DROP_ELEMENT"
)

// errFaultRefused is the error of an Apply refused by the fault injector.
var errFaultRefused = errors.New("soak fault: transaction refused (" + envFaultRefuse + ")")

// withFaults wraps the kernel writer with the faults the environment asks
// for, or returns it unchanged when it asks for none. A malformed value is
// reported on stderr and ignored.
func withFaults(k sync.Kernel) sync.Kernel {
	var f faultyKernel
	if v := os.Getenv(envFaultRefuse); v != "" {
		share, err := strconv.ParseFloat(v, 64)
		if err != nil || share < 0 || share > 1 {
			fmt.Fprintf(os.Stderr, "rulegen: %s=%q: want a share between 0 and 1; ignored\n", envFaultRefuse, v)
		} else {
			f.refuse = share
		}
	}
	f.drop = os.Getenv(envFaultDropElement) == "1"
	if f.refuse == 0 && !f.drop {
		return k
	}
	f.Kernel = k
	return &f
}

// faultyKernel refuses a share of Apply calls and optionally drops one
// element from what it writes. Refusals are spread evenly rather than
// drawn at random (call n is refused when floor(n*share) grows), so that a
// share up to one half never refuses two calls in a row and a run is
// reproducible.
type faultyKernel struct {
	sync.Kernel
	refuse float64
	drop   bool
	calls  int
}

func (f *faultyKernel) Apply(d *sync.Desired) (sync.Written, error) {
	f.calls++
	n := float64(f.calls)
	if int(n*f.refuse) > int((n-1)*f.refuse) {
		return sync.Written{}, errFaultRefused
	}
	if f.drop && d.NFTables != nil {
		d = &sync.Desired{Plan: d.Plan, NFTables: dropOneElement(d.NFTables), IPTables: d.IPTables}
	}
	return f.Kernel.Apply(d)
}

// dropOneElement returns a copy of r without the first element of its
// first non-empty set or map (by name), leaving r itself untouched (the
// renderer keeps it). Dropping the same element each time keeps it missing
// through incremental updates too.
func dropOneElement(r *rn.Ruleset) *rn.Ruleset {
	r.Materialize()
	out := *r
	out.Delta = nil // the copy is written by comparing element lists
	out.Sets = slices.Clone(r.Sets)
	best := -1
	for i, s := range out.Sets {
		if len(s.Elements) > 0 && (best < 0 || s.Name < out.Sets[best].Name) {
			best = i
		}
	}
	if best < 0 {
		return r
	}
	s := *out.Sets[best]
	s.Elements = slices.Clone(s.Elements[1:])
	out.Sets[best] = &s
	return &out
}
