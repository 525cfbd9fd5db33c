package sync

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkInitialList is what a daemon's informers do with each object of
// its first lists, after decoding: the transform (convertService,
// convertSlice) and the handler (onService, onSlice), for n services x 10
// endpoints. One iteration is the whole list.
func BenchmarkInitialList(b *testing.B) {
	const n = 5000
	ready, port, pname, proto := true, int32(8080), "http", v1.ProtocolTCP
	svcs := make([]*v1.Service, n)
	slices := make([]*discovery.EndpointSlice, n)
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		svcs[i] = &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ResourceVersion: "1"},
			Spec: v1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), Type: v1.ServiceTypeClusterIP,
				Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		es := &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", ResourceVersion: "1", Labels: map[string]string{discovery.LabelServiceName: name}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: &pname, Protocol: &proto, Port: &port}},
		}
		for j := range 10 {
			node := fmt.Sprintf("node-%d", j)
			es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 128+i/5000, i/20%250, i%20*10+j+1)},
				NodeName: &node, Conditions: discovery.EndpointConditions{Ready: &ready}})
		}
		slices[i] = es
	}
	b.Run("transforms", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range n {
				if _, err := convertService(svcs[i]); err != nil {
					b.Fatal(err)
				}
				if _, err := convertSlice(slices[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("handlers", func(b *testing.B) {
		cs := make([]*ConvertedService, n)
		ce := make([]*ConvertedSlice, n)
		for i := range n {
			cs[i] = convertedService(svcs[i])
			ce[i] = convertedSlice(slices[i])
		}
		b.ReportAllocs()
		for b.Loop() {
			p := NewProxier(Options{Backend: NFTables, NodeName: "node-a"}, nil, nil, NewMetrics(), nil, nil, nil)
			for i := range n {
				p.onService(cs[i], false)
				p.onSlice(ce[i], false)
			}
		}
	})
}
