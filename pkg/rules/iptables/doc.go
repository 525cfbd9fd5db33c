// Package iptables renders a rules.Plan into rulegen's RG- chains of the nat
// and filter tables, as `iptables-restore --noflush` input (Restore) that
// also inserts the jump rules from the built-in chains (Jumps; a writer
// leaves out those already in place). The layout mirrors the nftables backend: RG-SERVICES
// dispatches, RG-SVC/RG-SVL/RG-EXT/RG-FW per service (and RG-SEP per
// endpoint with session affinity), RG-HAIRPIN marks this node's pods reaching
// themselves, RG-FILTER rejects or drops what NAT did not send to an endpoint.
package iptables
