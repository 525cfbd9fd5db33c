package soak

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// canonicalRuleset turns `nft -j list table ...` into a sorted list of
// lines that two equal rulesets share whatever the order they were written
// in: handles and counter values dropped, set and map elements sorted,
// top-level objects sorted (each set or map element a line of its own),
// and each rule keyed by its chain and its
// position there (the order of rules within a chain is kept, it matters).
// Elements are sorted with everything else.
func canonicalRuleset(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc struct {
		Nftables []map[string]any `json:"nftables"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("nft -j output: %w", err)
	}
	var out []string
	pos := map[string]int{}
	for _, o := range doc.Nftables {
		for kind, v := range o {
			m, ok := v.(map[string]any)
			if kind == "metainfo" || !ok {
				continue
			}
			scrub(m)
			if elems, ok := m["elem"].([]any); ok {
				// One line per element: a difference names the element.
				delete(m, "elem")
				set := fmt.Sprint(m["name"])
				for _, e := range elems {
					out = append(out, fmt.Sprintf("element %s %s", set, mustJSON(e)))
				}
			}
			js := mustJSON(m)
			if kind == "rule" {
				chain := fmt.Sprint(m["chain"])
				out = append(out, fmt.Sprintf("rule %s #%05d %s", chain, pos[chain], js))
				pos[chain]++
				continue
			}
			out = append(out, kind+" "+js)
		}
	}
	sort.Strings(out)
	return out, nil
}

// canonicalIptables keeps of an iptables-save the lines that are
// rulegen's: its RG- chains with their rules, and the jumps to them from
// other chains (another program's rules there are left out). Each rule is
// keyed by table, chain and position among the kept rules of that chain,
// so that order within a chain counts; the lines are then sorted.
func canonicalIptables(save string) []string {
	var out []string
	table := ""
	pos := map[string]int{}
	for _, l := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":RG-"):
			out = append(out, fmt.Sprintf("%s chain %s", table, strings.Fields(l)[0][1:]))
		case strings.HasPrefix(l, "-A "):
			chain := strings.Fields(l)[1]
			if !strings.HasPrefix(chain, "RG-") && !strings.Contains(l, " -j RG-") && !strings.Contains(l, " -g RG-") {
				continue
			}
			key := table + " " + chain
			out = append(out, fmt.Sprintf("%s rule #%05d %s", key, pos[key], l))
			pos[key]++
		}
	}
	sort.Strings(out)
	return out
}

// scrub removes what differs between two equal rulesets: handles, counter
// values, the time left of expiring elements.
func scrub(v any) {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "handle")
		delete(x, "expires")
		for k, c := range x {
			if k == "counter" {
				if cm, ok := c.(map[string]any); ok {
					cm["packets"], cm["bytes"] = 0, 0
				}
			}
			scrub(c)
		}
	case []any:
		for _, c := range x {
			scrub(c)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

// diffLines returns up to n lines only in want ("-") or only in got ("+")
// of two sorted lists, each cut to 300 bytes, and how many there are.
func diffLines(want, got []string, n int) ([]string, int) {
	var out []string
	total := 0
	add := func(prefix, l string) {
		total++
		if len(out) < n {
			if len(l) > 300 {
				l = l[:300] + "…"
			}
			out = append(out, prefix+l)
		}
	}
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j >= len(got) || (i < len(want) && want[i] < got[j]):
			add("- ", want[i])
			i++
		case i >= len(want) || got[j] < want[i]:
			add("+ ", got[j])
			j++
		default:
			i++
			j++
		}
	}
	return out, total
}

// staleUDP returns the UDP conntrack entries (lines of `conntrack -L -p
// udp`) that a service rule rewrote to an endpoint the service no longer
// has: endpoints maps "IP:port" of every current service address (its
// ClusterIP and UDP port, the node's IP and its UDP nodePort) to the
// addresses in its EndpointSlices. An entry to a service address that no
// service holds any more, rewritten to an endpoint, is stale too; entries
// that no rule rewrote (the reply comes from where the packet went) are
// not about services.
func staleUDP(lines []string, endpoints map[string][]string, serviceCIDR netip.Prefix, nodeIPs []string) (stale []string, entries int) {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "udp" {
			continue
		}
		var src, dst, sport, dport []string
		for _, kv := range f {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			switch k {
			case "src":
				src = append(src, v)
			case "dst":
				dst = append(dst, v)
			case "sport":
				sport = append(sport, v)
			case "dport":
				dport = append(dport, v)
			}
		}
		if len(src) < 2 || len(dst) < 1 || len(dport) < 1 {
			continue
		}
		entries++
		origDst, replySrc := dst[0], src[1]
		if replySrc == origDst {
			continue // not rewritten
		}
		key := net.JoinHostPort(origDst, dport[0])
		if eps, ok := endpoints[key]; ok {
			if !slices.Contains(eps, replySrc) {
				stale = append(stale, l+" (endpoint gone from the service)")
			}
			continue
		}
		a, err := netip.ParseAddr(origDst)
		if err == nil && (serviceCIDR.Contains(a) || slices.Contains(nodeIPs, origDst)) {
			stale = append(stale, l+" (service gone)")
		}
	}
	return stale, entries
}

// sample is one reading of rulegen's memory and goroutines.
type sample struct {
	life       int           // which process (rulegen is restarted by the faults)
	at         time.Duration // since that process started
	rssKiB     int           // VmRSS
	goroutines int           // go_goroutines from /metrics (0: not read)
}

// growth judges one measure per rulegen process: of the samples after
// warm-up (a process needs minSamples of them to be judged), the median
// of the last three over the median of the first three, minus one. It
// returns the largest growth over the judged processes, how many were
// judged and their first and last medians (of the worst).
func growth(samples []sample, warmup time.Duration, get func(sample) int) (worst float64, judged int, from, to int) {
	const minSamples = 6
	byLife := map[int][]int{}
	var lives []int
	for _, s := range samples {
		if s.at < warmup || get(s) <= 0 {
			continue
		}
		if _, ok := byLife[s.life]; !ok {
			lives = append(lives, s.life)
		}
		byLife[s.life] = append(byLife[s.life], get(s))
	}
	worst = -1
	for _, l := range lives {
		v := byLife[l]
		if len(v) < minSamples {
			continue
		}
		judged++
		a, b := medianInt(v[:3]), medianInt(v[len(v)-3:])
		if g := float64(b)/float64(a) - 1; g > worst {
			worst, from, to = g, a, b
		}
	}
	return worst, judged, from, to
}

func medianInt(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// percentiles returns p50, p99 and the maximum.
func percentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)], s[len(s)-1]
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// check is one row of the summary table.
type check struct {
	name, value, limit string
	ok                 bool
}

// table formats the checks as a Markdown table.
func table(cs []check) string {
	var b strings.Builder
	b.WriteString("| check | value | limit | ok |\n| --- | --- | --- | --- |\n")
	for _, c := range cs {
		ok := "ok"
		if !c.ok {
			ok = "FAIL"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.name, c.value, c.limit, ok)
	}
	return b.String()
}
