package manifest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
)

// FuzzLoad feeds arbitrary bytes to the loader as stdin. Whatever the
// input, the loader must not panic or hang; every error it returns must
// carry its source ("<stdin>: document N"); every object it keeps must
// have a source, a name, and a namespace unless it is a Node; and
// BuildState must then convert what was kept, reporting each refused
// object with its source. The seeds (testdata/fuzz/FuzzLoad) are the
// manifests of the golden scenarios and a few broken documents.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(svc + "---\n" + slice + "---\n" + node))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, errs := Load([]string{"-"}, bytes.NewReader(data))
		for _, err := range errs {
			var me *Error
			if !errors.As(err, &me) || me.Source.File != "<stdin>" || me.Source.Doc < 1 {
				t.Errorf("error without its source: %v", err)
			}
		}
		objs := len(o.Services) + len(o.Slices) + len(o.Nodes)
		check := func(kind string, obj any, ns, name string) {
			src := o.SourceOf(obj)
			if src.File != "<stdin>" || src.Doc < 1 {
				t.Errorf("%s %s/%s kept without its source (%v)", kind, ns, name, src)
			}
			if (kind != "Node") == (ns == "") {
				t.Errorf("%s %q/%q: namespace %q for a %s", kind, ns, name, ns, kind)
			}
		}
		for _, s := range o.Services {
			check("Service", s, s.Namespace, s.Name)
		}
		for _, s := range o.Slices {
			check("EndpointSlice", s, s.Namespace, s.Name)
		}
		for _, n := range o.Nodes {
			check("Node", n, n.Namespace, n.Name)
		}
		st, berrs := o.BuildState()
		for _, err := range berrs {
			var me *Error
			var oe *rules.ObjectError
			if !errors.As(err, &me) || !errors.As(err, &oe) || !strings.HasPrefix(err.Error(), "<stdin>: document ") {
				t.Errorf("BuildState error without its source or object: %v", err)
			}
		}
		if objs == 0 && (len(st.Ports()) > 0 || len(berrs) > 0) {
			t.Errorf("no objects read, yet BuildState has %d ports and %d errors", len(st.Ports()), len(berrs))
		}
	})
}
