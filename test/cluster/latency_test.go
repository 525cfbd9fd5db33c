package cluster

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestProgrammingLatency measures, black-box, the time from an
// EndpointSlice update written to the API server to the new pod answering
// through the service, over 20 changes, with N other services of 10
// endpoints each in the cluster (RULEGEN_LATENCY_SERVICES, default 10). It
// prints the median; it fails only if a change takes over 10 s.
func TestProgrammingLatency(t *testing.T) {
	n := 10
	if v, err := strconv.Atoi(os.Getenv("RULEGEN_LATENCY_SERVICES")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t, "nftables")
	start := time.Now()
	var wg gosync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("bulk-%d", i)
				svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.ServiceSpec{
					Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt(8080)}}}}
				if _, err := e.cp.Client.CoreV1().Services(ns).Create(e.ctx(), svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					continue
				}
				es := &discovery.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discovery.LabelServiceName: name}},
					AddressType: discovery.AddressTypeIPv4,
					Ports:       []discovery.EndpointPort{{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8080))}},
				}
				for j := 0; j < 10; j++ {
					ip := fmt.Sprintf("10.%d.%d.%d", 128+(i*10+j)>>16, ((i*10+j)>>8)&255, (i*10+j)&255)
					es.Endpoints = append(es.Endpoints, discovery.Endpoint{Addresses: []string{ip}, NodeName: ptr(fmt.Sprintf("node-%d", j)),
						Conditions: discovery.EndpointConditions{Ready: ptr(true)}})
				}
				if _, err := e.cp.Client.DiscoveryV1().EndpointSlices(ns).Create(e.ctx(), es, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d services x 10 endpoints in %s", n, time.Since(start).Round(time.Millisecond))

	e.startDaemon("--min-sync-period", "0")
	probe := e.createService("probe", v1.ServiceTypeClusterIP)
	e.setSlice("probe", podA)
	e.diag = probe.Spec.ClusterIP
	d := e.answeredBy(addr(probe), "pod-a")
	t.Logf("first sync with %d services: probe service answered %s after the daemon started", n, d.Round(time.Millisecond))

	var lat []time.Duration
	for i := 0; i < 20; i++ {
		want, next := "pod-b", podB
		if i%2 == 1 {
			want, next = "pod-a", podA
		}
		t0 := time.Now()
		e.setSlice("probe", next)
		for {
			if r := e.probe(e.tp.Client1, addr(probe)); strings.HasPrefix(r, "ok "+want) {
				break
			}
			if time.Since(t0) > 10*time.Second {
				e.dumpLog()
				t.Fatalf("change %d: %s did not answer within 10s", i, want)
			}
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("EndpointSlice update -> new pod answers, %d services: median %s, min %s, max %s (20 changes)",
		n, lat[10].Round(100*time.Microsecond), lat[0].Round(100*time.Microsecond), lat[19].Round(100*time.Microsecond))
}
