// Package queuestorage is the storage of the collector's persistent
// queues: contrib's file_storage (bbolt, one file per signal) with one
// behaviour of exporterhelper's persistent queue (v0.165) corrected.
//
// To hand a request to a consumer the queue reads it and, in the same
// storage batch, writes its bookkeeping (the read index and the list of
// requests being dispatched). When that batch fails — on a full disk the
// write does — the queue deletes the request it could not read and moves
// on: every acknowledged request the reader passes while the disk stays
// full is thrown away. With the store refusing writes for the same full
// disk the reader passes the whole backlog within seconds (found by
// filling the data dir's disk under aiops serve: 90,300 acknowledged
// spans of 138,500 were gone after it).
//
// The client here answers such a batch with its reads alone when they
// succeed: the request reaches its consumer, and the bookkeeping the
// disk could not take is written with the queue's next successful write
// (each write holds the whole of it). Until then a killed process finds
// the older bookkeeping on disk and reads the requests since again:
// delivered twice rather than lost, which the stores absorb.
package queuestorage

import (
	"context"
	"log/slog"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/xextension/storage"

	"github.com/aiops-dev/aiops/collector/internal/loglimit"
)

// Type is the extension's type in the collector configuration.
const Type = "aiops_queue_storage"

// NewFactory returns the factory of the queue storage extension; its
// configuration is file_storage's.
func NewFactory(logger *slog.Logger) extension.Factory {
	fs := filestorage.NewFactory()
	return extension.NewFactory(component.MustNewType(Type), fs.CreateDefaultConfig,
		func(ctx context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
			// file_storage checks that it is created under its own type.
			set.ID = component.NewIDWithName(fs.Type(), set.ID.Name())
			inner, err := fs.Create(ctx, set, cfg)
			if err != nil {
				return nil, err
			}
			return Wrap(inner.(storage.Extension), logger), nil
		}, component.StabilityLevelStable)
}

// Wrap returns ext whose clients keep a queue's reads from failing with
// the writes batched with them.
func Wrap(ext storage.Extension, logger *slog.Logger) storage.Extension {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &wrapped{Extension: ext, logger: logger}
}

type wrapped struct {
	storage.Extension
	logger *slog.Logger
}

func (w *wrapped) GetClient(ctx context.Context, kind component.Kind, id component.ID, name string) (storage.Client, error) {
	c, err := w.Extension.GetClient(ctx, kind, id, name)
	if err != nil {
		return nil, err
	}
	return &client{Client: c, logger: w.logger.With("queue", id.String()+"/"+name), lim: loglimit.New(time.Now)}, nil
}

type client struct {
	storage.Client
	logger *slog.Logger
	// lim bounds the warnings while a disk stays full: the reader may
	// pass thousands of requests a second.
	lim *loglimit.Limiter
}

// Batch applies ops. When a batch that reads and writes fails, the reads
// are tried alone: see the package comment.
func (c *client) Batch(ctx context.Context, ops ...*storage.Operation) error {
	err := c.Client.Batch(ctx, ops...)
	if err == nil {
		return nil
	}
	var reads []*storage.Operation
	writes := false
	for _, op := range ops {
		if op.Type == storage.Get {
			reads = append(reads, op)
		} else {
			writes = true
		}
	}
	if len(reads) == 0 || !writes {
		return err
	}
	if rerr := c.Client.Batch(ctx, reads...); rerr != nil {
		return err
	}
	c.warn(err)
	return nil
}

func (c *client) warn(err error) {
	if unlogged, ok := c.lim.Allow(""); ok {
		c.logger.Warn("The queue's bookkeeping could not be written; requests read since may be delivered again after a restart",
			"err", err, "unlogged", unlogged)
	}
}
