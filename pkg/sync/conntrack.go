package sync

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ConntrackSpec selects UDP conntrack entries: those whose original
// destination is OrigDst (any address when invalid) port OrigPort and, when
// ReplySrc is valid, whose reply comes from ReplySrc (the endpoint the
// connection was sent to).
type ConntrackSpec struct {
	OrigDst  netip.Addr
	OrigPort uint16
	ReplySrc netip.Addr
}

// Conntrack deletes conntrack entries.
type Conntrack interface {
	// DeleteUDP deletes the UDP entries matching any spec and returns how
	// many it deleted.
	DeleteUDP(specs []ConntrackSpec) (uint, error)
}

// NetlinkConntrack deletes entries through netlink in the caller's network
// namespace.
type NetlinkConntrack struct{}

var _ Conntrack = NetlinkConntrack{}

// DeleteUDP implements Conntrack.
func (NetlinkConntrack) DeleteUDP(specs []ConntrackSpec) (uint, error) {
	byFamily := map[netlink.InetFamily][]netlink.CustomConntrackFilter{}
	for _, s := range specs {
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return 0, err
		}
		if err := f.AddPort(netlink.ConntrackOrigDstPort, s.OrigPort); err != nil {
			return 0, err
		}
		fam := netlink.InetFamily(unix.AF_INET)
		if s.OrigDst.IsValid() {
			if s.OrigDst.Is6() {
				fam = unix.AF_INET6
			}
			if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(s.OrigDst.AsSlice())); err != nil {
				return 0, err
			}
		}
		if s.ReplySrc.IsValid() {
			if s.ReplySrc.Is6() {
				fam = unix.AF_INET6
			}
			if err := f.AddIP(netlink.ConntrackReplySrcIP, net.IP(s.ReplySrc.AsSlice())); err != nil {
				return 0, err
			}
		}
		byFamily[fam] = append(byFamily[fam], f)
	}
	var total uint
	for fam, filters := range byFamily {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
