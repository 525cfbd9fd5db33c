package sync

import (
	"cmp"
	"slices"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// FuzzRenderChanges renders arbitrary clusters (rulestest.ObjectsFromBytes)
// the daemon's way, through three rounds of changes taken from the rest of
// the input: one Renderer per family, whose planner follows the State's
// changes and whose nftables renderer follows the plan's. After every
// round the ruleset must be the one a fresh render of the same state
// gives (the text of both), and the previous ruleset's elements with the
// round's Delta applied must be this one's, set by set: what the writer
// sends is what the table must become.
func FuzzRenderChanges(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x05\x03\x02\x07\x01\x09\x04\x02\x08\x06\x01\x03\x05\x07\x09\x02\x04\x06\x08"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := rulestest.NewBytes(data)
		o := rulestest.ObjectsFromBytes(b)
		st, cfg, _ := o.Model()
		r := NewRenderer(NFTables)
		prev := map[rules.Family]map[string][]rn.Element{}
		for round := range 3 {
			if round > 0 {
				o2 := rulestest.ObjectsFromBytes(b)
				if cfg2 := o.Change(st, b, o2); b.IntN(4) == 0 {
					cfg = cfg2
				}
				o.Services = append(o.Services, o2.Services...)
				o.Slices = append(o.Slices, o2.Slices...)
			}
			for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
				prev[fam] = checkRound(t, round, fam, r.Render(st, cfg, fam), st, cfg, prev[fam])
			}
		}
	})
}

// checkRound checks one render of the daemon's Renderer, d, of state st:
// its ruleset must be a fresh render's, and its Delta must turn prev (the
// elements of the previous ruleset, nil for none) into its elements, which
// it returns.
func checkRound(t *testing.T, round int, fam rules.Family, d *Desired, st *rules.State, cfg *rules.Config, prev map[string][]rn.Element) map[string][]rn.Element {
	t.Helper()
	got := d.NFTables
	delta := got.Delta
	// What a full write streams from the store, before anything is
	// listed: every set's elements, as Materialize lists them, and as
	// many as Elements counts.
	streamed := map[string][]rn.Element{}
	count := got.Elements()
	got.Stream(3, func(set string, els []rn.Element) {
		if len(els) == 0 || len(els) > 3 {
			t.Fatalf("round %d, %s: set %s: a window of %d elements", round, fam, set, len(els))
		}
		streamed[set] = append(streamed[set], els...)
	})
	got.Materialize()
	total := 0
	for _, s := range got.Sets {
		total += len(s.Elements)
		if st := streamed[s.Name]; len(st) != len(s.Elements) || !slices.Equal(slices.SortedFunc(slices.Values(st), compareElements), slices.SortedFunc(slices.Values(s.Elements), compareElements)) {
			t.Fatalf("round %d, %s: set %s: streamed %d elements, listed %d, or not the same", round, fam, s.Name, len(st), len(s.Elements))
		}
		delete(streamed, s.Name)
	}
	if len(streamed) > 0 || total != count {
		t.Fatalf("round %d, %s: elements streamed for sets the ruleset lacks (%d), or counted %d of %d", round, fam, len(streamed), count, total)
	}
	want := Render(st, cfg, NFTables, fam).NFTables
	if g, w := got.Script(), want.Script(); g != w {
		t.Fatalf("round %d, %s: the daemon's ruleset differs from a fresh render:\n%s\n----\n%s", round, fam, g, w)
	}
	now := map[string][]rn.Element{}
	for _, s := range got.Sets {
		now[s.Name] = s.Elements
	}
	if prev != nil {
		if delta == nil {
			t.Fatalf("round %d, %s: no delta after a first render", round, fam)
		}
		checkDelta(t, round, fam, prev, now, delta)
	}
	return now
}

// compareElements orders elements by every field (any total order will do).
func compareElements(a, b rn.Element) int {
	return cmp.Or(a.Addr.Compare(b.Addr), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
		cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Slot, b.Slot), a.Target.Compare(b.Target),
		cmp.Compare(a.Verdict.Kind, b.Verdict.Kind), cmp.Compare(a.Verdict.Chain, b.Verdict.Chain))
}

// checkDelta checks that old with delta applied is now, set by set.
func checkDelta(t *testing.T, round int, fam rules.Family, old, now map[string][]rn.Element, delta *rn.Delta) {
	t.Helper()
	for name, els := range now {
		have := slices.Clone(old[name])
		if d := delta.Sets[name]; d != nil {
			for _, e := range d.Del {
				i := slices.Index(have, e)
				if i < 0 {
					t.Fatalf("round %d, %s: set %s: the delta deletes %+v, which it does not hold", round, fam, name, e)
				}
				have = slices.Delete(have, i, i+1)
			}
			for _, e := range d.Add {
				if slices.Contains(have, e) {
					t.Fatalf("round %d, %s: set %s: the delta adds %+v, which it holds already", round, fam, name, e)
				}
				have = append(have, e)
			}
		}
		if len(have) != len(els) {
			t.Fatalf("round %d, %s: set %s: %d elements after the delta, the ruleset has %d", round, fam, name, len(have), len(els))
		}
		for _, e := range els {
			if !slices.Contains(have, e) {
				t.Fatalf("round %d, %s: set %s: %+v is missing after the delta", round, fam, name, e)
			}
		}
	}
}
