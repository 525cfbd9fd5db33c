package nftables

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/rulegen/rulegen/pkg/rules"
)

// The element store: what a Renderer keeps between renders so that a
// render costs what changed.
//
// Every service port's fragment contributes items to the shared sets and
// maps; the store holds, per set and key, every contribution (usually
// one: the planner gives each destination to one service port, and only a
// ClusterIP shared by a service's ports, or a pod that is an endpoint of
// several services, is contributed more than once). What the table holds
// for a key is the chosen contribution (see choose). A map of endpoints is
// stored per destination, whatever its endpoint count: the value is the
// endpoints slot by slot, and the count picks the map (endpoints-K) it is
// written to.
//
// A render removes the items of the fragments that changed and adds the
// new ones, noting the chosen value of each key it touched before the
// first edit; comparing that with the chosen value after gives the
// elements to delete and to add (Delta), without looking at anything
// else. Materialize lists a set's elements from the store when a whole
// table is needed as text or for trace; a full write streams them
// (Stream).

// elemKey is an element's key: every Element field but the verdict and the
// target (a map of endpoints is keyed by destination, Slot 0).
type elemKey struct {
	addr   netip.Addr
	prefix netip.Prefix
	proto  rules.Protocol
	port   uint16
}

// value is what one contribution puts at a key.
type value struct {
	verdict Verdict
	targets []netip.AddrPort // a map of endpoints: the endpoint of each slot
}

func (v value) equal(o value) bool {
	return v.verdict == o.verdict && slices.Equal(v.targets, o.targets)
}

// contrib is one service port's contribution at a key.
type contrib struct {
	owner rules.ServicePortName
	value
}

// item is one contribution of a fragment: set (a set's name, or for a map
// of endpoints its kind, the Prefix… constant), key and value.
type item struct {
	set string
	key elemKey
	value
}

// setStore holds the contributions to one set or map, or to every map of
// endpoints of one kind.
type setStore struct {
	key     KeyType
	isMap   bool
	entries map[elemKey][]contrib
}

// choose returns the contribution the table holds at a key: for a map of
// endpoints, the first service port by name holds the destination (two
// can only share one when their addresses differed by a zone alone, which
// PrintableService drops); for a verdict map the smallest verdict, so that
// the result does not depend on the order of the changes; for a set, any
// (they hold no value).
func (s *setStore) choose(cs []contrib) (contrib, bool) {
	if len(cs) == 0 {
		return contrib{}, false
	}
	best := cs[0]
	for _, c := range cs[1:] {
		switch {
		case s.key.Slotted():
			if c.owner.Less(best.owner) {
				best = c
			}
		case s.isMap:
			if cmp.Or(cmp.Compare(c.verdict.Kind, best.verdict.Kind), cmp.Compare(c.verdict.Chain, best.verdict.Chain)) < 0 {
				best = c
			}
		}
	}
	return best, true
}

// touchKey names a key of a store.
type touchKey struct {
	set string
	key elemKey
}

// before is a touched key's chosen value before the render's first edit.
type before struct {
	present bool
	c       contrib
}

// edit adds (add) or removes one fragment's items, noting what each
// touched key held before the first edit of this render.
func (rd *Renderer) edit(owner rules.ServicePortName, items []item, add bool) {
	for _, it := range items {
		st := rd.stores[it.set]
		cs := st.entries[it.key]
		if rd.tracking {
			tk := touchKey{it.set, it.key}
			if _, seen := rd.touched[tk]; !seen {
				c, ok := st.choose(cs)
				rd.touched[tk] = before{ok, c}
			}
		}
		if add {
			st.entries[it.key] = append(cs, contrib{owner, it.value})
			continue
		}
		for i := range cs {
			if cs[i].owner == owner && cs[i].equal(it.value) {
				cs = slices.Delete(cs, i, i+1)
				break
			}
		}
		if len(cs) == 0 {
			delete(st.entries, it.key)
		} else {
			st.entries[it.key] = cs
		}
	}
}

// SetDelta is what changed in one set or map: elements to delete, then to
// add. An element whose value changed is deleted and added.
type SetDelta struct {
	Del, Add []Element
}

// Delta is what changed in the elements of the table from the ruleset
// Base, rendered just before by the same Renderer, per set name. A set
// that Base did not have is new: all its elements are in Add. A set Base
// had and this ruleset has not is gone (its elements may be listed in
// Del). Chains are not in the Delta: they are few, and a writer compares
// them as they are.
type Delta struct {
	Base *Ruleset
	Sets map[string]*SetDelta
}

// Elements returns how many elements the delta deletes and adds.
func (d *Delta) Elements() int {
	n := 0
	for _, s := range d.Sets {
		n += len(s.Del) + len(s.Add)
	}
	return n
}

// recount counts the destinations of each endpoint count from the store
// (after a first render, which tracks no changes).
func (rd *Renderer) recount() {
	for _, k := range endpointKinds {
		counts := map[int]int{}
		for _, cs := range rd.stores[k.prefix].entries {
			c, _ := rd.stores[k.prefix].choose(cs)
			counts[len(c.targets)]++
		}
		rd.counts[k.prefix] = counts
	}
}

// delta compares every touched key's value before and after this render's
// edits, and keeps the count of destinations of each map of endpoints.
func (rd *Renderer) delta() map[string]*SetDelta {
	out := map[string]*SetDelta{}
	of := func(set string) *SetDelta {
		d := out[set]
		if d == nil {
			d = &SetDelta{}
			out[set] = d
		}
		return d
	}
	for tk, b := range rd.touched {
		st := rd.stores[tk.set]
		a, ok := st.choose(st.entries[tk.key])
		if b.present == ok && (!ok || b.c.equal(a.value)) {
			continue
		}
		if !st.key.Slotted() {
			if b.present {
				d := of(tk.set)
				d.Del = append(d.Del, element(tk.key, b.c.value, 0))
			}
			if ok {
				d := of(tk.set)
				d.Add = append(d.Add, element(tk.key, a.value, 0))
			}
			continue
		}
		// A map of endpoints: the slots of the destination move from the
		// map of its old count to that of its new one; with the same
		// count, only the slots whose endpoint changed are rewritten.
		counts := rd.counts[tk.set]
		oldK, newK := 0, 0
		if b.present {
			oldK = len(b.c.targets)
			counts[oldK]--
			if counts[oldK] == 0 {
				delete(counts, oldK)
			}
		}
		if ok {
			newK = len(a.targets)
			counts[newK]++
		}
		// The count sets of the bits in which the two counts differ.
		for diff := oldK ^ newK; diff != 0; diff &= diff - 1 {
			b := bits.TrailingZeros(uint(diff))
			d := of(CountSet(tk.set, b))
			if oldK>>b&1 != 0 {
				d.Del = append(d.Del, element(tk.key, value{}, 0))
			} else {
				d.Add = append(d.Add, element(tk.key, value{}, 0))
			}
		}
		for slot := range max(oldK, newK) {
			var was, is netip.AddrPort
			if slot < oldK {
				was = b.c.targets[slot]
			}
			if slot < newK {
				is = a.targets[slot]
			}
			if oldK == newK && was == is {
				continue
			}
			if slot < oldK {
				d := of(EndpointMap(tk.set, oldK))
				d.Del = append(d.Del, element(tk.key, b.c.value, slot))
			}
			if slot < newK {
				d := of(EndpointMap(tk.set, newK))
				d.Add = append(d.Add, element(tk.key, a.value, slot))
			}
		}
	}
	// In key order, so that a transaction does not depend on map order
	// (and the kernel lists an interval set as a full load would).
	for _, d := range out {
		slices.SortFunc(d.Del, compareElements)
		slices.SortFunc(d.Add, compareElements)
	}
	if len(rd.touched) > 1024 {
		// A map keeps its size: clearing one that held a whole table
		// would cost that size at every render after.
		rd.touched = map[touchKey]before{}
	} else {
		clear(rd.touched)
	}
	return out
}

// element returns the element at key k holding v (for a map of
// endpoints, slot slot of it).
func element(k elemKey, v value, slot int) Element {
	e := Element{Addr: k.addr, Prefix: k.prefix, Proto: k.proto, Port: k.port, Verdict: v.verdict}
	if v.targets != nil {
		e.Slot, e.Target = uint32(slot), v.targets[slot]
	}
	return e
}

// Materialize fills in the elements of every set of r from the store of
// the Renderer that made it. It must be called before that Renderer
// renders again (it panics otherwise: the store has moved on); a ruleset
// made by Render is complete already. Script and trace call it; a full
// write streams the elements instead (Stream), and a writer following the
// Delta needs neither.
func (r *Ruleset) Materialize() {
	if r.src == nil {
		return
	}
	rd := r.src
	if rd.version != r.version {
		panic("nftables: a ruleset's elements were asked for after its renderer rendered again")
	}
	r.src = nil
	byName := map[string]*Set{}
	for _, s := range r.Sets {
		byName[s.Name] = s
	}
	// The keys sorted, then each key's elements (a destination's slots in
	// slot order): sorting the keys of a map of endpoints is sorting
	// destinations, not every slot of each. The maps of endpoints are
	// sized from the counts.
	for name, st := range rd.stores {
		if st.key.Slotted() {
			for k, n := range rd.counts[name] {
				byName[EndpointMap(name, k)].Elements = make([]Element, 0, k*n)
			}
		} else {
			byName[name].Elements = make([]Element, 0, len(st.entries))
		}
	}
	var last *Set
	add := func(set string, e Element) {
		if last == nil || last.Name != set {
			last = byName[set]
		}
		last.Elements = append(last.Elements, e)
	}
	for name, st := range rd.stores {
		keys := make([]elemKey, 0, len(st.entries))
		for k := range st.entries {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareKeys)
		for _, k := range keys {
			st.elements(name, k, st.entries[k], add)
		}
	}
}

// elements hands fn the elements the table holds for key k (whose
// contributions are cs) of the store of set (or kind) name: the chosen
// value's element, or for a map of endpoints the destination's slots, in
// its count's map, and its element of the count set of each bit of the
// count.
func (st *setStore) elements(name string, k elemKey, cs []contrib, fn func(set string, e Element)) {
	c, _ := st.choose(cs)
	if !st.key.Slotted() {
		fn(name, element(k, c.value, 0))
		return
	}
	m := EndpointMap(name, len(c.targets))
	for slot := range c.targets {
		fn(m, element(k, c.value, slot))
	}
	for n := len(c.targets); n != 0; n &= n - 1 {
		fn(CountSet(name, bits.TrailingZeros(uint(n))), element(k, value{}, 0))
	}
}

// Stream hands every element of r to fn, set by set, at most window
// elements at a time, without listing the table: a full write sends each
// batch and drops it, so that the elements of a large table are never all
// held as Elements at once (about 140 bytes each). The batches come in no
// particular order (a set of ranges' in key order); fn must not keep els,
// which is reused. Like Materialize, it must be called before r's
// Renderer renders again (it panics otherwise); for a listed ruleset it
// hands out its lists.
func (r *Ruleset) Stream(window int, fn func(set string, els []Element)) {
	if r.src == nil {
		for _, s := range r.Sets {
			for from := 0; from < len(s.Elements); from += window {
				fn(s.Name, s.Elements[from:min(from+window, len(s.Elements))])
			}
		}
		return
	}
	rd := r.src
	if rd.version != r.version {
		panic("nftables: a ruleset's elements were asked for after its renderer rendered again")
	}
	bufs := map[string][]Element{}
	add := func(set string, e Element) {
		b := append(bufs[set], e)
		if len(b) >= window {
			fn(set, b)
			b = b[:0]
		}
		bufs[set] = b
	}
	for name, st := range rd.stores {
		if st.key.Interval() {
			// A set of ranges in key order, as a full load gives it.
			keys := make([]elemKey, 0, len(st.entries))
			for k := range st.entries {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, compareKeys)
			for _, k := range keys {
				st.elements(name, k, st.entries[k], add)
			}
			continue
		}
		for k, cs := range st.entries {
			st.elements(name, k, cs, add)
		}
	}
	names := make([]string, 0, len(bufs))
	for set, b := range bufs {
		if len(b) > 0 {
			names = append(names, set)
		}
	}
	slices.Sort(names)
	for _, set := range names {
		fn(set, bufs[set])
	}
}

// Elements returns how many elements r's sets hold, listed or not (like
// Stream, before its Renderer renders again).
func (r *Ruleset) Elements() int {
	if r.src != nil && r.src.version != r.version {
		panic("nftables: a ruleset's elements were asked for after its renderer rendered again")
	}
	if r.src == nil {
		n := 0
		for _, s := range r.Sets {
			n += len(s.Elements)
		}
		return n
	}
	n := 0
	for name, st := range r.src.stores {
		if !st.key.Slotted() {
			n += len(st.entries)
			continue
		}
		for k, c := range r.src.counts[name] {
			n += (k + bits.OnesCount(uint(k))) * c
		}
	}
	return n
}

// compareKeys orders keys as compareElements orders their elements.
func compareKeys(a, b elemKey) int {
	return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port),
		a.prefix.Addr().Compare(b.prefix.Addr()), cmp.Compare(a.prefix.Bits(), b.prefix.Bits()))
}

// Materialized reports whether r's elements are filled in (see
// Materialize).
func (r *Ruleset) Materialized() bool { return r.src == nil }
