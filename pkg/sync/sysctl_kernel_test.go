package sync

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rulegen/rulegen/test/netnstest"
)

// nsOnlySysctl is ProcSysctl that fails the test before any write that
// could reach beyond the test's namespace: the hash size never, and
// nf_conntrack_max only where the kernel makes it read-only (so the write
// can only be refused).
type nsOnlySysctl struct {
	ProcSysctl
	t *testing.T
}

func (s nsOnlySysctl) Set(path string, value int) error {
	switch path {
	case ConntrackHashsize:
		s.t.Errorf("write of the host-wide %s=%d from a test namespace", path, value)
		return os.ErrPermission
	case SysctlConntrackMax:
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o222 != 0 {
			s.t.Errorf("nf_conntrack_max is writable in the test namespace (old kernel?): not writing the host's limit")
			return os.ErrPermission
		}
	}
	return s.ProcSysctl.Set(path, value)
}

// TestSetConntrackSysctlsKernel, in a throwaway namespace: the
// per-namespace timeouts and be_liberal are set there (and not in the
// caller's namespace), and nf_conntrack_max, read-only outside the host's
// namespace, is a warning rather than a failure, as when the daemon runs
// in a node namespace of the cluster tests.
func TestSetConntrackSysctlsKernel(t *testing.T) {
	netnstest.Require(t, "sysctl")
	ns := netnstest.New(t, "ctsysctl")
	if _, err := ns.Run(nil, "sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established"); err != nil {
		netnstest.Unavailable(t, "nf_conntrack not loaded in this kernel: %v", err)
	}
	var real ProcSysctl
	rootBefore, err := real.Get(SysctlConntrackTCPTimeoutEstablished)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConntrackSysctls{
		MaxPerCore:            1 << 20, // above any host's limit: a write is attempted, and refused
		TCPEstablishedTimeout: 1234 * time.Second, TCPCloseWaitTimeout: 567 * time.Second,
		TCPBeLiberal: true, UDPTimeout: 31 * time.Second, UDPStreamTimeout: 121 * time.Second,
	}
	var logs bytes.Buffer
	err = ns.Do(func() error {
		return SetConntrackSysctls(nsOnlySysctl{t: t}, cfg, 2, slog.New(slog.NewTextHandler(&logs, nil)))
	})
	if err != nil {
		t.Fatalf("SetConntrackSysctls: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "path="+SysctlConntrackMax) || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no warning about nf_conntrack_max:\n%s", logs.String())
	}
	for key, want := range map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_established": "1234",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait":  "567",
		"net.netfilter.nf_conntrack_tcp_be_liberal":          "1",
		"net.netfilter.nf_conntrack_udp_timeout":             "31",
		"net.netfilter.nf_conntrack_udp_timeout_stream":      "121",
	} {
		if got := strings.TrimSpace(ns.MustRun(nil, "sysctl", "-n", key)); got != want {
			t.Errorf("in the namespace, %s = %s, want %s", key, got, want)
		}
	}
	if rootAfter, err := real.Get(SysctlConntrackTCPTimeoutEstablished); err != nil || rootAfter != rootBefore {
		t.Errorf("the caller's namespace changed: established timeout %d, was %d (%v)", rootAfter, rootBefore, err)
	}
}
