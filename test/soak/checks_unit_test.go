package soak

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/test/netnstest"
)

// These tests show that each check of the soak can fail: fed what a broken
// node would show, each one says so.

func TestCanonicalRuleset(t *testing.T) {
	const base = `{"nftables":[{"metainfo":{"version":"1.0.6"}},
{"table":{"family":"ip","name":"rulegen","handle":1}},
{"chain":{"family":"ip","table":"rulegen","name":"services","handle":2}},
{"set":{"family":"ip","name":"cluster-ips","table":"rulegen","type":"ipv4_addr","handle":3,"elem":["10.96.0.1","10.96.0.2"]}},
{"rule":{"family":"ip","table":"rulegen","chain":"services","handle":4,"expr":[{"counter":{"packets":5,"bytes":300}},{"accept":null}]}},
{"rule":{"family":"ip","table":"rulegen","chain":"services","handle":5,"expr":[{"drop":null}]}}]}`
	cases := []struct {
		name  string
		other string
		equal bool
	}{
		{name: "identical", other: base, equal: true},
		{name: "other handles, counters, element and object order", equal: true, other: `{"nftables":[
{"set":{"family":"ip","name":"cluster-ips","table":"rulegen","type":"ipv4_addr","handle":9,"elem":["10.96.0.2","10.96.0.1"]}},
{"chain":{"family":"ip","table":"rulegen","name":"services","handle":7}},
{"table":{"family":"ip","name":"rulegen","handle":8}},
{"rule":{"family":"ip","table":"rulegen","chain":"services","handle":11,"expr":[{"counter":{"packets":0,"bytes":0}},{"accept":null}]}},
{"rule":{"family":"ip","table":"rulegen","chain":"services","handle":12,"expr":[{"drop":null}]}}]}`},
		{name: "an element missing (the drop-element fault)", other: strings.Replace(base, `"10.96.0.1",`, ``, 1)},
		{name: "rules of a chain in another order", other: strings.Replace(strings.Replace(base, `{"counter":{"packets":5,"bytes":300}},{"accept":null}`, `X`, 1), `{"drop":null}`, `{"counter":{"packets":5,"bytes":300}},{"accept":null}`, 1)},
		{name: "a rule missing", other: strings.Replace(base, `,
{"rule":{"family":"ip","table":"rulegen","chain":"services","handle":5,"expr":[{"drop":null}]}}`, ``, 1)},
	}
	want, err := canonicalRuleset([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			other := strings.Replace(tc.other, `X`, `{"drop":null}`, 1)
			got, err := canonicalRuleset([]byte(other))
			if err != nil {
				t.Fatal(err)
			}
			diff, n := diffLines(want, got, 5)
			if (n == 0) != tc.equal {
				t.Errorf("equal = %v, want %v; diff %q", n == 0, tc.equal, diff)
			}
		})
	}
}

func TestCanonicalIptables(t *testing.T) {
	const base = `*nat
:PREROUTING ACCEPT [0:0]
:RG-SERVICES - [0:0]
:RG-SVC-A - [0:0]
-A PREROUTING -j SOAK-OTHER
-A PREROUTING -m comment --comment "rulegen services" -j RG-SERVICES
-A RG-SERVICES -d 10.96.0.1/32 -j RG-SVC-A
-A RG-SVC-A -j DNAT --to-destination 10.128.0.1:8080
-A RG-SVC-A -j DNAT --to-destination 10.128.0.2:8080
COMMIT
`
	cases := []struct {
		name  string
		other string
		equal bool
	}{
		{name: "identical", other: base, equal: true},
		{name: "another program's rules and counters differ", equal: true,
			other: strings.Replace(strings.Replace(base, "-A PREROUTING -j SOAK-OTHER\n", "", 1), "[0:0]", "[5:300]", -1)},
		{name: "a rule missing", other: strings.Replace(base, "-A RG-SVC-A -j DNAT --to-destination 10.128.0.2:8080\n", "", 1)},
		{name: "rules of a chain in another order", other: strings.Replace(base,
			"-A RG-SVC-A -j DNAT --to-destination 10.128.0.1:8080\n-A RG-SVC-A -j DNAT --to-destination 10.128.0.2:8080",
			"-A RG-SVC-A -j DNAT --to-destination 10.128.0.2:8080\n-A RG-SVC-A -j DNAT --to-destination 10.128.0.1:8080", 1)},
		{name: "the jump missing", other: strings.Replace(base, `-A PREROUTING -m comment --comment "rulegen services" -j RG-SERVICES`+"\n", "", 1)},
		{name: "a chain left over", other: strings.Replace(base, ":RG-SVC-A - [0:0]", ":RG-SVC-A - [0:0]\n:RG-SVC-OLD - [0:0]", 1)},
	}
	want := canonicalIptables(base)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			diff, n := diffLines(want, canonicalIptables(tc.other), 5)
			if (n == 0) != tc.equal {
				t.Errorf("equal = %v, want %v; diff %q", n == 0, tc.equal, diff)
			}
		})
	}
}

func TestStaleUDP(t *testing.T) {
	endpoints := map[string][]string{
		"10.96.0.10:53":      {"10.128.0.1", "10.128.0.2"},
		"192.168.1.10:30053": {"10.128.0.1", "10.128.0.2"},
	}
	entry := func(dst, dport, replySrc string) string {
		return "udp      17 20 src=10.143.255.254 dst=" + dst + " sport=40000 dport=" + dport +
			" src=" + replySrc + " dst=10.143.255.254 sport=5353 dport=40000 mark=0 use=1"
	}
	cases := []struct {
		name  string
		line  string
		stale bool
	}{
		{name: "to a current endpoint", line: entry("10.96.0.10", "53", "10.128.0.2")},
		{name: "nodePort to a current endpoint", line: entry("192.168.1.10", "30053", "10.128.0.1")},
		{name: "to an endpoint gone from the service", line: entry("10.96.0.10", "53", "10.128.0.9"), stale: true},
		{name: "nodePort to an endpoint gone", line: entry("192.168.1.10", "30053", "10.128.0.9"), stale: true},
		{name: "to a deleted service, rewritten", line: entry("10.96.7.7", "53", "10.128.0.1"), stale: true},
		{name: "to a deleted service, not rewritten", line: entry("10.96.7.7", "53", "10.96.7.7")},
		{name: "not service traffic", line: entry("10.128.0.5", "5353", "10.128.0.5")},
		{name: "not UDP", line: strings.Replace(entry("10.96.0.10", "53", "10.128.0.9"), "udp      17", "tcp      6", 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stale, _ := staleUDP([]string{tc.line}, endpoints, netip.MustParsePrefix(serviceCIDR), []string{nodeIP})
			if (len(stale) > 0) != tc.stale {
				t.Errorf("stale = %v, want %v", stale, tc.stale)
			}
		})
	}
}

func TestGrowth(t *testing.T) {
	series := func(life int, start time.Duration, values ...int) []sample {
		var out []sample
		for i, v := range values {
			out = append(out, sample{life: life, at: start + time.Duration(i)*10*time.Second, rssKiB: v})
		}
		return out
	}
	rss := func(s sample) int { return s.rssKiB }
	cases := []struct {
		name    string
		samples []sample
		judged  int
		fails   bool
		slack   int
	}{
		{name: "flat after warm-up", samples: series(1, 0, 10, 30, 100, 101, 99, 100, 102, 100, 101), judged: 1},
		{name: "grows 20%", samples: series(1, 0, 10, 30, 100, 101, 99, 110, 118, 120, 121), judged: 1, fails: true},
		{name: "too short to judge", samples: series(1, 0, 10, 30, 100, 150), judged: 0},
		{name: "a restart starts a new baseline", judged: 2,
			samples: append(series(1, 0, 10, 30, 100, 100, 100, 100, 100, 100), series(2, 0, 10, 30, 200, 200, 201, 200, 199, 200)...)},
		{name: "the second process leaks", judged: 2, fails: true,
			samples: append(series(1, 0, 10, 30, 100, 100, 100, 100, 100, 100), series(2, 0, 10, 30, 100, 100, 105, 110, 115, 120)...)},
		{name: "a small count grows within the slack", samples: series(1, 0, 10, 30, 46, 46, 46, 50, 51, 51), judged: 1, slack: 10},
		{name: "a small count grows beyond the slack", samples: series(1, 0, 10, 30, 46, 46, 46, 60, 61, 62), judged: 1, slack: 10, fails: true},
		{name: "the same growth without slack", samples: series(1, 0, 10, 30, 46, 46, 46, 50, 51, 51), judged: 1, fails: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := growthCheck("rss", tc.samples, 20*time.Second, rss, "KiB", tc.slack)
			_, judged, _, _ := growth(tc.samples, 20*time.Second, rss)
			if judged != tc.judged {
				t.Errorf("judged %d processes, want %d", judged, tc.judged)
			}
			if tc.judged > 0 && c.ok == tc.fails {
				t.Errorf("check ok = %v (%s), want %v", c.ok, c.value, !tc.fails)
			}
			if tc.judged == 0 && c.ok {
				t.Errorf("no process judged, but the check passed: %s", c.value)
			}
		})
	}
}

func TestLatencyCheck(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	cases := []struct {
		name string
		ds   []time.Duration
		lost int
		ok   bool
	}{
		{name: "all seen", ds: ms(10, 20, 30), ok: true},
		{name: "one never seen", ds: ms(10, 20), lost: 1},
		{name: "nothing measured", ds: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c := latencyCheck("x", tc.ds, tc.lost); c.ok != tc.ok {
				t.Errorf("ok = %v (%s), want %v", c.ok, c.value, tc.ok)
			}
		})
	}
	if p50, p99, mx := percentiles(ms(5, 1, 3, 2, 4)); p50 != 3*time.Millisecond || p99 != 5*time.Millisecond || mx != 5*time.Millisecond {
		t.Errorf("percentiles = %s %s %s, want 3ms 5ms 5ms", p50, p99, mx)
	}
}

func TestFlushCheck(t *testing.T) {
	cases := []struct {
		name       string
		repairs    []time.Duration
		unrepaired int
		ok         bool
	}{
		{name: "back within the limit", repairs: []time.Duration{300 * time.Millisecond, 1900 * time.Millisecond}, ok: true},
		{name: "one back too late", repairs: []time.Duration{300 * time.Millisecond, 3 * time.Second}},
		{name: "one never back", repairs: []time.Duration{300 * time.Millisecond}, unrepaired: 1},
		{name: "no flush in the run", ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c := flushCheck(tc.repairs, tc.unrepaired, 2*time.Second); c.ok != tc.ok {
				t.Errorf("ok = %v (%s), want %v", c.ok, c.value, tc.ok)
			}
		})
	}
}

// TestNeighbourIntact: the other program's rules are found intact as
// written, and not after someone touched them.
func TestNeighbourIntact(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "iptables-save")
	cases := []struct {
		name   string
		damage []string // a command run in the node after the neighbour wrote its rules
	}{
		{name: "untouched"},
		{name: "its iptables chain flushed", damage: []string{"iptables", "-F", "SOAK-HOSTFW"}},
		{name: "a jump to it deleted", damage: []string{"iptables", "-D", "FORWARD", "-j", "SOAK-HOSTFW"}},
		{name: "an element added to its set", damage: []string{"nft", "add", "element", "inet", "soakother", "blocked", "{ 172.31.255.99 }"}},
		{name: "its table deleted", damage: []string{"nft", "delete", "table", "inet", "soakother"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, node: netnstest.New(t, "sknb")}
			nb := h.startNeighbour()
			if d := nb.intact(); len(d) > 0 {
				t.Fatalf("intact right after writing: %q", d)
			}
			if tc.damage == nil {
				return
			}
			h.node.MustRun(nil, tc.damage[0], tc.damage[1:]...)
			if d := nb.intact(); len(d) == 0 {
				t.Errorf("%s went unnoticed", strings.Join(tc.damage, " "))
			}
		})
	}
}

// TestDeadlineAmid: a change's measurement waits latencyTimeout, or
// afterOutage past the end of an API server outage that overlapped it.
func TestDeadlineAmid(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	cases := []struct {
		name    string
		outages []outage
		now     time.Time
		want    time.Time
	}{
		{name: "no outage", want: at(30)},
		{name: "an outage that ended before the change", outages: []outage{{at(-60), at(-1)}}, want: at(30)},
		{name: "an outage that began after the deadline", outages: []outage{{at(31), at(40)}}, want: at(30)},
		{name: "an outage during the wait", outages: []outage{{at(10), at(69)}}, want: at(69 + 60)},
		{name: "a change made during an outage", outages: []outage{{at(-5), at(20)}}, want: at(80)},
		{name: "an outage still going on", outages: []outage{{from: at(10)}}, now: at(100), want: at(160)},
		{name: "a short outage does not shorten the limit", outages: []outage{{at(-40), at(-35)}, {at(1), at(2)}}, want: at(62)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := deadlineAmid(at(0), tc.outages, tc.now); !got.Equal(tc.want) {
				t.Errorf("deadline %s after the change, want %s", got.Sub(t0), tc.want.Sub(t0))
			}
		})
	}
}
