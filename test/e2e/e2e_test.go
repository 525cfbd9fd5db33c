package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/test/netnstest"
)

var bins struct{ rulegen, server string }

func TestMain(m *testing.M) {
	os.Exit(RunTests(m, func(rulegen, server string) { bins.rulegen, bins.server = rulegen, server }))
}

// The services of the suite: one per behaviour, all applied at once.
var (
	svcSpread    = Svc{Name: "spread", ClusterIP: "10.96.0.11", Port: 80, TargetPort: "8080", Slices: [][]Ep{{EpA, EpB, EpR}}}
	svcHairpin   = Svc{Name: "hairpin", ClusterIP: "10.96.0.12", Port: 80, TargetPort: "8080", Slices: [][]Ep{{EpA}}}
	svcNamed     = Svc{Name: "named", ClusterIP: "10.96.0.13", Port: 80, TargetPort: "web", PortName: "web", Slices: [][]Ep{{EpA.At(9090)}, {EpB.At(9091)}}}
	svcUDP       = Svc{Name: "udp", ClusterIP: "10.96.0.14", Port: 53, TargetPort: "5353", Protocol: "UDP", Slices: [][]Ep{{EpA.At(5353), EpB.At(5353)}}}
	svcEmpty     = Svc{Name: "empty", ClusterIP: "10.96.0.15", Port: 80, Slices: [][]Ep{{}}}
	svcNPCluster = Svc{Name: "np-cluster", Type: "NodePort", ClusterIP: "10.96.0.16", Port: 80, NodePort: 30080, Slices: [][]Ep{{EpA, EpR}}}
	svcNPLocal   = Svc{Name: "np-local", Type: "NodePort", ClusterIP: "10.96.0.17", Port: 80, NodePort: 30081, ETPLocal: true, Slices: [][]Ep{{EpA, EpR}}}
	svcNPNoLocal = Svc{Name: "np-nolocal", Type: "NodePort", ClusterIP: "10.96.0.18", Port: 80, NodePort: 30082, ETPLocal: true, Slices: [][]Ep{{EpR}}}
	svcExtIP     = Svc{Name: "extip", ClusterIP: "10.96.0.19", Port: 80, ExternalIPs: []string{"172.16.0.5"}, Slices: [][]Ep{{EpB}}}
	svcLB        = Svc{Name: "lb", Type: "LoadBalancer", ClusterIP: "10.96.0.20", Port: 80, NodePort: 30084, LBIP: "192.168.100.5", Ranges: []string{"192.168.1.0/24"}, Slices: [][]Ep{{EpA}}}
	svcAffinity  = Svc{Name: "affinity", ClusterIP: "10.96.0.21", Port: 80, Affinity: true, Slices: [][]Ep{{EpA, EpB, EpR}}}
	svcITPLocal  = Svc{Name: "itp-local", ClusterIP: "10.96.0.22", Port: 80, ITPLocal: true, Slices: [][]Ep{{EpA, EpR}}}
	svcNotReady  = Svc{Name: "notready", ClusterIP: "10.96.0.23", Port: 80, Slices: [][]Ep{{EpA, {IP: PodB, Node: "node-a", Port: 8080, NotReady: true}}}}
	svcTermOnly  = Svc{Name: "term-only", ClusterIP: "10.96.0.24", Port: 80, Slices: [][]Ep{{{IP: PodB, Node: "node-a", Port: 8080, Terminating: true}}}}
	svcTermMixed = Svc{Name: "term-mixed", ClusterIP: "10.96.0.25", Port: 80, Slices: [][]Ep{{EpA, {IP: PodB, Node: "node-a", Port: 8080, Terminating: true}}}}
	svcV6        = Svc{Name: "v6", ClusterIP: "fd00:96::10", Port: 80, Family: "IPv6", Slices: [][]Ep{{{IP: PodA6, Node: "node-a", Port: 8080}, {IP: PodB6, Node: "node-a", Port: 8080}}}}
	svcEmptyUDP  = Svc{Name: "empty-udp", ClusterIP: "10.96.0.26", Port: 53, Protocol: "UDP", Slices: [][]Ep{{}}}
	svcUpdate    = Svc{Name: "update", ClusterIP: "10.96.0.30", Port: 80, Slices: [][]Ep{{EpA}}}
	// kube-proxy semantics (issue 12): both policies Local and only a
	// remote endpoint; a not-ready terminating endpoint with serving unset;
	// a load balancer with source ranges and no endpoints.
	svcBothLocal    = Svc{Name: "both-local", Type: "NodePort", ClusterIP: "10.96.0.31", Port: 80, NodePort: 30086, ETPLocal: true, ITPLocal: true, Slices: [][]Ep{{EpR}}}
	svcServingUnset = Svc{Name: "serving-unset", ClusterIP: "10.96.0.32", Port: 80, Slices: [][]Ep{{{IP: PodB, Node: "node-a", Port: 8080, NotReady: true, Terminating: true, ServingUnset: true}}}}
	svcLBOtherFam   = Svc{Name: "lb-other-family", Type: "LoadBalancer", ClusterIP: "10.96.0.34", Port: 80, NodePort: 30088, LBIP: "192.168.100.7", Ranges: []string{"fd00:50::/64"}, Slices: [][]Ep{{EpA}}}
	svcNilPortName  = Svc{Name: "nil-port-name", ClusterIP: "10.96.0.35", Port: 80, Unnamed: true, Slices: [][]Ep{{EpA}}}
	svcLegacyIP     = Svc{Name: "legacy-ip", ClusterIP: "10.96.0.036", Port: 80, Slices: [][]Ep{{{IP: "010.244.001.005", Node: "node-a", Port: 8080}}}}
	svcNPv6         = Svc{Name: "np-v6", Type: "NodePort", ClusterIP: "fd00:96::11", Port: 80, NodePort: 30089, Family: "IPv6", Slices: [][]Ep{{{IP: PodA6, Node: "node-a", Port: 8080}}}}
	svcLBNoEp       = Svc{Name: "lb-noep", Type: "LoadBalancer", ClusterIP: "10.96.0.33", Port: 80, NodePort: 30087, LBIP: "192.168.100.6", Ranges: []string{"192.168.1.0/24"}, Slices: [][]Ep{{}}}
	allServices     = []Svc{svcSpread, svcHairpin, svcNamed, svcUDP, svcEmpty, svcNPCluster, svcNPLocal, svcNPNoLocal, svcExtIP, svcLB, svcAffinity, svcITPLocal, svcNotReady, svcTermOnly, svcTermMixed, svcV6, svcEmptyUDP, svcBothLocal, svcServingUnset, svcLBNoEp, svcLBOtherFam, svcNilPortName, svcLegacyIP, svcNPv6, svcUpdate} // svcUpdate last: the update test replaces it
	podsAB          = []string{"pod-a", "pod-b"}
	podsABR         = []string{"pod-a", "pod-b", "pod-r"}
	podsA           = []string{"pod-a"}
)

// Check is one behaviour, asserted with real connections.
type Check struct {
	Name  string
	From  string // "pod-a", "pod-b", "node", "client1", "client2"
	Proto string // tcp (default) or udp
	Addr  string // IP:PORT
	Tries int    // connections to make (default 1)
	// Outcome is "ok" (default), "refused" (a fast reject) or "timeout" (dropped).
	Outcome string
	// Pods: every answer comes from one of these; All: each of them answers
	// at least once (load balancing); Same: every answer from one pod.
	Pods []string
	All  bool
	Same bool
	// Src: the source address the pod sees; SrcNot: an address it must not see
	// (the client's, when masqueraded).
	Src, SrcNot string
	// Backends limits the check to some backends (default: all).
	Backends []string
	// NoTrace: rulegen trace is not asked (it cannot model this path).
	NoTrace bool
	// Bind: the source address the connections are made from (default: the
	// one the kernel picks; sourceOf says which that is).
	Bind string
	// Iif is the node's interface the connections arrive on, for rulegen
	// trace's --in-interface (default: the origin's usual one).
	Iif string
}

var checks = []Check{
	{Name: "clusterip-from-pod-source-kept", From: "pod-a", Addr: "10.96.0.19:80", Pods: []string{"pod-b"}, Src: PodA},
	// (A pod on another node reaches services through its own node's
	// proxy; only here, where pod-r's packets cross node-a, could it be sent
	// back to itself, and node-a masquerades hairpin connections of its own
	// pods only, as kube-proxy does. So the service has no pod-r.)
	{Name: "clusterip-from-remote-pod", From: "pod-r", Addr: "10.96.0.13:80", Tries: 5, Pods: podsAB, Src: PodR},
	{Name: "clusterip-from-node", From: "node", Addr: "10.96.0.11:80", Pods: podsABR},
	{Name: "load-balancing-reaches-every-endpoint", From: "pod-a", Addr: "10.96.0.11:80", Tries: 60, Pods: podsABR, All: true},
	{Name: "port-to-targetport-remap", From: "client1", Addr: "10.96.0.11:80", Pods: podsABR},
	{Name: "masquerade-from-outside-cluster-cidr", From: "client1", Addr: "10.96.0.11:80", Tries: 3, Pods: podsABR, SrcNot: Client1},
	{Name: "hairpin-masqueraded", From: "pod-a", Addr: "10.96.0.12:80", Pods: podsA, Src: BridgeGW},
	{Name: "named-targetport-per-pod", From: "pod-r", Addr: "10.96.0.13:80", Tries: 40, Pods: podsAB, All: true},
	{Name: "udp", From: "pod-r", Proto: "udp", Addr: "10.96.0.14:53", Tries: 40, Pods: podsAB, All: true, Src: PodR},
	{Name: "no-endpoints-rejected-from-pod", From: "pod-a", Addr: "10.96.0.15:80", Outcome: "refused"},
	{Name: "no-endpoints-rejected-from-node", From: "node", Addr: "10.96.0.15:80", Outcome: "refused"},
	{Name: "no-endpoints-rejected-udp-port-unreachable", From: "pod-a", Proto: "udp", Addr: "10.96.0.26:53", Outcome: "refused"},
	{Name: "nodeport-cluster-masqueraded", From: "client1", Addr: NodeIP + ":30080", Tries: 20, Pods: []string{"pod-a", "pod-r"}, All: true, SrcNot: Client1},
	{Name: "nodeport-local-only-local-pod-source-kept", From: "client1", Addr: NodeIP + ":30081", Tries: 12, Pods: podsA, Src: Client1},
	{Name: "nodeport-local-no-local-endpoint-dropped", From: "client1", Addr: NodeIP + ":30082", Outcome: "timeout"},
	{Name: "nodeport-local-no-local-endpoint-pods-still-served", From: "pod-a", Addr: NodeIP + ":30082", Pods: []string{"pod-r"}},
	{Name: "external-ip", From: "client1", Addr: "172.16.0.5:80", Pods: []string{"pod-b"}, SrcNot: Client1},
	{Name: "lb-ip-allowed-source", From: "client1", Addr: "192.168.100.5:80", Pods: podsA},
	{Name: "lb-ip-blocked-source", From: "client2", Addr: "192.168.100.5:80", Outcome: "timeout"},
	{Name: "lb-nodeport-not-filtered", From: "client2", Addr: NodeIP + ":30084", Pods: podsA},
	{Name: "session-affinity", From: "pod-a", Addr: "10.96.0.21:80", Tries: 12, Pods: podsABR, Same: true},
	{Name: "internal-traffic-policy-local", From: "pod-b", Addr: "10.96.0.22:80", Tries: 12, Pods: podsA},
	{Name: "not-ready-never-used", From: "pod-r", Addr: "10.96.0.23:80", Tries: 15, Pods: podsA},
	{Name: "terminating-serving-used-when-nothing-ready", From: "pod-a", Addr: "10.96.0.24:80", Pods: []string{"pod-b"}},
	{Name: "terminating-unused-while-ready-exists", From: "pod-r", Addr: "10.96.0.25:80", Tries: 15, Pods: podsA},
	{Name: "unknown-port-on-clusterip-rejected", From: "pod-a", Addr: "10.96.0.11:81", Outcome: "refused", Backends: []string{"nftables"}},
	{Name: "ipv6-clusterip", From: "pod-r", Addr: "[fd00:96::10]:80", Tries: 30, Pods: podsAB, All: true, Src: PodR6},
	{Name: "ipv6-hairpin", From: "pod-a", Addr: "[fd00:96::10]:80", Tries: 30, Pods: podsAB, All: true},
	{Name: "ipv6-clusterip-from-node", From: "node", Addr: "[fd00:96::10]:80", Pods: podsAB},
	// kube-proxy semantics (issue 12 items 1, 2 and 6)
	{Name: "both-policies-local-nodeport-from-node-uses-cluster-endpoints", From: "node", Addr: NodeIP + ":30086", Pods: []string{"pod-r"}},
	{Name: "both-policies-local-nodeport-from-pod-uses-cluster-endpoints", From: "pod-a", Addr: NodeIP + ":30086", Pods: []string{"pod-r"}},
	{Name: "both-policies-local-nodeport-from-outside-dropped", From: "client1", Addr: NodeIP + ":30086", Outcome: "timeout"},
	{Name: "serving-unset-terminating-used-when-nothing-ready", From: "pod-a", Addr: "10.96.0.32:80", Pods: []string{"pod-b"}},
	{Name: "lb-no-endpoints-allowed-source-rejected", From: "client1", Addr: "192.168.100.6:80", Outcome: "refused"},
	{Name: "lb-no-endpoints-blocked-source-dropped", From: "client2", Addr: "192.168.100.6:80", Outcome: "timeout"},
	// (items 4, 7, 8, 9)
	{Name: "lb-ranges-of-the-other-family-only-do-not-filter", From: "client2", Addr: "192.168.100.7:80", Pods: podsA},
	{Name: "slice-port-with-nil-name-ignored", From: "pod-a", Addr: "10.96.0.35:80", Outcome: "refused"},
	// --nodeport-addresses names only IPv4 ranges (the node's subnet and
	// loopback, for localhost nodePorts): IPv6 nodePorts stay open on every
	// IPv6 node address, as in kube-proxy (item 5).
	{Name: "nodeport-addresses-of-one-family-keep-the-other-open", From: "client1", Addr: "[" + NodeIP6 + "]:30089", Pods: podsA},
	{Name: "leading-zero-addresses-read-as-decimal", From: "pod-r", Addr: "10.96.0.36:80", Pods: podsA},
	{Name: "unallocated-clusterip-dropped", From: "pod-a", Addr: "10.96.0.99:80", Outcome: "timeout"},
	// The node's own connection to 127.0.0.1:nodePort (iptables, as kube-proxy;
	// route_localnet is set in the node namespace). trace follows the
	// nftables form, which has no localhost nodePorts: not asked.
	{Name: "localhost-nodeport-from-node", From: "node", Addr: "127.0.0.1:30080", Tries: 20, Pods: []string{"pod-a", "pod-r"}, All: true,
		Backends: []string{"iptables"}, NoTrace: true},
}

func (tp *Topology) ns(name string) *netnstest.NS {
	switch name {
	case "node":
		return tp.Node
	case "client1":
		return tp.Client1
	case "client2":
		return tp.Client2
	}
	return tp.Pods()[name]
}

// Apply runs `rulegen --apply` in the node with the given manifests.
func (tp *Topology) Apply(t testing.TB, backend, manifests string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifests.yaml")
	writeFile(t, f, manifests)
	tp.Node.MustRun(nil, bins.rulegen, append([]string{"--apply", "-f", f, "--backend", backend}, tp.flags()...)...)
	tp.manifests, tp.backend = f, backend
}

// nodeFlags describe the node to rulegen, for --apply and trace alike.
// The masquerade bit is not the default 14 (0x4000, which the goldens pin):
// every masquerading check proves that the configured bit is the one set
// and tested, in both backends (issue 12 item 12).
var nodeFlags = []string{"--node-name", "node-a", "--node-ip", NodeIP + "," + NodeIP6, "--cluster-cidr", ClusterCIDR + "," + ClusterCIDR6,
	"--service-cluster-ip-range", "10.96.0.0/16,fd00:96::/112", "--iptables-masquerade-bit", "13", "--nodeport-addresses", "192.168.1.0/24,127.0.0.0/8"}

// flags returns the flags that describe the node to rulegen.
func (tp *Topology) flags() []string {
	if tp.Flags != nil {
		return tp.Flags
	}
	return nodeFlags
}

// probe makes one connection and returns "ok POD SRC", "refused" or "timeout".
func (tp *Topology) probe(t testing.TB, from, proto, addr string) string {
	t.Helper()
	return tp.probeFrom(t, from, proto, addr, "")
}

// probeFrom is probe with the connection's source address bound to src
// (none when src is empty).
func (tp *Topology) probeFrom(t testing.TB, from, proto, addr, src string) string {
	t.Helper()
	out, err := tp.ns(from).Run(nil, bins.server, "-probe", proto, "-addr", addr, "-timeout", "700ms", "-src", src)
	if err != nil {
		t.Fatalf("probe from %s to %s: %v: %s", from, addr, err, out)
	}
	return strings.TrimSpace(out)
}

// Run makes the check's connections and asserts what they saw.
func (c Check) Run(t *testing.T, tp *Topology) {
	t.Helper()
	proto := c.Proto
	if proto == "" {
		proto = "tcp"
	}
	tries := max(c.Tries, 1)
	want := c.Outcome
	if want == "" {
		want = "ok"
	}
	seen := map[string]int{}
	sources := map[string]map[string]bool{} // pod -> sources it saw
	for i := 0; i < tries; i++ {
		got := tp.probeFrom(t, c.From, proto, c.Addr, c.Bind)
		f := strings.Fields(got)
		if f[0] != want {
			t.Fatalf("try %d: %s %s from %s: got %q, want %s", i+1, proto, c.Addr, c.From, got, want)
		}
		if want != "ok" {
			continue
		}
		pod, src := f[1], f[2]
		seen[pod]++
		if sources[pod] == nil {
			sources[pod] = map[string]bool{}
		}
		sources[pod][src] = true
		if !slices.Contains(c.Pods, pod) {
			t.Errorf("answered by %s, want one of %v", pod, c.Pods)
		}
		if c.Src != "" && src != c.Src {
			t.Errorf("%s saw source %s, want %s", pod, src, c.Src)
		}
		if c.SrcNot != "" && src == c.SrcNot {
			t.Errorf("%s saw source %s: not masqueraded", pod, src)
		}
		if c.All && len(seen) == len(c.Pods) && !c.Same && c.Src == "" && c.SrcNot == "" {
			break // every endpoint reached: enough
		}
	}
	if c.All && len(seen) != len(c.Pods) {
		t.Errorf("reached %v over %d tries, want every one of %v", seen, tries, c.Pods)
	}
	if c.Same && len(seen) != 1 {
		t.Errorf("session affinity broken: answers from %v", seen)
	}
	t.Logf("%s %s from %s: %s %v", proto, c.Addr, c.From, want, seen)
	if tp.manifests != "" && !c.NoTrace {
		c.checkTrace(t, tp, proto, want, seen, sources)
	}
}

// checkTrace asks `rulegen trace` what should have happened to the
// check's connections and compares with what did: the pods that may answer,
// masquerading, reject versus drop. A disagreement is a bug in one of them.
func (c Check) checkTrace(t *testing.T, tp *Topology, proto, observed string, seen map[string]int, sources map[string]map[string]bool) {
	t.Helper()
	v6 := strings.HasPrefix(c.Addr, "[")
	src, from := sourceOf(c.From, v6)
	if c.Bind != "" {
		src = c.Bind
	}
	args := []string{"trace", "-f", tp.manifests, "--backend", tp.backend, "--output", "json",
		"--src", src, "--dst", c.Addr + "/" + proto, "--from", from}
	if c.Iif != "" {
		args = append(args, "--in-interface", c.Iif)
	}
	cmd := exec.Command(bins.rulegen, append(args, tp.flags()...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rulegen trace: %v\n%s", err, stderr.String())
	}
	var res struct {
		Outcomes []struct {
			Verdict    string
			Endpoint   string
			Masquerade bool
		}
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("rulegen trace output: %v\n%s", err, out)
	}
	predicted := map[string]bool{}
	masq := map[string]bool{}
	verdicts := map[string]bool{}
	for _, o := range res.Outcomes {
		verdicts[o.Verdict] = true
		if o.Verdict == "dnat" {
			pod := podOf(o.Endpoint)
			predicted[pod] = true
			masq[pod] = o.Masquerade
		}
	}
	wantVerdict := map[string]string{"ok": "dnat", "refused": "reject", "timeout": "drop"}[observed]
	if observed == "timeout" && verdicts["pass"] {
		wantVerdict = "pass" // routed to the silent next hop
	}
	if len(verdicts) != 1 || !verdicts[wantVerdict] {
		t.Errorf("trace predicted %v, the kernel did %q", verdicts, observed)
	}
	for pod := range seen {
		if !predicted[pod] {
			t.Errorf("trace: %s answered but was not predicted (predicted %v)", pod, predicted)
		}
		for s := range sources[pod] {
			if masq[pod] && !nodeAddrs[s] {
				t.Errorf("trace predicted masquerading to %s, but it saw %s", pod, s)
			}
			if !masq[pod] && s != src {
				t.Errorf("trace predicted no masquerading to %s, but it saw %s instead of %s", pod, s, src)
			}
		}
	}
	if c.All && len(predicted) != len(seen) {
		t.Errorf("trace predicted %v, every one of %v answered", predicted, seen)
	}
}

// nodeAddrs are the node's own addresses: what a masqueraded connection
// comes from.
var nodeAddrs = map[string]bool{NodeIP: true, "192.168.2.1": true, BridgeGW: true, RemoteLink: true,
	NodeIP6: true, "fd00:2::1": true, "fd00:244:1::1": true, "fd00:100::1": true}

// sourceOf is the source address and origin of a check's connections.
func sourceOf(from string, v6 bool) (string, string) {
	pick := func(a, b string) string {
		if v6 {
			return b
		}
		return a
	}
	switch from {
	case "pod-a":
		return pick(PodA, PodA6), "pod"
	case "pod-b":
		return pick(PodB, PodB6), "pod"
	case "pod-r":
		return pick(PodR, PodR6), "pod"
	case "node": // the node's address toward the silent next hop that routes service ranges
		return pick(RemoteLink, "fd00:100::1"), "node"
	case "client1":
		return pick(Client1, Client16), "external"
	}
	return pick(Client2, "fd00:2::100"), "external"
}

func podOf(endpoint string) string {
	ip := endpoint
	if i := strings.LastIndex(endpoint, ":"); i > 0 {
		ip = strings.Trim(endpoint[:i], "[]")
	}
	switch ip {
	case PodA, PodA6:
		return "pod-a"
	case PodB, PodB6:
		return "pod-b"
	case PodR, PodR6:
		return "pod-r"
	}
	return ip
}

// TestKernel runs every check against the rules of each backend as the
// daemon writes them (`rulegen --apply`), and against the iptables dry run
// loaded by hand ("iptables-dry-run"): the printed text must be a working
// ruleset, the same as what the daemon writes.
func TestKernel(t *testing.T) {
	netnstest.Require(t, "nft", "iptables-restore", "ip6tables-restore")
	for _, mode := range []string{"nftables", "iptables", "iptables-dry-run"} {
		backend, dryRun := strings.CutSuffix(mode, "-dry-run")
		t.Run(mode, func(t *testing.T) {
			tp := NewTopology(t, bins.server)
			if dryRun {
				tp.LoadDryRun(t, Manifests(allServices...))
			} else {
				tp.Apply(t, backend, Manifests(allServices...))
			}
			for _, c := range checks {
				if len(c.Backends) > 0 && !slices.Contains(c.Backends, backend) {
					continue
				}
				t.Run(c.Name, func(t *testing.T) { c.Run(t, tp) })
			}
			if !dryRun { // reloading the dry run by hand is not an update
				t.Run("update-keeps-established-connection", func(t *testing.T) { testUpdate(t, tp, backend) })
			}
		})
	}
}

// LoadDryRun loads `rulegen --dry-run --backend iptables` output, one
// family at a time, into the node with `iptables-restore --noflush`, as the
// README says to try it in a scratch namespace. It also requires the result
// to be what `rulegen --apply` writes into an empty namespace.
func (tp *Topology) LoadDryRun(t testing.TB, manifests string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifests.yaml")
	writeFile(t, f, manifests)
	for _, fam := range []string{"ipv4", "ipv6"} {
		cmd := exec.Command(bins.rulegen, append([]string{"--dry-run", "-f", f, "--backend", "iptables", "--ip-family", fam}, tp.flags()...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		text, err := cmd.Output()
		if err != nil {
			t.Fatalf("rulegen --dry-run --ip-family %s: %v\n%s", fam, err, stderr.String())
		}
		restore := map[string]string{"ipv4": "iptables-restore", "ipv6": "ip6tables-restore"}[fam]
		tp.Node.MustRun(text, restore, "--noflush")
	}
	tp.manifests, tp.backend = f, "iptables"

	applied := netnstest.New(t, "applied")
	applied.MustRun(nil, bins.rulegen, append([]string{"--apply", "-f", f, "--backend", "iptables"}, tp.flags()...)...)
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if got, want := saved(tp.Node.MustRun(nil, save)), saved(applied.MustRun(nil, save)); got != want {
			t.Errorf("%s: the dry run loaded by hand differs from what rulegen --apply writes.\nloaded:\n%s\napplied:\n%s", save, got, want)
		}
	}
}

// saved is iptables-save output without its comments and counters.
func saved(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, ":") {
			if i := strings.LastIndex(l, " ["); i > 0 {
				l = l[:i]
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// testUpdate changes the endpoints of a service while a TCP connection to
// one of them is in use: the connection must keep working across the sync,
// and new connections must reach the new endpoints.
func testUpdate(t *testing.T, tp *Topology, backend string) {
	cmd := exec.Command("ip", "netns", "exec", tp.Client1.Name, bins.server, "-hold", "-addr", "10.96.0.30:80", "-for", "3s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var acc string
		for {
			n, err := stdout.Read(buf)
			acc += string(buf[:n])
			for strings.Contains(acc, "\n") {
				i := strings.Index(acc, "\n")
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case l := <-lines:
		if l != "connected pod-a" {
			t.Fatalf("hold: %q, want connected to pod-a", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hold did not connect within 5s")
	}
	moved := svcUpdate
	moved.Slices = [][]Ep{{EpA, EpB, EpR}}
	services := append(slices.Clone(allServices[:len(allServices)-1]), moved)
	tp.Apply(t, backend, Manifests(services...))
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "held ") {
			t.Fatalf("established connection broke across the sync: %s", l)
		}
		t.Logf("established connection across the sync: %s", l)
	case <-time.After(10 * time.Second):
		t.Fatal("hold did not finish within 10s")
	}
	Check{From: "client1", Addr: "10.96.0.30:80", Tries: 60, Pods: podsABR, All: true}.Run(t, tp)
	tp.Apply(t, backend, Manifests(allServices...)) // back to pod-a only
	Check{From: "client1", Addr: "10.96.0.30:80", Tries: 10, Pods: podsA}.Run(t, tp)
}

func writeFile(t testing.TB, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
