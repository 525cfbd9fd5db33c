package property

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
	"github.com/rulegen/rulegen/test/netnstest"
)

// FuzzRender renders arbitrary converted clusters (rulestest.
// ObjectsFromBytes, with its node settings) in both families with both
// backends, through the renderers' public entry points (nftables.Render,
// iptables.Render). The output must be the same byte for byte when
// rendered twice, hold no line the model did not ask for (the benign
// mirror of check), and load with `nft -c -f`, `iptables-restore --test`
// and `ip6tables-restore --test` in a throwaway namespace.
//
// The kernel check needs root: without it the fuzz target still checks
// the rest and says so, except under CI (CI=true), where it fails.
func FuzzRender(f *testing.F) {
	f.Add([]byte{})
	ns := fuzzNamespace(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		o := rulestest.ObjectsFromBytes(rulestest.NewBytes(data))
		m := modelOf(o)
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			nft, ipt := m.render(fam)
			nft2, ipt2 := m.render(fam)
			if nft != nft2 || ipt != ipt2 {
				t.Errorf("%s: rendering the same model twice gives different output", fam)
			}
		}
		c := &checker{t: t, ns: ns, pending: map[string][]script{}}
		check(c, "fuzz input", m)
		c.finish()
	})
}

// modelOf converts the objects as the daemon does (a refused object is left
// out; a later one of the same name replaces an earlier one).
func modelOf(o *rulestest.Objects) *model {
	_, cfg, _ := o.Model()
	m := &model{ports: map[rules.ServiceKey][]*rules.ServicePort{}, node: cfg.Node, masq: cfg.MasqueradeAll, cfg: cfg}
	for _, svc := range o.Services {
		key := rules.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
		if ports, err := rules.ConvertService(svc); err == nil && len(ports) > 0 {
			m.ports[key] = ports
		} else {
			delete(m.ports, key)
		}
	}
	for _, es := range o.Slices {
		if sl, _ := rules.ConvertSlice(es); sl != nil {
			m.slices = append(m.slices, sl)
		}
	}
	return m
}

// fuzzNamespace returns the namespace the kernel tools run in, or nil when
// they cannot run here (not root, a tool missing, -short): FuzzRender then
// checks what it can without them, except under CI, where that fails.
func fuzzNamespace(f *testing.F) *netnstest.NS {
	why := ""
	switch {
	case testing.Short() && !netnstest.InCI(): // as netnstest.Require: -short does not skip under CI
		why = "-short"
	case os.Geteuid() != 0:
		why = "not root"
	default:
		for _, tool := range []string{"ip", "nft", "iptables-restore", "ip6tables-restore"} {
			if _, err := exec.LookPath(tool); err != nil {
				why = fmt.Sprintf("%s is not on PATH", tool)
				break
			}
		}
	}
	if why == "" {
		return netnstest.New(f, "fuzz")
	}
	if netnstest.InCI() {
		f.Fatalf("FuzzRender: %s: under CI the kernel tools must check the output", why)
	}
	f.Logf("FuzzRender: %s: the output is not checked by nft and iptables-restore", why)
	return nil
}
