package rules_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// FuzzPlan plans arbitrary converted clusters (rulestest.ObjectsFromBytes:
// services sharing addresses and ports, endpoints in several states, node
// settings) in both families, then applies a second batch of changes from
// the rest of the input and plans again with the same Planner. It must not
// panic, and every plan must hold the planner's invariants (checkPlan):
// no two service ports own one destination, destinations and endpoints of
// the plan's family, policy endpoints drawn from the port's endpoints. A
// plan must not depend on history: planning the same state again, with a
// fresh Planner or with one that planned the previous state (and reuses
// what did not change), gives an identical plan.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := rulestest.NewBytes(data)
		o := rulestest.ObjectsFromBytes(b)
		st, cfg, _ := o.Model()
		planners := map[rules.Family]*rules.Planner{rules.IPv4: rules.NewPlanner(rules.IPv4), rules.IPv6: rules.NewPlanner(rules.IPv6)}
		reversed := reversedState(o)
		firsts := map[rules.Family]*rules.Plan{}
		for fam, pl := range planners {
			p := pl.Plan(st, cfg)
			firsts[fam] = p
			checkPlan(t, "first plan", p, cfg)
			if again := rules.NewPlan(st, cfg, fam); !reflect.DeepEqual(p, again) {
				t.Errorf("%s: planning the same state twice gives two plans:\n%s\n%s", fam, dumpPlan(p), dumpPlan(again))
			}
			if rev := rules.NewPlan(reversed, cfg, fam); !reflect.DeepEqual(p, rev) {
				t.Errorf("%s: the same objects received in another order give another plan:\n%s\n%s", fam, dumpPlan(p), dumpPlan(rev))
			}
		}
		// A second batch: new and updated objects, some deleted ones.
		cfg2 := o.Change(st, b, rulestest.ObjectsFromBytes(b))
		if b.Bool() {
			cfg = cfg2
		}
		for fam, pl := range planners {
			prev := firsts[fam]
			p := pl.Plan(st, cfg)
			checkPlan(t, "after changes", p, cfg)
			if p.Base != 0 {
				checkChanges(t, prev, p)
			}
			if fresh := rules.NewPlan(st, cfg, fam); !reflect.DeepEqual(decisions(p), decisions(fresh)) {
				t.Errorf("%s: after changes, the reused planner and a fresh one disagree:\nreused: %s\nfresh:  %s", fam, dumpPlan(p), dumpPlan(fresh))
			}
		}
	})
}

// decisions returns p without what tells one plan from the next of the
// same Planner (Gen, Base, Changes): what two plans of the same state must
// share.
func decisions(p *rules.Plan) *rules.Plan {
	c := *p
	c.Gen, c.Base, c.Changes = 0, 0, nil
	return &c
}

// checkChanges checks that p.Changes lists exactly the service ports whose
// plan differs from prev's, each with its plan in prev and in p.
func checkChanges(t *testing.T, prev, p *rules.Plan) {
	t.Helper()
	if p.Base != prev.Gen {
		t.Errorf("%s: plan %d says it follows plan %d, but the previous plan was %d", p.Family, p.Gen, p.Base, prev.Gen)
	}
	before := map[rules.ServicePortName]*rules.ServicePlan{}
	for _, s := range prev.Services {
		before[s.Name] = s
	}
	now := map[rules.ServicePortName]*rules.ServicePlan{}
	for _, s := range p.Services {
		now[s.Name] = s
	}
	listed := map[rules.ServicePortName]bool{}
	for i, c := range p.Changes {
		if i > 0 && !p.Changes[i-1].Name.Less(c.Name) {
			t.Errorf("%s: changes not sorted by name, each once: %s then %s", p.Family, p.Changes[i-1].Name, c.Name)
		}
		listed[c.Name] = true
		if c.Old != before[c.Name] || c.New != now[c.Name] || c.Old == c.New {
			t.Errorf("%s: change of %s says %p -> %p; the plans hold %p -> %p", p.Family, c.Name, c.Old, c.New, before[c.Name], now[c.Name])
		}
	}
	for n, s := range now {
		if before[n] != s && !listed[n] {
			t.Errorf("%s: %s was planned again but is not in Changes", p.Family, n)
		}
	}
	for n := range before {
		if now[n] == nil && !listed[n] {
			t.Errorf("%s: %s is gone but not in Changes", p.Family, n)
		}
	}
}

// reversedState is the state Model builds from o, built from the objects
// that state keeps (the last valid version of each) in reverse order: the
// order in which the informers deliver objects must not matter.
func reversedState(o *rulestest.Objects) *rules.State {
	type sliceKey struct {
		svc  rules.ServiceKey
		name string
	}
	var keys []rules.ServiceKey
	ports := map[rules.ServiceKey][]*rules.ServicePort{}
	for _, svc := range o.Services {
		key := rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
		if _, seen := ports[key]; !seen {
			keys = append(keys, key)
		}
		ports[key], _ = rules.ConvertService(svc)
	}
	var sliceKeys []sliceKey
	sls := map[sliceKey]*rules.Slice{}
	for _, es := range o.Slices {
		if sl, _ := rules.ConvertSlice(es); sl != nil {
			k := sliceKey{sl.Service, sl.Name}
			if sls[k] == nil {
				sliceKeys = append(sliceKeys, k)
			}
			sls[k] = sl
		}
	}
	st := rules.NewState()
	for i := len(sliceKeys) - 1; i >= 0; i-- {
		st.SetSlice(sls[sliceKeys[i]])
	}
	for i := len(keys) - 1; i >= 0; i-- {
		st.SetService(keys[i], ports[keys[i]])
	}
	return st
}

// dumpPlan prints what a plan decided, for failure messages.
func dumpPlan(p *rules.Plan) string {
	s := fmt.Sprintf("nodePortIPs %v conflicts %d;", p.NodePortIPs, len(p.Conflicts))
	for _, sp := range p.Services {
		s += fmt.Sprintf(" %s[cip %v ext %v lb %v np %v eps %d/%d/%d]", sp.Name, sp.ClusterIP, sp.ExtIPs, sp.LBIPs, sp.HasNodePort,
			len(sp.All), len(sp.ClusterEndpoints), len(sp.LocalEndpoints))
	}
	return s
}

// checkPlan checks the invariants every plan must hold.
func checkPlan(t *testing.T, when string, p *rules.Plan, cfg *rules.Config) {
	t.Helper()
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s, %s: %s", when, p.Family, fmt.Sprintf(format, args...))
	}
	ofFam := func(what string, ip netip.Addr) {
		t.Helper()
		if !ip.IsValid() || rules.FamilyOf(ip) != p.Family {
			errorf("%s %v is not an %s address", what, ip, p.Family)
		}
	}
	for _, ip := range p.NodePortIPs {
		ofFam("node port address", ip)
	}
	if !slices.IsSortedFunc(p.NodePortIPs, netip.Addr.Compare) {
		errorf("node port addresses not sorted: %v", p.NodePortIPs)
	}
	type dest struct {
		addr  netip.Addr
		proto rules.Protocol
		port  int32
	}
	owner := map[dest]rules.ServicePortName{}
	claim := func(s *rules.ServicePlan, d dest) {
		t.Helper()
		if o, ok := owner[d]; ok {
			errorf("%s and %s both own %v %d/%s", o, s.Name, d.addr, d.port, d.proto)
		}
		owner[d] = s.Name
	}
	for i, s := range p.Services {
		if i > 0 && !p.Services[i-1].Name.Less(s.Name) {
			errorf("services not sorted by name, each once: %s then %s", p.Services[i-1].Name, s.Name)
		}
		ofFam(s.Name.String()+" cluster IP", s.ClusterIP)
		claim(s, dest{s.ClusterIP, s.Name.Protocol, s.Port})
		for _, ip := range s.ExtIPs {
			ofFam(s.Name.String()+" external IP", ip)
			claim(s, dest{ip, s.Name.Protocol, s.Port})
		}
		for _, ip := range s.LBIPs {
			ofFam(s.Name.String()+" LB IP", ip)
			claim(s, dest{ip, s.Name.Protocol, s.Port})
		}
		if s.HasNodePort {
			if s.NodePort == 0 || len(p.NodePortIPs) == 0 {
				errorf("%s has a nodePort (%d) but no port or node address", s.Name, s.NodePort)
			}
			claim(s, dest{netip.Addr{}, s.Name.Protocol, s.NodePort})
		}
		if s.Firewalled && (len(s.Ranges) == 0 || len(s.LBIPs) == 0) {
			errorf("%s firewalled without ranges or LB IPs", s.Name)
		}
		for _, r := range s.Ranges {
			ofFam(s.Name.String()+" source range", r.Addr())
		}
		for _, e := range s.All {
			ofFam(s.Name.String()+" endpoint", e.IP)
		}
		in := func(what string, eps []rules.Endpoint) {
			t.Helper()
			for _, e := range eps {
				if !slices.ContainsFunc(s.All, func(a rules.Endpoint) bool { return a.IP == e.IP && a.Port == e.Port }) {
					errorf("%s: %s endpoint %s is not one of its endpoints", s.Name, what, e)
				}
			}
		}
		in("cluster", s.ClusterEndpoints)
		in("local", s.LocalEndpoints)
		for _, e := range s.LocalEndpoints {
			if e.NodeName != cfg.Node.Name {
				errorf("%s: local endpoint %s is on node %q, not %q", s.Name, e, e.NodeName, cfg.Node.Name)
			}
		}
		if (len(s.ClusterEndpoints) > 0 || len(s.LocalEndpoints) > 0) && !s.HasEndpoints {
			errorf("%s uses endpoints but says it has none", s.Name)
		}
	}
}
