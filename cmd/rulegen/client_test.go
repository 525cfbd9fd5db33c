package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestWaitForAPIServer: the daemon's first request is retried, with a
// warning naming the server, while the API server does not answer (as on a
// node where the kubeconfig points at an unserved ClusterIP); any answer
// ends the wait; the last failure names the server and how to bootstrap.
func TestWaitForAPIServer(t *testing.T) {
	const server = "https://10.96.0.1:443"
	noRoute := &url.Error{Op: "Post", URL: server + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Err: context.DeadlineExceeded}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "authorization.k8s.io", Resource: "selfsubjectaccessreviews"}, "", errors.New("no"))
	fc := firstContact{attempts: 3, timeout: time.Second, pause: time.Millisecond}
	tests := []struct {
		name     string
		results  []error // what each attempt returns; the last repeats
		calls    int
		warnings int
		err      string // "" for success
		start    string // describeStartError's message
	}{
		{name: "answers at once", results: []error{nil}, calls: 1},
		{name: "answers at the second attempt", results: []error{fmt.Errorf("checking permissions: %w", noRoute), nil}, calls: 2, warnings: 1},
		{name: "never answers", results: []error{fmt.Errorf("checking permissions: %w", noRoute)}, calls: 3, warnings: 2,
			err: "cannot reach the API server at " + server + " after 3 attempts", start: "the API server does not answer"},
		{name: "missing permission is an answer", results: []error{errors.New("missing permission: list services")}, calls: 1,
			err: "missing permission: list services", start: "lacks permissions"},
		{name: "forbidden is an answer", results: []error{fmt.Errorf("checking permissions: %w", forbidden)}, calls: 1,
			err: "forbidden", start: "lacks permissions"},
		{name: "unauthorized is an answer", results: []error{fmt.Errorf("checking permissions: %w", apierrors.NewUnauthorized("bad token"))}, calls: 1,
			err: "bad token", start: "rejects rulegen's credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			calls := 0
			err := waitForAPIServer(context.Background(), fc, server, func(ctx context.Context) error {
				if _, ok := ctx.Deadline(); !ok {
					t.Errorf("attempt %d without a timeout", calls+1)
				}
				calls++
				return tc.results[min(calls, len(tc.results))-1]
			}, log)
			if calls != tc.calls {
				t.Errorf("%d attempts, want %d", calls, tc.calls)
			}
			if n := strings.Count(logs.String(), "cannot reach the API server; retrying"); n != tc.warnings {
				t.Errorf("%d warnings, want %d:\n%s", n, tc.warnings, logs.String())
			}
			if tc.warnings > 0 && (!strings.Contains(logs.String(), "server="+server) || !strings.Contains(logs.String(), "KUBERNETES_SERVICE_HOST")) {
				t.Errorf("the warning names neither the server nor the way out:\n%s", logs.String())
			}
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil && !strings.Contains(describeStartError(err), tc.start) {
				t.Errorf("start error %q, want one with %q", describeStartError(err), tc.start)
			}
			if errors.Is(err, errUnreachable) && !strings.Contains(err.Error(), "control-plane endpoint") {
				t.Errorf("the final error lacks the bootstrap hint: %v", err)
			}
		})
	}
}
