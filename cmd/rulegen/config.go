package main

import (
	"fmt"
	"os"
	"strings"

	flag "github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// loadConfig reads a YAML file of settings whose keys are flag names, in
// any case and with or without dashes (node-name, nodeName, clusterCidr),
// and sets every flag the command line did not set. An unknown key is an
// error, so that a typo is not ignored.
func loadConfig(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for key, val := range m {
		var f *flag.Flag
		fs.VisitAll(func(c *flag.Flag) {
			if normalize(c.Name) == normalize(key) {
				f = c
			}
		})
		if f == nil || f.Name == "config" {
			return fmt.Errorf("%s: unknown setting %q", path, key)
		}
		name := f.Name
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
		case float64:
			s = fmt.Sprint(v)
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(name, s); err != nil {
			return fmt.Errorf("%s: %s: %w", path, key, err)
		}
	}
	return nil
}

// normalize folds case and drops dashes: "nodeName", "node-name" and
// "NODENAME" are the same setting.
func normalize(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "")) }
