package sync

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/rulegen/rulegen/pkg/rules"
)

// ConntrackSpec selects UDP conntrack entries of family Family: those whose
// original destination is OrigDst (any address when invalid, as for a
// nodePort) port OrigPort and, when ReplySrc is valid, whose reply comes
// from ReplySrc (the endpoint the connection was sent to). The family is
// explicit because a nodePort spec has no address to tell it.
type ConntrackSpec struct {
	Family   rules.Family
	OrigDst  netip.Addr
	OrigPort uint16
	ReplySrc netip.Addr
}

// Conntrack deletes conntrack entries: by spec, for the cleanup after a
// change, and one by one, for the reconcile (see Proxier.ReconcileConntrack).
type Conntrack interface {
	// DeleteUDP deletes the UDP entries matching any spec and returns how
	// many it deleted.
	DeleteUDP(specs []ConntrackSpec) (uint, error)
	// ListUDP returns the UDP entries of family f. With an error it may
	// still return entries: a partial list.
	ListUDP(f rules.Family) ([]ConntrackEntry, error)
	// DeleteEntries deletes the UDP entries of family f equal to one of
	// entries and returns how many it deleted.
	DeleteEntries(f rules.Family, entries []ConntrackEntry) (uint, error)
}

// NetlinkConntrack deletes entries through netlink in the caller's network
// namespace.
type NetlinkConntrack struct{}

var _ Conntrack = NetlinkConntrack{}

// DeleteUDP implements Conntrack. It fails, deleting nothing, if a spec
// has no family or an address of the other family.
func (NetlinkConntrack) DeleteUDP(specs []ConntrackSpec) (uint, error) {
	byFamily, err := conntrackFilters(specs)
	if err != nil {
		return 0, err
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

// conntrackFilters turns specs into netlink filters grouped by the address
// family of the conntrack table they apply to.
func conntrackFilters(specs []ConntrackSpec) (map[netlink.InetFamily][]netlink.CustomConntrackFilter, error) {
	byFamily := map[netlink.InetFamily][]netlink.CustomConntrackFilter{}
	for _, s := range specs {
		var fam netlink.InetFamily
		switch s.Family {
		case rules.IPv4:
			fam = unix.AF_INET
		case rules.IPv6:
			fam = unix.AF_INET6
		default:
			return nil, fmt.Errorf("conntrack spec for UDP port %d: family %d is neither IPv4 nor IPv6", s.OrigPort, s.Family)
		}
		for _, a := range []netip.Addr{s.OrigDst, s.ReplySrc} {
			if a.IsValid() && rules.FamilyOf(a) != s.Family {
				return nil, fmt.Errorf("conntrack spec for UDP port %d: address %s is not %s", s.OrigPort, a, s.Family)
			}
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return nil, err
		}
		if err := f.AddPort(netlink.ConntrackOrigDstPort, s.OrigPort); err != nil {
			return nil, err
		}
		if s.OrigDst.IsValid() {
			if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(s.OrigDst.AsSlice())); err != nil {
				return nil, err
			}
		}
		if s.ReplySrc.IsValid() {
			if err := f.AddIP(netlink.ConntrackReplySrcIP, net.IP(s.ReplySrc.AsSlice())); err != nil {
				return nil, err
			}
		}
		byFamily[fam] = append(byFamily[fam], f)
	}
	return byFamily, nil
}
