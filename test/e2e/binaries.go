package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binaries are the programs the kernel and cluster suites run: rulegen
// itself and the test server/client.
type Binaries struct {
	Rulegen, Server string
	dir             string
}

// BuildBinaries builds rulegen and the test server into a temporary
// directory (for a TestMain); Remove deletes it.
func BuildBinaries() (*Binaries, error) { return BuildBinariesTags("") }

// BuildBinariesTags is BuildBinaries with Go build tags for rulegen (the
// soak harness builds it with -tags soakfaults).
func BuildBinariesTags(tags string) (*Binaries, error) {
	dir, err := os.MkdirTemp("", "rulegen-test-bin-")
	if err != nil {
		return nil, err
	}
	b := &Binaries{Rulegen: filepath.Join(dir, "rulegen"), Server: filepath.Join(dir, "testserver"), dir: dir}
	for out, pkg := range map[string]string{b.Rulegen: "github.com/rulegen/rulegen/cmd/rulegen", b.Server: "github.com/rulegen/rulegen/test/e2e/testserver"} {
		args := []string{"build", "-o", out}
		if tags != "" && out == b.Rulegen {
			args = append(args, "-tags", tags)
		}
		if msg, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
		}
	}
	return b, nil
}

// Remove deletes the binaries.
func (b *Binaries) Remove() { os.RemoveAll(b.dir) }

// RunTests is a TestMain: it builds the binaries, hands their paths to set,
// runs the tests and removes the binaries, returning the exit code.
func RunTests(m *testing.M, set func(rulegen, server string)) int {
	b, err := BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer b.Remove()
	set(b.Rulegen, b.Server)
	return m.Run()
}
