package iptables

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Chains rulegen owns. Every name starts with ChainPrefix so that rulegen can
// run beside kube-proxy (whose chains start with KUBE-) and can find its own
// stale chains.
const (
	ChainPrefix = "RG-"
	// ChainServices (nat) dispatches new connections to service chains.
	ChainServices = "RG-SERVICES"
	// ChainNodePorts (nat) dispatches connections to a nodePort.
	ChainNodePorts = "RG-NODEPORTS"
	// ChainPostrouting (nat) masquerades marked packets.
	ChainPostrouting = "RG-POSTROUTING"
	// ChainMarkMasq (nat) marks a packet for masquerading.
	ChainMarkMasq = "RG-MARK-MASQ"
	// ChainFilter (filter) rejects or drops new connections still addressed
	// to a service after NAT.
	ChainFilter = "RG-FILTER"
	// ChainNodePortFilter (filter) does the same for nodePorts.
	ChainNodePortFilter = "RG-NODEPORTS-FILTER"
)

// Per-service chain prefixes: RG-SVC (cluster policy), RG-SVL (local
// policy), RG-EXT (external traffic), RG-FW (source ranges), RG-SEP (one
// endpoint). See rules.PortKey for the naming scheme.
const (
	prefixService  = "RG-SVC-"
	prefixLocal    = "RG-SVL-"
	prefixExternal = "RG-EXT-"
	prefixFirewall = "RG-FW-"
	prefixEndpoint = "RG-SEP-"
)

// MasqueradeMark is the mark bit meaning "masquerade on the way out"; it is
// kube-proxy's, so both proxies agree during a migration.
const MasqueradeMark = "0x4000"

// MaxChainName is the longest chain name iptables accepts.
const MaxChainName = 28

// ClusterChain and the functions below name the per-service chains.
func ClusterChain(n rules.ServicePortName) string  { return prefixService + rules.Hash(rules.PortKey(n), 16) }
func LocalChain(n rules.ServicePortName) string    { return prefixLocal + rules.Hash(rules.PortKey(n), 16) }
func ExternalChain(n rules.ServicePortName) string { return prefixExternal + rules.Hash(rules.PortKey(n), 16) }
func FirewallChain(n rules.ServicePortName) string { return prefixFirewall + rules.Hash(rules.PortKey(n), 16) }
func EndpointChain(n rules.ServicePortName, e rules.Endpoint) string {
	return prefixEndpoint + rules.Hash(rules.EndpointKey(n, e), 16)
}

// Chain is one chain and its rules, each rule the arguments after "-A CHAIN".
type Chain struct {
	Name  string
	Rules [][]string
}

// Table is the chains rulegen owns in one table.
type Table struct {
	Name   string // "nat" or "filter"
	Chains []*Chain
}

// Jump is a rule rulegen keeps in a built-in chain, ensured outside the
// restore (with go-iptables) because a built-in chain is shared.
type Jump struct {
	Table, Chain string
	Args         []string
}

// Ruleset is everything rulegen writes for one family.
type Ruleset struct {
	Family rules.Family
	Tables []*Table // nat, filter
}

// Jumps are the rules in built-in chains that send packets to rulegen's chains.
func Jumps() []Jump {
	return []Jump{
		{"nat", "PREROUTING", []string{"-m", "comment", "--comment", "rulegen service portals", "-j", ChainServices}},
		{"nat", "OUTPUT", []string{"-m", "comment", "--comment", "rulegen service portals", "-j", ChainServices}},
		{"nat", "POSTROUTING", []string{"-m", "comment", "--comment", "rulegen masquerading", "-j", ChainPostrouting}},
		{"filter", "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "rulegen service filter", "-j", ChainFilter}},
		{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "rulegen service filter", "-j", ChainFilter}},
		{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "rulegen service filter", "-j", ChainFilter}},
	}
}

type builder struct {
	fam    rules.Family
	chains map[string]*Chain
	order  []string
}

func (b *builder) chain(name string) *Chain {
	if c, ok := b.chains[name]; ok {
		return c
	}
	c := &Chain{Name: name}
	b.chains[name] = c
	b.order = append(b.order, name)
	return c
}

func (b *builder) add(chain string, args ...string) { c := b.chain(chain); c.Rules = append(c.Rules, args) }

func (b *builder) host(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

func comment(s string) []string { return []string{"-m", "comment", "--comment", s} }

func portMatch(p rules.Protocol, port int32) []string {
	return []string{"-p", string(p), "-m", string(p), "--dport", strconv.Itoa(int(port))}
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Render turns a plan into rulegen's nat and filter chains for the plan's
// family. It is a pure function: the same plan always gives the same ruleset.
func Render(p *rules.Plan) *Ruleset {
	nat := &builder{fam: p.Family, chains: map[string]*Chain{}}
	filter := &builder{fam: p.Family, chains: map[string]*Chain{}}
	for _, c := range []string{ChainServices, ChainNodePorts, ChainPostrouting, ChainMarkMasq} {
		nat.chain(c)
	}
	filter.chain(ChainFilter)
	filter.chain(ChainNodePortFilter)
	nat.add(ChainMarkMasq, "-j", "MARK", "--or-mark", MasqueradeMark)
	nat.add(ChainPostrouting, "-m", "mark", "!", "--mark", MasqueradeMark+"/"+MasqueradeMark, "-j", "RETURN")
	nat.add(ChainPostrouting, "-j", "MARK", "--xor-mark", MasqueradeMark)
	nat.add(ChainPostrouting, "-j", "MASQUERADE", "--random-fully")

	mask := "255.255.255.255"
	if p.Family == rules.IPv6 {
		mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	perService := &builder{fam: p.Family, chains: map[string]*Chain{}}

	filterRule := func(chain string, dst []string, desc string, v rules.Verdict, match []string) {
		switch v {
		case rules.Reject:
			filter.add(chain, cat(comment(desc+" has no endpoints"), dst, match, []string{"-j", "REJECT"})...)
		case rules.Drop:
			filter.add(chain, cat(comment(desc+" has no usable endpoint for this source"), dst, match, []string{"-j", "DROP"})...)
		}
	}
	for _, s := range p.Services {
		name := s.Name
		desc := name.String()
		internal := ClusterChain(name)
		if s.InternalPolicyLocal {
			internal = LocalChain(name)
		}
		pm := portMatch(name.Protocol, s.Port)
		if s.ClusterIP.IsValid() {
			dst := []string{"-d", nat.host(s.ClusterIP)}
			if len(s.InternalEndpoints()) > 0 {
				nat.add(ChainServices, cat(comment(desc+" cluster IP"), dst, pm, []string{"-j", internal})...)
			}
			filterRule(ChainFilter, dst, desc, s.InternalVerdict(), pm)
		}
		if s.NeedsExternalChain() {
			for _, ip := range s.ExtIPs {
				nat.add(ChainServices, cat(comment(desc+" external IP"), []string{"-d", nat.host(ip)}, pm, []string{"-j", ExternalChain(name)})...)
			}
			lb := ExternalChain(name)
			if s.Firewalled {
				lb = FirewallChain(name)
			}
			for _, ip := range s.LBIPs {
				nat.add(ChainServices, cat(comment(desc+" loadbalancer IP"), []string{"-d", nat.host(ip)}, pm, []string{"-j", lb})...)
			}
			if s.HasNodePort {
				nat.add(ChainNodePorts, cat(comment(desc), portMatch(name.Protocol, s.NodePort), []string{"-j", ExternalChain(name)})...)
			}
		}
		for _, ip := range s.ExtIPs {
			filterRule(ChainFilter, []string{"-d", nat.host(ip)}, desc, s.ExternalVerdict(), pm)
		}
		for _, ip := range s.LBIPs {
			filterRule(ChainFilter, []string{"-d", nat.host(ip)}, desc, s.LBVerdict(), pm)
		}
		if s.HasNodePort {
			filterRule(ChainNodePortFilter, nil, desc, s.ExternalVerdict(), portMatch(name.Protocol, s.NodePort))
		}

		dispatch := func(chain string, eps []rules.Endpoint, isInternal bool) {
			c := perService.chain(chain)
			if isInternal && s.ClusterIP.IsValid() {
				dst := []string{"-d", nat.host(s.ClusterIP)}
				switch {
				case p.MasqueradeAll:
					perService.add(chain, cat(comment(desc+" cluster IP"), dst, pm, []string{"-j", ChainMarkMasq})...)
				case p.ClusterCIDR.IsValid():
					perService.add(chain, cat(comment(desc+" cluster IP"), []string{"!", "-s", p.ClusterCIDR.String()}, dst, pm, []string{"-j", ChainMarkMasq})...)
				}
			}
			if s.AffinitySeconds > 0 {
				for _, e := range eps {
					sep := EndpointChain(name, e)
					perService.add(chain, cat(comment(desc+" -> "+e.String()), []string{"-m", "recent", "--name", sep, "--mask", mask, "--rsource", "--rcheck", "--seconds", strconv.Itoa(int(s.AffinitySeconds)), "--reap", "-j", sep})...)
				}
			}
			for i, e := range eps {
				args := comment(desc + " -> " + e.String())
				if left := len(eps) - i; left > 1 {
					args = append(args, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%0.10f", 1.0/float64(left)))
				}
				c.Rules = append(c.Rules, append(args, "-j", EndpointChain(name, e)))
			}
		}
		if s.NeedsClusterChain() {
			dispatch(ClusterChain(name), s.ClusterEndpoints, !s.InternalPolicyLocal)
		}
		if s.NeedsLocalChain() {
			dispatch(LocalChain(name), s.LocalEndpoints, s.InternalPolicyLocal)
		}
		if s.NeedsExternalChain() {
			ext := ExternalChain(name)
			perService.chain(ext)
			if !s.ExternalPolicyLocal {
				perService.add(ext, cat(comment("masquerade traffic for "+desc+" external destinations"), []string{"-j", ChainMarkMasq})...)
				perService.add(ext, "-j", ClusterChain(name))
			} else {
				if s.ShortCircuit() {
					if p.ClusterCIDR.IsValid() {
						perService.add(ext, cat(comment("pod traffic for "+desc+" external destinations"), []string{"-s", p.ClusterCIDR.String(), "-j", internal})...)
					}
					perService.add(ext, cat(comment("masquerade LOCAL traffic for "+desc+" external destinations"), []string{"-m", "addrtype", "--src-type", "LOCAL", "-j", ChainMarkMasq})...)
					perService.add(ext, cat(comment("route LOCAL traffic for "+desc+" external destinations"), []string{"-m", "addrtype", "--src-type", "LOCAL", "-j", internal})...)
				}
				if len(s.LocalEndpoints) > 0 {
					perService.add(ext, "-j", LocalChain(name))
				}
			}
			if s.Firewalled {
				fw := FirewallChain(name)
				perService.chain(fw)
				for _, rg := range s.Ranges {
					perService.add(fw, cat(comment(desc+" loadbalancer source range"), []string{"-s", rg.String(), "-j", ext})...)
				}
			}
		}
		for _, e := range s.UsedEndpoints() {
			sep := EndpointChain(name, e)
			c := perService.chain(sep)
			c.Rules = append(c.Rules, cat(comment(desc), []string{"-s", nat.host(e.IP), "-j", ChainMarkMasq}))
			if s.AffinitySeconds > 0 {
				c.Rules = append(c.Rules, cat(comment(desc), []string{"-m", "recent", "--name", sep, "--mask", mask, "--rsource", "--set"}))
			}
			c.Rules = append(c.Rules, cat(comment(desc), []string{"-p", string(name.Protocol), "-m", string(name.Protocol), "-j", "DNAT", "--to-destination", netip.AddrPortFrom(e.IP, uint16(e.Port)).String()}))
		}
	}
	for _, ip := range p.NodePortIPs {
		if len(nat.chains[ChainNodePorts].Rules) > 0 {
			nat.add(ChainServices, cat(comment("rulegen service nodeports"), []string{"-d", nat.host(ip), "-j", ChainNodePorts})...)
		}
		if len(filter.chains[ChainNodePortFilter].Rules) > 0 {
			filter.add(ChainFilter, cat(comment("rulegen service nodeports"), []string{"-d", nat.host(ip), "-j", ChainNodePortFilter})...)
		}
	}
	natTable := &Table{Name: "nat"}
	for _, n := range nat.order {
		natTable.Chains = append(natTable.Chains, nat.chains[n])
	}
	var per []*Chain
	for _, n := range perService.order {
		per = append(per, perService.chains[n])
	}
	slices.SortFunc(per, func(a, b *Chain) int { return cmp.Compare(a.Name, b.Name) })
	natTable.Chains = append(natTable.Chains, per...)
	filterTable := &Table{Name: "filter"}
	for _, n := range filter.order {
		filterTable.Chains = append(filterTable.Chains, filter.chains[n])
	}
	return &Ruleset{Family: p.Family, Tables: []*Table{natTable, filterTable}}
}

// quote writes an argument for iptables-restore, quoting it when it holds
// spaces or quotes.
func quote(b *strings.Builder, s string) {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\") {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}

// Restore returns `iptables-restore --noflush` input that replaces the
// content of every rulegen chain (declaring a chain flushes it) and deletes
// the chains named in stale (per table), all in one commit per table.
func (r *Ruleset) Restore(stale map[string][]string) string {
	var b strings.Builder
	for _, t := range r.Tables {
		b.WriteString("*" + t.Name + "\n")
		for _, c := range t.Chains {
			b.WriteString(":" + c.Name + " - [0:0]\n")
		}
		for _, c := range stale[t.Name] {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, c := range t.Chains {
			for _, rule := range c.Rules {
				b.WriteString("-A " + c.Name)
				for _, a := range rule {
					b.WriteByte(' ')
					quote(&b, a)
				}
				b.WriteByte('\n')
			}
		}
		// A stale chain may still be jumped to by a chain flushed above; the
		// flush comes first in the same commit, so the delete is safe.
		for _, c := range stale[t.Name] {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// ChainNames returns the names of rulegen's chains in a table.
func (r *Ruleset) ChainNames(table string) []string {
	for _, t := range r.Tables {
		if t.Name == table {
			out := make([]string, len(t.Chains))
			for i, c := range t.Chains {
				out[i] = c.Name
			}
			return out
		}
	}
	return nil
}
