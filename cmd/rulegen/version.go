package main

import (
	"runtime/debug"
)

// version is rulegen's release, set when building:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/rulegen
//
// (make build sets it from `git describe`). Empty: the module version Go
// recorded, if any.
var version string

// versionString is what --version prints and the daemon logs:
// "rulegen VERSION (commit SHA)", the commit as Go's build stamped it, with
// "-dirty" when the work tree had changes.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return formatVersion(version, bi, ok)
}

func formatVersion(v string, bi *debug.BuildInfo, ok bool) string {
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
	if commit == "" {
		commit = "unknown"
	} else if dirty {
		commit += "-dirty"
	}
	return "rulegen " + v + " (commit " + commit + ")"
}
