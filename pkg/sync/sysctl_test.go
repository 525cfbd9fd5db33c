package sync

import (
	"bytes"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSysctl is a Sysctl over a map. A path in readOnly fails Set as the
// kernel does for nf_conntrack_max outside the host's namespace (EACCES);
// a path missing from values fails both with ENOENT; a path in invalid
// fails Set with EINVAL.
type fakeSysctl struct {
	values   map[string]int
	readOnly map[string]bool
	invalid  map[string]bool
	writes   []string // "path=value", in order, successful or not
}

var _ Sysctl = &fakeSysctl{}

func (f *fakeSysctl) Get(path string) (int, error) {
	v, ok := f.values[path]
	if !ok {
		return 0, &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	}
	return v, nil
}

func (f *fakeSysctl) Set(path string, value int) error {
	f.writes = append(f.writes, path+"="+strconv.Itoa(value))
	switch _, ok := f.values[path]; {
	case !ok:
		return &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	case f.readOnly[path]:
		return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
	case f.invalid[path]:
		return &fs.PathError{Op: "write", Path: path, Err: syscall.EINVAL}
	}
	f.values[path] = value
	return nil
}

// kernelDefaults are a fresh kernel's conntrack settings on a small host.
func kernelDefaults() map[string]int {
	return map[string]int{
		SysctlConntrackMax:                   65536,
		ConntrackHashsize:                    16384,
		SysctlConntrackTCPTimeoutEstablished: 432000,
		SysctlConntrackTCPTimeoutCloseWait:   60,
		SysctlConntrackTCPBeLiberal:          0,
		SysctlConntrackUDPTimeout:            30,
		SysctlConntrackUDPTimeoutStream:      120,
	}
}

func with(m map[string]int, kv ...any) map[string]int {
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(int)
	}
	return m
}

func w(path string, v int) string { return path + "=" + strconv.Itoa(v) }

// TestSetConntrackSysctls: what is written for kube-proxy's settings, in
// the host's namespace and in another, and when a setting cannot be
// written.
func TestSetConntrackSysctls(t *testing.T) {
	def := DefaultConntrackSysctls
	tests := []struct {
		name     string
		cfg      ConntrackSysctls
		cpus     int
		values   map[string]int
		readOnly []string
		invalid  []string
		// writes are the Set calls, in order; warnings how many warnings
		// are logged; err a substring of the error ("" none).
		writes   []string
		warnings int
		err      string
	}{
		{name: "kube-proxy's defaults on a fresh 2-CPU host", cfg: def, cpus: 2, values: kernelDefaults(),
			writes: []string{w(SysctlConntrackMax, 131072), w(ConntrackHashsize, 32768),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)}},
		{name: "max per core above min", cfg: def, cpus: 8, values: kernelDefaults(),
			writes: []string{w(SysctlConntrackMax, 262144), w(ConntrackHashsize, 65536),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)}},
		{name: "capped at 1Mi on a large host", cfg: def, cpus: 64, values: kernelDefaults(),
			writes: []string{w(SysctlConntrackMax, 1<<20), w(ConntrackHashsize, 1<<18),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)}},
		{name: "min is not capped", cfg: ConntrackSysctls{MaxPerCore: 1, Min: 2 << 20}, cpus: 4, values: kernelDefaults(),
			writes: []string{w(SysctlConntrackMax, 2<<20), w(ConntrackHashsize, 1<<19)}},
		{name: "a higher limit and hash size stay", cfg: def, cpus: 2,
			values: with(kernelDefaults(), SysctlConntrackMax, 262144, ConntrackHashsize, 65536),
			writes: []string{w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)}},
		{name: "settings already in place are not written", cfg: def, cpus: 2,
			values: with(kernelDefaults(), SysctlConntrackMax, 131072, ConntrackHashsize, 32768,
				SysctlConntrackTCPTimeoutEstablished, 86400, SysctlConntrackTCPTimeoutCloseWait, 3600)},
		{name: "host namespace: a high limit with a small hash size raises the hash size", cfg: def, cpus: 2,
			values: with(kernelDefaults(), SysctlConntrackMax, 262144),
			writes: []string{w(SysctlConntrackMax, 262144), w(ConntrackHashsize, 32768),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)}},
		{name: "other namespace: nf_conntrack_max read-only is a warning, the hash size stays", cfg: def, cpus: 2,
			values: kernelDefaults(), readOnly: []string{SysctlConntrackMax},
			writes: []string{w(SysctlConntrackMax, 131072),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)},
			warnings: 2},
		{name: "other namespace: a high limit with a small hash size leaves the hash size", cfg: def, cpus: 2,
			values: with(kernelDefaults(), SysctlConntrackMax, 262144), readOnly: []string{SysctlConntrackMax},
			writes: []string{w(SysctlConntrackMax, 262144),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)},
			warnings: 1},
		{name: "read-only /proc/sys and /sys: warnings, no error", cfg: def, cpus: 2, values: kernelDefaults(),
			readOnly: []string{SysctlConntrackMax, ConntrackHashsize, SysctlConntrackTCPTimeoutEstablished, SysctlConntrackTCPTimeoutCloseWait},
			writes: []string{w(SysctlConntrackMax, 131072),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)},
			warnings: 4},
		{name: "nf_conntrack not loaded: warnings, no error", cfg: def, cpus: 2, values: map[string]int{},
			writes: []string{w(SysctlConntrackMax, 131072),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)},
			warnings: 4},
		{name: "a value the kernel rejects is an error naming the file", cfg: def, cpus: 2, values: kernelDefaults(),
			invalid: []string{SysctlConntrackTCPTimeoutCloseWait},
			writes: []string{w(SysctlConntrackMax, 131072), w(ConntrackHashsize, 32768),
				w(SysctlConntrackTCPTimeoutEstablished, 86400), w(SysctlConntrackTCPTimeoutCloseWait, 3600)},
			err: "set " + SysctlConntrackTCPTimeoutCloseWait + " to 3600"},
		{name: "off switch: all zero changes nothing", cfg: ConntrackSysctls{}, cpus: 2, values: kernelDefaults()},
		{name: "max per core 0 ignores min", cfg: ConntrackSysctls{Min: 1 << 20}, cpus: 2, values: kernelDefaults()},
		{name: "be liberal and UDP timeouts", cfg: ConntrackSysctls{TCPBeLiberal: true, UDPTimeout: time.Minute, UDPStreamTimeout: 5 * time.Minute},
			cpus: 2, values: kernelDefaults(),
			writes: []string{w(SysctlConntrackUDPTimeout, 60), w(SysctlConntrackUDPTimeoutStream, 300), w(SysctlConntrackTCPBeLiberal, 1)}},
		{name: "a timeout under a second is no timeout", cfg: ConntrackSysctls{TCPEstablishedTimeout: 500 * time.Millisecond}, cpus: 2, values: kernelDefaults()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSysctl{values: tc.values, readOnly: map[string]bool{}, invalid: map[string]bool{}}
			for _, p := range tc.readOnly {
				f.readOnly[p] = true
			}
			for _, p := range tc.invalid {
				f.invalid[p] = true
			}
			var logs bytes.Buffer
			err := SetConntrackSysctls(f, tc.cfg, tc.cpus, slog.New(slog.NewTextHandler(&logs, nil)))
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one with %q", err, tc.err)
			}
			if !slices.Equal(f.writes, tc.writes) {
				t.Errorf("writes\n%s\nwant\n%s", strings.Join(f.writes, "\n"), strings.Join(tc.writes, "\n"))
			}
			if got := strings.Count(logs.String(), "level=WARN"); got != tc.warnings {
				t.Errorf("%d warnings, want %d:\n%s", got, tc.warnings, logs.String())
			}
		})
	}
}

func TestCountCPUList(t *testing.T) {
	tests := []struct {
		name, list string
		want       int
		ok         bool
	}{
		{name: "one CPU", list: "0", want: 1, ok: true},
		{name: "a range", list: "0-1", want: 2, ok: true},
		{name: "ranges and singles", list: "0-3,8,10-11", want: 7, ok: true},
		{name: "garbage", list: "zero", ok: false},
		{name: "backwards range", list: "3-1", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n, ok := countCPUList(tc.list); n != tc.want || ok != tc.ok {
				t.Errorf("countCPUList(%q) = %d, %v; want %d, %v", tc.list, n, ok, tc.want, tc.ok)
			}
		})
	}
}
