package packetflow

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/rulegen/rulegen/pkg/manifest"
	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/trace"
	"github.com/rulegen/rulegen/pkg/sync"
)

// config is a scenario's config.yaml: the upstream fake proxier's settings.
type config struct {
	// Backends are the upstream proxier test files the table comes from,
	// and so the rulegen backends it is checked with: nftables, iptables.
	Backends          []string `json:"backends"`
	NodeName          string   `json:"nodeName"`
	NodeIPs           []string `json:"nodeIPs"`
	ClusterCIDRs      []string `json:"clusterCIDRs"`
	NodePortAddresses []string `json:"nodePortAddresses"`
	MasqueradeAll     bool     `json:"masqueradeAll"`
	// ServiceCIDRs are the ClusterIP ranges (kube-proxy nftables' fake
	// proxier has 172.30.0.0/16): unallocated addresses in them are dropped.
	ServiceCIDRs []string `json:"serviceCIDRs"`
}

// packet is one line of packets.txt: one upstream packetFlowTest.
type packet struct {
	line   int
	name   string
	src    netip.Addr
	dst    netip.AddrPort
	proto  rules.Protocol
	output string // as upstream writes it: "ip:port, ip:port", "REJECT", "DROP" or ""
	masq   bool
}

// difference is one line of differences.txt.
type difference struct {
	line    int
	name    string
	backend string // "" for every backend of the scenario
	reason  string
	used    bool
}

type scenario struct {
	name  string // the upstream test, e.g. nftables/TestLoadBalancer
	dir   string
	cfg   config
	rcfg  *rules.Config
	pkts  []packet
	diffs []*difference
}

func loadScenarios(t *testing.T) []*scenario {
	t.Helper()
	var out []*scenario
	err := filepath.WalkDir("testdata", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "packets.txt" {
			return err
		}
		dir := filepath.Dir(path)
		sc := &scenario{name: filepath.ToSlash(strings.TrimPrefix(dir, "testdata"+string(filepath.Separator))), dir: dir}
		b, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
		if err != nil {
			return err
		}
		if err := yaml.UnmarshalStrict(b, &sc.cfg); err != nil {
			return fmt.Errorf("%s/config.yaml: %w", dir, err)
		}
		if len(sc.cfg.Backends) == 0 {
			return fmt.Errorf("%s/config.yaml: backends: empty (want nftables and/or iptables)", dir)
		}
		for _, be := range sc.cfg.Backends {
			if be != string(sync.NFTables) && be != string(sync.IPTables) {
				return fmt.Errorf("%s/config.yaml: backends: %q is not nftables or iptables", dir, be)
			}
		}
		if sc.rcfg, err = ruleConfig(sc.cfg); err != nil {
			return fmt.Errorf("%s/config.yaml: %w", dir, err)
		}
		if sc.pkts, err = readPackets(path); err != nil {
			return err
		}
		if sc.diffs, err = readDifferences(filepath.Join(dir, "differences.txt")); err != nil {
			return err
		}
		out = append(out, sc)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no scenarios under testdata/")
	}
	return out
}

func ruleConfig(c config) (*rules.Config, error) {
	cfg := &rules.Config{Node: rules.Node{Name: c.NodeName}, MasqueradeAll: c.MasqueradeAll}
	for _, s := range c.NodeIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("nodeIPs: %w", err)
		}
		cfg.Node.IPs = append(cfg.Node.IPs, ip)
	}
	for _, s := range c.ClusterCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("clusterCIDRs: %w", err)
		}
		cfg.ClusterCIDRs = append(cfg.ClusterCIDRs, p)
	}
	for _, s := range c.ServiceCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("serviceCIDRs: %w", err)
		}
		cfg.ServiceCIDRs = append(cfg.ServiceCIDRs, p)
	}
	for _, s := range c.NodePortAddresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("nodePortAddresses: %w", err)
		}
		cfg.NodePortAddresses = append(cfg.NodePortAddresses, p)
	}
	return cfg, cfg.Validate()
}

// fields splits a line at " | " and trims each field.
func fields(s string) []string {
	f := strings.Split(s, "|")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return f
}

// readLines returns the non-comment, non-blank lines of a file with their
// line numbers.
func readLines(path string, fn func(n int, line string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	return sc.Err()
}

// readPackets parses "name | src | dst:port/proto | output | masq".
func readPackets(path string) ([]packet, error) {
	var out []packet
	err := readLines(path, func(n int, line string) error {
		f := fields(line)
		if len(f) != 5 {
			return fmt.Errorf("want 5 fields (name | src | dst:port/proto | output | masq), got %d", len(f))
		}
		p := packet{line: n, name: f[0], output: f[3]}
		var err error
		if p.src, err = netip.ParseAddr(f[1]); err != nil {
			return fmt.Errorf("src: %w", err)
		}
		dst, proto, ok := strings.Cut(f[2], "/")
		if !ok {
			return fmt.Errorf("dst: %q has no /protocol", f[2])
		}
		if p.dst, err = netip.ParseAddrPort(dst); err != nil {
			return fmt.Errorf("dst: %w", err)
		}
		switch p.proto = rules.Protocol(proto); p.proto {
		case rules.TCP, rules.UDP, rules.SCTP:
		default:
			return fmt.Errorf("dst: unknown protocol %q", proto)
		}
		if p.output == `""` {
			p.output = ""
		}
		switch f[4] {
		case "yes":
			p.masq = true
		case "no":
		default:
			return fmt.Errorf("masq: %q is not yes or no", f[4])
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// readDifferences parses "name | reason" or "name | backend | reason"; a
// missing file means none.
func readDifferences(path string) ([]*difference, error) {
	var out []*difference
	err := readLines(path, func(n int, line string) error {
		f := fields(line)
		d := &difference{line: n, name: f[0]}
		switch len(f) {
		case 2:
			d.reason = f[1]
		case 3:
			d.backend, d.reason = f[1], f[2]
		default:
			return fmt.Errorf("want name | reason or name | backend | reason")
		}
		if d.reason == "" {
			return fmt.Errorf("%q: no reason", d.name)
		}
		out = append(out, d)
		return nil
	})
	if os.IsNotExist(err) {
		return nil, nil
	}
	return out, err
}

// outcome is a trace result in upstream's terms.
type outcome struct {
	output string // like packetFlowTest.output
	masq   string // "yes", "no", or "mixed" when endpoints disagree
}

// summarize turns rulegen's outcomes into upstream's: every endpoint the
// packet may reach (sorted, ", "-separated), or the one verdict.
func summarize(res *trace.Result) outcome {
	var eps, verdicts []string
	masq := map[bool]bool{}
	for _, o := range res.Outcomes {
		switch o.Verdict {
		case trace.DNAT:
			eps = append(eps, o.Endpoint.String())
			masq[o.Masquerade] = true
		case trace.Reject:
			verdicts = append(verdicts, "REJECT")
		case trace.Drop:
			verdicts = append(verdicts, "DROP")
		case trace.Pass:
			verdicts = append(verdicts, `""`)
			masq[o.Masquerade] = true
		}
	}
	slices.Sort(eps)
	eps = slices.Compact(eps)
	slices.Sort(verdicts)
	verdicts = slices.Compact(verdicts)
	out := outcome{output: strings.Join(append(eps, verdicts...), ", "), masq: "no"}
	if out.output == `""` {
		out.output = ""
	}
	switch {
	case masq[true] && masq[false]:
		out.masq = "mixed"
	case masq[true]:
		out.masq = "yes"
	}
	return out
}

// normalize sorts upstream's endpoint list (its order is the rule order).
func normalize(output string) string {
	if output == "" || output == "REJECT" || output == "DROP" {
		return output
	}
	var eps []string
	for _, e := range strings.Split(output, ",") {
		e = strings.TrimSpace(e)
		if ap, err := netip.ParseAddrPort(e); err == nil {
			e = ap.String()
		}
		eps = append(eps, e)
	}
	slices.Sort(eps)
	return strings.Join(slices.Compact(eps), ", ")
}

// origin chooses where the packet starts as `rulegen trace` does without
// --from: the node if src is a node IP, a pod if it is in a cluster CIDR,
// else outside. (Upstream's tracers run every packet through prerouting
// and tell the node's own sources by "fib saddr type local".)
func origin(cfg *rules.Config, src netip.Addr) trace.Origin {
	switch {
	case slices.Contains(cfg.Node.IPs, src):
		return trace.FromNode
	case slices.ContainsFunc(cfg.ClusterCIDRs, func(p netip.Prefix) bool { return p.Contains(src) }):
		return trace.FromPod
	}
	return trace.FromExternal
}

// traceAs runs pkt as `rulegen trace --backend b` does: through the
// nftables form of the plan, with the iptables backend's one difference
// (an unknown port on a ClusterIP is routed, not rejected) applied.
func traceAs(d *sync.Desired, cfg *rules.Config, b sync.Backend, pkt trace.Packet) *trace.Result {
	res := trace.Trace(d.NFTables, cfg.Node.IPs, pkt)
	if b == sync.IPTables && res.Note != "" {
		for i, o := range res.Outcomes {
			if o.Verdict == trace.Reject && strings.Contains(o.Why, "unknown port") {
				res.Outcomes[i] = trace.Outcome{Probability: o.Probability, Verdict: trace.Pass, Why: "unknown port on a ClusterIP (iptables backend)"}
			}
		}
	}
	return res
}

// TestPacketFlow checks every upstream packet-flow case against `rulegen
// trace`: same endpoints (as a set), same REJECT / DROP / pass-through, and
// the same masquerading when the packet is delivered. A case named in
// differences.txt must differ; one that agrees fails the test until its
// line is removed.
func TestPacketFlow(t *testing.T) {
	for _, sc := range loadScenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			objs, errs := manifest.Load([]string{filepath.Join(sc.dir, "input.yaml")}, nil)
			st, convErrs := objs.BuildState()
			errs = append(errs, convErrs...)
			if len(errs) > 0 {
				t.Fatalf("input.yaml: %v", errs)
			}
			rendered := map[rules.Family]*sync.Desired{}
			for _, be := range sc.cfg.Backends {
				b := sync.Backend(be)
				for _, p := range sc.pkts {
					fam := rules.FamilyOf(p.dst.Addr())
					d := rendered[fam]
					if d == nil {
						// Both backends render the same plan; trace reads its nftables form.
						d = sync.Render(st, sc.rcfg, sync.NFTables, fam)
						rendered[fam] = d
						for _, c := range d.Plan.Conflicts {
							t.Logf("%s: rulegen reports a conflict (upstream has no such notion): %v", fam, c)
						}
					}
					pkt := trace.Packet{Src: p.src, Dst: p.dst, Proto: p.proto, From: origin(sc.rcfg, p.src)}
					res := traceAs(d, sc.rcfg, b, pkt)
					got := summarize(res)
					want := outcome{output: normalize(p.output), masq: "no"}
					if p.masq {
						want.masq = "yes"
					}
					same := got.output == want.output
					if same && want.output != "REJECT" && want.output != "DROP" {
						// Upstream reports the masquerade mark even for a
						// packet it rejects or drops; it only matters for one
						// that is delivered.
						same = got.masq == want.masq
					}
					var known *difference
					for _, d := range sc.diffs {
						if d.name == p.name && (d.backend == "" || d.backend == be) {
							known, d.used = d, true
						}
					}
					desc := fmt.Sprintf("%s: packets.txt:%d %q: %s\n  upstream: %q masq=%s\n  rulegen:  %q masq=%s",
						be, p.line, p.name, pkt, want.output, want.masq, got.output, got.masq)
					switch {
					case same && known != nil:
						t.Errorf("%s\n  now agrees with upstream: delete differences.txt:%d (%s)", desc, known.line, known.reason)
					case !same && known == nil:
						t.Errorf("%s\n  unexplained difference; trace:\n%s", desc, res.Summary())
					case !same && testing.Verbose():
						t.Logf("%s\n  known: %s", desc, known.reason)
					}
				}
			}
			for _, d := range sc.diffs {
				if !d.used {
					t.Errorf("differences.txt:%d: %q matches no case of packets.txt for backends %v", d.line, d.name, sc.cfg.Backends)
				}
			}
		})
	}
}
