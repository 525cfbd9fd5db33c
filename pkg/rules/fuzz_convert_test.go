package rules_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/rulegen/rulegen/pkg/rules"
)

// FuzzConvert decodes one JSON document as a Service, an EndpointSlice and
// a Node (as loosely as encoding/json allows: the manifest loader is the
// strict one) and runs each converter. None may panic. What a converter
// accepts must be what the renderers may assume: every address valid, of
// the right family, without a zone; ports in range; protocols known; each
// refusal an *ObjectError naming its kind and field.
func FuzzConvert(f *testing.F) {
	f.Add([]byte(`{"metadata":{"namespace":"default","name":"web"},"spec":{"type":"NodePort","clusterIPs":["10.96.0.1","fd00::1"],"ports":[{"name":"dns","protocol":"UDP","port":53,"nodePort":30053}]}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var svc v1.Service
		if json.Unmarshal(doc, &svc) == nil {
			ports, err := rules.ConvertService(&svc)
			if err != nil {
				checkObjectError(t, "Service", err)
			}
			for _, p := range ports {
				if err := checkPort(&svc, p); err != nil {
					t.Errorf("ConvertService accepted %s: %v", p.Name, err)
				}
			}
		}
		var es discovery.EndpointSlice
		if json.Unmarshal(doc, &es) == nil {
			sl, errs := rules.ConvertSlice(&es)
			for _, err := range errs {
				checkObjectError(t, "EndpointSlice", err)
			}
			if sl != nil {
				if err := checkSlice(sl); err != nil {
					t.Errorf("ConvertSlice accepted slice %s: %v", sl.Name, err)
				}
			}
		}
		var n v1.Node
		if json.Unmarshal(doc, &n) == nil {
			node, err := rules.NodeFromObject(&n)
			if err != nil {
				for _, e := range unjoin(err) {
					checkObjectError(t, "Node", e)
				}
			}
			if node.Name != n.Name {
				t.Errorf("NodeFromObject renamed node %q to %q", n.Name, node.Name)
			}
			for _, ip := range node.IPs {
				if err := checkAddr(ip); err != nil {
					t.Errorf("NodeFromObject kept address %v: %v", ip, err)
				}
			}
			for _, p := range node.PodCIDRs {
				if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
					t.Errorf("NodeFromObject kept pod CIDR %v", p)
				}
			}
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkObjectError(t *testing.T, kind string, err error) {
	t.Helper()
	var oe *rules.ObjectError
	if !errors.As(err, &oe) || oe.Kind != kind || oe.Field == "" || oe.Reason == "" {
		t.Errorf("%s refused without an *ObjectError naming kind and field: %#v", kind, err)
	}
}

// checkAddr reports what makes an accepted address unusable in a rule.
func checkAddr(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return errors.New("invalid")
	case ip.Zone() != "":
		return errors.New("has a zone")
	case ip.Is4In6():
		return errors.New("IPv4-mapped")
	}
	return nil
}

func checkPort(svc *v1.Service, p *rules.ServicePort) error {
	if p.Name.Namespace != svc.Namespace || p.Name.Name != svc.Name {
		return fmt.Errorf("named %s, not after its service", p.Name)
	}
	switch p.Name.Protocol {
	case rules.TCP, rules.UDP, rules.SCTP:
	default:
		return fmt.Errorf("protocol %q", p.Name.Protocol)
	}
	if p.Port < 1 || p.Port > 65535 || p.NodePort < 0 || p.NodePort > 65535 || p.HealthCheckNodePort < 0 || p.HealthCheckNodePort > 65535 {
		return fmt.Errorf("port %d, nodePort %d, healthCheckNodePort %d", p.Port, p.NodePort, p.HealthCheckNodePort)
	}
	if p.AffinitySeconds < 0 || p.AffinitySeconds > 86400 {
		return fmt.Errorf("affinity %d s", p.AffinitySeconds)
	}
	if len(p.ClusterIPs) == 0 || len(p.ClusterIPs) > 2 {
		return fmt.Errorf("%d cluster IPs", len(p.ClusterIPs))
	}
	fams := map[rules.Family]bool{}
	for _, ip := range p.ClusterIPs {
		if err := checkAddr(ip); err != nil || ip.IsUnspecified() {
			return fmt.Errorf("cluster IP %v: %v", ip, err)
		}
		if fams[rules.FamilyOf(ip)] {
			return fmt.Errorf("two cluster IPs of family %s", rules.FamilyOf(ip))
		}
		fams[rules.FamilyOf(ip)] = true
	}
	for _, ip := range append(append([]netip.Addr{}, p.ExternalIPs...), p.LoadBalancerIPs...) {
		if err := checkAddr(ip); err != nil {
			return fmt.Errorf("external or LB IP %v: %v", ip, err)
		}
	}
	for _, r := range p.SourceRanges {
		if !r.IsValid() || r != r.Masked() {
			return fmt.Errorf("source range %v", r)
		}
	}
	return nil
}

func checkSlice(sl *rules.Slice) error {
	if sl.Family != rules.IPv4 && sl.Family != rules.IPv6 {
		return fmt.Errorf("family %d", sl.Family)
	}
	names := map[string]bool{}
	for _, p := range sl.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("port %d", p.Port)
		}
		if names[p.Name] {
			return fmt.Errorf("two ports named %q", p.Name)
		}
		names[p.Name] = true
	}
	for _, e := range sl.Endpoints {
		if err := checkAddr(e.IP); err != nil {
			return fmt.Errorf("endpoint %v: %v", e.IP, err)
		}
		if rules.FamilyOf(e.IP) != sl.Family {
			return fmt.Errorf("endpoint %v in an %s slice", e.IP, sl.Family)
		}
	}
	return nil
}
