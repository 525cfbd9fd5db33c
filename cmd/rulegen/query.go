package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/trace"
	"github.com/rulegen/rulegen/pkg/sync"
)

// query holds the flags of `rulegen trace` and `rulegen explain`.
type query struct {
	src, dst, from, output string
	iif                    string
	service                string
}

func addQueryFlags(fs *flag.FlagSet, sub string, q *query) {
	fs.StringVar(&q.output, "output", "text", "output format: text or json")
	if sub == "trace" {
		fs.StringVar(&q.src, "src", "", "the packet's source address")
		fs.StringVar(&q.dst, "dst", "", "the packet's destination, IP:PORT[/tcp|udp|sctp] (default tcp)")
		fs.StringVar(&q.from, "from", "", "where the packet starts: pod, node or external (default: node if --src is a node IP, pod if it is in --cluster-cidr or --in-interface is the pod interface, else external)")
		fs.StringVar(&q.iif, "in-interface", "", "the interface the packet arrives on, for --detect-local-mode BridgeInterface and InterfaceNamePrefix (default: a pod's packet arrives on the pod interface, an external one on another)")
	}
}

func runQuery(sub string, q query, o options, s settings, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "rulegen %s: "+format+"\n", append([]any{sub}, a...)...)
		return exitUsage
	}
	if q.output != "text" && q.output != "json" {
		return fail("--output: %q is not text or json", q.output)
	}
	var pkt trace.Packet
	var key rules.ServiceKey
	switch sub {
	case "trace":
		var err error
		if pkt, err = parsePacket(q); err != nil {
			return fail("%v", err)
		}
	case "explain":
		ns, name, ok := strings.Cut(q.service, "/")
		if !ok || ns == "" || name == "" {
			return fail("give the service as NAMESPACE/NAME")
		}
		key = rules.ServiceKey{Namespace: ns, Name: name}
	}
	if len(o.files) == 0 && o.kubeconfig == "" {
		return fail("give the state: -f manifests or --kubeconfig")
	}
	st, errs, _, code := loadState(o, s, stdin, stderr)
	if st == nil {
		return code
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "rulegen: skipped: %v\n", e)
	}
	if sub == "explain" {
		code := explain(key, q, s, st, stdout, stderr)
		if code == exitOK && len(errs) > 0 {
			code = exitSkipped // as trace: the answer may miss what was skipped
		}
		return code
	}
	if pkt.From == "" {
		pkt.From = trace.FromExternal
		switch {
		case slices.Contains(s.cfg.Node.IPs, pkt.Src):
			pkt.From = trace.FromNode
		case s.cfg.PodInterface.Matches(pkt.Iif):
			pkt.From = trace.FromPod
		case slices.ContainsFunc(s.cfg.ClusterCIDRs, func(p netip.Prefix) bool { return p.Contains(pkt.Src) }):
			pkt.From = trace.FromPod
		}
	}
	// Both backends render the same plan; the trace runs through its
	// nftables form (see package trace for the one difference).
	d := sync.Render(st, s.cfg, sync.NFTables, rules.FamilyOf(pkt.Dst.Addr()))
	res := trace.Trace(d.NFTables, s.cfg.Node.IPs, pkt)
	if s.backend == sync.IPTables && res.Note != "" {
		for i := range res.Outcomes {
			if res.Outcomes[i].Verdict == trace.Reject && strings.Contains(res.Outcomes[i].Why, "unknown port") {
				res.Outcomes[i] = trace.Outcome{Probability: res.Outcomes[i].Probability, Verdict: trace.Pass,
					Why: "unknown port on a ClusterIP: the iptables backend does not check it, the packet is routed normally"}
			}
		}
		res.Note = ""
	}
	if q.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Packet string `json:"packet"`
			*trace.Result
		}{pkt.String(), res})
	} else {
		io.WriteString(stdout, res.Text())
	}
	if len(errs) > 0 {
		return exitSkipped
	}
	return exitOK
}

func parsePacket(q query) (trace.Packet, error) {
	var p trace.Packet
	src, err := netip.ParseAddr(q.src)
	if err != nil {
		return p, fmt.Errorf("--src: %q is not an IP address", q.src)
	}
	dst, proto, _ := strings.Cut(q.dst, "/")
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		host, port, ok := strings.Cut(dst, ":")
		if n, e := strconv.Atoi(port); ok && e == nil && (n < 1 || n > 65535) {
			return p, fmt.Errorf("--dst: port %d is out of range (1-65535)", n)
		}
		_ = host
		return p, fmt.Errorf("--dst: %q is not IP:PORT", q.dst)
	}
	if ap.Port() == 0 {
		return p, fmt.Errorf("--dst: port 0 is out of range (1-65535)")
	}
	switch strings.ToLower(proto) {
	case "", "tcp":
		p.Proto = rules.TCP
	case "udp":
		p.Proto = rules.UDP
	case "sctp":
		p.Proto = rules.SCTP
	default:
		return p, fmt.Errorf("--dst: unknown protocol %q (want tcp, udp or sctp)", proto)
	}
	if rules.FamilyOf(src.Unmap()) != rules.FamilyOf(ap.Addr().Unmap()) {
		return p, fmt.Errorf("--src and --dst are of different IP families")
	}
	switch q.from {
	case "", "pod", "node", "external":
		p.From = trace.Origin(q.from)
	default:
		return p, fmt.Errorf("--from: %q is not pod, node or external", q.from)
	}
	if q.iif != "" {
		if why := rules.InvalidInterfaceName(q.iif, rules.MaxInterfaceName); why != "" {
			return p, fmt.Errorf("--in-interface: %q %s", q.iif, why)
		}
		if q.from == "node" {
			return p, fmt.Errorf("--in-interface: a packet from the node has no input interface")
		}
	}
	p.Iif = q.iif
	p.Src, p.Dst = src.Unmap(), netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return p, nil
}

func explain(key rules.ServiceKey, q query, s settings, st *rules.State, stdout, stderr io.Writer) int {
	var ex []trace.Explanation
	for _, f := range families(s, st) {
		d := sync.Render(st, s.cfg, s.backend, f)
		ex = append(ex, trace.Explanation{Plan: d.Plan, NFT: d.NFTables, IPT: d.IPTables})
	}
	text, ok := trace.Explain(key, s.cfg.Node, ex)
	if !ok {
		fmt.Fprintf(stderr, "rulegen explain: no service %s with rules on this node (unknown, headless, ExternalName, or another proxy's)\n", key)
		return exitUsage
	}
	if q.output == "json" {
		json.NewEncoder(stdout).Encode(map[string]string{"service": key.String(), "explanation": text})
		return exitOK
	}
	io.WriteString(stdout, text)
	return exitOK
}

var _ = nftables.TableName
