package queuestorage

import (
	"context"
	"errors"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

var errFull = errors.New("write: no space left on device")

// fullDisk is a storage whose every write fails and whose reads work.
type fullDisk struct {
	component.StartFunc
	component.ShutdownFunc
	kv map[string][]byte
}

func (d *fullDisk) GetClient(context.Context, component.Kind, component.ID, string) (storage.Client, error) {
	return d, nil
}
func (d *fullDisk) Get(_ context.Context, k string) ([]byte, error) { return d.kv[k], nil }
func (d *fullDisk) Set(context.Context, string, []byte) error       { return errFull }
func (d *fullDisk) Delete(context.Context, string) error            { return errFull }
func (*fullDisk) Close(context.Context) error                       { return nil }
func (d *fullDisk) Batch(_ context.Context, ops ...*storage.Operation) error {
	for _, op := range ops {
		if op.Type != storage.Get {
			return errFull
		}
	}
	for _, op := range ops {
		op.Value = d.kv[op.Key]
	}
	return nil
}

func TestReadsSurviveFailedWrites(t *testing.T) {
	ctx := context.Background()
	ext := Wrap(&fullDisk{kv: map[string][]byte{"1": []byte("request")}}, nil)
	c, err := ext.GetClient(ctx, component.KindExporter, component.MustNewID("x"), "logs")
	if err != nil {
		t.Fatal(err)
	}
	// The queue's read: bookkeeping and the request in one batch.
	get := storage.GetOperation("1")
	if err := c.Batch(ctx, storage.SetOperation("qmv0", []byte("meta")), get); err != nil {
		t.Fatalf("read with a failed bookkeeping write: %v", err)
	}
	if string(get.Value) != "request" {
		t.Errorf("read %q, want the request", get.Value)
	}
	// Writes alone fail as before: an enqueue on a full disk is refused.
	if err := c.Batch(ctx, storage.SetOperation("qmv0", nil), storage.SetOperation("2", []byte("x"))); !errors.Is(err, errFull) {
		t.Errorf("write-only batch: %v, want the disk's error", err)
	}
	if err := c.Batch(ctx, storage.DeleteOperation("1")); !errors.Is(err, errFull) {
		t.Errorf("delete: %v, want the disk's error", err)
	}
}

// TestFactoryServesFileStorage: the extension is file_storage underneath,
// created under its own type, and its clients keep what they are given.
func TestFactoryServesFileStorage(t *testing.T) {
	ctx := context.Background()
	f := NewFactory(nil)
	cfg := f.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = t.TempDir()
	cfg.Compaction.Directory = cfg.Directory
	ext, err := f.Create(ctx, extensiontest.NewNopSettings(f.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ext.Shutdown(context.Background()) })
	c, err := ext.(storage.Extension).GetClient(ctx, component.KindExporter, component.MustNewID("x"), "logs")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("Get = %q, %v", v, err)
	}
}
