// Package iptwriter writes rulegen's iptables rules of one family with one
// `iptables-restore --noflush` per update: the RG- chains of the nat and
// filter tables and, in a full update, the jump rules from the built-in
// chains that are not in place yet.
//
// # One text for the dry run and the kernel
//
// What the writer sends is ri.Ruleset.Restore, the text `rulegen --dry-run
// --backend iptables` prints, jumps included. A full update sends all of it
// but the jumps already in place (iptables-restore cannot test for a rule,
// and a second -I would insert a duplicate); an incremental one sends only
// the chains whose rules changed, and deletes the chains that went away.
// Loading the dry-run text into a node without rulegen's rules gives
// exactly what a first full update writes.
//
// # Who runs what
//
//   - The Runner (ExecRunner; fakes in tests) runs iptables-restore (every
//     write, and Cleanup's deletion of the chains), iptables-save (listing
//     a table) and `iptables -S` (the canary in Intact with
//     iptables-legacy; with iptables-nft Intact reads the kernel through
//     netlink, and the tools only when that fails), each under a
//     context that kills it after Timeout, with `--wait` where it takes the
//     lock. go-iptables has no restore.
//   - github.com/coreos/go-iptables (behind JumpRules; FakeJumps in tests)
//     tests whether each jump is in place (Exists: `iptables -C`) before a
//     full write and in Intact, and deletes the jumps in Cleanup (Delete:
//     `iptables -D`, as often as the jump is there). It runs the binary of
//     the family and flavour (iptables-nft, ip6tables-legacy, ...; the
//     unversioned one when only that is installed) with the process's
//     environment and `--wait SECONDS`.
//
// # What is guaranteed
//
//   - Each table of a family is replaced atomically: a packet sees either
//     the old or the new nat table, never a mix, and the same for filter.
//   - The tables of one update are not committed together. iptables-restore
//     commits at each COMMIT line, in both flavours (checked with
//     iptables 1.8.9, legacy and nft): when the filter table is refused
//     after the nat table was committed, the nat table stays new and the
//     filter table old. Families are separate updates (iptables and
//     ip6tables), so one family can be updated and the other not.
//   - The mix cannot break a packet's path: nat and filter chains never jump
//     into each other, and every table that is committed is consistent in
//     itself (a chain is deleted in the commit that removes the jumps to it).
//     What a mix can do, until the next sync, is reject or drop by the old
//     filter rules, or miss a reject of the new ones.
//   - After any failure, the next update of every family is full: the writer
//     forgets what it wrote (Invalidate), and the caller invalidates the
//     other family's writer as well (pkg/sync does, on any failed sync). A
//     full update lists the RG- chains the kernel holds and rewrites or
//     deletes every one of them, so it converges from any half-written
//     state.
//   - Every command is bounded, and its error names the command and quotes
//     what it said. The Runner's wait at most LockWait for the xtables lock
//     (`--wait`) and are killed after Timeout. go-iptables cannot kill a
//     command, so its `--wait` is the smaller of LockWait and Timeout: a
//     jump check or delete waits no longer than that for the lock, and does
//     nothing else that takes long (it reads or edits one built-in chain).
//     A held lock fails the sync, which is retried, instead of stalling the
//     sync loop.
package iptwriter
