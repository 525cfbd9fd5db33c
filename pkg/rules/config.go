package rules

import (
	"fmt"
	"net/netip"
	"strings"
)

// Config is the node-side input of rendering: who this node is and how its
// network is laid out. The zero value of every optional field is
// kube-proxy's default.
type Config struct {
	Node Node
	// NodePortAddresses limits nodePorts to the node IPs inside these CIDRs
	// (--nodeport-addresses). Empty means every node IP.
	NodePortAddresses []netip.Prefix
	// NodePortPrimary adds the node's primary IP of each family to
	// NodePortAddresses: kube-proxy's keyword primary. The primary IP of a
	// family is the first of Node.IPs in it (the Node object's first
	// InternalIP of the family, else its first ExternalIP, as kube-proxy's
	// GetNodeHostIPs); a family without one is not restricted by it.
	NodePortPrimary bool
	// ClusterCIDRs are the pod ranges, at most one per family. Traffic to a
	// ClusterIP from outside them is masqueraded; traffic from inside them
	// to an external destination is treated as pod traffic.
	ClusterCIDRs []netip.Prefix
	// DetectLocalNodeCIDR tells pod traffic by Node.PodCIDRs (the first of
	// each family) instead of ClusterCIDRs: kube-proxy's detectLocalMode
	// NodeCIDR. A family without a pod CIDR then has none.
	DetectLocalNodeCIDR bool
	// PodInterface, when its Name is set, tells pod traffic by the
	// interface it arrives on instead of a pod range, in both families:
	// kube-proxy's detectLocalMode BridgeInterface (the bridge's name) or
	// InterfaceNamePrefix (Prefix set). ClusterCIDRs then tell nothing.
	PodInterface PodInterface
	// MasqueradeAll masquerades all traffic to ClusterIPs.
	MasqueradeAll bool
	// MasqueradeBit is the bit of the packet mark that means "masquerade
	// on the way out" (kube-proxy's --iptables-masquerade-bit, 0-31); nil
	// means kube-proxy's default, DefaultMasqueradeBit. Both proxies on a
	// node must agree on it during a migration.
	MasqueradeBit *int32
	// ServiceCIDRs are the ranges ClusterIPs are allocated from
	// (--service-cluster-ip-range, or the cluster's ServiceCIDR objects).
	// The nftables backend drops new connections to an address in them
	// that no service holds, as kube-proxy's nftables mode does; empty
	// means no such drop.
	ServiceCIDRs []netip.Prefix
	// LocalhostNodePorts opens nodePorts on 127.0.0.0/8 with the iptables
	// backend, IPv4 only (kube-proxy's --iptables-localhost-nodeports); nil
	// means kube-proxy's default, true. It takes effect only when
	// NodePortAddresses is empty or covers 127.0.0.0, as in kube-proxy.
	LocalhostNodePorts *bool
	// ConntrackTCPBeLiberal is the node's net.netfilter.
	// nf_conntrack_tcp_be_liberal: when set, conntrack marks only
	// out-of-window RSTs INVALID, and the iptables backend, like
	// kube-proxy, does not drop INVALID packets in its forward chain.
	ConntrackTCPBeLiberal bool
}

// DefaultMasqueradeBit is kube-proxy's default --iptables-masquerade-bit:
// the mark 0x4000.
const DefaultMasqueradeBit = 14

// IPv4Loopback is the IPv4 loopback range, on which the iptables backend
// opens localhost nodePorts.
var IPv4Loopback = netip.MustParsePrefix("127.0.0.0/8")

// Validate checks the configuration. Each error names the setting.
func (c *Config) Validate() error {
	if c.Node.Name == "" {
		return fmt.Errorf("node name is required (it decides which endpoints are local)")
	}
	if err := onePerFamily("cluster CIDR", c.ClusterCIDRs); err != nil {
		return err
	}
	if err := onePerFamily("service CIDR", c.ServiceCIDRs); err != nil {
		return err
	}
	if c.PodInterface.Name != "" {
		if c.DetectLocalNodeCIDR {
			return fmt.Errorf("pod interface: %s and NodeCIDR are two detect-local modes; choose one", c.PodInterface.Mode())
		}
		if err := c.PodInterface.Check(); err != nil {
			return err
		}
	}
	if b := c.MasqueradeBit; b != nil && (*b < 0 || *b > 31) {
		return fmt.Errorf("masquerade bit: %d is out of range (0-31)", *b)
	}
	return nil
}

func onePerFamily(what string, prefixes []netip.Prefix) error {
	seen := map[Family]bool{}
	for _, p := range prefixes {
		f := FamilyOf(p.Addr())
		if seen[f] {
			return fmt.Errorf("%s: more than one %s range (%s)", what, f, p)
		}
		seen[f] = true
	}
	return nil
}

// Settings are the node-wide settings of one family that the renderers
// spell out as they are: no policy decision depends on them.
type Settings struct {
	// MasqueradeMark is the mark bit meaning "masquerade" (0 in a Plan
	// built by hand means DefaultMasqueradeBit: see Mark).
	MasqueradeMark uint32
	// ServiceCIDRs are the service ranges of this family (see
	// Config.ServiceCIDRs).
	ServiceCIDRs []netip.Prefix
	// LocalhostNodePorts are the loopback ranges on which the iptables
	// backend opens nodePorts (see Config.LocalhostNodePorts): empty, or
	// IPv4Loopback, or the parts of it --nodeport-addresses names.
	LocalhostNodePorts []netip.Prefix
	// KeepInvalid leaves conntrack INVALID packets alone in the iptables
	// forward chain (Config.ConntrackTCPBeLiberal).
	KeepInvalid bool
}

// Mark returns the masquerade mark: MasqueradeMark, or 1<<DefaultMasqueradeBit
// when it is 0 (a mark of one bit is never 0).
func (s Settings) Mark() uint32 {
	if s.MasqueradeMark == 0 {
		return 1 << DefaultMasqueradeBit
	}
	return s.MasqueradeMark
}

// settings returns the Settings of family fam.
func (c *Config) settings(fam Family) Settings {
	s := Settings{MasqueradeMark: 1 << DefaultMasqueradeBit, KeepInvalid: c.ConntrackTCPBeLiberal}
	if c.MasqueradeBit != nil {
		s.MasqueradeMark = 1 << uint(*c.MasqueradeBit&31)
	}
	for _, p := range c.ServiceCIDRs {
		if FamilyOf(p.Addr()) == fam {
			s.ServiceCIDRs = append(s.ServiceCIDRs, p.Masked())
		}
	}
	if fam == IPv4 {
		s.LocalhostNodePorts = c.LocalhostNodePortRanges()
	}
	return s
}

// LocalhostNodePortRanges returns where localhost nodePorts open with the
// iptables backend (IPv4 only), nil when they do not. kube-proxy
// iptables (NewProxier, NodePortAddresses.ContainsIPv4Loopback) enables
// them when --nodeport-addresses is empty or holds a CIDR that is loopback
// or contains 127.0.0.0 (primary is a node IP, never loopback); with no list, or a list that matches every
// address, it matches all of 127.0.0.0/8 ("--dst-type LOCAL"). With a
// narrower list, kube-proxy opens the loopback addresses the node's
// interfaces hold in it; rulegen knows no interfaces, and every address of
// 127.0.0.0/8 is local on Linux, so it opens the part of 127.0.0.0/8 the
// list covers.
func (c *Config) LocalhostNodePortRanges() []netip.Prefix {
	if c.LocalhostNodePorts != nil && !*c.LocalhostNodePorts {
		return nil
	}
	if len(c.NodePortAddresses) == 0 && !c.NodePortPrimary {
		return []netip.Prefix{IPv4Loopback}
	}
	var out []netip.Prefix
	for _, p := range c.NodePortAddresses {
		p = p.Masked()
		switch {
		case !p.Addr().Is4():
		case p.Bits() <= IPv4Loopback.Bits() && p.Contains(IPv4Loopback.Addr()):
			return []netip.Prefix{IPv4Loopback}
		case p.Addr().IsLoopback():
			out = append(out, p)
		}
	}
	return out
}

// PodInterface tells pod traffic by the interface a packet arrives on:
// kube-proxy's detect-local modes BridgeInterface (a packet from a local
// pod arrives on the bridge Name) and InterfaceNamePrefix (on an interface
// whose name begins with Name, such as each pod's veth). Traffic arriving
// on any other interface, or from the node itself (no input interface),
// is not pod traffic. The zero value is no such detection.
type PodInterface struct {
	// Name is the bridge's name, or the prefix when Prefix is set.
	Name string
	// Prefix makes Name a prefix of interface names.
	Prefix bool
}

// Mode returns kube-proxy's name of the detect-local mode:
// "BridgeInterface" or "InterfaceNamePrefix".
func (i PodInterface) Mode() string {
	if i.Prefix {
		return "InterfaceNamePrefix"
	}
	return "BridgeInterface"
}

// Matches reports whether traffic arriving on the interface named iface
// is pod traffic.
func (i PodInterface) Matches(iface string) bool {
	if i.Name == "" {
		return false
	}
	if i.Prefix {
		return strings.HasPrefix(iface, i.Name)
	}
	return iface == i.Name
}

// MaxInterfaceName is the longest interface name Linux accepts
// (IFNAMSIZ - 1).
const MaxInterfaceName = 15

// Check returns why the name cannot be used (nil if it can), naming the
// mode's setting. kube-proxy only requires a name that is not empty;
// rulegen also requires a name Linux could give an interface, spelled
// with the bytes real interface names use, so that the renderers can
// write it as it is: 1-15 ASCII letters, digits, '-', '_' and '.', not
// "." or ".."; a prefix at most 14 (iptables' "PREFIX+" must fit the
// 15). A name outside these rules could never match an interface rulegen
// can name safely.
func (i PodInterface) Check() error {
	what := "bridge interface"
	if i.Prefix {
		what = "interface name prefix"
	}
	if why := i.Invalid(); why != "" {
		return fmt.Errorf("%s: %q %s", what, i.Name, why)
	}
	return nil
}

// Invalid returns why Check refuses the name, without naming the setting
// ("" if it does not): for callers that name it their own way.
func (i PodInterface) Invalid() string {
	if i.Prefix {
		return InvalidInterfaceName(i.Name, MaxInterfaceName-1)
	}
	return InvalidInterfaceName(i.Name, MaxInterfaceName)
}

// InvalidInterfaceName returns why name is not an interface name (or
// prefix) of at most max bytes that rulegen writes safely, "" if it is.
func InvalidInterfaceName(name string, max int) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > max:
		return fmt.Sprintf("is longer than %d characters", max)
	case name == "." || name == "..":
		return "is not an interface name"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "may hold only ASCII letters, digits, '-', '_' and '.'"
		}
	}
	return ""
}
