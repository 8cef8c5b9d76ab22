package promapi

import (
	"runtime"
	"runtime/debug"
)

// BuildInfo is what /api/v1/status/buildinfo reports: the aiops binary's
// build, in Prometheus's field names.
type BuildInfo struct {
	Version   string
	Revision  string
	Branch    string
	BuildUser string
	BuildDate string
	GoVersion string
}

// BinaryBuildInfo describes the running binary: version as set at link
// time, revision, commit time and Go version from the module build
// information the Go toolchain embeds.
func BinaryBuildInfo(version string) BuildInfo {
	bi := BuildInfo{Version: version, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				bi.Revision = s.Value
			case "vcs.time":
				bi.BuildDate = s.Value
			}
		}
	}
	return bi
}
