package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/pkg/sync/nftwriter"
	"github.com/rulegen/rulegen/test/e2e"
	"github.com/rulegen/rulegen/test/netnstest"
	"github.com/rulegen/rulegen/test/scale"
)

var (
	serverOnce sync.Once
	built      *e2e.Binaries
	serverErr  error
)

// TestMain removes the binaries testServer built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if built != nil {
		built.Remove()
	}
	os.Exit(code)
}

// testServer builds the test server once per benchmark binary (only the
// benchmarks that need it pay for the build).
func testServer(b *testing.B) string {
	serverOnce.Do(func() { built, serverErr = e2e.BuildBinaries() })
	if serverErr != nil {
		b.Fatal(serverErr)
	}
	return built.Server
}

// BenchmarkDataPlaneConnect measures the first-packet cost of rulegen's
// nftables rules as a client sees it: the time to open a TCP connection to
// a ClusterIP (SYN through the node's DNAT to a pod, SYN-ACK back) and read
// the pod's first answer, with n services x 10 endpoints in the table. Each
// iteration is one connection; the metrics are the median and the 90th
// percentile. A new connection goes down its kind's count tree (one set
// lookup per level) to the map of its endpoint count: with every service
// at 10 endpoints that is the map lookup alone, whatever n. The
// "endpoints=1-64" cases give the services every count from 1 to 64
// (rulestest.ScaleMixed) and probe one of 63 endpoints, whose connections
// make the most set lookups of that tree (7, for the bits of 63 and the
// bit of 64): the worst case of a cluster of mixed sizes.
//
//	sudo go test ./test/bench -run '^$' -bench DataPlane -benchtime 2000x
func BenchmarkDataPlaneConnect(b *testing.B) {
	netnstest.Require(b, "nft")
	server := testServer(b)
	type layout struct {
		name  string
		state func(n int) (*rules.State, *rules.Config)
		probe func(n int) int // the service probed
	}
	layouts := []layout{
		{"endpoints=10", func(n int) (*rules.State, *rules.Config) { return rulestest.Scale(n, 10) }, func(n int) int { return n / 2 }},
		{"endpoints=1-64", func(n int) (*rules.State, *rules.Config) { return rulestest.ScaleMixed(n, 64) },
			func(n int) int { return n/2 - n/2%64 + 62 }}, // i%64 == 62: 63 endpoints, the longest path of the tree
	}
	for _, n := range sizes(10, 10000) {
		for _, lo := range layouts {
			if lo.probe(n) >= n {
				continue // too few services for that layout
			}
			b.Run(fmt.Sprintf("services=%d/%s", n, lo.name), func(b *testing.B) {
				dataPlane(b, server, n, lo.state, lo.probe(n))
			})
		}
	}
}

// dataPlane measures connections to service i of the state of n services.
func dataPlane(b *testing.B, server string, n int, state func(int) (*rules.State, *rules.Config), i int) {
	tp := scale.NewTopology(b, server, "10.128.0.0/9", "8080", "30m", filepath.Join(b.TempDir(), "pods.log"))
	st, cfg := state(n)
	r := rn.Render(rules.NewPlan(st, cfg, rules.IPv4))
	if _, err := nftwriter.New(tp.Node.Fd()).Apply(r); err != nil {
		b.Fatal(err)
	}
	// Service i's ClusterIP: 10.96.0.0 + i + 1 (see rulestest.Scale).
	addr := net.JoinHostPort(fmt.Sprintf("10.%d.%d.%d", 96+(i+1)>>16, ((i+1)>>8)&255, (i+1)&255), "80")
	try := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		t0 := time.Now()
		c, err := tp.Client.DialContext(ctx, "tcp", addr)
		if err != nil {
			return 0, fmt.Errorf("connect %s: %w", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("hi\n"))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return 0, fmt.Errorf("answer from %s: %w", addr, err)
		}
		return time.Since(t0), nil
	}
	connect := func() time.Duration {
		d, err := try()
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	// The pods' server starts with the topology and may not listen
	// yet (a small table is written before it does: the first
	// connection was refused at 10 services); wait for it, bounded.
	for i := 0; ; i++ {
		_, err := try()
		if err == nil {
			break
		}
		if i == 50 {
			b.Fatalf("the pods' server never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 50 { // warm up: ARP, caches
		connect()
	}
	var lat []time.Duration
	for b.Loop() {
		lat = append(lat, connect())
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
}
