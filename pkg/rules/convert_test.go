package rules

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// hostile are strings that must never reach a renderer as a name: each
// breaks a rule file, a comment or a log line, or is longer than any name
// the API allows.
var hostile = map[string]string{
	"newline":       "web\nflush ruleset",
	"quote":         `web"`,
	"single quote":  "web'",
	"semicolon":     "web;drop",
	"braces":        "web{}",
	"hash":          "web#x",
	"backslash":     `web\x`,
	"space":         "web x",
	"unicode":       "wéb",
	"slash":         "a/b",
	"upper case":    "Web",
	"over-long 254": strings.Repeat("a", 254),
}

func validService() *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// wantObjectError checks that err is an *ObjectError for field (a prefix
// of it, so that "spec.ports[1]" matches "spec.ports[1].name"), and that
// its text is one line: a hostile value is quoted.
func wantObjectError(t *testing.T, err error, field string) {
	t.Helper()
	var oe *ObjectError
	if !errors.As(err, &oe) {
		t.Fatalf("got error %v, want an *ObjectError for %s", err, field)
	}
	if !strings.HasPrefix(oe.Field, field) {
		t.Errorf("error names field %q, want %q (%v)", oe.Field, field, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error text spans lines: %q", err.Error())
	}
}

func TestConvertServiceRejects(t *testing.T) {
	type tc struct {
		name   string
		mutate func(*v1.Service)
		field  string // "" when the service is valid
	}
	tests := []tc{
		{name: "valid", mutate: func(*v1.Service) {}},
		{name: "empty type is defaulted", mutate: func(s *v1.Service) { s.Spec.Type = "" }},
		{name: "missing namespace", mutate: func(s *v1.Service) { s.Namespace = "" }, field: "metadata.namespace"},
		{name: "name starting with a digit (DNS-1035)", mutate: func(s *v1.Service) { s.Name = "1web" }, field: "metadata.name"},
		{name: "unnamed port when alone", mutate: func(s *v1.Service) { s.Spec.Ports[0].Name = "" }},
		{name: "long port name is a DNS-1123 label, as in the API", mutate: func(s *v1.Service) { s.Spec.Ports[0].Name = "a-long-port-name-0123456789" }},
		{name: "unnamed port among two", field: "spec.ports[1].name", mutate: func(s *v1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Protocol: v1.ProtocolUDP, Port: 53})
		}},
		{name: "same port name on TCP and UDP", field: "spec.ports[1].name", mutate: func(s *v1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Name: "http", Protocol: v1.ProtocolUDP, Port: 80})
		}},
		{name: "zoned cluster IP", mutate: func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00:96::5%eth0", nil }, field: "spec.clusterIPs[0]"},
		{name: "zoned second cluster IP", mutate: func(s *v1.Service) { s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00:96::5%eth0") }, field: "spec.clusterIPs[1]"},
		{name: "unspecified IPv4 cluster IP", mutate: func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "0.0.0.0", nil }, field: "spec.clusterIPs[0]"},
		{name: "unspecified IPv6 cluster IP", mutate: func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "::", []string{"::"} }, field: "spec.clusterIPs[0]"},
		{name: "clusterIP differs from clusterIPs[0]", mutate: func(s *v1.Service) { s.Spec.ClusterIP = "10.96.0.11" }, field: "spec.clusterIPs[0]"},
		{name: "zoned external IP", mutate: func(s *v1.Service) { s.Spec.ExternalIPs = []string{"fd00:172::5%eth0"} }, field: "spec.externalIPs[0]"},
		{name: "loopback external IP", mutate: func(s *v1.Service) { s.Spec.ExternalIPs = []string{"172.16.0.5", "127.0.0.1"} }, field: "spec.externalIPs[1]"},
		{name: "link-local external IP", mutate: func(s *v1.Service) { s.Spec.ExternalIPs = []string{"169.254.169.254"} }, field: "spec.externalIPs[0]"},
		{name: "unspecified external IP", mutate: func(s *v1.Service) { s.Spec.ExternalIPs = []string{"::"} }, field: "spec.externalIPs[0]"},
		{name: "zoned LB ingress IP", field: "status.loadBalancer.ingress[0].ip", mutate: func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30080
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "fd00:100::5%eth0"}}
		}},
		{name: "zoned source range", field: "spec.loadBalancerSourceRanges[0]", mutate: func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.LoadBalancerSourceRanges = []string{"fe80::%eth0/64"}
		}},
		{name: "source range with spaces, as the API allows", mutate: func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.LoadBalancerSourceRanges = []string{" 192.168.50.0/24 "}
		}},
		{name: "unknown type", mutate: func(s *v1.Service) { s.Spec.Type = "Magic" }, field: "spec.type"},
		{name: "legacy Global traffic policy (the API refuses it)", mutate: func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = "Global" }, field: "spec.externalTrafficPolicy"},
		{name: "unknown internal traffic policy", mutate: func(s *v1.Service) { s.Spec.InternalTrafficPolicy = ptr(v1.ServiceInternalTrafficPolicy("Nearby")) }, field: "spec.internalTrafficPolicy"},
		{name: "empty internal traffic policy", mutate: func(s *v1.Service) { s.Spec.InternalTrafficPolicy = ptr(v1.ServiceInternalTrafficPolicy("")) }, field: "spec.internalTrafficPolicy"},
		{name: "known traffic policies", mutate: func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.InternalTrafficPolicy = ptr(v1.ServiceInternalTrafficPolicyCluster)
		}},
		{name: "healthCheckNodePort too large", mutate: func(s *v1.Service) { s.Spec.HealthCheckNodePort = 70000 }, field: "spec.healthCheckNodePort"},
		{name: "named targetPort", mutate: func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("web") }},
		{name: "unset targetPort", mutate: func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(0) }},
		{name: "targetPort out of range", mutate: func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(70000) }, field: "spec.ports[0].targetPort"},
		{name: "targetPort name over 15 characters (IANA_SVC_NAME)", mutate: func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("a-very-long-name") }, field: "spec.ports[0].targetPort"},
		{name: "targetPort number as a string", mutate: func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("8080") }, field: "spec.ports[0].targetPort"},
		{name: "unknown trafficDistribution is left out, not refused", mutate: func(s *v1.Service) { s.Spec.TrafficDistribution = ptr("Anywhere\n") }},
		{name: "healthCheckNodePort negative", mutate: func(s *v1.Service) { s.Spec.HealthCheckNodePort = -1 }, field: "spec.healthCheckNodePort"},
	}
	for what, bad := range hostile {
		tests = append(tests,
			tc{name: "namespace " + what, mutate: func(s *v1.Service) { s.Namespace = bad }, field: "metadata.namespace"},
			tc{name: "name " + what, mutate: func(s *v1.Service) { s.Name = bad }, field: "metadata.name"},
			tc{name: "port name " + what, mutate: func(s *v1.Service) { s.Spec.Ports[0].Name = bad }, field: "spec.ports[0].name"},
			tc{name: "targetPort " + what, mutate: func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString(bad) }, field: "spec.ports[0].targetPort"},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := validService()
			tc.mutate(svc)
			ports, err := ConvertService(svc)
			if tc.field == "" {
				if err != nil || len(ports) == 0 {
					t.Fatalf("valid service rejected: %v", err)
				}
				if td := ports[0].TrafficDistribution; td != "" && td != v1.ServiceTrafficDistributionPreferClose {
					t.Errorf("unknown trafficDistribution %q kept", td)
				}
				return
			}
			if ports != nil {
				t.Errorf("an invalid service yielded %d ports: never render half a service", len(ports))
			}
			wantObjectError(t, err, tc.field)
		})
	}
}

// TestChainKeysCannotCollide: PortKey joins namespace, name, protocol and
// port name with "/", so ("a/b", "c") and ("a", "b/c") would share a key
// and so chains. Two layers keep them apart: validation keeps "/" out of
// every part (neither service is accepted), and PortKey quotes the parts
// of a key that holds one (the keys differ even past the converters).
func TestChainKeysCannotCollide(t *testing.T) {
	a, b := validService(), validService()
	a.Namespace, a.Name = "a/b", "c"
	b.Namespace, b.Name = "a", "b/c"
	ka := PortKey(ServicePortName{ServiceKey: ServiceKey{a.Namespace, a.Name}, Protocol: TCP, Port: "http"})
	kb := PortKey(ServicePortName{ServiceKey: ServiceKey{b.Namespace, b.Name}, Protocol: TCP, Port: "http"})
	if ka == kb {
		t.Errorf("the two services share the key %q", ka)
	}
	for _, svc := range []*v1.Service{a, b} {
		if ports, err := ConvertService(svc); err == nil {
			t.Errorf("service %s/%s accepted (%d ports): its key %q collides", svc.Namespace, svc.Name, len(ports), ka)
		}
	}
	c := validService()
	c.Spec.Ports[0].Name = "x/y"
	if _, err := ConvertService(c); err == nil {
		t.Error("a port name with / was accepted")
	}
}

func TestConvertServiceCreated(t *testing.T) {
	svc := validService()
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	svc.CreationTimestamp = metav1.NewTime(when)
	ports, err := ConvertService(svc)
	if err != nil {
		t.Fatal(err)
	}
	if !ports[0].Created.Equal(when) {
		t.Errorf("Created = %v, want %v", ports[0].Created, when)
	}
}

func validSlice() *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-abc12", Labels: map[string]string{discovery.LabelServiceName: "web"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8080))}},
		Endpoints: []discovery.Endpoint{{
			Addresses: []string{"10.244.1.5"},
			NodeName:  ptr("node-a"),
			Zone:      ptr("zone-a"),
			Hints:     &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "zone-a"}}, ForNodes: []discovery.ForNode{{Name: "node-a"}}},
		}},
	}
}

func TestConvertSliceRejects(t *testing.T) {
	type tc struct {
		name   string
		mutate func(*discovery.EndpointSlice)
		field  string // "" when valid
		// endpoint: only the endpoint is skipped, not the slice.
		endpoint bool
	}
	tests := []tc{
		{name: "valid", mutate: func(*discovery.EndpointSlice) {}},
		{name: "dotted name (a DNS-1123 subdomain)", mutate: func(es *discovery.EndpointSlice) { es.Name = "web.v1-abc" }},
		{name: "missing namespace", mutate: func(es *discovery.EndpointSlice) { es.Namespace = "" }, field: "metadata.namespace"},
		{name: "duplicate port name", field: "ports[1].name", mutate: func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(9090))})
		}},
		{name: "duplicate port name, other protocol", field: "ports[1].name", mutate: func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("http"), Protocol: ptr(v1.ProtocolUDP), Port: ptr(int32(8080))})
		}},
		{name: "two unnamed ports", field: "ports[1].name", mutate: func(es *discovery.EndpointSlice) {
			es.Ports = []discovery.EndpointPort{{Name: ptr(""), Port: ptr(int32(80))}, {Name: ptr(""), Port: ptr(int32(81))}}
		}},
		{name: "zoned address", field: "endpoints[0].addresses[0]", endpoint: true, mutate: func(es *discovery.EndpointSlice) {
			es.AddressType = discovery.AddressTypeIPv6
			es.Endpoints[0].Addresses = []string{"fd00:244::5%eth0"}
		}},
		{name: "loopback address", field: "endpoints[0].addresses[0]", endpoint: true, mutate: func(es *discovery.EndpointSlice) {
			es.Endpoints[0].Addresses = []string{"127.0.0.1"}
		}},
		{name: "unspecified address", field: "endpoints[0].addresses[0]", endpoint: true, mutate: func(es *discovery.EndpointSlice) {
			es.Endpoints[0].Addresses = []string{"0.0.0.0"}
		}},
		{name: "address of the other family", field: "endpoints[0].addresses[0]", endpoint: true, mutate: func(es *discovery.EndpointSlice) {
			es.Endpoints[0].Addresses = []string{"fd00:244::5"}
		}},
	}
	for what, bad := range hostile {
		tests = append(tests,
			tc{name: "namespace " + what, mutate: func(es *discovery.EndpointSlice) { es.Namespace = bad }, field: "metadata.namespace"},
			tc{name: "name " + what, mutate: func(es *discovery.EndpointSlice) { es.Name = bad }, field: "metadata.name"},
			tc{name: "port name " + what, mutate: func(es *discovery.EndpointSlice) { es.Ports[0].Name = ptr(bad) }, field: "ports[0].name"},
			tc{name: "nodeName " + what, mutate: func(es *discovery.EndpointSlice) { es.Endpoints[0].NodeName = ptr(bad) }, field: "endpoints[0].nodeName", endpoint: true},
			tc{name: "node hint " + what, mutate: func(es *discovery.EndpointSlice) { es.Endpoints[0].Hints.ForNodes[0].Name = bad }, field: "endpoints[0].hints.forNodes[0].name", endpoint: true},
		)
		if what != "upper case" {
			// Upper case is fine in a label value (the API says so),
			// so in a zone and in the service-name label (which then
			// matches no service: no service name has upper case).
			tests = append(tests,
				tc{name: "zone " + what, mutate: func(es *discovery.EndpointSlice) { es.Endpoints[0].Zone = ptr(bad) }, field: "endpoints[0].zone", endpoint: true},
				tc{name: "zone hint " + what, mutate: func(es *discovery.EndpointSlice) { es.Endpoints[0].Hints.ForZones[0].Name = bad }, field: "endpoints[0].hints.forZones[0].name", endpoint: true},
				tc{name: "service-name label " + what, mutate: func(es *discovery.EndpointSlice) { es.Labels[discovery.LabelServiceName] = bad }, field: "metadata.labels"},
			)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es := validSlice()
			// A second, good endpoint shows that a bad one skips only itself.
			es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{"10.244.2.7"}})
			if es.AddressType == discovery.AddressTypeIPv6 {
				es.Endpoints[1].Addresses = []string{"fd00:244:2::7"}
			}
			tc.mutate(es)
			if es.AddressType == discovery.AddressTypeIPv6 {
				es.Endpoints[1].Addresses = []string{"fd00:244:2::7"}
			}
			s, errs := ConvertSlice(es)
			switch {
			case tc.field == "":
				if len(errs) != 0 || s == nil || len(s.Endpoints) != 2 {
					t.Fatalf("valid slice rejected: %v", errs)
				}
				return
			case len(errs) != 1:
				t.Fatalf("got %d errors %v, want one for %s", len(errs), errs, tc.field)
			}
			wantObjectError(t, errs[0], tc.field)
			if tc.endpoint {
				if s == nil || len(s.Endpoints) != 1 {
					t.Errorf("a bad endpoint must skip only itself: slice %+v", s)
				}
				var oe *ObjectError
				if errors.As(errs[0], &oe) && oe.Skipped() {
					t.Errorf("an endpoint error must not say the slice was skipped")
				}
			} else if s != nil {
				t.Errorf("an invalid slice was kept: %+v", s)
			}
		})
	}
}

func TestNodeFromObject(t *testing.T) {
	node := func(mutate func(*v1.Node)) *v1.Node {
		n := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{LabelZone: "zone-a"}},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{
				{Type: v1.NodeInternalIP, Address: "192.168.1.10"},
				{Type: v1.NodeHostName, Address: "node-a"}, // not an IP, and not read
				{Type: v1.NodeInternalIP, Address: "fd00:1::10"},
			}},
		}
		mutate(n)
		return n
	}
	addr := func(t v1.NodeAddressType, a string) func(*v1.Node) {
		return func(n *v1.Node) { n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: t, Address: a}) }
	}
	good := []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("fd00:1::10")}
	tests := []struct {
		name     string
		mutate   func(*v1.Node)
		wantIPs  []netip.Addr
		wantZone string
		wantPods []netip.Prefix
		fields   []string // the bad fields reported, in order
	}{
		{name: "valid", mutate: func(*v1.Node) {}, wantIPs: good, wantZone: "zone-a"},
		{name: "external IP after internal ones", mutate: addr(v1.NodeExternalIP, "203.0.113.7"),
			wantIPs: append(append([]netip.Addr{}, good...), netip.MustParseAddr("203.0.113.7")), wantZone: "zone-a"},
		{name: "zoned address keeps the good ones", mutate: addr(v1.NodeInternalIP, "fe80::1%eth0"),
			wantIPs: good, wantZone: "zone-a", fields: []string{"status.addresses[3].address"}},
		{name: "bad address first keeps the later good ones", wantIPs: good, wantZone: "zone-a", fields: []string{"status.addresses[0].address"},
			mutate: func(n *v1.Node) {
				n.Status.Addresses = append([]v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.999"}}, n.Status.Addresses...)
			}},
		{name: "two bad addresses, both reported", wantIPs: good, wantZone: "zone-a",
			fields: []string{"status.addresses[3].address", "status.addresses[4].address"},
			mutate: func(n *v1.Node) {
				addr(v1.NodeInternalIP, "not-an-ip")(n)
				addr(v1.NodeExternalIP, "fd00::1%lo")(n)
			}},
		{name: "bad zone dropped, addresses kept", mutate: func(n *v1.Node) { n.Labels[LabelZone] = "zone a;" },
			wantIPs: good, fields: []string{"metadata.labels[" + LabelZone + "]"}},
		{name: "pod CIDRs", mutate: func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0/24", "fd00:244:1::/64"} },
			wantIPs: good, wantZone: "zone-a", wantPods: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:244:1::/64")}},
		{name: "only the old podCIDR", mutate: func(n *v1.Node) { n.Spec.PodCIDR = "10.244.2.0/24" },
			wantIPs: good, wantZone: "zone-a", wantPods: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
		{name: "bad pod CIDR reported, the good kept", mutate: func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0", "fd00:244:1::/64"} },
			wantIPs: good, wantZone: "zone-a", wantPods: []netip.Prefix{netip.MustParsePrefix("fd00:244:1::/64")}, fields: []string{"spec.podCIDRs[0]"}},
		{name: "bad name: nothing used", mutate: func(n *v1.Node) { n.Name = "node\na" }, fields: []string{"metadata.name"}},
		{name: "over-long name", mutate: func(n *v1.Node) { n.Name = strings.Repeat("n", 254) }, fields: []string{"metadata.name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := node(tc.mutate)
			got, err := NodeFromObject(n)
			if got.Name != n.Name {
				t.Errorf("name %q, want %q", got.Name, n.Name)
			}
			if got.Zone != tc.wantZone {
				t.Errorf("zone %q, want %q", got.Zone, tc.wantZone)
			}
			if len(got.IPs) != len(tc.wantIPs) {
				t.Fatalf("IPs %v, want %v", got.IPs, tc.wantIPs)
			}
			for i := range got.IPs {
				if got.IPs[i] != tc.wantIPs[i] {
					t.Errorf("IPs %v, want %v", got.IPs, tc.wantIPs)
				}
			}
			if !slices.Equal(got.PodCIDRs, tc.wantPods) {
				t.Errorf("pod CIDRs %v, want %v", got.PodCIDRs, tc.wantPods)
			}
			var errs []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			} else if err != nil {
				errs = []error{err}
			}
			if len(errs) != len(tc.fields) {
				t.Fatalf("errors %v, want one for each of %v", err, tc.fields)
			}
			for i, f := range tc.fields {
				wantObjectError(t, errs[i], f)
			}
		})
	}
}

func TestObjectErrorQuotesInvalidNames(t *testing.T) {
	tests := []struct {
		name     string
		ns, obj  string
		wantHead string
	}{
		{name: "valid names as they are", ns: "default", obj: "web", wantHead: "Service default/web: "},
		{name: "newline quoted", ns: "default", obj: "web\nx", wantHead: `Service "default"/"web\nx": `},
		{name: "slash in namespace", ns: "a/b", obj: "c", wantHead: `Service "a/b"/"c": `},
		{name: "slash in name", ns: "a", obj: "b/c", wantHead: `Service "a"/"b/c": `},
		{name: "cluster-scoped", obj: "node\"a", wantHead: `Service "node\"a": `},
		{name: "unnamed", wantHead: "Service (unnamed): "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := (&ObjectError{Kind: "Service", Namespace: tc.ns, Name: tc.obj, Field: "f", Reason: "r"}).Error()
			if !strings.HasPrefix(got, tc.wantHead) {
				t.Errorf("got %q, want it to start with %q", got, tc.wantHead)
			}
		})
	}
}

// TestConvertEndpointConditions: kube-proxy's defaults (addEndpoints in
// pkg/proxy/endpointslicecache.go): unset ready and serving are true,
// unset terminating is false; serving does not follow ready.
func TestConvertEndpointConditions(t *testing.T) {
	tests := []struct {
		name                          string
		ready, serving, terminating   *bool
		wantReady, wantServ, wantTerm bool
	}{
		{name: "all unset", wantReady: true, wantServ: true},
		{name: "not ready, terminating, serving unset", ready: ptr(false), terminating: ptr(true), wantServ: true, wantTerm: true},
		{name: "not ready, serving false", ready: ptr(false), serving: ptr(false), terminating: ptr(true), wantTerm: true},
		{name: "not ready, not terminating, serving unset", ready: ptr(false), wantServ: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es := validSlice()
			es.Endpoints[0].Conditions = discovery.EndpointConditions{Ready: tc.ready, Serving: tc.serving, Terminating: tc.terminating}
			s, errs := ConvertSlice(es)
			if len(errs) > 0 || s == nil || len(s.Endpoints) != 1 {
				t.Fatalf("ConvertSlice: %v", errs)
			}
			e := s.Endpoints[0]
			if e.Ready != tc.wantReady || e.Serving != tc.wantServ || e.Terminating != tc.wantTerm {
				t.Errorf("ready/serving/terminating = %v/%v/%v, want %v/%v/%v", e.Ready, e.Serving, e.Terminating, tc.wantReady, tc.wantServ, tc.wantTerm)
			}
		})
	}
}

// TestConvertSlicePortNames: as kube-proxy (endpointInfoByServicePort), a
// port with a nil name is ignored, while "" names a service's unnamed port.
func TestConvertSlicePortNames(t *testing.T) {
	tests := []struct {
		name  string
		ports []discovery.EndpointPort
		want  []SlicePort
	}{
		{name: "empty name kept", ports: []discovery.EndpointPort{{Name: ptr(""), Port: ptr(int32(8080))}},
			want: []SlicePort{{Name: "", Protocol: TCP, Port: 8080}}},
		{name: "nil name ignored", ports: []discovery.EndpointPort{{Port: ptr(int32(8080))}}},
		{name: "nil name beside a named port", ports: []discovery.EndpointPort{{Port: ptr(int32(8080))}, {Name: ptr("http"), Port: ptr(int32(8081))}},
			want: []SlicePort{{Name: "http", Protocol: TCP, Port: 8081}}},
		{name: "nil name beside an empty name is no duplicate", ports: []discovery.EndpointPort{{Port: ptr(int32(8080))}, {Name: ptr(""), Port: ptr(int32(8081))}},
			want: []SlicePort{{Name: "", Protocol: TCP, Port: 8081}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es := validSlice()
			es.Ports = tc.ports
			s, errs := ConvertSlice(es)
			if len(errs) > 0 || s == nil {
				t.Fatalf("ConvertSlice: %v", errs)
			}
			if !slices.Equal(s.Ports, tc.want) {
				t.Errorf("ports = %+v, want %+v", s.Ports, tc.want)
			}
		})
	}
}
