package rulestest

import (
	"net/netip"

	"github.com/rulegen/rulegen/pkg/rules"
)

// OnePort returns the plan of one service port, whose names and addresses
// the caller chooses (valid or not: the renderers' tests feed hostile ones
// past the converters), with ClientIP affinity (so that endpoint chains and
// sets are named too), nodePort 30080 and one ready endpoint on node-a, the
// node planned for. nodeIP may be empty (no node address: no nodePort rules).
func OnePort(fam rules.Family, ns, name, port string, proto rules.Protocol, clusterIP, endpoint, nodeIP string) *rules.Plan {
	key := rules.ServiceKey{Namespace: ns, Name: name}
	st := rules.NewState()
	st.SetService(key, []*rules.ServicePort{{
		Name:            rules.ServicePortName{ServiceKey: key, Port: port, Protocol: proto},
		ClusterIPs:      []netip.Addr{netip.MustParseAddr(clusterIP)},
		Port:            80,
		NodePort:        30080,
		AffinitySeconds: 10800,
	}})
	st.SetSlice(&rules.Slice{Name: "s", Service: key, Family: fam,
		Ports:     []rules.SlicePort{{Name: port, Protocol: proto, Port: 8080}},
		Endpoints: []rules.Endpoint{{IP: netip.MustParseAddr(endpoint), Ready: true, Serving: true, NodeName: "node-a"}}})
	cfg := &rules.Config{Node: rules.Node{Name: "node-a"}}
	if nodeIP != "" {
		cfg.Node.IPs = []netip.Addr{netip.MustParseAddr(nodeIP)}
	}
	return rules.NewPlan(st, cfg, fam)
}
