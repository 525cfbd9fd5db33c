package sync

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The kernel settings SetConntrackSysctls reads and writes, as files. The
// timeouts and be_liberal are per network namespace (the files under
// /proc/sys/net are those of the calling thread's namespace);
// nf_conntrack_max and the hash size are one value for the whole host.
// Outside the host's namespace the kernel makes nf_conntrack_max
// read-only; hashsize, a module parameter, is writable from anywhere,
// which is why SetConntrackSysctls touches it only where it could write
// nf_conntrack_max.
const (
	SysctlConntrackMax                   = "/proc/sys/net/netfilter/nf_conntrack_max"
	SysctlConntrackTCPTimeoutEstablished = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"
	SysctlConntrackTCPTimeoutCloseWait   = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait"
	SysctlConntrackTCPBeLiberal          = "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"
	SysctlConntrackUDPTimeout            = "/proc/sys/net/netfilter/nf_conntrack_udp_timeout"
	SysctlConntrackUDPTimeoutStream      = "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream"
	ConntrackHashsize                    = "/sys/module/nf_conntrack/parameters/hashsize"
)

// Sysctl reads and writes integer kernel settings, each named by the path
// of its file (the constants above).
type Sysctl interface {
	// Get returns the setting's value.
	Get(path string) (int, error)
	// Set writes value. An error wraps the system's: fs.ErrPermission when
	// the setting is read-only here, fs.ErrNotExist when the kernel has no
	// such setting (nf_conntrack not loaded).
	Set(path string, value int) error
}

// ProcSysctl is the real Sysctl: it reads and writes the files, as the
// calling thread sees them.
type ProcSysctl struct{}

var _ Sysctl = ProcSysctl{}

// Get implements Sysctl.
func (ProcSysctl) Get(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// Set implements Sysctl. The file is opened without O_CREATE: a missing
// setting is an error, never a new file.
func (ProcSysctl) Set(path string, value int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(value))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ConntrackSysctls are kube-proxy's conntrack settings (its
// KubeProxyConntrackConfiguration, the --conntrack-* flags). A zero value
// leaves its sysctl as it is, as in kube-proxy: the zero ConntrackSysctls
// changes nothing.
type ConntrackSysctls struct {
	// MaxPerCore × the node's CPUs, at least Min, at most 1,048,576 is
	// the nf_conntrack_max to ensure: a lower limit is raised, a higher
	// one left alone. 0 leaves nf_conntrack_max alone and ignores Min.
	MaxPerCore, Min int32
	// TCPEstablishedTimeout and TCPCloseWaitTimeout set
	// nf_conntrack_tcp_timeout_established and _close_wait (whole seconds).
	TCPEstablishedTimeout, TCPCloseWaitTimeout time.Duration
	// TCPBeLiberal sets nf_conntrack_tcp_be_liberal to 1; false leaves it.
	TCPBeLiberal bool
	// UDPTimeout and UDPStreamTimeout set nf_conntrack_udp_timeout and
	// nf_conntrack_udp_timeout_stream.
	UDPTimeout, UDPStreamTimeout time.Duration
}

// DefaultConntrackSysctls are kube-proxy v1.37's defaults
// (SetDefaults_KubeProxyConfiguration).
var DefaultConntrackSysctls = ConntrackSysctls{
	MaxPerCore:            32 * 1024,
	Min:                   128 * 1024,
	TCPEstablishedTimeout: 24 * time.Hour,
	TCPCloseWaitTimeout:   time.Hour,
}

// conntrackMaxCap is kube-proxy's ceiling on MaxPerCore × CPUs, so that a
// host with many cores does not give the table gigabytes.
const conntrackMaxCap = 1 << 20

// ConntrackMax is the nf_conntrack_max that c asks for on a host with
// numCPU CPUs, 0 when it asks for none. As in kube-proxy, the cap applies
// to the product, not to Min.
func (c ConntrackSysctls) ConntrackMax(numCPU int) int {
	if c.MaxPerCore <= 0 {
		return 0
	}
	scaled := int64(c.MaxPerCore) * int64(numCPU)
	switch {
	case scaled > conntrackMaxCap:
		return conntrackMaxCap
	case scaled > int64(c.Min):
		return int(scaled)
	}
	return int(c.Min)
}

// SetConntrackSysctls sets the conntrack sysctls as kube-proxy does at
// start (pkg/proxy/conntrack.SetSysctls): nf_conntrack_max raised to
// c.ConntrackMax(numCPU) if lower, the hash size raised to a quarter of
// that if lower, and every timeout (and be_liberal) that c gives written
// when it differs. numCPU is the host's online CPUs (OnlineCPUs).
//
// Unlike kube-proxy, a setting that is read-only or missing here
// (fs.ErrPermission, EROFS, fs.ErrNotExist: nf_conntrack_max outside the
// host's network namespace, a read-only /proc/sys or /sys in a container,
// nf_conntrack not loaded) is logged as a warning and skipped, so that
// rulegen starts where kube-proxy would not. Any other failure is
// returned (all of them, joined), each naming its file.
func SetConntrackSysctls(s Sysctl, c ConntrackSysctls, numCPU int, log *slog.Logger) error {
	var errs []error
	// set writes path unless it already holds value; it reports whether
	// the value is in place.
	set := func(path string, value int) bool {
		if cur, err := s.Get(path); err == nil && cur == value {
			return true
		}
		err := s.Set(path, value)
		switch {
		case err == nil:
			log.Info("set sysctl", "path", path, "value", value)
			return true
		case cannotWrite(err):
			log.Warn("cannot set sysctl; leaving it as it is", "path", path, "value", value, "error", err.Error())
		default:
			errs = append(errs, fmt.Errorf("set %s to %d: %w", path, value, err))
		}
		return false
	}
	if want := c.ConntrackMax(numCPU); want > 0 {
		cur, err := s.Get(SysctlConntrackMax)
		ours := false // the host-wide limits may be changed from here
		if err != nil || cur < want {
			ours = set(SysctlConntrackMax, want)
		}
		switch hs, err := s.Get(ConntrackHashsize); {
		case err != nil && cannotWrite(err):
			log.Warn("cannot read the conntrack hash size; leaving it as it is", "path", ConntrackHashsize, "error", err.Error())
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s: %w", ConntrackHashsize, err))
		case hs < want/4:
			if !ours && cur >= want {
				// nf_conntrack_max needed no raising. Whether the hash size
				// is ours to change is asked of it, by writing back its own
				// value: it is read-only outside the host's namespace.
				ours = s.Set(SysctlConntrackMax, cur) == nil
			}
			if ours {
				set(ConntrackHashsize, want/4)
			} else {
				log.Warn("not raising the conntrack hash size: nf_conntrack_max is not writable here (not the host's network namespace)",
					"hashsize", hs, "want", want/4)
			}
		}
	}
	for _, t := range []struct {
		path    string
		timeout time.Duration
	}{
		{SysctlConntrackTCPTimeoutEstablished, c.TCPEstablishedTimeout},
		{SysctlConntrackTCPTimeoutCloseWait, c.TCPCloseWaitTimeout},
		{SysctlConntrackUDPTimeout, c.UDPTimeout},
		{SysctlConntrackUDPTimeoutStream, c.UDPStreamTimeout},
	} {
		if secs := int(t.timeout / time.Second); secs > 0 {
			set(t.path, secs)
		}
	}
	if c.TCPBeLiberal {
		set(SysctlConntrackTCPBeLiberal, 1)
	}
	return errors.Join(errs...)
}

// cannotWrite tells an error that means "not yours to set here" from a
// real failure (a value the kernel rejects).
func cannotWrite(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EROFS)
}

// OnlineCPUs is the host's count of online CPUs, which sizes the host-wide
// nf_conntrack_max: as kube-proxy, it reads
// /sys/devices/system/cpu/online rather than trusting runtime.NumCPU,
// which counts only the CPUs this process may run on (fewer under a
// static CPU policy). It falls back to runtime.NumCPU.
func OnlineCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	if n, ok := countCPUList(strings.TrimSpace(string(b))); ok && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// countCPUList counts the CPUs of a kernel CPU list ("0-3,8,10-11").
func countCPUList(s string) (int, bool) {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return 0, false
		}
		n += b - a + 1
	}
	return n, true
}
