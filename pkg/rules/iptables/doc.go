// Package iptables renders a rules.Plan into rulegen's RG- chains of the nat
// and filter tables, as `iptables-restore --noflush` input (Restore), plus
// the jump rules from built-in chains (Jumps) that a writer keeps with
// go-iptables. The layout mirrors the nftables backend: RG-SERVICES
// dispatches, RG-SVC/RG-SVL/RG-EXT/RG-FW/RG-SEP per service, RG-FILTER
// rejects or drops what NAT did not send to an endpoint.
package iptables
