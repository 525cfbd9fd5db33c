package sync

import (
	"errors"
	gosync "sync"
	"testing"
	"time"
)

// fakeClock is a manual clock: time moves only when Step is called.
type fakeClock struct {
	mu      gosync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []waiter
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	c.mu.Unlock()
}

// harness runs a Runner whose function records the fake time of each run.
type harness struct {
	clock *fakeClock
	r     *Runner
	runs  chan time.Time
	fail  chan bool
	stop  chan struct{}
}

func newHarness(minI, maxI, retry time.Duration) *harness {
	h := &harness{clock: &fakeClock{now: time.Unix(1000, 0)}, runs: make(chan time.Time, 100), fail: make(chan bool, 100), stop: make(chan struct{})}
	h.r = NewRunner(func() error {
		h.runs <- h.clock.Now()
		select {
		case f := <-h.fail:
			if f {
				return errors.New("injected failure")
			}
		default:
		}
		return nil
	}, minI, maxI, retry, h.clock)
	go h.r.Loop(h.stop)
	return h
}

// expectRun waits (in real time, at most 2 s) for a run and returns its
// fake time offset from the start.
func (h *harness) expectRun(t *testing.T) time.Duration {
	t.Helper()
	select {
	case at := <-h.runs:
		return at.Sub(time.Unix(1000, 0))
	case <-time.After(2 * time.Second):
		t.Fatal("no run")
	}
	return 0
}

func (h *harness) expectNoRun(t *testing.T) {
	t.Helper()
	select {
	case at := <-h.runs:
		t.Fatalf("unexpected run at +%v", at.Sub(time.Unix(1000, 0)))
	case <-time.After(50 * time.Millisecond):
	}
}

// settle gives the loop goroutine time to block on the clock.
func settle() { time.Sleep(20 * time.Millisecond) }

func TestRunner(t *testing.T) {
	t.Run("first run at once, then requests no sooner than min interval", func(t *testing.T) {
		h := newHarness(time.Second, time.Minute, time.Second)
		defer close(h.stop)
		if at := h.expectRun(t); at != 0 {
			t.Errorf("first run at +%v", at)
		}
		settle()
		h.r.Run()
		h.r.Run() // merged with the first request
		settle()
		h.expectNoRun(t)
		h.clock.Step(time.Second)
		if at := h.expectRun(t); at != time.Second {
			t.Errorf("requested run at +%v, want +1s", at)
		}
		settle()
		h.expectNoRun(t)
	})
	t.Run("periodic run at max interval", func(t *testing.T) {
		h := newHarness(time.Second, 30*time.Second, time.Second)
		defer close(h.stop)
		h.expectRun(t)
		settle()
		h.clock.Step(29 * time.Second)
		settle()
		h.expectNoRun(t)
		h.clock.Step(time.Second)
		if at := h.expectRun(t); at != 30*time.Second {
			t.Errorf("periodic run at +%v", at)
		}
	})
	t.Run("zero min interval runs a request immediately", func(t *testing.T) {
		h := newHarness(0, time.Minute, time.Second)
		defer close(h.stop)
		h.expectRun(t)
		settle()
		h.r.Run()
		if at := h.expectRun(t); at != 0 {
			t.Errorf("run at +%v", at)
		}
	})
	t.Run("failures retried with doubling backoff", func(t *testing.T) {
		h := newHarness(0, time.Minute, time.Second)
		defer close(h.stop)
		h.fail <- true
		h.expectRun(t) // fails
		settle()
		h.clock.Step(time.Second)
		h.fail <- true
		if at := h.expectRun(t); at != time.Second {
			t.Errorf("first retry at +%v, want +1s", at)
		}
		settle()
		h.clock.Step(time.Second)
		settle()
		h.expectNoRun(t) // backoff doubled to 2s
		h.clock.Step(time.Second)
		if at := h.expectRun(t); at != 3*time.Second {
			t.Errorf("second retry at +%v, want +3s", at)
		}
		settle()
		h.clock.Step(time.Minute)
		if at := h.expectRun(t); at != 63*time.Second {
			t.Errorf("after success, periodic run at +%v, want +63s", at)
		}
	})
}
