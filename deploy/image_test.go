//go:build image

// The container image test builds deploy/Containerfile with podman and
// checks the image as a container runtime would use it. podman can build
// on the machines we test on but not run containers (crun may not set
// rlimits there), so the test unpacks the image's filesystem and starts
// its entrypoint in a chroot of it as the image's user: what the image
// holds is all the binary has, and it runs unprivileged.
//
// It needs root (chroot, setuid) and podman, and builds a static binary
// (CGO_ENABLED=0, -trimpath), which costs a cold build of the whole
// dependency set; hence the build tag: run it with `make image-test`.
package deploy_test

import (
	"archive/tar"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
)

const imageUID = 65532

// imageConfig is the part of `podman image inspect` the test reads.
type imageConfig struct {
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		WorkingDir   string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Env          []string
	}
	HealthCheck *struct {
		Test []string
	} `json:"Healthcheck"`
}

func podman(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("podman", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the image test chroots into the image and changes user: run it as root")
	}
	image := fmt.Sprintf("localhost/aiops-image-test:%d", os.Getpid())
	build := exec.Command("../scripts/build-image.sh", image)
	build.Env = append(os.Environ(), "CONTEXT="+filepath.Join(t.TempDir(), "context"), "VERSION=image-test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })

	var inspected []imageConfig
	if err := json.Unmarshal(podman(t, "image", "inspect", image), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("image inspect: %v (%d images)", err, len(inspected))
	}
	cfg := inspected[0]
	if cfg.Config.User != fmt.Sprintf("%d:%d", imageUID, imageUID) {
		t.Errorf("image user %q, want %d:%d", cfg.Config.User, imageUID, imageUID)
	}
	if cfg.HealthCheck == nil || !slices.Contains(cfg.HealthCheck.Test, "ready") {
		t.Errorf("health check %+v, want aiops check ready", cfg.HealthCheck)
	}
	for _, p := range []string{"9090/tcp", "4317/tcp", "4318/tcp"} {
		if _, ok := cfg.Config.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, cfg.Config.ExposedPorts)
		}
	}
	if _, ok := cfg.Config.Volumes["/var/lib/aiops"]; !ok {
		t.Errorf("volumes %v, want /var/lib/aiops", cfg.Config.Volumes)
	}

	root := filepath.Join(t.TempDir(), "rootfs")
	exportImage(t, image, root)
	checkFilesystem(t, root, cfg.Config.Entrypoint[0])
	mountRuntimeFilesystems(t, root)

	// The image's own command, with the listeners moved to free ports:
	// it starts as the image's user from nothing but the image.
	httpAddr := freeport.Addr(t)
	args := append(slices.Clone(cfg.Config.Entrypoint[1:]), cfg.Config.Cmd...)
	args = append(args, "--http-addr", httpAddr, "--otlp-grpc-addr", freeport.Addr(t), "--otlp-http-addr", freeport.Addr(t))
	srv := inImage(root, cfg.Config.WorkingDir, cfg.Config.Entrypoint[0], args...)
	logs := &testutil.SyncBuffer{}
	srv.Stdout, srv.Stderr = logs, logs
	if err := srv.Start(); err != nil {
		t.Fatalf("start %v in the image: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			srv.Process.Kill()
			<-done
		}
	})

	// The health check exactly as the image declares it, but for the
	// port.
	check := slices.Clone(cfg.HealthCheck.Test[1:]) // after CMD
	check[len(check)-1] = strings.Replace(check[len(check)-1], "127.0.0.1:9090", httpAddr, 1)
	testutil.Eventually(t, 60*time.Second, "the image's health check passes", func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("aiops exited: %v\n%s", err, logs)
		default:
		}
		out, err := inImage(root, "/", check[0], check[1:]...).CombinedOutput()
		return err == nil, fmt.Sprintf("%v: %s", err, out)
	})
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz from the host: %s", resp.Status)
	}

	// Its state is in the volume and belongs to the image's user.
	var owned int
	err = filepath.Walk(filepath.Join(root, "var/lib/aiops"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != imageUID {
			t.Errorf("%s belongs to uid %d", strings.TrimPrefix(p, root), st.Uid)
		}
		owned++
		return nil
	})
	if err != nil || owned < 3 {
		t.Errorf("state under /var/lib/aiops: %d entries, %v", owned, err)
	}
}

// mountRuntimeFilesystems mounts what every container runtime provides
// beside the image: /proc and (read-only) /sys, where the collector's
// memory limiter finds the cgroup's memory limit.
func mountRuntimeFilesystems(t *testing.T, root string) {
	t.Helper()
	for _, m := range []struct {
		dir, source, fstype string
		flags               uintptr
	}{
		{"proc", "proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
		{"sys", "/sys", "", syscall.MS_BIND | syscall.MS_REC},
	} {
		target := filepath.Join(root, m.dir)
		if err := os.MkdirAll(target, 0o555); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount(m.source, target, m.fstype, m.flags, ""); err != nil {
			t.Fatalf("mount %s on %s: %v", m.source, target, err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", target, err)
			}
		})
	}
}

// inImage prepares name to run chrooted in root as the image's user.
func inImage(root, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=/var/lib/aiops"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID},
	}
	return cmd
}

// exportImage unpacks the image's filesystem into dir, owners and modes
// included.
func exportImage(t *testing.T, image, dir string) {
	t.Helper()
	id := strings.TrimSpace(string(podman(t, "create", image)))
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", id).Run() })
	tarFile := filepath.Join(t.TempDir(), "image.tar")
	podman(t, "export", "-o", tarFile, id)
	f, err := os.Open(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFile(p, tr)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		default:
			continue
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			if err = os.Chown(p, h.Uid, h.Gid); err == nil {
				err = os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode))
			}
		}
		if err != nil {
			t.Fatalf("unpack %s: %v", h.Name, err)
		}
	}
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&01000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func writeFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkFilesystem: the image holds the static binary and its files, and
// nothing to run besides it (no shell).
func checkFilesystem(t *testing.T, root, entrypoint string) {
	t.Helper()
	for _, p := range []string{"/bin/sh", "/bin/busybox", "/usr/bin/env"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("the image holds %s", p)
		}
	}
	for _, p := range []string{"/etc/passwd", "/etc/ssl/certs/ca-certificates.crt", "/etc/aiops/aiops.yaml", "/etc/aiops/alertmanager/alertmanager.yml"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("the image lacks %s: %v", p, err)
		}
	}
	if rules, _ := filepath.Glob(filepath.Join(root, "etc/aiops/rules/*.yml")); len(rules) == 0 {
		t.Error("the image holds no rule files")
	}
	f, err := elf.Open(filepath.Join(root, entrypoint))
	if err != nil {
		t.Fatalf("entrypoint %s: %v", entrypoint, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked: scratch has no loader", entrypoint)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs %v", entrypoint, libs)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/lib/aiops")); err != nil {
		t.Error(err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != imageUID || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("/var/lib/aiops: uid %d mode %v, want %d and private", st.Uid, fi.Mode().Perm(), imageUID)
	}
}
