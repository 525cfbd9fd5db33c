package iptwriter

import (
	"bytes"
	"fmt"
	"strings"
)

// kubeProxyChains are the chains kube-proxy (iptables and IPVS mode) owns; the
// kubelet's own KUBE-FIREWALL, KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT
// are not among them and are left alone.
var kubeProxyChains = map[string]bool{
	"KUBE-SERVICES": true, "KUBE-EXTERNAL-SERVICES": true, "KUBE-NODEPORTS": true, "KUBE-POSTROUTING": true,
	"KUBE-MARK-MASQ": true, "KUBE-MARK-DROP": true, "KUBE-FORWARD": true, "KUBE-PROXY-FIREWALL": true,
	"KUBE-PROXY-CANARY": true, "KUBE-LOAD-BALANCER": true,
	// IPVS mode's own (their rules match kube-proxy's ipsets).
	"KUBE-NODE-PORT": true, "KUBE-SOURCE-RANGES-FIREWALL": true, "KUBE-IPVS-FILTER": true, "KUBE-IPVS-OUT-FILTER": true,
}

// IsKubeProxyChain reports whether an iptables chain belongs to kube-proxy.
func IsKubeProxyChain(name string) bool {
	if kubeProxyChains[name] {
		return true
	}
	for _, p := range []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-", "KUBE-XLB-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// CleanupKubeProxy removes kube-proxy's iptables leftovers of this family:
// every rule elsewhere that jumps to a kube-proxy chain, then the chains
// themselves, in one iptables-restore per table. DESTRUCTIVE: run it only
// once kube-proxy is stopped and rulegen serves the node.
func (w *Writer) CleanupKubeProxy() (removed int, err error) {
	for _, table := range []string{"nat", "filter", "mangle"} {
		out, err := w.run("", w.save, "-t", table)
		if err != nil {
			continue // the table does not exist in this flavour
		}
		var dels, chains []string
		for _, line := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				name, _, _ := strings.Cut(line[1:], " ")
				if IsKubeProxyChain(name) {
					chains = append(chains, name)
				}
			case strings.HasPrefix(line, "-A "):
				f := strings.Fields(line)
				if IsKubeProxyChain(f[1]) {
					continue // goes with its chain
				}
				for i := range f {
					if (f[i] == "-j" || f[i] == "-g") && i+1 < len(f) && IsKubeProxyChain(f[i+1]) {
						dels = append(dels, "-D"+line[2:])
						break
					}
				}
			}
		}
		if len(chains) == 0 && len(dels) == 0 {
			continue
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, d := range dels {
			b.WriteString(d + "\n")
		}
		for _, c := range chains {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
		if err := w.restoreInput(b.String()); err != nil {
			return removed, fmt.Errorf("table %s: %w", table, err)
		}
		removed += len(chains) + len(dels)
	}
	return removed, nil
}
