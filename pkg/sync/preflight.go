package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"

	authz "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is one API permission the daemon needs.
type Permission struct {
	Verb, Group, Resource string
}

func (p Permission) String() string {
	g := p.Group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s (%s), cluster-wide", p.Verb, p.Resource, g)
}

// Permissions are exactly what the daemon's informers use; deploy/rbac.yaml
// grants these and nothing else.
var Permissions = []Permission{
	{"list", "", "services"}, {"watch", "", "services"},
	{"list", "discovery.k8s.io", "endpointslices"}, {"watch", "discovery.k8s.io", "endpointslices"},
	{"list", "", "nodes"}, {"watch", "", "nodes"},
	{"list", "networking.k8s.io", "servicecidrs"}, {"watch", "networking.k8s.io", "servicecidrs"},
}

// CheckPermissions asks the API server (SelfSubjectAccessReview, which every
// authenticated user may do) whether the daemon's identity has every
// permission it needs, so that a missing one fails the start with its name
// instead of leaving a watch retrying forever.
func CheckPermissions(ctx context.Context, client kubernetes.Interface) error {
	failed := make([]error, len(Permissions))  // the request failed
	missing := make([]error, len(Permissions)) // the answer is no
	ask := func(i int) {
		p := Permissions[i]
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authz.SelfSubjectAccessReview{
			Spec: authz.SelfSubjectAccessReviewSpec{ResourceAttributes: &authz.ResourceAttributes{
				Verb: p.Verb, Group: p.Group, Resource: p.Resource}},
		}, metav1.CreateOptions{})
		switch {
		case err != nil:
			failed[i] = fmt.Errorf("checking permissions: %w", err)
		case !r.Status.Allowed:
			missing[i] = fmt.Errorf("missing permission: %s", p)
		}
	}
	if len(Permissions) == 0 {
		return nil
	}
	// The first alone (it opens the connection, which the others then
	// share), the others at once: one after another, they were most of
	// the 30 ms between a start and its first list.
	ask(0)
	if failed[0] != nil {
		return failed[0]
	}
	var wg gosync.WaitGroup
	for i := 1; i < len(Permissions); i++ {
		wg.Go(func() { ask(i) })
	}
	wg.Wait()
	// The first failed request (in the order of Permissions), else every
	// missing permission.
	for _, err := range failed {
		if err != nil {
			return err
		}
	}
	return errors.Join(missing...)
}
