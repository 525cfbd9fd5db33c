package rules

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFastNameChecksNeverPassWhatTheAPIRefuses: each name rule's fast path
// passes only values the API server's own check passes (every string of up
// to 3 bytes over an alphabet of each class of byte, and 200,000 random
// strings of up to 300 bytes, biased toward the rules' edges), and it
// passes the names of a real cluster, so that they never take the slow
// path.
func TestFastNameChecksNeverPassWhatTheAPIRefuses(t *testing.T) {
	checks := map[string]nameCheck{
		"dns1123Label": dns1123Label, "dns1035Label": dns1035Label,
		"dns1123Subdomain": dns1123Subdomain, "labelValue": labelValue,
	}
	const alphabet = "az09AZ-._/ \n\xff"
	var corpus []string
	var all func(prefix string, n int)
	all = func(prefix string, n int) {
		corpus = append(corpus, prefix)
		if n == 0 {
			return
		}
		for i := range len(alphabet) {
			all(prefix+alphabet[i:i+1], n-1)
		}
	}
	all("", 3)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		// Mostly valid bytes, at lengths around 63 and 253.
		n := []int{rng.IntN(10), 62 + rng.IntN(3), 252 + rng.IntN(3), rng.IntN(300)}[rng.IntN(4)]
		var b strings.Builder
		for range n {
			if rng.IntN(40) == 0 {
				b.WriteByte(alphabet[rng.IntN(len(alphabet))])
			} else {
				b.WriteByte("abcxyz0189-."[rng.IntN(12)])
			}
		}
		corpus = append(corpus, b.String())
	}
	for name, c := range checks {
		passed := 0
		for _, s := range corpus {
			if c.fast(s) {
				passed++
				if msgs := c.full(s); len(msgs) > 0 {
					t.Errorf("%s: the fast path passes %q, which the API refuses: %v", name, s, msgs)
				}
			}
		}
		if passed < 1000 {
			t.Errorf("%s: the fast path passed only %d of %d values: the test no longer reaches it", name, passed, len(corpus))
		}
	}
	real := map[string][]string{
		"dns1123Label":     {"default", "kube-system", "http", "dns-tcp", "a", "0abc", strings.Repeat("a", 63)},
		"dns1035Label":     {"kubernetes", "web", "svc-123", "a", strings.Repeat("z", 63)},
		"dns1123Subdomain": {"node-a", "ip-10-0-1-17.ec2.internal", "gke-pool-1-abcd1234-x9z2", "svc-123-abcde", "0.0", strings.Repeat("a", 63) + "." + strings.Repeat("b", 63)},
		"labelValue":       {"", "us-east-1a", "europe-west1-b", "svc-123", "A_b.C-9"},
	}
	for name, vs := range real {
		for _, v := range vs {
			if !checks[name].fast(v) {
				t.Errorf("%s: the fast path does not pass %q", name, v)
			}
		}
	}
}
