package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	flag "github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// maxConfigBytes bounds the config file: it is a handful of settings, and a
// mistyped path (a device, a huge log) must fail rather than fill memory.
const maxConfigBytes = 1 << 20

// loadConfig reads the --config file and sets every flag the command line
// did not set: flags given on the command line win. The file is either
// kube-proxy's KubeProxyConfiguration (see kpconfig.go), or, deprecated, the
// flat format of rulegen 0.x, told apart by the absence of apiVersion and
// kind. It returns the warnings to print at start-up; the error holds every
// problem found, one per line, each naming the file and the field.
func loadConfig(fs *flag.FlagSet, path string) (warnings []string, err error) {
	b, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	if !isStructuredConfig(b) {
		warnings = append(warnings, path+": the flat format (keys named after flags) is deprecated and will be removed in the next release: "+
			"write a "+kubeProxyKind+" ("+kubeProxyAPIVersion+"), with rulegen's own settings in a "+rulegenKind+" document (see the README)")
		err := loadFlatConfig(fs, path, b)
		if err != nil && looksLikeKubeProxyConfig(b) {
			err = errors.Join(err, fmt.Errorf("%s: these are %s fields: add apiVersion: %s and kind: %s", path, kubeProxyKind, kubeProxyAPIVersion, kubeProxyKind))
		}
		return warnings, err
	}
	mode := ""
	for _, name := range []string{"proxy-mode", "backend"} {
		if f := fs.Lookup(name); f != nil && f.Changed {
			mode = f.Value.String()
		}
	}
	r := loadStructuredConfig(b, mode)
	if len(r.errs) == 0 {
		r.apply(fs)
	}
	for _, w := range r.warnings {
		warnings = append(warnings, path+": "+w)
	}
	errs := make([]error, len(r.errs))
	for i, e := range r.errs {
		errs[i] = fmt.Errorf("%s: %w", path, e)
	}
	return warnings, errors.Join(errs...)
}

// readConfigFile reads a config file of bounded size.
func readConfigFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > maxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than a config file can be (%d)", path, st.Size(), maxConfigBytes)
	}
	return os.ReadFile(path)
}

// loadFlatConfig reads the deprecated flat format: a YAML mapping whose
// keys are flag names, in any case and with or without dashes (node-name,
// nodeName, clusterCidr). Keys are applied in sorted order. Every unknown
// key, and every pair of keys that name the same flag (nodeName and
// node-name), is an error, all reported at once, so that a typo is never
// ignored and no setting depends on map order.
func loadFlatConfig(fs *flag.FlagSet, path string, b []byte) error {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs []error
	byFlag := map[string]string{} // flag name -> the key that set it
	for _, key := range keys {
		val := m[key]
		var f *flag.Flag
		fs.VisitAll(func(c *flag.Flag) {
			if normalize(c.Name) == normalize(key) {
				f = c
			}
		})
		if f == nil || f.Name == "config" {
			errs = append(errs, fmt.Errorf("%s: unknown setting %q", path, key))
			continue
		}
		if other, ok := byFlag[f.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: %q and %q are the same setting (--%s): give it once", path, other, key, f.Name))
			continue
		}
		byFlag[f.Name] = key
		if f.Changed {
			continue // the command line wins
		}
		var s string
		switch v := val.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, x := range v {
				parts[i] = fmt.Sprint(x)
			}
			s = strings.Join(parts, ",")
		case map[string]any:
			errs = append(errs, fmt.Errorf("%s: %s: a value, not a mapping, expected", path, key))
			continue
		case nil:
			errs = append(errs, fmt.Errorf("%s: %s: no value", path, key))
			continue
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(f.Name, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", path, key, err))
			continue
		}
		// Set marks the flag as changed; a second key for it is caught above.
	}
	return errors.Join(errs...)
}

// normalize folds case and drops dashes: "nodeName", "node-name" and
// "NODENAME" are the same setting.
func normalize(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "")) }
