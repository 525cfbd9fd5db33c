package rulestest

import (
	"net/netip"

	"github.com/rulegen/rulegen/pkg/rules"
)

// ETPLocal returns the IPv4 plan of one NodePort service port
// default/web:80 (ClusterIP 10.96.0.10, nodePort 30080) with
// externalTrafficPolicy Local and two endpoints, 10.244.1.5 on node-a (the
// node planned for, 192.168.1.10) and 10.244.2.7 on node-b, for the given
// detect-local settings: the rules that tell pod traffic (the ClusterIP
// masquerade, the short-circuit of pods to external destinations) are all
// in it.
func ETPLocal(clusterCIDR string, pi rules.PodInterface) *rules.Plan {
	key := rules.ServiceKey{Namespace: "default", Name: "web"}
	st := rules.NewState()
	st.SetService(key, []*rules.ServicePort{{
		Name:                rules.ServicePortName{ServiceKey: key, Protocol: rules.TCP},
		ClusterIPs:          []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Port:                80,
		NodePort:            30080,
		ExternalPolicyLocal: true,
	}})
	st.SetSlice(&rules.Slice{Name: "s", Service: key, Family: rules.IPv4,
		Ports: []rules.SlicePort{{Protocol: rules.TCP, Port: 8080}},
		Endpoints: []rules.Endpoint{
			{IP: netip.MustParseAddr("10.244.1.5"), Ready: true, Serving: true, NodeName: "node-a"},
			{IP: netip.MustParseAddr("10.244.2.7"), Ready: true, Serving: true, NodeName: "node-b"},
		}})
	cfg := &rules.Config{Node: rules.Node{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}}, PodInterface: pi}
	if clusterCIDR != "" {
		cfg.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix(clusterCIDR)}
	}
	return rules.NewPlan(st, cfg, rules.IPv4)
}
