package main

import (
	goflag "flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"k8s.io/klog/v2"
)

// Log verbosity, with kube-proxy's (klog's) meaning of -v: 0 is the
// default, 2 the level operators commonly run at (every sync is logged
// from 1 on), and the whole ruleset is logged after each sync only at 9 or
// above, where kube-proxy dumps its own rules.
const (
	verbositySyncs   = 1
	verbosityRuleset = 9
)

// newLogger returns the daemon's structured logger: text (key=value) or
// JSON lines on w, at the level -v asks for. client-go and the other
// Kubernetes libraries log through klog; their lines are routed into the same
// logger, so that the output has one format, and klog's own verbosity
// follows -v so that their V(n) lines appear at the same levels as they
// would in kube-proxy.
func newLogger(w io.Writer, verbosity int, format string) (*slog.Logger, error) {
	level := slog.LevelInfo
	if verbosity >= verbositySyncs {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--logging-format: %q is not text or json", format)
	}
	log := slog.New(h)
	var kfs goflag.FlagSet
	klog.InitFlags(&kfs)
	if err := kfs.Set("v", strconv.Itoa(verbosity)); err != nil {
		return nil, fmt.Errorf("-v: %w", err)
	}
	klog.SetSlogLogger(log)
	return log, nil
}
