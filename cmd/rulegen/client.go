package main

// The API client: how rulegen finds and reaches the API server, and what it
// says when it cannot. See the README, "Installing on a cluster".

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// bootstrapHint is what an operator needs to know when the API server does
// not answer: on a node without kube-proxy nothing but rulegen itself
// serves the kubernetes Service's ClusterIP, which in-cluster config (and
// many kubeconfigs) point at.
const bootstrapHint = "if this is the kubernetes Service's ClusterIP, only rulegen itself serves it on a node without kube-proxy: " +
	"give rulegen the control-plane endpoint (clientConnection.kubeconfig as deploy/kubeconfig.conf, or KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; " +
	`README, "Installing on a cluster")`

// restConfig is the API client's configuration: from a kubeconfig and/or an
// API server URL (--master, which overrides the kubeconfig's), or
// in-cluster when neither is given, as kube-proxy's createClient does.
// In-cluster config reads KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT, which the kubelet sets to the kubernetes
// Service's ClusterIP unless the pod spec sets them.
func restConfig(o options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" || o.master != "" {
		cfg, err = clientcmd.BuildConfigFromFlags(o.master, o.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			err = fmt.Errorf("not running in a cluster (%v): give --kubeconfig", err)
		}
	}
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "rulegen"
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// newClient returns a client of the API server restConfig finds, and that
// server's URL.
func newClient(o options) (kubernetes.Interface, string, error) {
	cfg, err := restConfig(o)
	if err != nil {
		return nil, "", err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	return c, cfg.Host, nil
}

// errUnreachable marks the error of waitForAPIServer when no attempt got
// an answer from the API server.
var errUnreachable = errors.New("cannot reach the API server")

// firstContact is how long the daemon tries to reach the API server at
// start: attempts of timeout each, a second apart. A node whose API
// server is unreachable does not wait silently: every failed attempt is
// logged with the server's URL, and the daemon exits after the last one
// (the kubelet restarts it, with back-off).
type firstContact struct {
	attempts int
	timeout  time.Duration
	pause    time.Duration
}

var defaultFirstContact = firstContact{attempts: 3, timeout: 10 * time.Second, pause: time.Second}

// waitForAPIServer runs check (the permission check, the daemon's first
// request) until the API server answers it. An attempt that got no
// answer (a transport error: no route, a timeout, a refused connection, a
// TLS failure) is logged as a warning naming server and retried; an
// answer, whatever it says, ends the wait and is returned. After the last
// attempt the error wraps errUnreachable and carries the server and
// bootstrapHint.
func waitForAPIServer(ctx context.Context, fc firstContact, server string, check func(context.Context) error, log *slog.Logger) error {
	var err error
	for attempt := 1; attempt <= fc.attempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, fc.timeout)
		err = check(actx)
		cancel()
		var ue *url.Error
		if err == nil || !errors.As(err, &ue) || ctx.Err() != nil {
			return err
		}
		if attempt < fc.attempts {
			log.Warn("cannot reach the API server; retrying", "server", server, "attempt", attempt, "of", fc.attempts,
				"error", err.Error(), "hint", bootstrapHint)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(fc.pause):
			}
		}
	}
	return fmt.Errorf("%w at %s after %d attempts (%v): %s", errUnreachable, server, fc.attempts, err, bootstrapHint)
}

// describeStartError turns the error of the daemon's first request into
// the message it exits with.
func describeStartError(err error) string {
	switch {
	case errors.Is(err, errUnreachable):
		return "cannot run: the API server does not answer"
	case apierrors.IsUnauthorized(err):
		return "cannot run: the API server rejects rulegen's credentials (the kubeconfig's token or certificate)"
	}
	return "cannot run: the service account lacks permissions (see deploy/rbac.yaml)"
}
