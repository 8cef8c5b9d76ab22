package chserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// StartCluster starts n servers and makes each know all of them as the
// cluster name (remote_servers), one shard per server and no replicas:
// replicated tables need ZooKeeper, which these tests do not run. On
// failure, the servers already started are closed.
func StartCluster(name string, n int) ([]*Server, error) {
	var servers []*Server
	fail := func(err error) ([]*Server, error) {
		for _, s := range servers {
			s.Close()
		}
		return nil, fmt.Errorf("chserver: cluster %s: %w", name, err)
	}
	for range n {
		s, err := start()
		if err != nil {
			return fail(err)
		}
		servers = append(servers, s)
	}
	shards := make([]string, n)
	for i, s := range servers {
		shards[i] = s.NativeAddr()
	}
	for _, s := range servers {
		if err := s.SetCluster(name, shards); err != nil {
			return fail(err)
		}
	}
	return servers, nil
}

// SetCluster declares the cluster name with one shard per native address
// in config.d/, which the server reloads while it runs, and waits until
// the server reports the cluster in system.clusters.
func (s *Server) SetCluster(name string, shards []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\"?>\n<yandex>\n    <remote_servers>\n        <%s>\n", name)
	for _, addr := range shards {
		host, port, ok := strings.Cut(addr, ":")
		if !ok {
			return fmt.Errorf("shard %q: want host:port", addr)
		}
		fmt.Fprintf(&b, "            <shard>\n                <replica>\n                    <host>%s</host>\n                    <port>%s</port>\n                </replica>\n            </shard>\n", host, port)
	}
	fmt.Fprintf(&b, "        </%s>\n    </remote_servers>\n</yandex>\n", name)
	dir := filepath.Join(s.dir, "config.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Written aside and renamed, so the reloader never reads half a file.
	tmp := filepath.Join(s.dir, "remote_servers.xml.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "remote_servers.xml")); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	want := strconv.Itoa(len(shards))
	for {
		out, err := s.Query(ctx, fmt.Sprintf("SELECT count() FROM system.clusters WHERE cluster = '%s'", name))
		if err == nil && strings.TrimSpace(out) == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("server %s did not load cluster %s: %w", s.NativeAddr(), name, ctx.Err()), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
