// Package queuecount keeps the collector's own queue gauge honest about
// a behaviour of exporterhelper's persistent queue (v0.165): Offer adds
// a request's items to the queue's size before it writes the request to
// storage, and does not take them off when the write fails (a full disk,
// an encoding error). The items are not in the queue, yet
// otelcol_exporter_queue_size counts them, and so does the queue's
// capacity check, until its reader happens to pass the failed slots with
// nothing else queued or in flight: while writes keep failing (a disk
// that stays full) the size grows without bound although nothing is
// queued, and a small queue then refuses data as full while it is empty.
//
// The wrappers here count, per signal, the items whose Offer failed for
// another reason than a full queue
// (aiops_collector_queue_write_failures_total); the collector subtracts
// them from the upstream size for aiops_collector_queue_items.
// TestUpstreamQueueCountsFailedWrites pins the upstream behaviour.
package queuecount

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// Offered records the outcome of handing n items of signal to a queued
// exporter.
func Offered(m *obs.Metrics, signal string, n int, err error) {
	if err != nil && !errors.Is(err, exporterhelper.ErrQueueIsFull) {
		m.QueueWriteFailures.WithLabelValues(signal).Add(float64(n))
		m.AddQueueWriteFailures(signal, int64(n))
	}
}

// Metrics wraps a metrics exporter with a sending queue.
func Metrics(e exporter.Metrics, m *obs.Metrics) exporter.Metrics { return metrics{e, m} }

// Logs wraps a logs exporter with a sending queue.
func Logs(e exporter.Logs, m *obs.Metrics) exporter.Logs { return logs{e, m} }

// Traces wraps a traces exporter with a sending queue.
func Traces(e exporter.Traces, m *obs.Metrics) exporter.Traces { return traces{e, m} }

type metrics struct {
	exporter.Metrics
	m *obs.Metrics
}

func (q metrics) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	n := md.DataPointCount()
	err := q.Metrics.ConsumeMetrics(ctx, md)
	Offered(q.m, obs.SignalMetrics, n, err)
	return err
}

type logs struct {
	exporter.Logs
	m *obs.Metrics
}

func (q logs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	n := ld.LogRecordCount()
	err := q.Logs.ConsumeLogs(ctx, ld)
	Offered(q.m, obs.SignalLogs, n, err)
	return err
}

type traces struct {
	exporter.Traces
	m *obs.Metrics
}

func (q traces) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	n := td.SpanCount()
	err := q.Traces.ConsumeTraces(ctx, td)
	Offered(q.m, obs.SignalSpans, n, err)
	return err
}
