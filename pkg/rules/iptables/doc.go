// Package iptables renders a rules.Plan into rulegen's RG- chains of the nat
// and filter tables, as `iptables-restore --noflush` input (Restore) that
// also inserts the jump rules from the built-in chains (Jumps; a writer
// leaves out those already in place). The layout mirrors the nftables backend: RG-SERVICES
// dispatches, RG-SVC/RG-SVL/RG-EXT/RG-FW per service (and RG-SEP per
// endpoint with session affinity), RG-HAIRPIN marks this node's pods reaching
// themselves, RG-FILTER rejects or drops what NAT did not send to an endpoint.
//
// Beside them, as kube-proxy's iptables mode: RG-HEALTH-CHECKS (from INPUT)
// accepts the healthCheckNodePorts, RG-FORWARD (from FORWARD) drops
// conntrack INVALID packets and accepts marked and established traffic, and
// with localhost nodePorts (IPv4, --iptables-localhost-nodeports, on by
// default) RG-SERVICES also sends 127.0.0.0/8 to RG-NODEPORTS while
// RG-BLOCK-LOCALNET (from INPUT and OUTPUT) drops connections to
// 127.0.0.0/8 from other sources. The kernel routes such nodePorts only
// with net.ipv4.conf.all.route_localnet=1, which kube-proxy sets and
// rulegen leaves to the operator (the daemon warns when it is 0). Unlike
// nftables, nothing is dropped for unallocated ClusterIPs (kube-proxy's
// iptables mode ignores ServiceCIDRs too).
package iptables
