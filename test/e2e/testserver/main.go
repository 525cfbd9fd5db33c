// Command testserver is the pod and the client of the kernel e2e tests.
//
//	testserver -serve NAME -tcp 8080,9090 -udp 5353 [-lifetime 10m]
//	    answers every TCP line and UDP datagram with "NAME SRCIP"; NAME
//	    "@local" answers with (and, for UDP, from) the address the connection
//	    or datagram reached instead (a
//	    namespace with a local route for a whole range then serves every
//	    address of it as a separate pod)
//	testserver -probe tcp|udp -addr IP:PORT [-timeout 700ms]
//	    prints "ok NAME SRCIP", "refused" or "timeout" (exit 0 for all three)
//	testserver -http URL
//	    prints "STATUS BODY" of a GET
//	testserver -hold -addr IP:PORT -for 4s
//	    connects once, prints "connected NAME", then every 100ms sends a line
//	    and reads the answer; prints "held N NAME…" or "broken: why"
//
// Every loop is bounded in count and time.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

func main() {
	serve := flag.String("serve", "", "serve as this pod name")
	tcpPorts := flag.String("tcp", "", "TCP ports to serve, comma-separated")
	udpPorts := flag.String("udp", "", "UDP ports to serve, comma-separated")
	probe := flag.String("probe", "", "probe with this protocol: tcp or udp")
	hold := flag.Bool("hold", false, "hold one TCP connection open and use it")
	addr := flag.String("addr", "", "address to probe, IP:PORT")
	timeout := flag.Duration("timeout", 700*time.Millisecond, "probe timeout")
	holdFor := flag.Duration("for", 4*time.Second, "how long -hold keeps the connection")
	get := flag.String("http", "", "GET this URL and print \"STATUS BODY\" (or the error)")
	sport := flag.Int("sport", 0, "probe from this local port (UDP: the same conntrack entry every time)")
	src := flag.String("src", "", "probe from this local address (default: the one routing picks)")
	lifetime := flag.Duration("lifetime", 10*time.Minute, "-serve exits after this long at the latest")
	flag.Parse()
	switch {
	case *serve != "":
		os.Exit(runServer(*serve, *tcpPorts, *udpPorts, *lifetime))
	case *probe != "":
		fmt.Println(runProbe(*probe, *addr, *timeout, *src, *sport))
	case *hold:
		runHold(*addr, *holdFor)
	case *get != "":
		c := &http.Client{Timeout: *timeout}
		resp, err := c.Get(*get)
		if err != nil {
			fmt.Println("error " + classify(err))
			return
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Printf("%d %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	default:
		fmt.Fprintln(os.Stderr, "testserver: give -serve, -probe or -hold")
		os.Exit(2)
	}
}

func runServer(name, tcpPorts, udpPorts string, lifetime time.Duration) int {
	for _, p := range split(tcpPorts) {
		l, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go answerTCP(name, c)
			}
		}()
	}
	for _, p := range split(udpPorts) {
		network := "udp"
		if name == "@local" {
			network = "udp4" // IP_PKTINFO below is IPv4's
		}
		pc, err := net.ListenPacket(network, ":"+p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := serveUDP(name, pc); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("ready")
	// Serve until told to stop (the test kills this process by PID), and in
	// any case for at most lifetime.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(lifetime):
	}
	return 0
}

// serveUDP answers every datagram on pc with "NAME SRCIP" in the
// background. With NAME "@local" the answer names, and is sent from, the
// address the datagram reached (IP_PKTINFO): a wildcard socket would
// otherwise answer from the address routing picks, which neither the
// client's connected socket nor the node's conntrack entry (that expects
// the endpoint it DNATed to) would match.
func serveUDP(name string, pc net.PacketConn) error {
	if name != "@local" {
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(name+" "+from.(*net.UDPAddr).IP.String()+"\n"), from)
			}
		}()
		return nil
	}
	p := ipv4.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return fmt.Errorf("udp %s: IP_PKTINFO: %w", pc.LocalAddr(), err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			_, cm, from, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			if cm == nil || cm.Dst == nil {
				continue // no IP_PKTINFO: the address reached is unknown
			}
			p.WriteTo([]byte(cm.Dst.String()+" "+from.(*net.UDPAddr).IP.String()+"\n"), &ipv4.ControlMessage{Src: cm.Dst}, from)
		}
	}()
	return nil
}

func answerTCP(name string, c net.Conn) {
	defer c.Close()
	ip := c.RemoteAddr().(*net.TCPAddr).IP.String()
	if name == "@local" {
		name = c.LocalAddr().(*net.TCPAddr).IP.String()
	}
	r := bufio.NewReader(c)
	for i := 0; i < 10000; i++ { // bounded: a hold lasts at most that many lines
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if _, err := c.Write([]byte(name + " " + ip + "\n")); err != nil {
			return
		}
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error " + err.Error()
}

func runProbe(proto, addr string, timeout time.Duration, src string, sport int) string {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Timeout: timeout}
	ip := net.ParseIP(src) // nil when src is empty: any address
	if src != "" && ip == nil {
		return "error: -src " + src + " is not an IP address"
	}
	if (ip != nil || sport != 0) && proto == "udp" {
		d.LocalAddr = &net.UDPAddr{IP: ip, Port: sport}
	} else if ip != nil || sport != 0 {
		d.LocalAddr = &net.TCPAddr{IP: ip, Port: sport}
	}
	c, err := d.Dial(proto, addr)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return classify(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return classify(err)
	}
	return "ok " + strings.TrimSpace(line)
}

func runHold(addr string, d time.Duration) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		fmt.Println("broken: " + classify(err))
		return
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ask := func() (string, error) {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("again\n")); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		return strings.Fields(line + " ?")[0], err
	}
	first, err := ask()
	if err != nil {
		fmt.Println("broken: " + classify(err))
		return
	}
	fmt.Println("connected " + first)
	n := 1
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		time.Sleep(100 * time.Millisecond)
		name, err := ask()
		if err != nil {
			fmt.Printf("broken: after %d answers: %s\n", n, classify(err))
			return
		}
		if name != first {
			fmt.Printf("broken: answered by %s, then by %s\n", first, name)
			return
		}
	}
	fmt.Printf("held %d %s\n", n, first)
}
