package rules

import (
	"fmt"
	"testing"

	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkConvertSlice measures the conversion of one EndpointSlice of
// 10 endpoints on 10 nodes, as the daemon's informer does for each slice
// it receives (a node's cold start converts every slice of the cluster).
func BenchmarkConvertSlice(b *testing.B) {
	ready, port, name := true, int32(8080), "http"
	es := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "svc-123-abcde", Namespace: "ns7", Labels: map[string]string{discovery.LabelServiceName: "svc-123"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: &name, Port: &port}},
	}
	for j := range 10 {
		node := fmt.Sprintf("node-%d", j)
		es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{fmt.Sprintf("10.128.0.%d", j+1)}, NodeName: &node,
			Conditions: discovery.EndpointConditions{Ready: &ready}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if s, errs := ConvertSlice(es); s == nil || len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}
