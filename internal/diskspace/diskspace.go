// Package diskspace tells how much room is left on a filesystem, for
// stores that refuse writes before the disk is full rather than tear
// their logs when it is.
package diskspace

import "errors"

// ErrUnsupported is returned where the free space cannot be read.
var ErrUnsupported = errors.ErrUnsupported

// Free returns the bytes an unprivileged writer may still write on the
// filesystem that holds dir.
func Free(dir string) (int64, error) { return free(dir) }
