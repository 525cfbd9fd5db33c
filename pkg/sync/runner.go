package sync

import (
	"time"
)

// Clock is the time source of the runner; tests inject a fake.
type Clock interface {
	Now() time.Time
	// After waits for d on the clock and then sends the time.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Runner runs a sync function with bounded frequency:
//
//   - a requested run (Run) starts as soon as MinInterval has passed since
//     the previous run started — requests that arrive meanwhile are merged;
//   - a run happens at least every MaxInterval, requested or not;
//   - a failed run is retried after a backoff that doubles from
//     RetryInterval up to MaxInterval, until one succeeds.
//
// The function never runs concurrently with itself.
type Runner struct {
	fn            func() error
	minInterval   time.Duration
	maxInterval   time.Duration
	retryInterval time.Duration
	clock         Clock
	requests      chan struct{}
}

// NewRunner returns a runner for fn. It does nothing until Loop is called.
func NewRunner(fn func() error, minInterval, maxInterval, retryInterval time.Duration, clock Clock) *Runner {
	if clock == nil {
		clock = RealClock{}
	}
	return &Runner{fn: fn, minInterval: minInterval, maxInterval: maxInterval, retryInterval: retryInterval,
		clock: clock, requests: make(chan struct{}, 1)}
}

// Run requests a run; it never blocks.
func (r *Runner) Run() {
	select {
	case r.requests <- struct{}{}:
	default: // a request is already pending
	}
}

// Loop runs until stop is closed. The first run happens at once.
func (r *Runner) Loop(stop <-chan struct{}) {
	var last time.Time
	var backoff time.Duration
	pending := true // run once at start
	for {
		var next time.Time
		switch {
		case last.IsZero():
			next = r.clock.Now()
		case pending || backoff > 0:
			next = last.Add(r.minInterval)
			if backoff > 0 && last.Add(backoff).After(next) {
				next = last.Add(backoff)
			}
		default:
			next = last.Add(r.maxInterval)
		}
		if wait := next.Sub(r.clock.Now()); wait > 0 {
			select {
			case <-stop:
				return
			case <-r.requests:
				pending = true
				continue // a request may shorten the wait
			case <-r.clock.After(wait):
			}
		}
		select {
		case <-stop:
			return
		case <-r.requests: // this run covers a request that came meanwhile
		default:
		}
		last = r.clock.Now()
		pending = false
		if err := r.fn(); err != nil {
			backoff = min(max(2*backoff, r.retryInterval), r.maxInterval)
		} else {
			backoff = 0
		}
	}
}
