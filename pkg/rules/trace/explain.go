package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/rulegen/rulegen/pkg/rules"
	ri "github.com/rulegen/rulegen/pkg/rules/iptables"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// Explanation is one service explained in one family, with the backend's
// ruleset to quote from (one of NFT and IPT is set).
type Explanation struct {
	Plan *rules.Plan
	NFT  *rn.Ruleset
	IPT  *ri.Ruleset
}

// Explain describes a service in the terms of its spec — which address and
// port clients use inside and outside the cluster, which container port the
// targetPort resolves to on which endpoints, what the traffic policies
// change — followed by the exact rules rulegen writes for it. It returns
// false if the service has no port in any of the plans.
func Explain(key rules.ServiceKey, node rules.Node, ex []Explanation) (string, bool) {
	var b strings.Builder
	found := false
	fmt.Fprintf(&b, "Service %s (as seen from node %s)\n", key, node.Name)
	for _, e := range ex {
		for _, s := range e.Plan.Services {
			if s.Name.ServiceKey != key {
				continue
			}
			found = true
			explainPort(&b, e, s, node)
		}
	}
	return b.String(), found
}

func explainPort(b *strings.Builder, e Explanation, s *rules.ServicePlan, node rules.Node) {
	name := s.Name.Port
	if name == "" {
		name = "(unnamed)"
	}
	fmt.Fprintf(b, "\nport %s, %s, %s:\n", name, strings.ToUpper(string(s.Name.Protocol)), e.Plan.Family)
	fmt.Fprintf(b, "  inside the cluster:  %s  (ClusterIP: a virtual address, nothing listens on it; rulegen rewrites packets sent to it)\n", netip.AddrPortFrom(s.ClusterIP, uint16(s.Port)))
	if s.HasNodePort {
		var ips []string
		for _, ip := range e.Plan.NodePortIPs {
			ips = append(ips, netip.AddrPortFrom(ip, uint16(s.NodePort)).String())
		}
		fmt.Fprintf(b, "  outside, nodePort:   %s  (this node's addresses)\n", strings.Join(ips, ", "))
	} else if s.NodePort != 0 {
		fmt.Fprintf(b, "  outside, nodePort:   %d, but no node address of this family is known: not opened\n", s.NodePort)
	}
	for _, ip := range s.ExtIPs {
		fmt.Fprintf(b, "  external IP:         %s\n", netip.AddrPortFrom(ip, uint16(s.Port)))
	}
	for _, ip := range s.LBIPs {
		fmt.Fprintf(b, "  load-balancer IP:    %s", netip.AddrPortFrom(ip, uint16(s.Port)))
		if s.Firewalled {
			var r []string
			for _, p := range s.Ranges {
				r = append(r, p.String())
			}
			fmt.Fprintf(b, "  (only from %s; other sources dropped)", strings.Join(r, ", "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "  -> targetPort %s, resolved per endpoint from the EndpointSlice port named %q:\n", s.TargetPort, s.Name.Port)
	if len(s.All) == 0 {
		b.WriteString("       (no endpoints)\n")
	}
	for _, ep := range s.All {
		state := "not ready"
		switch {
		case ep.Ready:
			state = "ready"
		case ep.Serving && ep.Terminating:
			state = "terminating, still serving"
		case ep.Terminating:
			state = "terminating"
		}
		where := "node " + ep.NodeName
		if ep.NodeName == node.Name {
			where += " (local)"
		}
		use := usedBy(s, ep)
		fmt.Fprintf(b, "       %-22s containerPort %-5d %-26s %-22s %s\n", ep.String(), ep.Port, state, where, use)
	}
	pol := func(local bool, eps []rules.Endpoint) string {
		if local {
			return fmt.Sprintf("Local: %d endpoint(s) on this node", len(eps))
		}
		return fmt.Sprintf("Cluster: %d endpoint(s) anywhere", len(eps))
	}
	fmt.Fprintf(b, "  internalTrafficPolicy %s -> the ClusterIP %s\n", pol(s.InternalPolicyLocal, s.InternalEndpoints()), verdictText(s.InternalVerdict()))
	if s.ClusterIP.IsValid() {
		switch {
		case e.Plan.MasqueradeAll:
			b.WriteString("  ClusterIP clients: all masqueraded (--masquerade-all)\n")
		case e.Plan.PodInterface.Name != "":
			fmt.Fprintf(b, "  ClusterIP clients: masqueraded unless they arrive on %s (pods keep their address; the node itself is masqueraded)\n",
				interfaceText(rn.Iifname{Name: e.Plan.PodInterface.Name, Prefix: e.Plan.PodInterface.Prefix}))
		case e.Plan.ClusterCIDR.IsValid():
			fmt.Fprintf(b, "  ClusterIP clients: masqueraded when outside the pod range %s (pods keep their address)\n", e.Plan.ClusterCIDR)
		default:
			b.WriteString("  ClusterIP clients: source kept (no --cluster-cidr: rulegen cannot tell pods from other clients)\n")
		}
	}
	if s.HasExternal() {
		ext := pol(s.ExternalPolicyLocal, s.ExternalEndpoints())
		if s.ExternalPolicyLocal {
			ext += ", client source kept; pods and the node itself use the cluster-wide endpoints, whatever internalTrafficPolicy says"
		} else {
			ext += ", client source masqueraded so that replies come back through this node"
		}
		fmt.Fprintf(b, "  externalTrafficPolicy %s -> external destinations %s\n", ext, verdictText(s.ExternalVerdict()))
	}
	if s.Topology != "" {
		fmt.Fprintf(b, "  topology: %s hints honoured (node zone %q)\n", s.Topology, node.Zone)
	}
	if s.AffinitySeconds > 0 {
		fmt.Fprintf(b, "  sessionAffinity ClientIP: a client sticks to its endpoint for %ds after its last connection\n", s.AffinitySeconds)
	}
	if s.HealthCheckNodePort != 0 {
		fmt.Fprintf(b, "  healthCheckNodePort %d: HTTP 200 while this node has local endpoints, 503 otherwise\n", s.HealthCheckNodePort)
	}
	b.WriteString("  rules:\n")
	for _, l := range rulesFor(e, s) {
		fmt.Fprintf(b, "    %s\n", l)
	}
}

func verdictText(v rules.Verdict) string {
	switch v {
	case rules.Reject:
		return "rejects (no endpoints)"
	case rules.Drop:
		return "drops (no endpoint usable from here)"
	}
	return "is load-balanced"
}

func usedBy(s *rules.ServicePlan, ep rules.Endpoint) string {
	in := func(eps []rules.Endpoint) bool {
		for _, e := range eps {
			if e.IP == ep.IP && e.Port == ep.Port {
				return true
			}
		}
		return false
	}
	var u []string
	if in(s.ClusterEndpoints) {
		u = append(u, "cluster policy")
	}
	if in(s.LocalEndpoints) {
		u = append(u, "local policy")
	}
	if len(u) == 0 {
		return "unused"
	}
	return "used by " + strings.Join(u, ", ")
}

// rulesFor quotes the rules that belong to one service port.
func rulesFor(e Explanation, s *rules.ServicePlan) []string {
	var out []string
	if r := e.NFT; r != nil {
		key := rules.PortKey(s.Name)
		mine := func(chain string) bool { return strings.Contains(chain, "-"+key) }
		dests := append([]netip.Addr{s.ClusterIP}, s.ExtIPs...)
		dests = append(dests, s.LBIPs...)
		for _, set := range r.Sets {
			for _, el := range set.Elements {
				ours := set.IsMap && el.Verdict.Chain != "" && mine(el.Verdict.Chain)
				switch set.Key {
				case rn.KeyAddrProtoPort, rn.KeyAddrProtoPortSlot, rn.KeyAddrProtoPortSource:
					ours = ours || el.Proto == s.Name.Protocol && el.Port == uint16(s.Port) && slices.Contains(dests, el.Addr)
				case rn.KeyProtoPort, rn.KeyProtoPortSlot:
					ours = ours || s.HasNodePort && el.Proto == s.Name.Protocol && el.Port == uint16(s.NodePort)
				}
				if ours {
					kind := "set "
					if set.IsMap {
						kind = "map "
					}
					out = append(out, kind+set.Name+": "+set.ElementString(&el))
				}
			}
		}
		for _, c := range r.Chains {
			if !mine(c.Name) {
				continue
			}
			out = append(out, "chain "+c.Name+" {")
			for _, rule := range c.Rules {
				out = append(out, "  "+rule.String(r.Family))
			}
			out = append(out, "}")
		}
	}
	if r := e.IPT; r != nil {
		names := map[string]bool{ri.ClusterChain(s.Name): true, ri.LocalChain(s.Name): true, ri.ExternalChain(s.Name): true, ri.FirewallChain(s.Name): true}
		for _, ep := range s.UsedEndpoints() {
			names[ri.EndpointChain(s.Name, ep)] = true
		}
		desc := `"` + s.Name.String()
		for _, t := range r.Tables {
			for _, c := range t.Chains {
				for _, rule := range c.Rules {
					if names[c.Name] || strings.Contains(rule, desc+" ") || strings.Contains(rule, desc+`"`) {
						out = append(out, "-t "+t.Name+" -A "+c.Name+" "+rule)
					}
				}
			}
		}
	}
	return out
}
