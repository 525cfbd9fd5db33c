package sync

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// What kube-proxy's IPVS mode leaves in a network namespace besides its
// iptables chains (which iptwriter.IsKubeProxyChain knows): the dummy
// interface that holds every service address, the IPVS virtual servers,
// and its ipsets. Names as in kube-proxy v1.37 (pkg/proxy/ipvs).
const (
	// kubeIPVSDevice is the interface kube-proxy binds service addresses to.
	kubeIPVSDevice = "kube-ipvs0"
	// ipsetNameMax is the kernel's limit on an ipset name (IPSET_MAXNAMELEN
	// less the NUL); kube-proxy truncates its IPv6 names to it.
	ipsetNameMax = 31
	// The IPVS generic netlink family and the two commands used here
	// (linux/ip_vs.h).
	ipvsGenlFamily    = "IPVS"
	ipvsGenlVersion   = 1
	ipvsCmdGetService = 4
	ipvsCmdFlush      = 17
	// kubeProxyIPv6IPSet replaces "KUBE-" in the IPv6 twin of each set.
	kubeProxyIPv6IPSet = "KUBE-6-"
)

// kubeProxyIPSets are the IPv4 names of kube-proxy's ipsets. Each also
// exists as "KUBE-6-..." for IPv6 (kubeProxyIPSetNames). Only these are
// removed: other agents name theirs KUBE-too (kube-router's KUBE-SRC-,
// KUBE-DST-), so a prefix match would not do.
var kubeProxyIPSets = []string{
	"KUBE-LOOP-BACK", "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL",
	"KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW",
	"KUBE-LOAD-BALANCER-SOURCE-IP", "KUBE-LOAD-BALANCER-SOURCE-CIDR",
	"KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-UDP", "KUBE-NODE-PORT-LOCAL-UDP",
	"KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
	"KUBE-HEALTH-CHECK-NODE-PORT", "KUBE-IPVS-IPS",
}

// kubeProxyIPSetNames returns every name kube-proxy gives its ipsets, both
// families: IPv6 replaces the "KUBE-" prefix with "KUBE-6-", cut to the
// kernel's limit.
func kubeProxyIPSetNames() map[string]bool {
	names := make(map[string]bool, 2*len(kubeProxyIPSets))
	for _, n := range kubeProxyIPSets {
		names[n] = true
		v6 := kubeProxyIPv6IPSet + strings.TrimPrefix(n, "KUBE-")
		names[v6[:min(len(v6), ipsetNameMax)]] = true
	}
	return names
}

// cleanupKubeProxyIPVS removes kube-proxy's IPVS-mode leftovers from the
// caller's network namespace and returns how many objects it removed:
//   - the IPVS virtual servers, all of them (IPVS_CMD_FLUSH, as kube-proxy
//     --cleanup does), but only if kube-ipvs0 exists: that interface is
//     the sign kube-proxy ran in IPVS mode here, and without it the virtual
//     servers may be another agent's (keepalived, say);
//   - the kube-ipvs0 interface (kube-proxy makes it a dummy; it is deleted
//     by name, whatever its type);
//   - kube-proxy's ipsets (kubeProxyIPSetNames). The kernel refuses to
//     destroy a set that an iptables rule still uses: call this after the
//     iptables cleanup.
//
// A kernel without IPVS or ipset support has nothing of them to remove.
// It never loads a kernel module.
func cleanupKubeProxyIPVS() (removed int, err error) {
	var errs []error
	link, err := netlink.LinkByName(kubeIPVSDevice)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link = nil
	case err != nil:
		errs = append(errs, fmt.Errorf("interface %s: %w", kubeIPVSDevice, err))
	}
	if link != nil {
		n, err := flushIPVS()
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete interface %s: %w", kubeIPVSDevice, err))
		} else {
			removed++
		}
	}
	n, err := destroyKubeProxyIPSets()
	removed += n
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// flushIPVS deletes every IPVS virtual server (and so their real servers)
// in one IPVS_CMD_FLUSH and returns how many there were. No IPVS family
// (the ip_vs module is not loaded) means none.
func flushIPVS() (int, error) {
	fam, err := netlink.GenlFamilyGet(ipvsGenlFamily)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ipvs: find the generic netlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_DUMP)
	req.AddData(&nl.Genlmsg{Command: ipvsCmdGetService, Version: ipvsGenlVersion})
	services, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, fmt.Errorf("ipvs: list virtual servers: %w", err)
	}
	req = nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_ACK)
	req.AddData(&nl.Genlmsg{Command: ipvsCmdFlush, Version: ipvsGenlVersion})
	if _, err := req.Execute(unix.NETLINK_GENERIC, 0); err != nil {
		return 0, fmt.Errorf("ipvs: flush %d virtual servers: %w", len(services), err)
	}
	return len(services), nil
}

// destroyKubeProxyIPSets destroys kube-proxy's ipsets, leaving every other
// set alone. A kernel without ipset support has none.
func destroyKubeProxyIPSets() (removed int, err error) {
	sets, err := netlink.IpsetListAll()
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ipset: list sets: %w", err)
	}
	ours := kubeProxyIPSetNames()
	var errs []error
	for _, s := range sets {
		if !ours[s.SetName] {
			continue
		}
		if err := netlink.IpsetDestroy(s.SetName); err != nil {
			errs = append(errs, fmt.Errorf("ipset %s: destroy: %w", s.SetName, err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
