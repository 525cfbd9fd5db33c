// Package manifest reads Services, EndpointSlices and Nodes from manifest
// files (YAML or JSON, multi-document, `kind: List` as kubectl prints it) and
// builds the rules.State that --dry-run, --apply and trace render from.
//
// Every problem is reported with the file, the document number (from 1) and
// for a List the item index, plus the object and field; the bad object is
// skipped and everything else is kept.
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
}

// SourceOf returns where obj was read.
func (o *Objects) SourceOf(obj any) Source { return o.sources[obj] }

// Load reads every path: a file, a directory (its *.yaml, *.yml and *.json
// files, recursively, in name order) or "-" for stdin. A file that cannot be
// read is an error; so is a document that cannot be parsed, and the loader
// moves on to the next document.
func Load(paths []string, stdin io.Reader) (*Objects, []error) {
	o := &Objects{sources: map[any]Source{}}
	var errs []error
	for _, p := range paths {
		if p == "-" {
			errs = append(errs, o.read("<stdin>", stdin)...)
			continue
		}
		files, err := expand(p)
		if err != nil {
			errs = append(errs, err)
			continue
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
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				files = append(files, path)
			}
		}
		return nil
	})
	slices.Sort(files)
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("%s: no .yaml, .yml or .json files", p)
	}
	return files, err
}

type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func (o *Objects) read(name string, r io.Reader) []error {
	var errs []error
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
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
		js, err := yaml.YAMLToJSON(raw)
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
		return nil // other kinds (Deployments, Endpoints, …) are not rulegen's business
	}
	if err := json.Unmarshal(js, obj); err != nil {
		return []error{&Error{src, fmt.Errorf("%s: %w", tm.Kind, err)}}
	}
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
