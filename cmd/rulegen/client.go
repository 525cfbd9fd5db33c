package main

// The API client: how rulegen finds and reaches the API server, and what it
// says when it cannot. See the README, "Installing on a cluster".

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/url"
	"slices"
	"strings"
	"time"

	flag "github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// clientConnection is the API client's settings: kube-proxy's
// clientConnection (componentbaseconfig.ClientConnectionConfiguration)
// but the kubeconfig, which is options.kubeconfig. The defaults are
// kube-proxy's (SetDefaults_KubeProxyConfiguration).
type clientConnection struct {
	// qps and burst limit the client's request rate (--kube-api-qps,
	// --kube-api-burst): the informers' lists and watches, and the
	// permission check at start.
	qps   float32
	burst int32
	// contentType is the media type of request bodies, and the one asked
	// for when acceptContentTypes is empty (--kube-api-content-type).
	contentType string
	// acceptContentTypes is the Accept header, comma-separated
	// (--kube-api-accept-content-types; kube-proxy has only the config
	// field).
	acceptContentTypes string
}

// The client's defaults, kube-proxy's.
const (
	defaultKubeAPIQPS         = 5
	defaultKubeAPIBurst       = 10
	defaultKubeAPIContentType = runtime.ContentTypeProtobuf
)

// addClientFlags registers the API client's flags, with kube-proxy's names
// and defaults.
func addClientFlags(fs *flag.FlagSet, c *clientConnection) {
	c.contentType = defaultKubeAPIContentType
	fs.Float32Var(&c.qps, "kube-api-qps", defaultKubeAPIQPS, "requests per second to the API server (as kube-proxy's; 0: client-go's default, negative: no limit)")
	fs.Var((*nonNegativeInt32)(&c.burst), "kube-api-burst", "requests to the API server allowed in a burst above --kube-api-qps (as kube-proxy's)")
	c.burst = defaultKubeAPIBurst
	fs.Lookup("kube-api-burst").DefValue = fmt.Sprint(defaultKubeAPIBurst)
	fs.Var((*mediaType)(&c.contentType), "kube-api-content-type", "media type of requests to the API server, one of "+strings.Join(clientMediaTypes(), ", ")+" (as kube-proxy's)")
	fs.Var((*mediaTypeList)(&c.acceptContentTypes), "kube-api-accept-content-types", "the Accept header of requests to the API server, comma-separated media types (default: --kube-api-content-type, then any; kube-proxy's clientConnection.acceptContentTypes)")
}

// clientMediaTypes are the media types rulegen's client can encode and
// decode.
func clientMediaTypes() []string {
	var out []string
	for _, info := range scheme.Codecs.SupportedMediaTypes() {
		out = append(out, info.MediaType)
	}
	slices.Sort(out)
	return out
}

func checkMediaType(v string) error {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil || !slices.Contains(clientMediaTypes(), mt) {
		return fmt.Errorf("%q is not a media type rulegen's client speaks (%s)", v, strings.Join(clientMediaTypes(), ", "))
	}
	return nil
}

// mediaType is a flag value: one media type the client speaks.
type mediaType string

func (v *mediaType) String() string { return string(*v) }
func (v *mediaType) Type() string   { return "string" }

func (v *mediaType) Set(s string) error {
	if err := checkMediaType(s); err != nil {
		return err
	}
	*v = mediaType(s)
	return nil
}

// mediaTypeList is a flag value: an Accept header of media types the
// client speaks, each with optional parameters (q=0.9); empty is none.
type mediaTypeList string

func (v *mediaTypeList) String() string { return string(*v) }
func (v *mediaTypeList) Type() string   { return "string" }

func (v *mediaTypeList) Set(s string) error {
	if strings.TrimSpace(s) != "" {
		for _, part := range strings.Split(s, ",") {
			if err := checkMediaType(strings.TrimSpace(part)); err != nil {
				return err
			}
		}
	}
	*v = mediaTypeList(s)
	return nil
}

// bootstrapHint is what an operator needs to know when the API server does
// not answer: on a node without kube-proxy nothing but rulegen itself
// serves the kubernetes Service's ClusterIP, which in-cluster config (and
// many kubeconfigs) point at.
const bootstrapHint = "if this is the kubernetes Service's ClusterIP, only rulegen itself serves it on a node without kube-proxy: " +
	"give rulegen the control-plane endpoint (clientConnection.kubeconfig as deploy/kubeconfig.conf, or KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; " +
	`README, "Installing on a cluster")`

// restConfig is the API client's configuration: from a kubeconfig and/or an
// API server URL (--master, which overrides the kubeconfig's), or
// in-cluster when neither is given, with o.client's rate limits and
// content types, as kube-proxy's createClient does. In-cluster config
// reads KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, which the
// kubelet sets to the kubernetes Service's ClusterIP unless the pod spec
// sets them.
func restConfig(o options) (*rest.Config, error) {
	if o.client.qps > 0 && o.client.burst <= 0 {
		return nil, fmt.Errorf("--kube-api-burst (clientConnection.burst) is %d: it must be greater than 0 when --kube-api-qps is (%g)", o.client.burst, o.client.qps)
	}
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
	cfg.QPS, cfg.Burst = o.client.qps, int(o.client.burst)
	cfg.ContentType, cfg.AcceptContentTypes = o.client.contentType, o.client.acceptContentTypes
	return cfg, nil
}

// newClient returns a client of the API server restConfig finds, that
// server's URL, and a client for the start's permission check. The check
// (a SelfSubjectAccessReview per permission, once per start) has a client
// without a rate limit of its own: on the shared one, at kube-proxy's
// default of 5 requests per second with a burst of 10, its 8 requests
// left the informers' first lists waiting about 0.4 s for the token bucket
// (kube-proxy makes no such check). Everything else goes through the
// limited client.
func newClient(o options) (client, check kubernetes.Interface, server string, err error) {
	cfg, err := restConfig(o)
	if err != nil {
		return nil, nil, "", err
	}
	if client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, nil, "", err
	}
	unlimited := rest.CopyConfig(cfg)
	unlimited.QPS = -1 // client-go makes no rate limiter for a negative QPS (0 would mean its default, 5)
	if check, err = kubernetes.NewForConfig(unlimited); err != nil {
		return nil, nil, "", err
	}
	return client, check, cfg.Host, nil
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
			log.Warn("cannot reach the API server; retrying", "server", server, "attempt", attempt, "attempts", fc.attempts,
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
