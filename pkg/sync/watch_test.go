package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rulegen/rulegen/pkg/rules"
)

// TestWatchReturnsAfterEveryObjectReachedTheProxier: Watch returns only
// once the handlers have seen every object of the initial lists, so that
// the first sync (a full rewrite of the node's rules) is made from all
// services, not from the part an informer had delivered so far. (A fake
// clientset is enough here: what is tested is the informer wiring; the
// cluster suite runs the same code against a real API server.)
func TestWatchReturnsAfterEveryObjectReachedTheProxier(t *testing.T) {
	const n = 3000
	var objs []runtime.Object
	ready, port := true, int32(8080)
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		objs = append(objs, &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "test", Operation: metav1.ManagedFieldsOperationUpdate}}},
			Spec: v1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
				Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}},
		}, &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discovery.LabelServiceName: name}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: new(string), Port: &port}}, // "" as the controller writes it: a nil name is ignored
			Endpoints:   []discovery.Endpoint{{Addresses: []string{fmt.Sprintf("10.128.%d.%d", i/250, i%250+1)}, Conditions: discovery.EndpointConditions{Ready: &ready}}},
		})
	}
	client := fake.NewClientset(objs...)
	p := NewProxier(Options{NodeName: "node-a"}, nil, nil, NewMetrics(), NewHealthChecks(), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The handlers are held back for a while (as a busy proxier would
	// hold them), while the informers' stores fill at full speed.
	p.mu.Lock()
	go func() { time.Sleep(500 * time.Millisecond); p.mu.Unlock() }()
	if err := Watch(ctx, client, p); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	ports := len(p.state.Ports())
	eps := 0
	for _, sp := range p.state.Ports() {
		eps += len(p.state.Endpoints(sp, rules.IPv4))
	}
	p.mu.Unlock()
	if ports != n || eps != n {
		t.Errorf("when Watch returned the proxier had %d of %d service ports and %d of %d endpoints", ports, n, eps, n)
	}
}

// TestWatchServiceCIDRs: ServiceCIDR objects reach the proxier (not waited
// for by Watch, as in kube-proxy: polled here, bounded).
func TestWatchServiceCIDRs(t *testing.T) {
	client := fake.NewClientset(&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16", "fd00:96::/112"}}})
	p := NewProxier(Options{NodeName: "node-a"}, nil, nil, NewMetrics(), NewHealthChecks(), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Watch(ctx, client, p); err != nil {
		t.Fatal(err)
	}
	var got string
	for range 100 {
		p.mu.Lock()
		got = fmt.Sprint(p.allServiceCIDRs())
		p.mu.Unlock()
		if got != "[]" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := "[10.96.0.0/16 fd00:96::/112]"; got != want {
		t.Errorf("service CIDRs %s, want %s", got, want)
	}
}
