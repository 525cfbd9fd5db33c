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

// TestWatchFollowsConvertedSlices: the EndpointSlice informer keeps
// slices converted (convertSlice), and the proxier still follows every
// kind of event: a slice added, its endpoints changed, moved to another
// service, and deleted.
func TestWatchFollowsConvertedSlices(t *testing.T) {
	svc := func(name, ip string) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1.ServiceSpec{ClusterIP: ip, Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}}}
	}
	client := fake.NewClientset(svc("a", "10.96.0.1"), svc("b", "10.96.0.2"))
	p := NewProxier(Options{NodeName: "node-a"}, nil, nil, NewMetrics(), NewHealthChecks(), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Watch(ctx, client, p); err != nil {
		t.Fatal(err)
	}
	ready, port := true, int32(8080)
	slice := func(service string, ips ...string) *discovery.EndpointSlice {
		es := &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "s-1", Namespace: "default", Labels: map[string]string{discovery.LabelServiceName: service}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: new(string), Port: &port}},
		}
		for _, ip := range ips {
			es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{ip}, Conditions: discovery.EndpointConditions{Ready: &ready}})
		}
		return es
	}
	endpoints := func() string {
		p.mu.Lock()
		defer p.mu.Unlock()
		out := ""
		for _, sp := range p.state.Ports() {
			out += fmt.Sprintf("%s:%d ", sp.Name.Name, len(p.state.Endpoints(sp, rules.IPv4)))
		}
		return out
	}
	wait := func(what, want string) {
		t.Helper()
		got := ""
		for range 200 {
			if got = endpoints(); got == want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: endpoints per service %q, want %q", what, got, want)
	}
	api := client.DiscoveryV1().EndpointSlices("default")
	if _, err := api.Create(ctx, slice("a", "10.128.0.1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("added", "a:1 b:0 ")
	if _, err := api.Update(ctx, slice("a", "10.128.0.1", "10.128.0.2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("endpoint added", "a:2 b:0 ")
	if _, err := api.Update(ctx, slice("b", "10.128.0.1", "10.128.0.2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("moved to b", "a:0 b:2 ")
	if err := api.Delete(ctx, "s-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("deleted", "a:0 b:0 ")
	// Services are kept converted too: one deleted, one given a second
	// port.
	svcs := client.CoreV1().Services("default")
	if err := svcs.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a := svc("a", "10.96.0.1")
	a.Spec.Ports = append(a.Spec.Ports, v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, TargetPort: intstr.FromInt32(53)})
	a.Spec.Ports[0].Name = "http"
	if _, err := svcs.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("service b deleted, a with two ports", "a:0 a:0 ")
}

// TestConvertSliceKeepsAHeader: what the informer keeps of a slice is its
// conversion and the fields OnSlice reads, not the endpoints again.
func TestConvertSliceKeepsAHeader(t *testing.T) {
	ready, port := true, int32(8080)
	es := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "s-1", Namespace: "default", ResourceVersion: "7",
			Labels:      map[string]string{discovery.LabelServiceName: "a"},
			Annotations: map[string]string{AnnotationTriggerTime: "2026-12-04T20:00:00Z", "other": "x"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: new(string), Port: &port}},
		Endpoints:   []discovery.Endpoint{{Addresses: []string{"10.128.0.1"}, Conditions: discovery.EndpointConditions{Ready: &ready}}},
	}
	obj, err := convertSlice(es)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := obj.(*ConvertedSlice)
	if !ok {
		t.Fatalf("convertSlice returned %T", obj)
	}
	if c.Slice == nil || len(c.Slice.Endpoints) != 1 || c.Slice.Service.Name != "a" || len(c.Errs) != 0 {
		t.Errorf("conversion: %+v, errors %v", c.Slice, c.Errs)
	}
	if c.Name != "s-1" || c.Namespace != "default" || c.ResourceVersion != "7" || c.AddressType != discovery.AddressTypeIPv4 ||
		len(c.Labels) != 0 || len(c.Annotations) != 0 || c.TriggerTime != "2026-12-04T20:00:00Z" {
		t.Errorf("header kept: %+v", c.ObjectMeta)
	}
	if cp, ok := c.DeepCopyObject().(*ConvertedSlice); !ok || cp.Slice != c.Slice || cp.Name != "s-1" {
		t.Errorf("DeepCopyObject: %#v", c.DeepCopyObject())
	}
}

// TestConvertServiceKeepsAHeader: what the informer keeps of a Service.
func TestConvertServiceKeepsAHeader(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default", ResourceVersion: "9", Labels: map[string]string{"x": "y"}},
		Spec: v1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}}}
	obj, _ := convertService(svc)
	c, ok := obj.(*ConvertedService)
	if !ok {
		t.Fatalf("convertService returned %T", obj)
	}
	if len(c.Ports) != 1 || c.Err != nil || c.Name != "a" || c.Namespace != "default" || c.ResourceVersion != "9" ||
		len(c.Labels) != 0 {
		t.Errorf("kept %+v, ports %v, error %v", c.ObjectMeta, c.Ports, c.Err)
	}
	if cp, ok := c.DeepCopyObject().(*ConvertedService); !ok || len(cp.Ports) != 1 || cp.Name != "a" {
		t.Errorf("DeepCopyObject: %#v", c.DeepCopyObject())
	}
}
