package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

// TestLogger: -v has kube-proxy's meaning (syncs from 1, never the ruleset
// below 9), --logging-format json gives one JSON object a line, and
// client-go's klog lines come out through the same handler.
func TestLogger(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v         int
		format    string
		wantDebug bool
	}{
		{name: "default", v: 0, format: "text"},
		{name: "syncs at 1", v: 1, format: "json", wantDebug: true},
		{name: "common kube-proxy setting", v: 2, format: "json", wantDebug: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger(&buf, tc.v, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("synced", "full", true)
			klog.InfoS("from client-go", "resource", "services")
			klog.Flush()
			out := buf.String()
			if got := strings.Contains(out, "synced"); got != tc.wantDebug {
				t.Errorf("debug line shown: %v, want %v:\n%s", got, tc.wantDebug, out)
			}
			if !strings.Contains(out, "from client-go") {
				t.Errorf("klog's line did not reach the logger:\n%s", out)
			}
			if tc.format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Errorf("not one JSON object a line: %q: %v", line, err)
					}
				}
			}
		})
	}
	if _, err := newLogger(&bytes.Buffer{}, 0, "xml"); err == nil || !strings.Contains(err.Error(), "--logging-format") {
		t.Errorf("an unknown format must be an error naming the flag, got %v", err)
	}
}
