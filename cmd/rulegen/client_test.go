package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authz "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	t.Run("stopped while waiting", func(t *testing.T) {
		// SIGTERM during the first contact ends the wait at once.
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := waitForAPIServer(ctx, fc, server, func(context.Context) error {
			calls++
			cancel()
			return fmt.Errorf("checking permissions: %w", &url.Error{Op: "Post", URL: server, Err: context.Canceled})
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if calls != 1 || err == nil || errors.Is(err, errUnreachable) {
			t.Errorf("%d attempts, error %v; want 1 and the attempt's own error", calls, err)
		}
	})
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

// TestClientConnection: the API client gets kube-proxy's clientConnection
// settings, from the flags or the config file, with kube-proxy's defaults
// (5 requests per second, bursts of 10, protobuf), and its requests carry
// them on the wire.
func TestClientConnection(t *testing.T) {
	type seen struct{ accept, contentType string }
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, seen{r.Header.Get("Accept"), r.Header.Get("Content-Type")})
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodPost:
			fmt.Fprint(w, `{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","status":{"allowed":true}}`)
		default:
			fmt.Fprint(w, `{"kind":"ServiceList","apiVersion":"v1","metadata":{},"items":[]}`)
		}
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \""+srv.URL+"\"}\n"+
		"users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const protobuf, json = "application/vnd.kubernetes.protobuf", "application/json"
	tests := []struct {
		name       string
		args       []string
		config     string // a --config file's text
		qps        float32
		burst      int
		ct, accept string // the rest.Config's
		wireAccept string // the Accept header of a GET
		err        string
	}{
		{name: "kube-proxy's defaults", qps: 5, burst: 10, ct: protobuf, wireAccept: protobuf + ", */*"},
		{name: "flags", args: []string{"--kube-api-qps=20", "--kube-api-burst=30", "--kube-api-content-type=" + json},
			qps: 20, burst: 30, ct: json, wireAccept: json + ", */*"},
		{name: "accept content types", args: []string{"--kube-api-accept-content-types=" + json + "," + protobuf},
			qps: 5, burst: 10, ct: protobuf, accept: json + "," + protobuf, wireAccept: json + "," + protobuf},
		{name: "kubeadm's config file: zeros are kube-proxy's defaults", args: []string{"--config=testdata/kubeadm/config.conf"},
			qps: 5, burst: 10, ct: protobuf, wireAccept: protobuf + ", */*"},
		{name: "config file", config: kpHeader + "clientConnection:\n  qps: 1.5\n  burst: 3\n  contentType: " + json + "\n  acceptContentTypes: " + json + "\n",
			qps: 1.5, burst: 3, ct: json, accept: json, wireAccept: json},
		{name: "no burst with a rate limit", args: []string{"--kube-api-burst=0"}, err: "--kube-api-burst (clientConnection.burst) is 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			fs := newFlags(&o, io.Discard)
			if tc.config != "" {
				path := filepath.Join(t.TempDir(), "config.conf")
				if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
					t.Fatal(err)
				}
				tc.args = append(tc.args, "--config="+path)
			}
			if err := fs.Parse(append(tc.args, "--kubeconfig="+kubeconfig)); err != nil {
				t.Fatal(err)
			}
			if o.config != "" {
				if _, err := loadConfig(fs, o.config); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := restConfig(o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.QPS != tc.qps || cfg.Burst != tc.burst || cfg.ContentType != tc.ct || cfg.AcceptContentTypes != tc.accept || cfg.Host != srv.URL {
				t.Errorf("rest.Config: host %s, QPS %g, burst %d, content type %q, accept %q; want %s, %g, %d, %q, %q",
					cfg.Host, cfg.QPS, cfg.Burst, cfg.ContentType, cfg.AcceptContentTypes, srv.URL, tc.qps, tc.burst, tc.ct, tc.accept)
			}
			client, check, _, err := newClient(o)
			if err != nil {
				t.Fatal(err)
			}
			// The permission check of the start does not spend the
			// informers' rate limit: its client has none.
			if rl := check.AuthorizationV1().RESTClient().GetRateLimiter(); rl != nil {
				t.Errorf("the permission check's client has a rate limiter (%T)", rl)
			}
			if rl := client.CoreV1().RESTClient().GetRateLimiter(); (rl != nil) != (tc.qps >= 0) {
				t.Errorf("QPS %g: the client's rate limiter is %v", tc.qps, rl)
			}
			got = nil
			if _, err := client.CoreV1().Services("").List(context.Background(), metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authz.SelfSubjectAccessReview{}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if want := []seen{{tc.wireAccept, ""}, {tc.wireAccept, tc.ct}}; !slices.Equal(got, want) {
				t.Errorf("requests' Accept and Content-Type: %q, want %q", got, want)
			}
		})
	}
}
