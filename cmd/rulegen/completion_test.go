package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCompletion sources `rulegen completion bash` in a real bash, asks it
// to complete partial command lines, and checks the answers.
func TestCompletion(t *testing.T) {
	// bash is part of every machine this runs on (.ci/run is a bash
	// script): its absence is a failure, not a reason to skip.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash, which runs the completion script: %v", err)
	}
	var out, errb strings.Builder
	if code := run([]string{"completion", "bash"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	script := filepath.Join(t.TempDir(), "rulegen.bash")
	if err := os.WriteFile(script, []byte(out.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		line      []string // the words typed, the last one being completed
		want, not []string
	}{
		{name: "subcommands", line: []string{"rulegen", "ex"}, want: []string{"explain"}},
		{name: "every subcommand", line: []string{"rulegen", ""}, want: []string{"trace", "explain", "completion"}},
		{name: "daemon flags", line: []string{"rulegen", "--hostname-o"}, want: []string{"--hostname-override"}},
		{name: "kube-proxy's names too", line: []string{"rulegen", "--proxy"}, want: []string{"--proxy-mode"}},
		{name: "not the kube-proxy flags rulegen ignores", line: []string{"rulegen", "--ipvs"}, not: []string{"--ipvs-scheduler"}},
		{name: "trace's own flags", line: []string{"rulegen", "trace", "--in-"}, want: []string{"--in-interface"}},
		{name: "trace flags not offered to the daemon", line: []string{"rulegen", "--in-"}, not: []string{"--in-interface"}},
		{name: "explain takes --output", line: []string{"rulegen", "explain", "--outp"}, want: []string{"--output"}},
		{name: "shells", line: []string{"rulegen", "completion", ""}, want: []string{"bash", "zsh"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var words []string
			for _, w := range tc.line {
				words = append(words, "'"+w+"'")
			}
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c",
				`source "$1"; COMP_WORDS=(`+strings.Join(words, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _rulegen; printf '%s\n' "${COMPREPLY[@]}"`,
				"bash", script)
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, got)
			}
			replies := strings.Fields(string(got))
			for _, w := range tc.want {
				if !slices.Contains(replies, w) {
					t.Errorf("completing %q: %v does not offer %s", tc.line, replies, w)
				}
			}
			for _, w := range tc.not {
				if slices.Contains(replies, w) {
					t.Errorf("completing %q: %v offers %s", tc.line, replies, w)
				}
			}
		})
	}
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"completion", "bash", "zsh"}} {
		var stderr strings.Builder
		if code := run(args, nil, &strings.Builder{}, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "completion") {
			t.Errorf("rulegen %s: exit %d, %q; want exit 2 naming completion", strings.Join(args, " "), code, stderr.String())
		}
	}
}
