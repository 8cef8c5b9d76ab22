package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// privateState keeps what aiops stores on disk readable by its own user
// only: aiops.db holds audit records, incidents and token hashes, the
// TSDB and the queues the data. Files and directories created from here
// on get no group or other permissions (umask 077; the TSDB, SQLite and
// the collector's queue create theirs with the usual 0644 and 0755), and
// the state directories are narrowed to 0700, with what an older aiops
// left in them narrowed to 0700 (directories) and 0600 (files).
func privateState(cfg Config, logger *slog.Logger) error {
	restrictUmask()
	dirs := []string{cfg.Storage.Embedded.DataDir, cfg.Collector.Queue.Dir, cfg.Analyzer.StateDir, cfg.Alerting.DataDir, cfg.Slack.StateDir}
	if cfg.Storage.ClickHouse.WAL.Dir != "" {
		dirs = append(dirs, cfg.Storage.ClickHouse.WAL.Dir)
	}
	// The data dir always holds something (the admin token, the queue);
	// the others are narrowed when they exist, and their components
	// create them private.
	if err := os.MkdirAll(cfg.Storage.Embedded.DataDir, 0o700); err != nil {
		return err
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		narrowed := 0
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			if mode := info.Mode().Perm(); mode&0o077 != 0 {
				if err := os.Chmod(path, mode&^0o077); err != nil {
					logger.Warn("Could not make state private to aiops's user", "path", path, "err", err)
					return nil
				}
				narrowed++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if narrowed > 0 {
			logger.Info("Made state files private to aiops's user (0600, directories 0700)", "dir", dir, "narrowed", narrowed)
		}
	}
	return nil
}
