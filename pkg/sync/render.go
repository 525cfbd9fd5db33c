package sync

import (
	"fmt"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/iptables"
	"github.com/rulegen/rulegen/pkg/rules/nftables"
)

// Backend names a kernel interface rulegen can program.
type Backend string

// The backends.
const (
	NFTables Backend = "nftables"
	IPTables Backend = "iptables"
)

// ParseBackend checks a --backend value.
func ParseBackend(s string) (Backend, error) {
	switch Backend(s) {
	case NFTables, IPTables:
		return Backend(s), nil
	}
	return "", fmt.Errorf("unknown backend %q (want nftables or iptables)", s)
}

// Desired is what rulegen wants in the kernel for one family.
type Desired struct {
	Plan     *rules.Plan
	NFTables *nftables.Ruleset // set for the nftables backend
	IPTables *iptables.Ruleset // set for the iptables backend
}

// Text returns what --dry-run prints for this family: an `nft -f` script or
// `iptables-restore --noflush` input, the jumps from the built-in chains
// included. It is what a first full update writes into a node without
// rulegen's rules (an iptables writer leaves out the jumps already there).
func (d *Desired) Text() string {
	if d.NFTables != nil {
		return d.NFTables.Script()
	}
	return d.IPTables.Restore(nil)
}

// Render plans and renders the state for one family and backend.
func Render(st *rules.State, cfg *rules.Config, b Backend, fam rules.Family) *Desired {
	d := &Desired{Plan: rules.NewPlan(st, cfg, fam)}
	if b == IPTables {
		d.IPTables = iptables.Render(d.Plan)
	} else {
		d.NFTables = nftables.Render(d.Plan)
	}
	return d
}

// Renderer renders repeatedly for the daemon: it keeps a rules.Planner and
// a renderer of the backend per family, so that a sync re-plans and
// re-renders only the services that changed. Not safe for concurrent use.
type Renderer struct {
	backend  Backend
	planners map[rules.Family]*rules.Planner
	nft      map[rules.Family]*nftables.Renderer
	ipt      map[rules.Family]*iptables.Renderer
}

// NewRenderer returns a renderer for a backend.
func NewRenderer(b Backend) *Renderer {
	return &Renderer{backend: b, planners: map[rules.Family]*rules.Planner{}, nft: map[rules.Family]*nftables.Renderer{}, ipt: map[rules.Family]*iptables.Renderer{}}
}

// Render is like the package's Render, reusing unchanged services.
func (r *Renderer) Render(st *rules.State, cfg *rules.Config, fam rules.Family) *Desired {
	pl := r.planners[fam]
	if pl == nil {
		pl = rules.NewPlanner(fam)
		r.planners[fam] = pl
	}
	d := &Desired{Plan: pl.Plan(st, cfg)}
	if r.backend == IPTables {
		ir := r.ipt[fam]
		if ir == nil {
			ir = iptables.NewRenderer()
			r.ipt[fam] = ir
		}
		d.IPTables = ir.Render(d.Plan)
		return d
	}
	nr := r.nft[fam]
	if nr == nil {
		nr = nftables.NewRenderer()
		r.nft[fam] = nr
	}
	d.NFTables = nr.Render(d.Plan)
	return d
}
