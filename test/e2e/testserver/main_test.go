package main

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/test/netnstest"
)

// TestServeUDPLocal: a UDP server named @local in a namespace with a local
// route for a whole range answers each datagram with, and from, the address
// it reached, so that a connected client socket (and a node's conntrack
// entry) accepts the answer. The client sends from 127.0.0.1: a reply from
// the wildcard socket would leave from 127.0.0.1 too and be dropped.
func TestServeUDPLocal(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "udplocal")
	ns.IP("route", "add", "local", "10.200.0.0/24", "dev", "lo")
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", ":5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := serveUDP("@local", pc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, addr, want string }{
		{name: "first pod address", addr: "10.200.0.7", want: "10.200.0.7 127.0.0.1"},
		{name: "another pod address", addr: "10.200.0.200", want: "10.200.0.200 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c net.Conn
			err := ns.Do(func() (err error) {
				d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}}
				c, err = d.DialContext(context.Background(), "udp4", tc.addr+":5353")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("no answer from %s: %v", tc.addr, err)
			}
			if got := strings.TrimSpace(line); got != tc.want {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
		})
	}
}
