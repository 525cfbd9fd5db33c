package soak

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rulegen/rulegen/test/netnstest"
)

// A connection to a stable service fails when no endpoint of it answered
// within connTimeout: long enough for TCP's first SYN retransmission (after
// 1 s) and for udpTries UDP datagrams (each given udpWait).
const (
	connTimeout = 3500 * time.Millisecond
	udpWait     = 500 * time.Millisecond
	udpTries    = 7
)

// ask opens one connection (tcp) or socket (udp) from ns to addr, sends a
// line and returns the first word of the answer: the pod address that
// answered. TCP is given timeout as a whole (a refusal ends it at once);
// UDP resends every udpWait (or timeout, if shorter) until timeout,
// through refusals too (an ICMP error from a moment without rules).
func (h *harness) ask(ns *netnstest.NS, proto, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	start := time.Now()
	c, err := ns.DialContext(ctx, proto, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 512)
	if proto == "tcp" {
		connected := time.Since(start).Round(time.Millisecond)
		c.SetDeadline(deadline)
		if _, err := c.Write([]byte("hi\n")); err != nil {
			return "", fmt.Errorf("connected from %s after %s, then %w", c.LocalAddr(), connected, err)
		}
		n, err := c.Read(buf) // the server answers in one write
		if err != nil {
			return "", fmt.Errorf("connected from %s after %s, then %w", c.LocalAddr(), connected, err)
		}
		return firstWord(buf[:n])
	}
	for {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("connected from %s after 0s, then %w", c.LocalAddr(), errTimeout)
		}
		c.SetWriteDeadline(deadline)
		c.Write([]byte("hi\n"))
		wait := time.Now().Add(udpWait)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		n, err := c.Read(buf)
		if err == nil {
			return firstWord(buf[:n])
		}
		var ne net.Error
		if errors.Is(err, syscall.ECONNREFUSED) {
			time.Sleep(min(time.Until(deadline), udpWait))
		} else if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
}

var errTimeout = errors.New("no answer")

func firstWord(b []byte) (string, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "", errors.New("empty answer")
	}
	return f[0], nil
}

// stable is one service the churn never touches.
type stable struct {
	name               string
	clusterIP          string
	nodePortTCP, nodeP int32 // 0 unless NodePort; nodeP is the UDP nodePort
	eps                []string
}

// probeStats counts the probes to stable services.
type probeStats struct {
	mu       sync.Mutex
	total    map[string]int // by "source/proto"
	failures []string       // the first ones, described
	failed   int
}

func (p *probeStats) record(key string, fail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total[key]++
	if fail != "" {
		p.failed++
		if len(p.failures) < 20 {
			p.failures = append(p.failures, fail)
		}
	}
}

func (p *probeStats) sum() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.total {
		n += v
	}
	return n
}

// probeStable probes the stable services in turn from one source with one
// protocol, one connection every gap, until ctx ends: from the pod client
// and from the node to the ClusterIPs, from outside to the nodePorts.
// A connection that no endpoint of the service answered within connTimeout
// is a failure; so is an answer from anywhere else.
func (h *harness) probeStable(ctx context.Context, source, proto string, gap time.Duration, st *probeStats) {
	ns := map[string]*netnstest.NS{"pod": h.podc, "node": h.node, "outside": h.client}[source]
	type target struct {
		addr string
		eps  []string
	}
	var targets []target
	for _, s := range h.stable {
		switch {
		case source != "outside":
			port := svcTCPPort
			if proto == "udp" {
				port = svcUDPPort
			}
			targets = append(targets, target{net.JoinHostPort(s.clusterIP, strconv.Itoa(port)), s.eps})
		case s.nodePortTCP != 0:
			port := s.nodePortTCP
			if proto == "udp" {
				port = s.nodeP
			}
			targets = append(targets, target{net.JoinHostPort(nodeIP, strconv.Itoa(int(port))), s.eps})
		}
	}
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tg := targets[i%len(targets)]
		start := time.Now()
		got, err := h.ask(ns, proto, tg.addr, connTimeout)
		fail := ""
		switch {
		case err != nil:
			fail = fmt.Sprintf("%s %s from %s to %s at %s: %v%s", proto, "connection", source, tg.addr, h.sinceAt(start), err, h.conntrackOf(proto, tg.addr, err))
		case !slices.Contains(tg.eps, got):
			fail = fmt.Sprintf("%s connection from %s to %s at %s: answered by %s, not one of its endpoints", proto, source, tg.addr, h.sinceAt(start), got)
		}
		st.record(source+"/"+proto, fail)
	}
}

// firstAnswer probes addr from the pod client every 10 ms (each probe
// waits 100 ms; at most 10 at a time) until an endpoint in eps answers,
// and returns the time from at to that answer.
func (h *harness) firstAnswer(at time.Time, addr string, eps []string) (time.Duration, bool) {
	found := make(chan time.Duration, 1)
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	defer wg.Wait()
	var stop atomic.Bool
	defer stop.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-found:
			return d, true
		case <-tick.C:
			if time.Now().After(h.deadline(at)) {
				return 0, false
			}
			select {
			case sem <- struct{}{}:
			default:
				continue
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if stop.Load() {
					return
				}
				if got, err := h.ask(h.podc, "tcp", addr, 100*time.Millisecond); err == nil && slices.Contains(eps, got) {
					select {
					case found <- time.Since(at):
					default:
					}
				}
			}()
		}
	}
}

// firstSilence probes addr from the pod client, one probe (of 100 ms) at a
// time, until one is not answered, and returns the time from at to when
// that probe was sent.
func (h *harness) firstSilence(at time.Time, addr string) (time.Duration, bool) {
	for time.Now().Before(h.deadline(at)) {
		sent := time.Now()
		if _, err := h.ask(h.podc, "tcp", addr, 100*time.Millisecond); err != nil {
			return sent.Sub(at), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, false
}

// conntrackOf lists the node's conntrack entries of a failed probe to
// addr, for its report: those from the probe's own port when it connected
// (its error names the port), else those to addr that never saw a reply.
// An entry left without its NAT, or a clash, shows there. At most 3 lines.
func (h *harness) conntrackOf(proto, addr string, probeErr error) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	args := []string{"-L", "-p", proto, "-d", host, "--dport", port}
	mine := ""
	if m := connectedFrom.FindStringSubmatch(probeErr.Error()); m != nil {
		args, mine = append(args, "--sport", m[1]), " from port "+m[1]
	}
	out, err := h.node.Run(nil, "conntrack", args...)
	if err != nil && strings.TrimSpace(out) == "" {
		return "; conntrack: " + err.Error()
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, proto) && (mine != "" || strings.Contains(l, "UNREPLIED")) && len(lines) < 3 {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	if len(lines) == 0 {
		return "; no conntrack entry" + mine
	}
	return "; conntrack" + mine + ": " + strings.Join(lines, " | ")
}

// connectedFrom finds the probe's port in ask's error after a connection.
var connectedFrom = regexp.MustCompile(`connected from [^ ]*:(\d+) after`)
