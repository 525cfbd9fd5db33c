package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rulegen/rulegen/pkg/rules"
)

const svc = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  clusterIP: 10.96.0.10
  ports:
  - port: 80
`

const slice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- port: 8080
endpoints:
- addresses: [10.244.1.5]
`

const node = `apiVersion: v1
kind: Node
metadata:
  name: node-a
status:
  addresses:
  - type: InternalIP
    address: 192.168.1.10
`

// TestLoad feeds the loader the inputs a careless or hostile user gives it:
// each must be reported with its source, and only the bad object skipped.
func TestLoad(t *testing.T) {
	tests := []struct {
		name                    string
		input                   string
		services, slices, nodes int
		errs                    []string // each must appear in one error, in order
	}{
		{name: "valid", input: svc + "---\n" + slice + "---\n" + node, services: 1, slices: 1, nodes: 1},
		{name: "unknown field", input: strings.Replace(svc, "  - port: 80", "  - port: 80\n    protocoll: UDP", 1),
			errs: []string{`<stdin>: document 1: Service default/web: unknown field "spec.ports[0].protocoll": skipped`}},
		{name: "field names are case-sensitive", input: strings.Replace(svc, "  - port: 80", "  - port: 80\n    Protocol: UDP", 1),
			errs: []string{`unknown field "spec.ports[0].Protocol"`}},
		{name: "key given twice", input: strings.Replace(svc, "  clusterIP: 10.96.0.10", "  clusterIP: 10.96.0.10\n  clusterIP: 10.96.0.11", 1),
			errs: []string{`document 1: not valid YAML or JSON`}},
		{name: "kinds are case-sensitive", input: strings.Replace(svc, "kind: Service", "kind: service", 1),
			errs: []string{`document 1: unknown kind "service": kinds are case-sensitive (Service?)`}},
		{name: "wrong apiVersion", input: strings.Replace(slice, "discovery.k8s.io/v1", "discovery.k8s.io/v1beta1", 1),
			errs: []string{`EndpointSlice: apiVersion "discovery.k8s.io/v1beta1", want "discovery.k8s.io/v1"`}},
		{name: "other kinds are ignored", input: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n---\n" + svc, services: 1},
		{name: "no namespace is default", input: strings.Replace(svc, "  namespace: default\n", "", 1) + "---\n" + svc,
			services: 1, errs: []string{`<stdin>: document 2: Service default/web: given again (first at <stdin>: document 1): this one is skipped`}},
		{name: "duplicate slice", input: slice + "---\n" + slice, slices: 1, errs: []string{`document 2: EndpointSlice default/web-1: given again`}},
		{name: "duplicate node", input: node + "---\n" + node, nodes: 1, errs: []string{`document 2: Node node-a: given again`}},
		{name: "same name, other namespace", input: svc + "---\n" + strings.Replace(svc, "namespace: default", "namespace: other", 1), services: 2},
		{name: "binary input", input: svc + "---\n\x00\x00\x00", services: 1, errs: []string{"NUL byte"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs := Load([]string{"-"}, strings.NewReader(tc.input))
			if len(objs.Services) != tc.services || len(objs.Slices) != tc.slices || len(objs.Nodes) != tc.nodes {
				t.Errorf("got %d services, %d slices, %d nodes; want %d, %d, %d", len(objs.Services), len(objs.Slices), len(objs.Nodes), tc.services, tc.slices, tc.nodes)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tc.errs), errs)
			}
			for i, want := range tc.errs {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("error %d: %q lacks %q", i, errs[i], want)
				}
			}
			for _, s := range objs.Services {
				if s.Namespace != "default" && s.Namespace != "other" {
					t.Errorf("service namespace %q", s.Namespace)
				}
			}
		})
	}
}

// TestLoadBoundedSources: a FIFO in a directory is skipped (opening it would
// block until a writer comes), and an endless device ends with an error
// instead of filling memory. Both must finish quickly; the test fails by
// timing out otherwise.
func TestLoadBoundedSources(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(svc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "b.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		objs, errs := Load([]string{dir, "/dev/zero"}, nil)
		if len(objs.Services) != 1 {
			t.Errorf("got %d services, want the one in a.yaml", len(objs.Services))
		}
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		all := strings.Join(msgs, "\n")
		for _, want := range []string{"b.yaml: not a regular file", "/dev/zero: document 1: cannot read: holds a NUL byte"} {
			if !strings.Contains(all, want) {
				t.Errorf("errors lack %q:\n%s", want, all)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Load blocked on a FIFO or an endless file")
	}
}

// TestWithSource: a conflict found when planning names the file and
// document of the service it is about.
func TestWithSource(t *testing.T) {
	objs, errs := Load([]string{"-"}, strings.NewReader(svc))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	_, convErrs := objs.BuildState()
	if len(convErrs) > 0 {
		t.Fatal(convErrs)
	}
	err := objs.WithSource(&rulesObjectError)
	if got, want := err.Error(), "<stdin>: document 1: Service default/web: spec.externalIPs[0]: taken"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

var rulesObjectError = rules.ObjectError{Kind: "Service", Namespace: "default", Name: "web", Field: "spec.externalIPs[0]", Reason: "taken"}
