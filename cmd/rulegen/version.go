package main

import (
	"runtime/debug"
)

// version is rulegen's release, and commit the git commit it is built
// from, both set when building:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)" ./cmd/rulegen
//
// (make build sets them from git). An empty version is the module version
// Go recorded, if any. Go's own stamp (vcs.revision) wins over commit; it is
// missing when building with -buildvcs=false or in a git worktree, hence
// the variable.
var version, commit string

// versionString is what --version prints and the daemon logs:
// "rulegen VERSION (commit SHA)", the commit as Go's build stamped it, with
// "-dirty" when the work tree had changes.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return formatVersion(version, commit, bi, ok)
}

func formatVersion(v, ldCommit string, bi *debug.BuildInfo, ok bool) string {
	commit, dirty := "", false
	if ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if commit == "" && ldCommit != "" {
		commit = ldCommit // carries its own -dirty
	} else if commit == "" {
		commit = "unknown"
	} else if dirty {
		commit += "-dirty"
	}
	return "rulegen " + v + " (commit " + commit + ")"
}
