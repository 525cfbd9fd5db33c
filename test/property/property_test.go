// Package property checks, for hostile input, the property the renderers
// promise: for arbitrary strings in every name and port-name field, in the
// detect-local pod interface name, and arbitrary address strings, each object is either skipped (by the
// converters, with an error, or by the renderer) or rendered into a script
// that `nft -c -f` and `iptables-restore --test` accept, and that holds no
// line the model did not ask for.
//
// "No line the model did not ask for" is checked against a mirror: the same
// model with every name replaced by a benign one (a bijection, so that
// ports still find their endpoints) and every IPv6 zone dropped. Both are
// rendered, each line is reduced to its shape (per-service names and
// iptables comments replaced by placeholders), and the two must have the
// same lines, as multisets: an escaped byte that ends a line, closes a
// quote or a block, or is read as a word of its own changes the count or a
// shape. The iptables output must also consist only of table headers, chain
// declarations of RG- chains, rules appended to RG- chains and COMMITs.
//
// Models are built twice: directly as rules.ServicePort and rules.Slice
// values (bypassing the converters, so the test proves the renderer layer
// alone), and from v1.Service and EndpointSlice objects through
// rules.ConvertService and rules.ConvertSlice. The generator is seeded
// (-property.seed) and bounded (-property.cases); scripts are checked in
// batches, in one throwaway network namespace.
package property

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/iptables"
	"github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/test/netnstest"
)

var (
	seed     = flag.Uint64("property.seed", 1, "seed of the hostile-input generator")
	numCases = flag.Int("property.cases", 100, "how many models to generate per test")
)

// servicesPerModel is how many services one model (one script) holds.
const servicesPerModel = 4

// batchSize is how many scripts one run of a kernel tool checks.
const batchSize = 25

// fragments are the pieces hostile strings are made of: the bytes that
// mean something to nft or iptables-restore, text that would be a rule of
// its own if it escaped, non-ASCII, and a few valid words.
var fragments = []string{
	"web", "default", "http", "a", "x-1", "9",
	"\n", "\r", "\x00", "\t", " ", "\"", "'", "`", ";", "{", "}", "#", "\\", "$", "@", "%", ":", "/", ".", "..", "*", "_", "__", "=",
	"é", "ポート", "\u202e", "\xff\xfe",
	"-A INPUT -j DROP", "\n-A INPUT -j DROP\n", "\n-A RG-SERVICES -j ACCEPT", "}\ntable ip evil {\n\tchain x {\n",
	"; drop", "\nCOMMIT\n*filter\n", "\" -j ACCEPT #", "\\\"", "jump input", "RG-SVC-", "chain", "map",
}

type gen struct {
	r    *rand.Rand
	uniq int // counter for addresses and ports that must not collide
}

func newGen(salt uint64) *gen { return &gen{r: rand.New(rand.NewPCG(*seed, salt))} }

func (g *gen) pick(of []string) string { return of[g.r.IntN(len(of))] }

// str returns a hostile string: usually a few fragments, sometimes a valid
// name, an empty string, or a name of 253 or 300 bytes.
func (g *gen) str() string {
	switch g.r.IntN(12) {
	case 0:
		return "valid-" + strconv.Itoa(g.r.IntN(1000))
	case 1:
		return strings.Repeat("n", 253)
	case 2:
		var b strings.Builder
		for b.Len() < 300 {
			b.WriteString(g.pick(fragments))
		}
		return b.String()
	case 3:
		return ""
	}
	var b strings.Builder
	for n := 1 + g.r.IntN(4); n > 0; n-- {
		b.WriteString(g.pick(fragments))
	}
	return b.String()
}

// name is, three times in four, a name the API accepts for every kind of
// object and port, else a hostile string: so that the converters keep
// enough objects for the rendering of what they accept to be tested too.
func (g *gen) name() string {
	if g.r.IntN(4) != 0 {
		return "n" + strconv.Itoa(g.next())
	}
	return g.str()
}

// nonEmpty is str, never empty (an IPv6 zone cannot be).
func (g *gen) nonEmpty() string {
	if s := g.str(); s != "" {
		return s
	}
	return "z"
}

func (g *gen) next() int { g.uniq++; return g.uniq }

// addrStr returns an address string of family fam, unique in the model:
// plain, with a hostile zone, IPv4-mapped, of the other family, or garbage
// (which does not parse, so the object is skipped).
func (g *gen) addrStr(fam rules.Family) string {
	n := g.next()
	v4 := fmt.Sprintf("10.%d.%d.%d", 100+n>>16&0x3f, n>>8&0xff, n&0xff)
	v6 := fmt.Sprintf("fd00:%x::%x", 0x100+n>>16&0xff, n&0xffff)
	switch g.r.IntN(10) {
	case 0:
		return v6 + "%" + g.nonEmpty() // a zone, whatever the family
	case 1:
		if fam == rules.IPv6 {
			return "::ffff:" + v4
		}
		return v6 // the other family
	case 2:
		return g.str() // garbage
	case 3, 4:
		if fam == rules.IPv6 {
			return v6 + "%" + g.nonEmpty()
		}
	}
	if fam == rules.IPv6 {
		return v6
	}
	return v4
}

// addr parses addrStr; ok is false when it does not parse.
func (g *gen) addr(fam rules.Family) (netip.Addr, bool) {
	a, err := netip.ParseAddr(g.addrStr(fam))
	return a, err == nil
}

func (g *gen) addrs(fam rules.Family, max int) []netip.Addr {
	var out []netip.Addr
	for n := g.r.IntN(max + 1); n > 0; n-- {
		if a, ok := g.addr(fam); ok {
			out = append(out, a)
		}
	}
	if g.r.IntN(20) == 0 {
		out = append(out, netip.Addr{}) // the zero Addr, which only a direct model can hold
	}
	return out
}

func (g *gen) family() rules.Family {
	if g.r.IntN(2) == 0 {
		return rules.IPv4
	}
	return rules.IPv6
}

func (g *gen) proto() rules.Protocol {
	if g.r.IntN(10) == 0 {
		return rules.Protocol(g.str())
	}
	return []rules.Protocol{rules.TCP, rules.UDP, rules.SCTP}[g.r.IntN(3)]
}

func (g *gen) nodeName() string {
	return g.pick([]string{"node-a", "node-a", "node-b", "", "node-a\n"})
}

// model is what the renderers see: service ports, slices and the node.
type model struct {
	ports  map[rules.ServiceKey][]*rules.ServicePort
	slices []*rules.Slice
	node   rules.Node
	masq   bool
	// iface is the detect-local pod interface (rules.Config.PodInterface):
	// set now and then in a direct model, with a valid or a hostile name.
	iface rules.PodInterface
	// cfg, when set, is the node-side configuration (its Node and
	// MasqueradeAll are taken from node and masq, its PodInterface from
	// iface when that is set); else a fixed one.
	cfg *rules.Config
}

// directModel builds a model without the converters.
func (g *gen) directModel() *model {
	m := &model{ports: map[rules.ServiceKey][]*rules.ServicePort{}, masq: g.r.IntN(4) == 0}
	m.node = rules.Node{Name: "node-a", IPs: append(g.addrs(rules.IPv4, 2), g.addrs(rules.IPv6, 2)...)}
	if g.r.IntN(3) == 0 {
		m.iface = rules.PodInterface{Name: g.ifaceName(), Prefix: g.r.IntN(2) == 0}
	}
	for range servicesPerModel {
		key := rules.ServiceKey{Namespace: g.str(), Name: g.str()}
		for m.ports[key] != nil {
			key.Name += g.pick(fragments)
		}
		var clusterIPs []netip.Addr
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			if a, ok := g.addr(fam); ok && g.r.IntN(6) > 0 {
				clusterIPs = append(clusterIPs, a)
			}
		}
		tmpl := rules.ServicePort{
			ClusterIPs:          clusterIPs,
			ExternalIPs:         g.addrs(g.family(), 2),
			InternalPolicyLocal: g.r.IntN(4) == 0,
		}
		if g.r.IntN(3) == 0 {
			tmpl.AffinitySeconds = 10800
		}
		lb := g.r.IntN(3) == 0
		if lb {
			tmpl.LoadBalancerIPs = g.addrs(g.family(), 2)
			if g.r.IntN(2) == 0 {
				tmpl.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.168.50.7/24"), netip.MustParsePrefix("fd00:50::/64"), {}}
			}
		}
		external := lb || g.r.IntN(3) == 0
		tmpl.ExternalPolicyLocal = external && g.r.IntN(2) == 0
		var ports []*rules.ServicePort
		var slicePorts []rules.SlicePort
		seen := map[rules.ServicePortName]bool{}
		for range 1 + g.r.IntN(2) {
			p := tmpl
			p.Name = rules.ServicePortName{ServiceKey: key, Port: g.str(), Protocol: g.proto()}
			for seen[p.Name] {
				p.Name.Port += "p"
			}
			seen[p.Name] = true
			p.Port = int32(1 + g.next()%65000)
			if external {
				p.NodePort = int32(30000 + g.next()%2700)
			}
			// Now and then a port no rule can name (only a direct
			// model can hold one), unique so that no two ports conflict.
			if g.r.IntN(15) == 0 {
				p.Port = -int32(g.next())
			}
			if external && g.r.IntN(15) == 0 {
				p.NodePort = int32(65536 + g.next())
			}
			target := int32(8000 + g.r.IntN(100))
			if g.r.IntN(15) == 0 {
				target = 0
			}
			ports = append(ports, &p)
			slicePorts = append(slicePorts, rules.SlicePort{Name: p.Name.Port, Protocol: p.Name.Protocol, Port: target})
		}
		m.ports[key] = ports
		for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			sl := &rules.Slice{Name: g.str() + strconv.Itoa(i), Service: key, Family: fam, Ports: slicePorts}
			for range g.r.IntN(4) {
				a, ok := g.addr(fam)
				if !ok {
					continue
				}
				ready := g.r.IntN(5) > 0
				sl.Endpoints = append(sl.Endpoints, rules.Endpoint{IP: a, Ready: ready, Serving: ready || g.r.IntN(2) == 0, Terminating: !ready, NodeName: g.nodeName()})
			}
			m.slices = append(m.slices, sl)
		}
	}
	return m
}

// ifaceName returns an interface name: half the time one Linux and
// rulegen accept (the longest included), else a hostile string.
func (g *gen) ifaceName() string {
	if g.r.IntN(2) == 0 {
		return g.pick([]string{"cni0", "veth", "br-1_a.b", "abcdefghijklmn", "abcdefghijklmno"})
	}
	return g.nonEmpty()
}

// convertedModel builds API objects from hostile strings and keeps what the
// converters accept; it returns how many objects they rejected.
func (g *gen) convertedModel() (*model, int) {
	m := &model{ports: map[rules.ServiceKey][]*rules.ServicePort{}}
	rejected := 0
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		node.Status.Addresses = append(node.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: g.addrStr(fam)})
	}
	if n, err := rules.NodeFromObject(node); err == nil {
		m.node = n
	} else {
		rejected++
		m.node = rules.Node{Name: "node-a"}
	}
	protos := []v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP, "", v1.Protocol(g.str())}
	for range servicesPerModel {
		svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: g.name(), Name: g.name()}}
		svc.Spec.Type = []v1.ServiceType{v1.ServiceTypeClusterIP, v1.ServiceTypeNodePort, v1.ServiceTypeLoadBalancer}[g.r.IntN(3)]
		svc.Spec.ClusterIPs = []string{g.addrStr(rules.IPv4)}
		if g.r.IntN(2) == 0 {
			svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, g.addrStr(rules.IPv6))
		}
		for range g.r.IntN(3) {
			svc.Spec.ExternalIPs = append(svc.Spec.ExternalIPs, g.addrStr(g.family()))
		}
		if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
			svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: g.addrStr(g.family())}}
			if g.r.IntN(2) == 0 {
				svc.Spec.LoadBalancerSourceRanges = []string{"192.168.50.0/24", g.str()}
			}
			if g.r.IntN(2) == 0 {
				svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			}
		}
		if g.r.IntN(3) == 0 {
			svc.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		}
		var slicePorts []discovery.EndpointPort
		for range 1 + g.r.IntN(2) {
			sp := v1.ServicePort{Name: g.name(), Protocol: protos[g.r.IntN(len(protos))], Port: int32(1 + g.next()%65000), TargetPort: intstr.FromString(g.name())}
			if svc.Spec.Type != v1.ServiceTypeClusterIP {
				sp.NodePort = int32(30000 + g.next()%2700)
			}
			svc.Spec.Ports = append(svc.Spec.Ports, sp)
			name, proto, port := sp.Name, sp.Protocol, int32(8000+g.r.IntN(100))
			slicePorts = append(slicePorts, discovery.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
		}
		ports, err := rules.ConvertService(svc)
		if err != nil {
			rejected++
		} else if len(ports) > 0 {
			key := ports[0].Name.ServiceKey
			if m.ports[key] != nil {
				continue // the same name twice: the API would not allow it
			}
			m.ports[key] = ports
		}
		for i, at := range []discovery.AddressType{discovery.AddressTypeIPv4, discovery.AddressTypeIPv6} {
			es := &discovery.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: svc.Namespace, Name: g.name() + strconv.Itoa(i), Labels: map[string]string{discovery.LabelServiceName: svc.Name}},
				AddressType: at,
				Ports:       slicePorts,
			}
			fam := rules.Family(4 + 2*i)
			for range g.r.IntN(4) {
				node := g.nodeName()
				es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{g.addrStr(fam)}, NodeName: &node})
			}
			sl, errs := rules.ConvertSlice(es)
			if sl == nil {
				rejected++
				continue
			}
			rejected += len(errs)
			m.slices = append(m.slices, sl)
		}
	}
	return m, rejected
}

// benign returns the mirror of m: every name replaced through one bijection
// (the unnamed port stays unnamed) and every zone dropped.
func (m *model) benign() *model {
	names := map[string]string{"": ""}
	b := func(s string) string {
		if v, ok := names[s]; ok {
			return v
		}
		v := "n" + strconv.Itoa(len(names))
		names[s] = v
		return v
	}
	bkey := func(k rules.ServiceKey) rules.ServiceKey {
		return rules.ServiceKey{Namespace: b(k.Namespace), Name: b(k.Name)}
	}
	unzone := func(in []netip.Addr) []netip.Addr {
		out := make([]netip.Addr, len(in))
		for i, a := range in {
			out[i] = a.WithZone("")
		}
		return out
	}
	out := &model{ports: map[rules.ServiceKey][]*rules.ServicePort{}, masq: m.masq, cfg: m.cfg}
	// A pod interface name the renderers may write becomes a benign one;
	// any other becomes one they may not write either ("bad name"), so
	// that both models leave it out the same way.
	switch {
	case m.iface.Name == "":
	case m.iface.Check() == nil:
		out.iface = rules.PodInterface{Name: "if0", Prefix: m.iface.Prefix}
	default:
		out.iface = rules.PodInterface{Name: "bad name", Prefix: m.iface.Prefix}
	}
	out.node = rules.Node{Name: m.node.Name, Zone: m.node.Zone, IPs: unzone(m.node.IPs), PodCIDRs: m.node.PodCIDRs}
	for key, ports := range m.ports {
		var np []*rules.ServicePort
		for _, p := range ports {
			c := *p
			c.Name = rules.ServicePortName{ServiceKey: bkey(key), Port: b(p.Name.Port), Protocol: p.Name.Protocol}
			c.ClusterIPs, c.ExternalIPs, c.LoadBalancerIPs = unzone(p.ClusterIPs), unzone(p.ExternalIPs), unzone(p.LoadBalancerIPs)
			np = append(np, &c)
		}
		out.ports[bkey(key)] = np
	}
	for _, sl := range m.slices {
		c := *sl
		c.Service = bkey(sl.Service)
		c.Ports = slices.Clone(sl.Ports)
		for i := range c.Ports {
			c.Ports[i].Name = b(c.Ports[i].Name)
		}
		c.Endpoints = slices.Clone(sl.Endpoints)
		for i := range c.Endpoints {
			c.Endpoints[i].IP = c.Endpoints[i].IP.WithZone("")
		}
		out.slices = append(out.slices, &c)
	}
	return out
}

// render returns the nft script and the iptables-restore input for a family.
func (m *model) render(fam rules.Family) (nft, ipt string) {
	st := rules.NewState()
	for key, ports := range m.ports {
		st.SetService(key, ports)
	}
	for _, sl := range m.slices {
		st.SetSlice(sl)
	}
	cfg := &rules.Config{Node: m.node, MasqueradeAll: m.masq, PodInterface: m.iface,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/32")}}
	if m.cfg != nil {
		c := *m.cfg
		c.Node, c.MasqueradeAll = m.node, m.masq
		if m.iface.Name != "" {
			c.PodInterface = m.iface
		}
		cfg = &c
	}
	p := rules.NewPlan(st, cfg, fam)
	return nftables.Render(p).Script(), iptables.Render(p).Restore(nil)
}

var (
	// nftName is a per-service chain or set name as the renderer may print
	// it: a prefix, the hash, then name bytes only.
	nftName = regexp.MustCompile(`\b(service|local|external|firewall|endpoint|affinity)-[A-Z2-7]{8}-[A-Za-z0-9/_.-]*`)
	// iptChain is a per-service iptables chain name.
	iptChain = regexp.MustCompile(`\bRG-(SVC|SVL|EXT|FW|SEP)-[A-Z2-7]{16}\b`)
	// nftIifname and iptIif are the pod interface match as each renderer
	// may print it: a name of safe bytes, then the wildcard of a prefix.
	nftIifname = regexp.MustCompile(`iifname (!= )?"[A-Za-z0-9_.-]+\*?"`)
	iptIif     = regexp.MustCompile(`(! )?-i [A-Za-z0-9_.-]+\+? `)
	// iptComment is a comment as iptables-restore reads it: in double
	// quotes, a backslash escaping the next byte.
	iptComment = regexp.MustCompile(`--comment "(?:[^"\\]|\\.)*"`)
	// iptLine is every line an iptables-restore input may hold: a table,
	// a declaration of an RG- chain, a rule appended to one, a COMMIT.
	iptLine = regexp.MustCompile(`^(\*(nat|filter)|:RG-[A-Z0-9-]+ - \[0:0\]|-A RG-[A-Z0-9-]+ .*|COMMIT)$`)
	// jumpLines are the only other lines: the fixed jumps from the
	// built-in chains into rulegen's, and the comment above them.
	jumpLines = func() map[string]bool {
		m := map[string]bool{}
		for _, j := range iptables.Jumps() {
			m["-I "+j.Rule()] = true
		}
		for _, l := range strings.Split(strings.TrimSuffix(iptables.JumpNote, "\n"), "\n") {
			m[l] = true
		}
		return m
	}()
)

// shapes returns the lines of a script with names and comments replaced by
// placeholders, sorted.
func shapes(text string, nft bool) []string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if nft {
			lines[i] = nftIifname.ReplaceAllString(nftName.ReplaceAllString(l, "$1-NAME"), `iifname $1"IF"`)
		} else {
			lines[i] = iptIif.ReplaceAllString(iptComment.ReplaceAllString(iptChain.ReplaceAllString(l, "RG-$1-NAME"), `--comment "C"`), "$1-i IF ")
		}
	}
	slices.Sort(lines)
	return lines
}

// firstDiff describes the first difference of two sorted line lists.
func firstDiff(got, want []string) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("missing line %q", want[i])
		case i >= len(want) || got[i] != want[i]:
			return fmt.Sprintf("line %q where the benign model has %q", got[i], want[min(i, len(want)-1)])
		}
	}
	return ""
}

// script is one rendered output waiting for the kernel tools.
type script struct {
	what string // case, family, backend
	text string
}

// checker batches scripts per tool and runs each batch once. It reports
// the first maxReports failures in full and counts the rest.
type checker struct {
	t        *testing.T
	ns       *netnstest.NS       // nil: no kernel check (FuzzRender without root, outside CI)
	pending  map[string][]script // by tool: "nft", "iptables-restore", "ip6tables-restore"
	checked  int
	failures int
}

const maxReports = 20

func (c *checker) errorf(format string, args ...any) {
	c.t.Helper()
	if c.failures++; c.failures <= maxReports {
		c.t.Errorf(format, args...)
	}
}

func (c *checker) add(tool string, s script) {
	if c.ns == nil {
		return
	}
	c.pending[tool] = append(c.pending[tool], s)
	if len(c.pending[tool]) >= batchSize {
		c.flush(tool)
	}
}

func (c *checker) run(tool, text string) (string, error) {
	if tool == "nft" {
		return c.ns.Run([]byte(text), "nft", "-c", "-f", "-")
	}
	return c.ns.Run([]byte(text), tool, "--noflush", "--test")
}

// flush checks a batch in one run (the scripts are complete, so they can
// follow one another); when the batch fails, each script is checked alone
// to name the culprit.
func (c *checker) flush(tool string) {
	batch := c.pending[tool]
	c.pending[tool] = nil
	if len(batch) == 0 {
		return
	}
	var all bytes.Buffer
	for _, s := range batch {
		all.WriteString(s.text)
	}
	c.checked += len(batch)
	if _, err := c.run(tool, all.String()); err == nil {
		return
	}
	for _, s := range batch {
		if out, err := c.run(tool, s.text); err != nil {
			c.errorf("%s: %s rejects the output: %v\n%s", s.what, tool, err, out)
		}
	}
}

// finish checks what is still pending and reports the failures not shown.
func (c *checker) finish() {
	for tool := range c.pending {
		c.flush(tool)
	}
	if c.failures > maxReports {
		c.t.Errorf("... and %d more failures", c.failures-maxReports)
	}
}

// check renders m and its mirror in both families and both backends,
// compares their shapes, and queues the outputs for the kernel tools.
func check(c *checker, what string, m *model) {
	c.t.Helper()
	mirror := m.benign()
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		nft, ipt := m.render(fam)
		bnft, bipt := mirror.render(fam)
		where := fmt.Sprintf("%s %s", what, fam)
		if d := firstDiff(shapes(nft, true), shapes(bnft, true)); d != "" {
			c.errorf("%s nftables: a line the model did not ask for: %s", where, d)
		}
		if d := firstDiff(shapes(ipt, false), shapes(bipt, false)); d != "" {
			c.errorf("%s iptables: a line the model did not ask for: %s", where, d)
		}
		for _, l := range strings.Split(strings.TrimSuffix(ipt, "\n"), "\n") {
			if !iptLine.MatchString(l) && !jumpLines[l] {
				c.errorf("%s iptables: line outside rulegen's chains: %q", where, l)
			}
		}
		c.add("nft", script{where + " nftables", nft})
		tool := "iptables-restore"
		if fam == rules.IPv6 {
			tool = "ip6tables-restore"
		}
		c.add(tool, script{where + " iptables", ipt})
	}
}

func newChecker(t *testing.T, label string) *checker {
	netnstest.Require(t, "nft", "iptables-restore", "ip6tables-restore")
	return &checker{t: t, ns: netnstest.New(t, label), pending: map[string][]script{}}
}

// TestRendererHostileModels feeds models built directly, bypassing the
// converters: the renderers alone must keep the output safe.
func TestRendererHostileModels(t *testing.T) {
	c := newChecker(t, "prop-direct")
	g := newGen(1)
	for i := range *numCases {
		check(c, fmt.Sprintf("direct case %d (seed %d)", i, *seed), g.directModel())
	}
	c.finish()
	t.Logf("%d scripts checked by the kernel tools", c.checked)
}

// TestConvertedHostileObjects feeds API objects through the converters;
// whatever they accept must render safely.
func TestConvertedHostileObjects(t *testing.T) {
	c := newChecker(t, "prop-convert")
	g := newGen(2)
	rejected, kept := 0, 0
	for i := range *numCases {
		m, r := g.convertedModel()
		rejected += r
		kept += len(m.ports) + len(m.slices)
		check(c, fmt.Sprintf("converted case %d (seed %d)", i, *seed), m)
	}
	c.finish()
	t.Logf("converters kept %d objects and rejected %d; %d scripts checked by the kernel tools", kept, rejected, c.checked)
	if kept == 0 || rejected == 0 {
		t.Errorf("the generator must give the converters both objects to keep and objects to reject (kept %d, rejected %d)", kept, rejected)
	}
}
