package golden

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/manifest"
	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/pkg/sync/nftwriter"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestNetlinkMatchesScript applies every golden scenario twice, in two
// scratch namespaces: once as the `nft -f` script --dry-run prints, once
// through the netlink writer. The kernel must then list the same table:
// what the daemon writes is what the dry run shows.
func TestNetlinkMatchesScript(t *testing.T) {
	netnstest.Require(t, "nft")
	byScript := netnstest.New(t, "script")
	byNetlink := netnstest.New(t, "netlink")
	w := nftwriter.New(byNetlink.Fd())
	compared := 0
	for _, sc := range scenarios(t) {
		_, desired := renderAll(t, sc, false)
		for name, d := range desired {
			if d.NFTables == nil {
				continue
			}
			t.Run(sc.name+"/"+name, func(t *testing.T) {
				byScript.MustRun([]byte(d.NFTables.Script()), "nft", "-f", "-")
				w.Invalidate() // a full write each time
				if _, err := w.Apply(d.NFTables); err != nil {
					t.Fatalf("netlink writer: %v", err)
				}
				fam := d.NFTables.TableFamily()
				want := byScript.MustRun(nil, "nft", "list", "table", fam, "rulegen")
				got := byNetlink.MustRun(nil, "nft", "list", "table", fam, "rulegen")
				if got != want {
					t.Errorf("netlink writer and nft -f disagree:\n%s", diff(want, got))
				}
				compared++
			})
		}
	}
	if compared == 0 {
		t.Fatal("compared nothing")
	}
}

// TestIncrementalMatchesFull walks through every golden scenario as if the
// cluster changed from one to the next: the writer sends only differences,
// and after each step the kernel must list exactly what a full `nft -f` of
// the new state gives.
func TestIncrementalMatchesFull(t *testing.T) {
	netnstest.Require(t, "nft")
	byScript := netnstest.New(t, "script")
	byNetlink := netnstest.New(t, "incr")
	w := nftwriter.New(byNetlink.Fd())
	steps, incremental := 0, 0
	for _, sc := range scenarios(t) {
		_, desired := renderAll(t, sc, false)
		d := desired["nftables-ipv4.nft"]
		if d == nil {
			continue
		}
		st, err := w.Apply(d.NFTables)
		if err != nil {
			t.Fatalf("%s: incremental apply: %v", sc.name, err)
		}
		if !st.Full {
			incremental++
		}
		byScript.MustRun([]byte(d.NFTables.Script()), "nft", "-f", "-")
		// The kernel lists chains in the order they were created, which an
		// incremental update changes: compare the blocks, sorted.
		want := sortedBlocks(byScript.MustRun(nil, "nft", "list", "table", "ip", "rulegen"))
		got := sortedBlocks(byNetlink.MustRun(nil, "nft", "list", "table", "ip", "rulegen"))
		if got != want {
			t.Errorf("after moving to %s incrementally (%+v), the kernel differs from a full load:\n%s", sc.name, st, diff(want, got))
		}
		steps++
	}
	t.Logf("%d steps, %d incremental", steps, incremental)
	// Every step but the first and the one that changes an affinity
	// timeout (a set type change) must be incremental.
	if incremental < steps-2 {
		t.Errorf("only %d incremental steps", incremental)
	}
}

// TestDaemonPathMatchesFull walks through every golden scenario as the
// daemon would see the cluster change from one to the next: one State
// edited object by object (what left the scenario deleted, the rest set
// again), one sync.Renderer (a planner that follows the State's changes
// and a renderer that follows the plan's), and the writer following each
// ruleset's Delta. After each step the kernel must list exactly what a
// full `nft -f` of the scenario's golden ruleset gives, and most steps
// must have been written by their Delta.
func TestDaemonPathMatchesFull(t *testing.T) {
	netnstest.Require(t, "nft")
	byScript := netnstest.New(t, "script")
	byDaemon := netnstest.New(t, "daemon")
	w := nftwriter.New(byDaemon.Fd())
	r := sync.NewRenderer(sync.NFTables)
	st := rules.NewState()
	type sliceID struct {
		svc  rules.ServiceKey
		name string
	}
	var services []rules.ServiceKey
	var slices []sliceID
	var last *rn.Ruleset
	steps, byDelta := 0, 0
	for _, sc := range scenarios(t) {
		_, desired := renderAll(t, sc, false)
		want := desired["nftables-ipv4.nft"]
		if want == nil {
			continue
		}
		objs, _ := manifest.Load([]string{filepath.Join(sc.dir, "input.yaml")}, nil)
		for _, k := range services {
			st.DeleteService(k)
		}
		for _, id := range slices {
			st.DeleteSlice(id.svc, id.name)
		}
		services, slices = nil, nil
		for _, svc := range objs.Services {
			key := rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
			ports, err := rules.ConvertService(svc)
			if err != nil {
				ports = nil // BuildState skips such a service
			}
			st.SetService(key, ports)
			services = append(services, key)
		}
		for _, es := range objs.Slices {
			if sl, _ := rules.ConvertSlice(es); sl != nil {
				st.SetSlice(sl)
				slices = append(slices, sliceID{sl.Service, sl.Name})
			}
		}
		cfg := scenarioConfig(t, sc, objs)
		d := r.Render(st, &cfg, rules.IPv4)
		if d.NFTables.Delta != nil && last != nil && d.NFTables.Delta.Base == last {
			byDelta++
		}
		last = d.NFTables
		if _, err := w.Apply(d.NFTables); err != nil {
			t.Fatalf("%s: apply: %v", sc.name, err)
		}
		byScript.MustRun([]byte(want.NFTables.Script()), "nft", "-f", "-")
		wantList := sortedBlocks(byScript.MustRun(nil, "nft", "list", "table", "ip", "rulegen"))
		got := sortedBlocks(byDaemon.MustRun(nil, "nft", "list", "table", "ip", "rulegen"))
		if got != wantList {
			t.Errorf("after moving to %s as the daemon does, the kernel differs from a full load of the golden ruleset:\n%s", sc.name, diff(wantList, got))
		}
		steps++
	}
	t.Logf("%d steps, %d written by their delta", steps, byDelta)
	if byDelta < steps-2 {
		t.Errorf("only %d of %d steps were written by their delta", byDelta, steps)
	}
}

// sortedBlocks returns an `nft list table` listing with its set, map and
// chain blocks in name order.
func sortedBlocks(listing string) string {
	var blocks []string
	var cur []string
	for _, line := range strings.Split(listing, "\n") {
		switch {
		case strings.HasPrefix(line, "\tset "), strings.HasPrefix(line, "\tmap "), strings.HasPrefix(line, "\tchain "):
			cur = []string{line}
		case line == "\t}" && cur != nil:
			blocks = append(blocks, strings.Join(append(cur, line), "\n"))
			cur = nil
		case cur != nil && line != "":
			cur = append(cur, line)
		}
	}
	sort.Strings(blocks)
	return strings.Join(blocks, "\n")
}
