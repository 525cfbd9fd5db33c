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

// loadConfig reads a YAML file of settings whose keys are flag names, in
// any case and with or without dashes (node-name, nodeName, clusterCidr),
// and sets every flag the command line did not set. Keys are applied in
// sorted order. Every unknown key, and every pair of keys that name the same
// flag (nodeName and node-name), is an error, all reported at once, so that
// a typo is never ignored and no setting depends on map order.
func loadConfig(fs *flag.FlagSet, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > maxConfigBytes {
		return fmt.Errorf("%s: %d bytes, more than a config file can be (%d)", path, st.Size(), maxConfigBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
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
