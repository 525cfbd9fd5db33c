// Package manifest reads Services, EndpointSlices and Nodes from manifest
// files (YAML or JSON, multi-document, `kind: List` as kubectl prints it) and
// builds the rules.State that --dry-run, --apply and trace render from.
//
// Every problem is reported with the file, the document number (from 1) and
// for a List the item index, plus the object and field; the bad object is
// skipped and everything else is kept.
//
// The loader is as strict as the API server, which the daemon's input has
// already been through and -f files have not: field names are
// case-sensitive, unknown and duplicate fields are errors, kinds and
// apiVersions must be the ones rulegen reads (a Deployment or a ConfigMap is
// ignored, `kind: service` is an error), a missing namespace is "default"
// as kubectl makes it, and the same object given twice is an error (the
// second is skipped). Input is bounded: a directory yields only its regular
// files (a FIFO named x.yaml would block forever), a source may hold at most
// MaxSourceBytes, and a NUL byte (never in YAML or JSON: /dev/zero, a binary)
// ends that source with an error.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/rulegen/rulegen/pkg/rules"
)

// Source says where an object came from: "file: document N[, item M]".
type Source struct {
	File string
	Doc  int
	Item int // -1 when the document is not a List
}

// String returns "file: document N" or "file: document N, item M".
func (s Source) String() string {
	if s.Item >= 0 {
		return fmt.Sprintf("%s: document %d, item %d", s.File, s.Doc, s.Item)
	}
	return fmt.Sprintf("%s: document %d", s.File, s.Doc)
}

// Error is a problem with one document or object, with its source.
type Error struct {
	Source Source
	Err    error
}

// Error implements error.
func (e *Error) Error() string { return e.Source.String() + ": " + e.Err.Error() }

// Unwrap returns the underlying error (often a *rules.ObjectError).
func (e *Error) Unwrap() error { return e.Err }

// Objects are the objects found, each with its source.
type Objects struct {
	Services []*v1.Service
	Slices   []*discovery.EndpointSlice
	Nodes    []*v1.Node
	sources  map[any]Source
	byName   map[objectID]Source // first source of each kind/namespace/name
}

type objectID struct{ kind, namespace, name string }

// SourceOf returns where obj was read.
func (o *Objects) SourceOf(obj any) Source { return o.sources[obj] }

// WithSource adds the source of the object err names (a *rules.ObjectError,
// such as a planner conflict) to err. Errors that name no object read here
// are returned as they are.
func (o *Objects) WithSource(err error) error {
	var oe *rules.ObjectError
	if !errors.As(err, &oe) {
		return err
	}
	if src, ok := o.byName[objectID{oe.Kind, oe.Namespace, oe.Name}]; ok {
		return &Error{src, err}
	}
	return err
}

// MaxSourceBytes bounds what is read from one file or stdin (1 GiB: a
// `kubectl get -o yaml` of 50,000 services and their slices is about a
// quarter of that).
const MaxSourceBytes = 1 << 30

// boundedReader fails a source that is larger than MaxSourceBytes or holds a
// NUL byte, so that /dev/zero or a binary cannot fill memory.
type boundedReader struct {
	r    io.Reader
	left int64
}

var errNUL = errors.New("holds a NUL byte: not YAML or JSON (a binary file or a device?)")

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("larger than %d bytes: not read further", int64(MaxSourceBytes))
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if i := bytes.IndexByte(p[:n], 0); i >= 0 {
		return i, errNUL
	}
	return n, err
}

// Load reads every path: a file, a directory (its *.yaml, *.yml and *.json
// files, recursively, in name order) or "-" for stdin. A file that cannot be
// read is an error; so is a document that cannot be parsed, and the loader
// moves on to the next document.
func Load(paths []string, stdin io.Reader) (*Objects, []error) {
	o := &Objects{sources: map[any]Source{}, byName: map[objectID]Source{}}
	var errs []error
	for _, p := range paths {
		if p == "-" {
			errs = append(errs, o.read("<stdin>", stdin)...)
			continue
		}
		files, err := expand(p)
		if err != nil {
			errs = append(errs, err) // and read the files that were found
		}
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, o.read(f, fh)...)
			fh.Close()
		}
	}
	return o, errs
}

func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	var skipped []error
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			if d.IsDir() {
				return nil
			}
			// Only regular files (or links to them): opening a FIFO blocks
			// until a writer comes, a device may never end.
			st, err := os.Stat(path)
			if err != nil {
				skipped = append(skipped, err)
				return nil
			}
			if !st.Mode().IsRegular() {
				skipped = append(skipped, fmt.Errorf("%s: not a regular file (%s): skipped", path, st.Mode().Type()))
				return nil
			}
			files = append(files, path)
		}
		return nil
	})
	slices.Sort(files)
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("%s: no .yaml, .yml or .json files", p)
	}
	return files, errors.Join(append(skipped, err)...)
}

type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func (o *Objects) read(name string, r io.Reader) []error {
	var errs []error
	yr := utilyaml.NewYAMLReader(bufio.NewReader(&boundedReader{r: r, left: MaxSourceBytes}))
	for doc := 1; ; doc++ {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		src := Source{File: name, Doc: doc, Item: -1}
		if err != nil {
			errs = append(errs, &Error{src, fmt.Errorf("cannot read: %w", err)})
			break
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			doc-- // an empty document (e.g. a leading "---") is not counted
			continue
		}
		js, err := yaml.YAMLToJSONStrict(raw) // a key given twice is an error, as for kubectl
		if err != nil {
			errs = append(errs, &Error{src, fmt.Errorf("not valid YAML or JSON: %w", err)})
			continue
		}
		if err := o.decode(js, src); err != nil {
			errs = append(errs, err...)
		}
	}
	return errs
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
		}
	}
	return out
}

// kinds are the objects rulegen reads, with the apiVersion each must have.
var kinds = map[string]string{
	"Service":       "v1",
	"EndpointSlice": "discovery.k8s.io/v1",
	"Node":          "v1",
}

func (o *Objects) decode(js []byte, src Source) []error {
	var tm typeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return []error{&Error{src, fmt.Errorf("not an object: %w", err)}}
	}
	var obj any
	switch tm.Kind {
	case "List", "ServiceList", "EndpointSliceList", "NodeList":
		var errs []error
		for i, item := range tm.Items {
			s := src
			s.Item = i
			errs = append(errs, o.decode(item, s)...)
		}
		return errs
	case "Service":
		obj = &v1.Service{}
	case "EndpointSlice":
		obj = &discovery.EndpointSlice{}
	case "Node":
		obj = &v1.Node{}
	case "":
		return []error{&Error{src, errors.New("no kind")}}
	default:
		for k := range kinds {
			if strings.EqualFold(tm.Kind, k) || strings.EqualFold(tm.Kind, k+"List") {
				return []error{&Error{src, fmt.Errorf("unknown kind %q: kinds are case-sensitive (%s?)", tm.Kind, k)}}
			}
		}
		return nil // other kinds (Deployments, Endpoints, …) are not rulegen's business
	}
	if want := kinds[tm.Kind]; tm.APIVersion != want {
		return []error{&Error{src, fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, want)}}
	}
	// Case-sensitive and strict, as the API server decodes: "protocoll: UDP"
	// or "Protocol: UDP" must not be silently dropped.
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return []error{&Error{src, fmt.Errorf("%s: %w", tm.Kind, err)}}
	}
	if len(strict) > 0 {
		var msgs []string
		for _, e := range strict {
			msgs = append(msgs, e.Error())
		}
		return []error{&Error{src, fmt.Errorf("%s %s: %s: skipped", tm.Kind, objectName(obj), strings.Join(msgs, "; "))}}
	}
	if m, ok := obj.(interface {
		GetNamespace() string
		SetNamespace(string)
	}); ok && m.GetNamespace() == "" && tm.Kind != "Node" {
		m.SetNamespace("default") // as kubectl apply without -n
	}
	id := objectID{tm.Kind, namespaceOf(obj), nameOf(obj)}
	if first, dup := o.byName[id]; dup {
		return []error{&Error{src, fmt.Errorf("%s %s: given again (first at %s): this one is skipped", tm.Kind, objectName(obj), first)}}
	}
	o.byName[id] = src
	o.sources[obj] = src
	switch x := obj.(type) {
	case *v1.Service:
		o.Services = append(o.Services, x)
	case *discovery.EndpointSlice:
		o.Slices = append(o.Slices, x)
	case *v1.Node:
		o.Nodes = append(o.Nodes, x)
	}
	return nil
}

type named interface {
	GetNamespace() string
	GetName() string
}

func namespaceOf(obj any) string { return obj.(named).GetNamespace() }
func nameOf(obj any) string      { return obj.(named).GetName() }

// objectName is "namespace/name", or "name" for a cluster-scoped object.
func objectName(obj any) string {
	if ns := namespaceOf(obj); ns != "" {
		return ns + "/" + nameOf(obj)
	}
	return nameOf(obj)
}

// BuildState converts the objects into a rules.State, reporting (and
// skipping) every invalid object or endpoint with its source.
func (o *Objects) BuildState() (*rules.State, []error) {
	st := rules.NewState()
	var errs []error
	for _, svc := range o.Services {
		ports, err := rules.ConvertService(svc)
		if err != nil {
			errs = append(errs, &Error{o.sources[svc], err})
			continue
		}
		st.SetService(rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}, ports)
	}
	for _, es := range o.Slices {
		sl, serrs := rules.ConvertSlice(es)
		for _, err := range serrs {
			errs = append(errs, &Error{o.sources[es], err})
		}
		if sl != nil {
			st.SetSlice(sl)
		}
	}
	return st, errs
}

// Node returns the Node object named name, if the manifests hold one.
func (o *Objects) Node(name string) *v1.Node {
	for _, n := range o.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}
