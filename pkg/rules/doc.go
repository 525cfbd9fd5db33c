// Package rules is rulegen's pure core: the model of Service ports,
// endpoints and the node (model.go), its construction from Kubernetes API
// objects (convert.go, state.go), and the plan (plan.go), where every policy
// decision is made once for both backends: which endpoints each traffic
// policy uses, which destinations reject or drop, where nodePorts open.
//
// The backends in pkg/rules/nftables and pkg/rules/iptables only spell a
// plan out, with names from names.go and after printable.go has taken out
// what no rule can express: whatever the model holds, they print nothing
// the kernel tools would read as something else. Nothing in this tree does I/O, logs or reads a clock: the same
// input always gives byte-identical rules.
package rules
