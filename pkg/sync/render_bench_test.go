package sync

import (
	"fmt"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// BenchmarkRender measures a full render (plan + ruleset + text) of n
// services x 10 endpoints for each backend: the work of a full sync before it
// reaches the kernel.
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		st, cfg := rulestest.Scale(n, 10)
		for _, be := range []Backend{NFTables, IPTables} {
			b.Run(fmt.Sprintf("%s/services=%d/endpoints=10", be, n), func(b *testing.B) {
				b.ReportAllocs()
				var size int
				for b.Loop() {
					size = len(Render(st, cfg, be, rules.IPv4).Text())
				}
				b.ReportMetric(float64(size), "bytes")
			})
		}
	}
}

// BenchmarkRenderOneChange measures the change tracking of one endpoint
// update among n services x 10 endpoints: the new slice recorded in the
// state, then what a partial sync renders (the daemon's Planner and
// Renderer re-plan and re-render only the changed service).
func BenchmarkRenderOneChange(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		for _, be := range []Backend{NFTables, IPTables} {
			b.Run(fmt.Sprintf("%s/services=%d", be, n), func(b *testing.B) {
				st, cfg := rulestest.Scale(n, 10)
				r := NewRenderer(be)
				r.Render(st, cfg, rules.IPv4)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					// Each round one endpoint of another service goes away.
					rulestest.DropEndpoint(st, (n/2+i)%n)
					i++
					r.Render(st, cfg, rules.IPv4)
				}
			})
		}
	}
}
