package rules

import (
	"net/netip"
	"slices"
)

// What the renderers may print.
//
// The converters check what enters the model, but the model can be built
// without them (tests, other callers, a converter bug), and a renderer must
// never print a byte the kernel tools would read as something else. So both
// renderers pass each service plan through PrintableService first, and the
// plan-level addresses through PrintableAddrs. Names are made safe where
// they are printed (Readable, and the iptables comment escaping); the
// address, protocol and port fields are cleaned here:
//
//   - An IPv6 zone ("fd00::5%eth0", which netip.ParseAddr accepts) is
//     dropped: neither nft nor iptables can express one, and the nftables
//     netlink writer already writes only the address bytes, so dropping it
//     keeps the text script, the kernel and pkg/rules/trace in agreement.
//     An address that becomes a duplicate by losing its zone is kept once.
//   - An address (or prefix) that is invalid or of the other family is
//     dropped: it would make the whole table fail to load.
//   - A pod interface name (Plan.PodInterface) that PodInterface.Check
//     refuses is dropped, and with it the detection of pod traffic: nft
//     cannot quote every byte, and iptables reads a trailing '+' as a
//     wildcard. Nothing is then masqueraded for coming from outside the
//     pods, as when no pod range is known.
//   - A service port whose protocol is not tcp, udp or sctp, or whose port
//     is outside 1-65535, is skipped entirely; an endpoint with such a port
//     is dropped, and a nodePort outside that range is not opened.
//
// Valid plans pass through unchanged (the same pointers), so the renderers'
// caches and the golden outputs are unaffected.

// printableAddr reports whether a is an address of family fam, and returns
// it without its zone.
func printableAddr(a netip.Addr, fam Family) (netip.Addr, bool) {
	if !a.IsValid() || FamilyOf(a) != fam {
		return netip.Addr{}, false
	}
	return a.WithZone(""), true
}

func validPort(p int32) bool { return p >= 1 && p <= 65535 }

// KnownProtocol reports whether p is one of the protocols a rule can name.
func KnownProtocol(p Protocol) bool { return p == TCP || p == UDP || p == SCTP }

// PrintableAddrs returns the addresses of family fam in in, without zones,
// each once, in their order. It returns in itself when nothing changes.
func PrintableAddrs(in []netip.Addr, fam Family) []netip.Addr {
	clean := true
	for i, a := range in {
		if a.Zone() != "" || !a.IsValid() || FamilyOf(a) != fam || slices.Contains(in[:i], a) {
			clean = false
			break
		}
	}
	if clean {
		return in
	}
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		if a, ok := printableAddr(a, fam); ok && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// printablePrefixes returns the valid prefixes of family fam in in, with
// their host bits cleared. It returns in itself when nothing changes.
func printablePrefixes(in []netip.Prefix, fam Family) []netip.Prefix {
	keep := func(p netip.Prefix) bool { return p.IsValid() && FamilyOf(p.Addr()) == fam }
	if !slices.ContainsFunc(in, func(p netip.Prefix) bool { return !keep(p) || p != p.Masked() }) {
		return in
	}
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if keep(p) {
			out = append(out, p.Masked())
		}
	}
	return out
}

// PrintablePlan returns p with its node addresses, pod range and pod
// interface cleaned as PrintableService cleans a service (the services
// themselves are left to PrintableService, one by one). It returns p itself when p is clean.
func PrintablePlan(p *Plan) *Plan {
	ips := PrintableAddrs(p.NodePortIPs, p.Family)
	cidr := p.ClusterCIDR
	if cidr.IsValid() && FamilyOf(cidr.Addr()) != p.Family {
		cidr = netip.Prefix{}
	}
	cidr = cidr.Masked() // the zero Prefix stays the zero Prefix
	iface := p.PodInterface
	if iface.Name != "" && iface.Check() != nil {
		iface = PodInterface{}
	}
	if same(ips, p.NodePortIPs) && cidr == p.ClusterCIDR && iface == p.PodInterface {
		return p
	}
	c := *p
	c.NodePortIPs, c.ClusterCIDR, c.PodInterface = ips, cidr, iface
	return &c
}

// endpointOK reports whether e can be printed as it is.
func endpointOK(e Endpoint, fam Family) bool {
	return e.IP.IsValid() && e.IP.Zone() == "" && FamilyOf(e.IP) == fam && validPort(e.Port)
}

func endpointsOK(in []Endpoint, fam Family) bool {
	for i := range in {
		if !endpointOK(in[i], fam) {
			return false
		}
	}
	return true
}

// printableEndpoints returns the endpoints of family fam with a valid port,
// without zones, each address:port once. It returns in itself when nothing
// changes.
func printableEndpoints(in []Endpoint, fam Family) []Endpoint {
	if endpointsOK(in, fam) {
		return in
	}
	out := make([]Endpoint, 0, len(in))
	seen := make(map[netip.AddrPort]bool, len(in))
	for _, e := range in {
		ip, good := printableAddr(e.IP, fam)
		if !good || !validPort(e.Port) {
			continue
		}
		e.IP = ip
		if ap := netip.AddrPortFrom(ip, uint16(e.Port)); !seen[ap] {
			seen[ap] = true
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil // as the planner leaves a list with no endpoint
	}
	return out
}

// PrintableService returns s with every address, prefix and endpoint a
// renderer could not print safely taken out (see the comment above), or
// nil when the port as a whole cannot be rendered (unknown protocol, port
// out of range, no valid cluster IP). It returns s itself when s is clean
// (without allocating), and never modifies s.
func PrintableService(s *ServicePlan, fam Family) *ServicePlan {
	if !KnownProtocol(s.Name.Protocol) || !validPort(s.Port) {
		return nil
	}
	ip, ok := printableAddr(s.ClusterIP, fam)
	if !ok {
		return nil
	}
	if ip == s.ClusterIP && (!s.HasNodePort || validPort(s.NodePort)) &&
		same(PrintableAddrs(s.ExtIPs, fam), s.ExtIPs) && same(PrintableAddrs(s.LBIPs, fam), s.LBIPs) &&
		same(printablePrefixes(s.Ranges, fam), s.Ranges) &&
		endpointsOK(s.All, fam) && endpointsOK(s.ClusterEndpoints, fam) && endpointsOK(s.LocalEndpoints, fam) {
		return s
	}
	c := *s
	c.ClusterIP = ip
	c.ExtIPs = PrintableAddrs(s.ExtIPs, fam)
	c.LBIPs = PrintableAddrs(s.LBIPs, fam)
	c.Ranges = printablePrefixes(s.Ranges, fam)
	c.All = printableEndpoints(s.All, fam)
	c.ClusterEndpoints = printableEndpoints(s.ClusterEndpoints, fam)
	c.LocalEndpoints = printableEndpoints(s.LocalEndpoints, fam)
	c.HasNodePort = s.HasNodePort && validPort(s.NodePort)
	if len(c.LBIPs) == 0 {
		c.Firewalled = false
	}
	return &c
}

// same reports whether two slices are the same slice (printable* return
// their input when they change nothing).
func same[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
