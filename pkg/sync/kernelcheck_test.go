package sync

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// waitForWaiter waits (in real time, at most 2 s) until a goroutine is
// blocked on the clock.
func (c *fakeClock) waitForWaiter(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		n := len(c.waiters)
		c.mu.Unlock()
		if n > 0 {
			return
		}
	}
	t.Fatal("nothing waits on the clock")
}

// watched returns a proxier that has synced one service and whose
// WatchKernel runs until the test ends, its fake clock, and the fake times
// at which it asks for a sync. prepare edits the fake kernel first.
func watched(t *testing.T, opts Options, prepare func(*fakeKernel)) (*Proxier, *fakeKernel, *fakeClock, chan time.Time) {
	t.Helper()
	p, k, _ := newTestProxier(opts)
	if prepare != nil {
		prepare(k)
	}
	clock := p.clock.(*fakeClock)
	requests := make(chan time.Time, 20)
	p.SetRequest(func() { requests <- clock.Now() })
	p.OnService(testService("web", "10.96.0.10", "TCP", 0), false)
	<-requests // the change's own request
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { p.WatchKernel(stop); close(done) }()
	t.Cleanup(func() { close(stop); <-done })
	return p, k, clock, requests
}

// TestWatchKernel: between syncs, WatchKernel asks for a sync when the
// kernel no longer holds rulegen's rules (a hand flush), within one
// KernelCheckPeriod, and not while they are intact; the sync that follows
// rewrites everything and says why in the log.
func TestWatchKernel(t *testing.T) {
	p, k, clock, requests := watched(t, Options{KernelCheckPeriod: time.Second, SyncPeriod: 30 * time.Second}, nil)
	var logged bytes.Buffer
	p.log = slog.New(slog.NewTextHandler(&logged, nil)) // only Sync logs, on this goroutine
	before := k.invalidated
	expectNone := func(what string) {
		t.Helper()
		select {
		case at := <-requests:
			t.Fatalf("%s: a sync was asked for at %v", what, at.Sub(time.Unix(1000, 0)))
		case <-time.After(50 * time.Millisecond):
		}
	}
	for range 3 {
		clock.waitForWaiter(t)
		clock.Step(time.Second)
	}
	expectNone("intact kernel")

	clock.waitForWaiter(t) // the last check is over
	k.tampered.Store(true) // the table flushed by hand
	clock.Step(999 * time.Millisecond)
	expectNone("before a check period has passed")
	clock.Step(time.Millisecond)
	select {
	case at := <-requests:
		if got := at.Sub(time.Unix(1000, 0)); got != 4*time.Second {
			t.Errorf("sync asked for at +%v, want +4s (the first check after the flush)", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no sync asked for after the kernel lost rulegen's rules")
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if k.invalidated == before {
		t.Error("the sync after the flush was not a full rewrite (no Invalidate)")
	}
	if !strings.Contains(logged.String(), "no longer in the kernel as written") {
		t.Errorf("the sync after the flush did not say why it rewrote everything; log:\n%s", logged.String())
	}
	// Rewritten: nothing more is asked for.
	clock.waitForWaiter(t)
	clock.Step(time.Second)
	expectNone("after the rewrite")
}

// TestWatchKernelBacksOff: while every check finds the rules gone (the
// rewrite does not help: something flushes again and again, or the check
// cannot read them), the checks that ask for a sync come at 1, 2, 4, 8 s
// apart, then every SyncPeriod; the first that finds them back returns to
// every KernelCheckPeriod.
func TestWatchKernelBacksOff(t *testing.T) {
	_, k, clock, requests := watched(t, Options{KernelCheckPeriod: time.Second, SyncPeriod: 10 * time.Second}, nil)
	clock.waitForWaiter(t)
	k.tampered.Store(true) // never repaired: Sync is not run below
	var asked []time.Duration
	for range 40 { // 40 s of fake time, a second at a time
		clock.Step(time.Second)
		clock.waitForWaiter(t)
		select {
		case at := <-requests:
			asked = append(asked, at.Sub(time.Unix(1000, 0)))
		default:
		}
	}
	want := []time.Duration{1, 3, 7, 15, 25, 35}
	if len(asked) != len(want) {
		t.Fatalf("syncs asked for at %v, want at %v s", asked, want)
	}
	for i := range want {
		if asked[i] != want[i]*time.Second {
			t.Fatalf("syncs asked for at %v, want at %v s", asked, want)
		}
	}
	k.tampered.Store(false)      // back
	clock.Step(10 * time.Second) // the pending check, at +45 s
	clock.waitForWaiter(t)
	k.tampered.Store(true)
	clock.Step(time.Second) // checked again a second later
	select {
	case <-requests:
	case <-time.After(2 * time.Second):
		t.Fatal("after a check that found the rules back, the next check was not a second later")
	}
}

// TestWatchKernelCostlyCheck: a kernel whose check is not cheap
// (iptables-legacy) is not checked between syncs, even when its rules are
// gone: the next sync finds it.
func TestWatchKernelCostlyCheck(t *testing.T) {
	p, k, clock, requests := watched(t, Options{KernelCheckPeriod: time.Second, SyncPeriod: 30 * time.Second}, func(k *fakeKernel) { k.costly = true })
	clock.waitForWaiter(t)
	k.tampered.Store(true)
	for range 3 {
		clock.waitForWaiter(t)
		clock.Step(time.Second)
	}
	select {
	case <-requests:
		t.Fatal("a costly kernel check was made between syncs")
	case <-time.After(50 * time.Millisecond):
	}
	before := k.invalidated
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if k.invalidated == before {
		t.Error("the next sync did not find the rules gone")
	}
}

// TestWatchKernelOff: with KernelCheckPeriod 0, WatchKernel returns at
// once and the check is left to the syncs.
func TestWatchKernelOff(t *testing.T) {
	p, _, _ := newTestProxier(Options{})
	done := make(chan struct{})
	go func() { p.WatchKernel(make(chan struct{})); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("WatchKernel with KernelCheckPeriod 0 did not return")
	}
}
