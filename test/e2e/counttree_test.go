package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/pkg/sync"
	"github.com/rulegen/rulegen/pkg/sync/nftwriter"
	"github.com/rulegen/rulegen/test/netnstest"
	"github.com/rulegen/rulegen/test/scale"
)

// TestCountTreeRealPackets sends real connections through the count tree
// of the nftables layout (pkg/rules/nftables/README.md): services with
// every endpoint count from 1 to 64 and a few more, whose first packets go
// down the tree to the map of their count. Each service's ClusterIP, and
// the nodePort of every fourth, must answer from one of its own endpoints
// (the pods' server answers with the address it was reached at). Then
// counts change as the daemon writes them (planner, renderer and writer
// following each other's changes): counts leave the tree, come back, and
// a new largest count adds a level; every service is probed again after
// each step.
func TestCountTreeRealPackets(t *testing.T) {
	netnstest.Require(t, "nft")
	tp := scale.NewTopology(t, bins.server, "10.128.0.0/9", "8080", "3m", filepath.Join(t.TempDir(), "pods.log"))
	const n = 70
	st, cfg := rulestest.ScaleMixed(n, 64) // service i has i%64+1 endpoints
	r := sync.NewRenderer(sync.NFTables)
	w := nftwriter.New(tp.Node.Fd())
	write := func(what string) {
		t.Helper()
		d := r.Render(st, cfg, rules.IPv4)
		if _, err := w.Apply(d.NFTables); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// ask connects to addr from the client and returns the endpoint that
	// answered.
	ask := func(addr string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := tp.Client.DialContext(ctx, "tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("hi\n"))
		buf := make([]byte, 128)
		k, err := c.Read(buf)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(buf[:k])), nil
	}
	probeAll := func(what string) {
		t.Helper()
		checked := 0
		for i := range n {
			p := st.ServicePorts(rulestest.ServiceKey(i))[0]
			own := map[string]bool{}
			for _, e := range st.Endpoints(p, rules.IPv4) {
				own[e.IP.String()] = true
			}
			dsts := []string{net.JoinHostPort(p.ClusterIPs[0].String(), fmt.Sprint(p.Port))}
			if p.NodePort != 0 {
				dsts = append(dsts, net.JoinHostPort(scale.NodeIP, fmt.Sprint(p.NodePort)))
			}
			for _, dst := range dsts {
				got, err := ask(dst)
				if err != nil {
					t.Errorf("%s: service %d (%d endpoints) at %s: %v", what, i, len(own), dst, err)
					continue
				}
				// "ADDRESS-REACHED CLIENT"
				host, _, _ := strings.Cut(got, " ")
				if !own[host] {
					t.Errorf("%s: service %d (%d endpoints) at %s answered from %q, not one of its endpoints", what, i, len(own), dst, got)
				}
				checked++
			}
		}
		if checked < n {
			t.Fatalf("%s: only %d destinations answered", what, checked)
		}
	}
	write("the first table")
	// The pods' server starts with the topology: wait for it, bounded.
	for i := 0; ; i++ {
		if _, err := ask("10.96.0.1:80"); err == nil {
			break
		} else if i == 50 {
			t.Fatalf("the pods' server never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	probeAll("counts 1-64")

	// Services 5 and 69 have 6 endpoints (5 and 69 % 64): both leave 6,
	// which then has no service and goes out of the tree.
	rulestest.Restore(st, 5, 5)
	rulestest.Restore(st, 69, 7)
	write("count 6 gone")
	probeAll("count 6 gone")
	// Service 63 (64 endpoints) grows to 65: a new bit, a new level.
	rulestest.Restore(st, 63, 65)
	write("count 65")
	probeAll("count 65")
	// And back: 6 comes back, 64 is used again, 65 goes.
	rulestest.Restore(st, 5, 6)
	rulestest.Restore(st, 63, 64)
	write("back")
	probeAll("back")
}
