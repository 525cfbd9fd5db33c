package main

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected files of testdata/cli from the current output")

// TestCLIGolden runs each scenario of testdata/cli as a user would type it
// and compares what rulegen prints and its exit status with the expected
// files. A scenario is a directory:
//
//	args    the command line, one argument per line ({dir} is the scenario's directory)
//	stdin   optional: standard input (for -f -)
//	stdout, stderr, exit    the expected output and exit status
//
// Most scenarios are reproducers of crafted or careless input: each must
// be reported (which object, which field, why), skipped, and never reach the
// rules. `go test ./cmd/rulegen -run TestCLIGolden -update` rewrites the
// expected files; review the diff like code.
func TestCLIGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/cli/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios in testdata/cli (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatal(err)
			}
			var args []string
			for _, a := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
				args = append(args, strings.ReplaceAll(a, "{dir}", dir))
			}
			stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
			code, stdout, stderr := runCLI(t, string(stdin), args...)
			got := map[string]string{
				"stdout": stdout,
				"stderr": strings.ReplaceAll(stderr, dir, "{dir}"),
				"exit":   strconv.Itoa(code) + "\n",
			}
			for name, out := range got {
				path := filepath.Join(dir, name)
				if *update {
					if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if string(want) != out {
					t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, out, want)
				}
			}
		})
	}
}
