package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels that tell the harness's services and slices apart.
const (
	labelKind   = "soak"   // "stable" or "churn"
	kindStable  = "stable" // never touched by the churn
	kindChurned = "churn"
)

// podIP returns the k-th pod address of podRange (k >= 1, wraps).
func podIP(k uint32) string {
	k = k%(1<<19-2) + 1
	return netip.AddrFrom4([4]byte{10, byte(128 + k>>16), byte(k >> 8), byte(k)}).String()
}

func newService(name, kind string, nodePort bool, tcpName, udpName string) *v1.Service {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{labelKind: kind}},
		Spec: v1.ServiceSpec{Ports: []v1.ServicePort{
			{Name: tcpName, Protocol: v1.ProtocolTCP, Port: svcTCPPort, TargetPort: intstr.FromInt32(tcpPort)},
			{Name: udpName, Protocol: v1.ProtocolUDP, Port: svcUDPPort, TargetPort: intstr.FromInt32(udpPort)},
		}}}
	if nodePort {
		svc.Spec.Type = v1.ServiceTypeNodePort
	}
	return svc
}

func newSlice(svc, kind, suffix, tcpName, udpName string, eps []discovery.Endpoint) *discovery.EndpointSlice {
	tp, up, tcp, udp := int32(tcpPort), int32(udpPort), v1.ProtocolTCP, v1.ProtocolUDP
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-" + suffix, Namespace: namespace,
			Labels: map[string]string{discovery.LabelServiceName: svc, labelKind: kind}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: &tcpName, Protocol: &tcp, Port: &tp}, {Name: &udpName, Protocol: &udp, Port: &up}},
		Endpoints:   eps,
	}
}

func endpoint(ip string, i int) discovery.Endpoint {
	node := nodeName
	if i%2 == 1 {
		node = otherNode
	}
	t := true
	return discovery.Endpoint{Addresses: []string{ip}, NodeName: &node, Conditions: discovery.EndpointConditions{Ready: &t, Serving: &t}}
}

// churned is one service of the churn with its slices, as last written.
type churned struct {
	svc    *v1.Service
	slices []*discovery.EndpointSlice
	busy   bool // a latency measurement is watching it: the churn leaves it alone
	held   bool // a change is being written
}

// churn changes the non-stable services through client-go at a steady
// rate, keeping their number around where it started.
type churn struct {
	h        *harness
	rng      *rand.Rand
	rngMu    sync.Mutex
	mu       sync.Mutex
	svcs     map[string]*churned
	target   int
	seq      int
	nextIP   atomic.Uint32
	creating atomic.Int32 // creates in flight
	resync   bool         // a write failed: re-read the churned objects before the next change

	done, failed, behind int
	byKind               map[string]int
	errs                 []string
	secondIP             bool
	nodeMu               sync.Mutex

	latSlots chan struct{}
	lat      latencies
}

// latencies are the API-to-packet figures the churn measured.
type latencies struct {
	mu              sync.Mutex
	created, gone   []time.Duration
	createdLost     int // never answered by the deadline (harness.deadline)
	goneLost        int // still answered at the deadline
	createdSkipped  int // no free slot: not measured
	measureInFlight sync.WaitGroup
}

const latencyTimeout = 30 * time.Second

func (h *harness) newChurn(initial map[string]*churned, nextIP uint32) *churn {
	c := &churn{h: h, rng: rand.New(rand.NewPCG(h.s.seed, 15)), svcs: initial, target: len(initial), seq: h.s.services,
		byKind: map[string]int{}, latSlots: make(chan struct{}, 2)}
	c.nextIP.Store(nextIP)
	return c
}

func (c *churn) freshIP() string { return podIP(c.nextIP.Add(1)) }

// op is one kind of change, with its weight among the others.
type op struct {
	name   string
	weight int
	do     func(c *churn, ctx context.Context) error
}

var ops = []op{
	{"create-or-delete", 20, (*churn).createOrDelete},
	{"add-endpoint", 14, (*churn).addEndpoint},
	{"remove-endpoint", 14, (*churn).removeEndpoint},
	{"flip-condition", 18, (*churn).flipCondition},
	{"rename-ports", 8, (*churn).renamePorts},
	{"switch-policy", 8, (*churn).switchPolicy},
	{"split-merge", 10, (*churn).splitMerge},
	{"node-address", 3, (*churn).nodeAddress},
}

// intn is rand's IntN for the churn's goroutines.
func (c *churn) intn(n int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.IntN(n)
}

// churnWorkers is how many changes may be in flight at once: one writer
// cannot keep up with 20 changes/s on a loaded machine.
const churnWorkers = 4

// run starts rate changes per second until ctx ends, each on a service no
// other change in flight holds; a tick that finds every worker busy is
// skipped (counted in behind).
func (c *churn) run(ctx context.Context) {
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.h.s.rate))
	defer tick.Stop()
	workers := make(chan struct{}, churnWorkers)
	drain := func() { // wait for every change in flight
		for range churnWorkers {
			workers <- struct{}{}
		}
		for range churnWorkers {
			<-workers
		}
	}
	defer drain()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		resync := c.resync
		c.mu.Unlock()
		if resync {
			drain()
			octx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := c.reload(octx)
			cancel()
			if err != nil {
				continue
			}
		}
		select {
		case workers <- struct{}{}:
		default:
			c.mu.Lock()
			c.behind++
			c.mu.Unlock()
			continue
		}
		pick := c.intn(total)
		var o op
		for _, o = range ops {
			if pick < o.weight {
				break
			}
			pick -= o.weight
		}
		go func() {
			defer func() { <-workers }()
			octx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := o.do(c, octx)
			cancel()
			c.mu.Lock()
			defer c.mu.Unlock()
			switch {
			case err == errNothing:
			case err != nil:
				c.failed++
				c.resync = true
				if len(c.errs) < 5 {
					c.errs = append(c.errs, fmt.Sprintf("%s at %s: %v", o.name, c.h.since(), err))
				}
			default:
				c.done++
				c.byKind[o.name]++
			}
		}()
	}
}

var errNothing = fmt.Errorf("nothing to change")

// pick returns a random churned service that no measurement and no other
// change holds, and holds it until release.
func (c *churn) pick() *churned {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.svcs))
	for n, s := range c.svcs {
		if !s.busy && !s.held {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	s := c.svcs[names[c.intn(len(names))]]
	s.held = true
	return s
}

// release ends the hold of pick.
func (c *churn) release(s *churned) {
	c.mu.Lock()
	s.held = false
	c.mu.Unlock()
}

// reload re-reads every churned service and slice after a failed write
// (the API server was down, say): what the churn believes is then what the
// API holds.
func (c *churn) reload(ctx context.Context) error {
	cl := c.h.cp.Client
	sel := metav1.ListOptions{LabelSelector: labelKind + "=" + kindChurned}
	svcs, err := cl.CoreV1().Services(namespace).List(ctx, sel)
	if err != nil {
		return err
	}
	sls, err := cl.DiscoveryV1().EndpointSlices(namespace).List(ctx, sel)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := map[string]*churned{}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		fresh[s.Name] = &churned{svc: s, busy: c.svcs[s.Name] != nil && c.svcs[s.Name].busy}
	}
	for i := range sls.Items {
		sl := &sls.Items[i]
		if s := fresh[sl.Labels[discovery.LabelServiceName]]; s != nil {
			s.slices = append(s.slices, sl)
		} else {
			// A slice whose service is gone (its delete failed half way).
			cl.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, sl.Name, metav1.DeleteOptions{})
		}
	}
	for _, s := range fresh {
		slices.SortFunc(s.slices, func(a, b *discovery.EndpointSlice) int { return cmpStr(a.Name, b.Name) })
	}
	c.svcs = fresh
	c.resync = false
	return nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *churn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.svcs)
}

// createOrDelete creates a service when there are fewer than at the start,
// else deletes one; either is measured when a slot is free.
func (c *churn) createOrDelete(ctx context.Context) error {
	if c.count()+int(c.creating.Load()) < c.target {
		return c.create(ctx)
	}
	return c.delete(ctx)
}

func (c *churn) create(ctx context.Context) error {
	c.creating.Add(1)
	defer c.creating.Add(-1)
	cl := c.h.cp.Client
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	name := fmt.Sprintf("churn-%d", seq)
	var eps []discovery.Endpoint
	var ips []string
	for i := range c.h.s.endpoints {
		ip := c.freshIP()
		ips = append(ips, ip)
		eps = append(eps, endpoint(ip, i))
	}
	svc, err := cl.CoreV1().Services(namespace).Create(ctx, newService(name, kindChurned, seq%3 == 0, "t0", "u0"), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	sl, err := cl.DiscoveryV1().EndpointSlices(namespace).Create(ctx, newSlice(name, kindChurned, "a", "t0", "u0", eps), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	at := time.Now()
	s := &churned{svc: svc, slices: []*discovery.EndpointSlice{sl}}
	select {
	case c.latSlots <- struct{}{}:
		s.busy = true
		c.lat.measureInFlight.Add(1)
		go func() {
			defer func() { <-c.latSlots; c.lat.measureInFlight.Done() }()
			d, ok := c.h.firstAnswer(at, net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(svcTCPPort)), ips)
			c.lat.mu.Lock()
			if ok {
				c.lat.created = append(c.lat.created, d)
			} else {
				c.lat.createdLost++
			}
			c.lat.mu.Unlock()
			c.mu.Lock()
			if s := c.svcs[name]; s != nil { // reload may have replaced it
				s.busy = false
			}
			c.mu.Unlock()
		}()
	default:
		c.lat.mu.Lock()
		c.lat.createdSkipped++
		c.lat.mu.Unlock()
	}
	c.mu.Lock()
	c.svcs[name] = s
	c.mu.Unlock()
	return nil
}

func (c *churn) delete(ctx context.Context) error {
	s := c.pick()
	if s == nil {
		return errNothing
	}
	defer c.release(s)
	cl := c.h.cp.Client
	// Measured only when it answers now (it has a ready endpoint and its
	// rules are in place): the measurement waits for it to stop.
	addr := net.JoinHostPort(s.svc.Spec.ClusterIP, strconv.Itoa(svcTCPPort))
	measure := false
	select {
	case c.latSlots <- struct{}{}:
		if _, err := c.h.ask(c.h.podc, "tcp", addr, 200*time.Millisecond); err == nil {
			measure = true
		} else {
			<-c.latSlots
		}
	default:
	}
	if err := cl.CoreV1().Services(namespace).Delete(ctx, s.svc.Name, metav1.DeleteOptions{}); err != nil {
		if measure {
			<-c.latSlots
		}
		return err
	}
	at := time.Now()
	if measure {
		c.lat.measureInFlight.Add(1)
		go func() {
			defer func() { <-c.latSlots; c.lat.measureInFlight.Done() }()
			d, ok := c.h.firstSilence(at, addr)
			c.lat.mu.Lock()
			if ok {
				c.lat.gone = append(c.lat.gone, d)
			} else {
				c.lat.goneLost++
			}
			c.lat.mu.Unlock()
		}()
	}
	c.mu.Lock()
	delete(c.svcs, s.svc.Name)
	c.mu.Unlock()
	var errs []error
	for _, sl := range s.slices {
		if err := cl.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, sl.Name, metav1.DeleteOptions{}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// updateSlice writes a changed copy of slice i of s.
func (c *churn) updateSlice(ctx context.Context, s *churned, i int, sl *discovery.EndpointSlice) error {
	got, err := c.h.cp.Client.DiscoveryV1().EndpointSlices(namespace).Update(ctx, sl, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	c.mu.Lock()
	s.slices[i] = got
	c.mu.Unlock()
	return nil
}

// editSlice picks a service and one of its slices, lets edit change a copy
// of it (edit returns false when the slice does not lend itself to the
// change: nothing is written) and writes the copy.
func (c *churn) editSlice(ctx context.Context, edit func(sl *discovery.EndpointSlice) bool) error {
	s := c.pick()
	if s == nil {
		return errNothing
	}
	defer c.release(s)
	if len(s.slices) == 0 {
		return errNothing
	}
	i := c.intn(len(s.slices))
	sl := s.slices[i].DeepCopy()
	if !edit(sl) {
		return errNothing
	}
	return c.updateSlice(ctx, s, i, sl)
}

func (c *churn) addEndpoint(ctx context.Context) error {
	return c.editSlice(ctx, func(sl *discovery.EndpointSlice) bool {
		sl.Endpoints = append(sl.Endpoints, endpoint(c.freshIP(), c.intn(2)))
		return true
	})
}

func (c *churn) removeEndpoint(ctx context.Context) error {
	return c.editSlice(ctx, func(sl *discovery.EndpointSlice) bool {
		if len(sl.Endpoints) == 0 {
			return false
		}
		j := c.intn(len(sl.Endpoints))
		sl.Endpoints = slices.Delete(sl.Endpoints, j, j+1)
		return true
	})
}

// flipCondition moves one endpoint along ready -> not ready -> terminating
// (still serving) -> ready.
func (c *churn) flipCondition(ctx context.Context) error {
	return c.editSlice(ctx, func(sl *discovery.EndpointSlice) bool {
		if len(sl.Endpoints) == 0 {
			return false
		}
		cond := &sl.Endpoints[c.intn(len(sl.Endpoints))].Conditions
		yes, no := true, false
		switch {
		case cond.Ready == nil || *cond.Ready:
			cond.Ready, cond.Serving, cond.Terminating = &no, &no, nil
		case cond.Terminating == nil || !*cond.Terminating:
			cond.Ready, cond.Serving, cond.Terminating = &no, &yes, &yes
		default:
			cond.Ready, cond.Serving, cond.Terminating = &yes, &yes, nil
		}
		return true
	})
}

// renamePorts renames both ports of a service, then of each of its slices
// (in between, the names do not match: the service has no endpoints).
func (c *churn) renamePorts(ctx context.Context) error {
	s := c.pick()
	if s == nil {
		return errNothing
	}
	defer c.release(s)
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	tn, un := fmt.Sprintf("t%d", seq), fmt.Sprintf("u%d", seq)
	svc := s.svc.DeepCopy()
	svc.Spec.Ports[0].Name, svc.Spec.Ports[1].Name = tn, un
	got, err := c.h.cp.Client.CoreV1().Services(namespace).Update(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	c.mu.Lock()
	s.svc = got
	c.mu.Unlock()
	for i := range s.slices {
		sl := s.slices[i].DeepCopy()
		sl.Ports[0].Name, sl.Ports[1].Name = &tn, &un
		if err := c.updateSlice(ctx, s, i, sl); err != nil {
			return err
		}
	}
	return nil
}

// switchPolicy flips the external traffic policy of a NodePort service,
// the internal one of a ClusterIP service.
func (c *churn) switchPolicy(ctx context.Context) error {
	s := c.pick()
	if s == nil {
		return errNothing
	}
	defer c.release(s)
	svc := s.svc.DeepCopy()
	if svc.Spec.Type == v1.ServiceTypeNodePort {
		if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
			svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyCluster
		} else {
			svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		}
	} else {
		p := v1.ServiceInternalTrafficPolicyLocal
		if svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == p {
			p = v1.ServiceInternalTrafficPolicyCluster
		}
		svc.Spec.InternalTrafficPolicy = &p
	}
	got, err := c.h.cp.Client.CoreV1().Services(namespace).Update(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	c.mu.Lock()
	s.svc = got
	c.mu.Unlock()
	return nil
}

// splitMerge moves half of a one-slice service's endpoints to a second
// slice, or the second slice's endpoints back into the first.
func (c *churn) splitMerge(ctx context.Context) error {
	s := c.pick()
	if s == nil {
		return errNothing
	}
	defer c.release(s)
	if len(s.slices) == 0 {
		return errNothing
	}
	cl := c.h.cp.Client.DiscoveryV1().EndpointSlices(namespace)
	first := s.slices[0].DeepCopy()
	if len(s.slices) == 1 {
		if len(first.Endpoints) < 2 {
			return errNothing
		}
		half := len(first.Endpoints) / 2
		second := newSlice(s.svc.Name, kindChurned, "b", *first.Ports[0].Name, *first.Ports[1].Name, slices.Clone(first.Endpoints[half:]))
		first.Endpoints = first.Endpoints[:half]
		// The new slice first: for a moment an endpoint is in both, never in neither.
		got2, err := cl.Create(ctx, second, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		c.mu.Lock()
		s.slices = append(s.slices, got2)
		c.mu.Unlock()
		return c.updateSlice(ctx, s, 0, first)
	}
	second := s.slices[1]
	first.Endpoints = append(first.Endpoints, second.Endpoints...)
	if err := c.updateSlice(ctx, s, 0, first); err != nil {
		return err
	}
	if err := cl.Delete(ctx, second.Name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	c.mu.Lock()
	s.slices = s.slices[:1]
	c.mu.Unlock()
	return nil
}

// nodeAddress adds or removes the Node's second InternalIP; the first, the
// one the nodePort probes use, stays.
func (c *churn) nodeAddress(ctx context.Context) error {
	c.nodeMu.Lock()
	defer c.nodeMu.Unlock()
	nodes := c.h.cp.Client.CoreV1().Nodes()
	n, err := nodes.Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}
	if !c.secondIP {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: secondNodeIP})
	}
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.secondIP = !c.secondIP
	return nil
}

// udpTraffic sends a datagram to a random churned service every period
// from the pod client, so that UDP conntrack entries to endpoints that
// later go away exist. Answers are counted, not judged.
func (c *churn) udpTraffic(ctx context.Context, period time.Duration, sent, answered *atomic.Int64) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	rng := rand.New(rand.NewPCG(c.h.s.seed, 16))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		var ips []string
		for _, s := range c.svcs {
			ips = append(ips, s.svc.Spec.ClusterIP)
		}
		c.mu.Unlock()
		if len(ips) == 0 {
			continue
		}
		slices.Sort(ips)
		sent.Add(1)
		if _, err := c.h.ask(c.h.podc, "udp", net.JoinHostPort(ips[rng.IntN(len(ips))], strconv.Itoa(svcUDPPort)), 200*time.Millisecond); err == nil {
			answered.Add(1)
		}
	}
}
