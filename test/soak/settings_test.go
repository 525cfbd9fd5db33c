package soak

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// settings of one run, from the environment (docs/reliability.md).
type settings struct {
	duration            time.Duration // SOAK_DURATION: how long the churn and the faults run
	services, endpoints int           // SOAK_SERVICES, SOAK_ENDPOINTS: N x E at the start
	stable              int           // SOAK_STABLE: services never touched by the churn (half NodePort)
	rate                float64       // SOAK_RATE: changes per second
	refuse              string        // SOAK_REFUSE: share of refused kernel transactions
	faultEvery          time.Duration // SOAK_FAULT_EVERY: one fault (API restart, SIGKILL, flush, in turn) this often
	apiDownMin          time.Duration // the API server stays down between these two
	apiDownMax          time.Duration // SOAK_API_DOWN
	sample              time.Duration // SOAK_SAMPLE: RSS and goroutines sampled this often
	warmup              time.Duration // SOAK_WARMUP: of each rulegen lifetime, not judged for growth
	dropElement         bool          // SOAK_DROP_ELEMENT=1: rulegen's writer drops one element (must fail convergence)
	wrongEndpoints      bool          // SOAK_WRONG_ENDPOINTS=1: the probes expect one endpoint fewer per stable service (must fail them)
	seed                uint64        // SOAK_SEED: the churn's random choices
	out                 string        // SOAK_OUT: also write the summary there
	backend             string        // SOAK_BACKEND: nftables (default) or iptables
}

// long is where the defaults switch from the short run of make test to the
// soak proper.
const long = 10 * time.Minute

func loadSettings() (settings, error) {
	s := settings{
		duration:   36 * time.Second,
		services:   200,
		endpoints:  5,
		stable:     6,
		rate:       20,
		refuse:     "0.1",
		apiDownMin: 5 * time.Second,
		seed:       uint64(time.Now().UnixNano()),
		out:        os.Getenv("SOAK_OUT"),
		backend:    "nftables",
	}
	var err error
	dur := func(key string, p *time.Duration) {
		if v := os.Getenv(key); v != "" && err == nil {
			if *p, err = time.ParseDuration(v); err == nil && *p <= 0 {
				err = fmt.Errorf("%s=%s: want a positive duration", key, v)
			}
		}
	}
	num := func(key string, p *int) {
		if v := os.Getenv(key); v != "" && err == nil {
			if *p, err = strconv.Atoi(v); err == nil && *p < 1 {
				err = fmt.Errorf("%s=%s: want a positive number", key, v)
			}
		}
	}
	dur("SOAK_DURATION", &s.duration)
	// Short runs fault every quarter of the run (each fault once), with
	// the API server down for 5 s; runs from 10 min on fault every 90 s
	// (each fault every 4.5 min) with the API server down 5-60 s.
	s.faultEvery, s.apiDownMax, s.sample, s.warmup = s.duration/4, 5*time.Second, 2*time.Second, 8*time.Second
	if s.duration >= long {
		s.faultEvery, s.apiDownMax, s.sample, s.warmup = 90*time.Second, 60*time.Second, 10*time.Second, 60*time.Second
	}
	num("SOAK_SERVICES", &s.services)
	num("SOAK_ENDPOINTS", &s.endpoints)
	num("SOAK_STABLE", &s.stable)
	dur("SOAK_FAULT_EVERY", &s.faultEvery)
	dur("SOAK_API_DOWN", &s.apiDownMax)
	dur("SOAK_SAMPLE", &s.sample)
	dur("SOAK_WARMUP", &s.warmup)
	if err != nil {
		return s, err
	}
	if v := os.Getenv("SOAK_RATE"); v != "" {
		if s.rate, err = strconv.ParseFloat(v, 64); err != nil || s.rate <= 0 {
			return s, fmt.Errorf("SOAK_RATE=%s: want a positive number of changes per second", v)
		}
	}
	if v, ok := os.LookupEnv("SOAK_REFUSE"); ok {
		if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || f > 0.5 {
			return s, fmt.Errorf("SOAK_REFUSE=%s: want a share between 0 and 0.5", v)
		}
		s.refuse = v
	}
	if v := os.Getenv("SOAK_SEED"); v != "" {
		if s.seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			return s, fmt.Errorf("SOAK_SEED=%s: %w", v, err)
		}
	}
	if v := os.Getenv("SOAK_BACKEND"); v != "" {
		if v != "nftables" && v != "iptables" {
			return s, fmt.Errorf("SOAK_BACKEND=%s: want nftables or iptables", v)
		}
		s.backend = v
	}
	s.dropElement = os.Getenv("SOAK_DROP_ELEMENT") == "1"
	s.wrongEndpoints = os.Getenv("SOAK_WRONG_ENDPOINTS") == "1"
	if s.stable >= s.services {
		return s, fmt.Errorf("SOAK_STABLE=%d: want fewer than SOAK_SERVICES=%d", s.stable, s.services)
	}
	s.apiDownMax = max(s.apiDownMax, s.apiDownMin)
	return s, nil
}
