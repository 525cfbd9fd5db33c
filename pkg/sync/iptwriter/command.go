package iptwriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Bounds on every iptables command, so that a held xtables lock or a stuck
// tool fails one sync (which is retried, in full) instead of stalling the
// sync loop for ever. The Runner's commands get both; go-iptables' (the
// jump checks and deletes), which it cannot kill, wait for the lock at most
// the smaller of the two.
const (
	// DefaultLockWait is how long a command waits for the xtables lock
	// (`--wait SECONDS`; iptables-legacy takes the lock, iptables-nft
	// ignores it), as kube-proxy waits.
	DefaultLockWait = 5 * time.Second
	// DefaultTimeout is how long a command may run before it is killed:
	// far above the slowest restore measured (a few seconds at 5,000
	// services, see docs/performance.md) plus the lock wait.
	DefaultTimeout = 2 * time.Minute
)

// Runner runs the iptables tools the writer drives itself, each bounded by
// a context: iptables-restore (every write), iptables-save (listing a
// table) and `iptables -S` (the canary). The real one is ExecRunner; tests
// inject fakes. The jump checks and deletes go through JumpRules instead.
type Runner interface {
	// Run runs name with args and stdin (none when stdin is empty) and
	// returns its standard output. It must stop the command when ctx ends.
	// A failure is a *CommandError.
	Run(ctx context.Context, stdin, name string, args ...string) ([]byte, error)
}

// CommandError is a command that failed, timed out, or could not start.
type CommandError struct {
	Command string // the command line, without its input
	// Code is the exit status, or -1 when the command did not exit by
	// itself (it was killed, or did not start).
	Code int
	// Err is the exit status (*exec.ExitError), the start error, or
	// context.DeadlineExceeded when the command was killed for taking
	// longer than Timeout.
	Err     error
	Timeout time.Duration
	Stderr  string // what the command said, trimmed
}

func (e *CommandError) Error() string {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s: killed after %s without finishing%s", e.Command, e.Timeout, suffix(e.Stderr))
	}
	return fmt.Sprintf("%s: %v%s", e.Command, e.Err, suffix(e.Stderr))
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Err }

// ExecRunner runs commands as child processes (in the caller's thread's
// network namespace), killing them when the context ends.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Do not wait for pipes held open by a killed command's children.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &CommandError{Command: strings.Join(append([]string{name}, args...), " "), Code: -1, Err: err, Stderr: strings.TrimSpace(stderr.String())}
	var x *exec.ExitError
	switch {
	case ctx.Err() != nil:
		ce.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	case errors.As(err, &x):
		ce.Code = x.ExitCode()
	}
	return stdout.Bytes(), ce
}

// runBounded runs one command through r, killed after timeout; a
// *CommandError it returns carries the timeout.
func runBounded(r Runner, timeout time.Duration, stdin, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := r.Run(ctx, stdin, name, args...)
	var ce *CommandError
	if errors.As(err, &ce) && ce.Timeout == 0 {
		ce.Timeout = timeout
	}
	return out, err
}
