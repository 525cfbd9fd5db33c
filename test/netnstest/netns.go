// Package netnstest gives kernel tests a throwaway network namespace.
//
// Every namespace is created with `ip netns add` under a unique name that
// starts with "rgt-", has no interface but its own loopback (so no route out
// of the machine), and is deleted when the test ends, on failure too.
// Nothing here touches the namespace the test runs in.
//
// Kernel tests need root. Outside CI they skip, saying why; under CI
// (CI=true) a missing privilege or tool is a failure, so that CI never
// passes by skipping.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

var (
	counter atomic.Int64
	swept   sync.Once
)

// sweep deletes namespaces left by test processes that died before their
// cleanup ran (killed by a signal, say): their names carry the PID.
func sweep() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) < 4 || parts[0] != "rgt" {
			continue
		}
		pid, err := strconv.Atoi(parts[len(parts)-2])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its test process still runs
		}
		if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if p, err := strconv.Atoi(f); err == nil {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips (outside CI) or fails (under CI) unless the test runs as root
// and every named tool is on PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	why := ""
	if testing.Short() && !InCI() {
		why = "kernel test skipped in -short mode"
	} else if os.Geteuid() != 0 {
		why = "kernel test needs root (network namespaces); run `sudo make test`"
	} else {
		for _, tool := range append([]string{"ip"}, tools...) {
			if _, err := exec.LookPath(tool); err != nil {
				why = fmt.Sprintf("kernel test needs %s on PATH (make test installs it with apt-get as root)", tool)
				break
			}
		}
	}
	if why == "" {
		return
	}
	if InCI() {
		t.Fatalf("%s; under CI kernel tests must run", why)
	}
	t.Skip(why)
}

// NS is a network namespace owned by one test.
type NS struct {
	Name string
	t    testing.TB
}

// New creates a namespace named rgt-<label>-<pid>-<n> and deletes it when
// the test ends. Loopback is brought up.
func New(t testing.TB, label string) *NS {
	t.Helper()
	swept.Do(sweep)
	name := fmt.Sprintf("rgt-%s-%d-%d", label, os.Getpid(), counter.Add(1))
	if len(name) > 60 {
		name = name[:60]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns.MustRun(nil, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command inside the namespace with stdin, returning its combined
// output.
func (ns *NS) Run(stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(stdin []byte, name string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(stdin, name, args...)
	if err != nil {
		ns.t.Fatalf("in %s: %s %s: %v\n%s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Fd opens the namespace and returns a file descriptor for it (for netlink
// writers), closed when the test ends.
func (ns *NS) Fd() int {
	ns.t.Helper()
	f, err := os.Open("/var/run/netns/" + ns.Name)
	if err != nil {
		ns.t.Fatalf("open netns %s: %v", ns.Name, err)
	}
	ns.t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// Start runs a long-lived command inside the namespace. It is killed by its
// PID (never by name) when the test ends.
func (ns *NS) Start(name string, args ...string) *exec.Cmd {
	ns.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	if err := cmd.Start(); err != nil {
		ns.t.Fatalf("in %s: start %s: %v", ns.Name, name, err)
	}
	ns.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// IP runs `ip ARGS…` inside the namespace and fails the test on error.
func (ns *NS) IP(args ...string) {
	ns.t.Helper()
	ns.MustRun(nil, "ip", args...)
}

// Sysctl sets a sysctl inside the namespace (never in the caller's).
func (ns *NS) Sysctl(key, value string) {
	ns.t.Helper()
	ns.MustRun(nil, "sysctl", "-q", "-w", key+"="+value)
}

// Do runs f on an OS thread switched into the namespace, so that netlink
// sockets opened and commands started by f act there. The thread is switched
// back afterwards (or, if that fails, left locked so that it dies with f's
// goroutine instead of running other code in the wrong namespace).
func (ns *NS) Do(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns.Name)
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			done <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			done <- fmt.Errorf("switching back: %w", err)
			return // keep the thread locked: it exits with this goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// StartLogged is Start with the command's output appended to logFile.
func (ns *NS) StartLogged(logFile, name string, args ...string) *exec.Cmd {
	ns.t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		ns.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		ns.t.Fatalf("in %s: start %s: %v", ns.Name, name, err)
	}
	ns.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	})
	return cmd
}

// DialContext dials from inside the namespace (the socket is created there
// and stays there), so that a client in the test process can reach a server
// listening on the namespace's loopback.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Stop signals a command started by Start (by its PID) and waits for it to
// exit, killing it if it has not within timeout.
func Stop(cmd *exec.Cmd, sig os.Signal, timeout time.Duration) {
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
	}
}

// Unavailable stops a test that cannot run here (a missing kernel feature,
// a missing source): outside CI it skips, saying why; under CI it fails, so
// that CI never passes by skipping.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
