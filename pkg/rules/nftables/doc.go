// Package nftables renders a rules.Plan into rulegen's nftables table, as a
// typed Ruleset that the text renderer (Script, for `nft -f` and --dry-run)
// and the netlink writer both consume. README.md in this folder explains
// every hook, chain, set and map.
package nftables
