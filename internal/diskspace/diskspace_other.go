//go:build !(linux || darwin || freebsd)

package diskspace

func free(string) (int64, error) { return 0, ErrUnsupported }
