package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/aiops-dev/aiops/sim/model"
)

// infra is a resource that is not a process of the engine: a node as its
// host agent reports it, or the job queue as its exporter reports it.
type infra struct {
	start  time.Time
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
}

// Services under which the nodes and the queue report.
const (
	nodeService  = "node"
	queueService = "queue"
)

func (t *Telemetry) newInfra(attrs ...attribute.KeyValue) (*infra, error) {
	res, err := newResource(append(attrs, envAttr(t.opts.Environment))...)
	if err != nil {
		return nil, err
	}
	in := &infra{start: t.sys.Now(), reader: sdkmetric.NewManualReader()}
	in.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(in.reader))
	return in, nil
}

// newNodeInfra reports a node's CPU and memory, and the volumes mounted
// on it, as the host metrics of the system conventions.
func (t *Telemetry) newNodeInfra(n *model.Node) (*infra, error) {
	in, err := t.newInfra(semconv.ServiceName(nodeService), semconv.ServiceInstanceID(n.Name), semconv.HostName(n.Name))
	if err != nil {
		return nil, fmt.Errorf("resource of node %s: %w", n.Name, err)
	}
	m := in.mp.Meter(scope)
	cpu, err := m.Float64ObservableGauge(sysCPUUtilization.Name(), metric.WithUnit(sysCPUUtilization.Unit()), metric.WithDescription(sysCPUUtilization.Description()))
	if err != nil {
		return nil, err
	}
	memUtil, err := m.Float64ObservableGauge(sysMemUtilization.Name(), metric.WithUnit(sysMemUtilization.Unit()), metric.WithDescription(sysMemUtilization.Description()))
	if err != nil {
		return nil, err
	}
	memUsage, err := m.Int64ObservableUpDownCounter(sysMemUsage.Name(), metric.WithUnit(sysMemUsage.Unit()), metric.WithDescription(sysMemUsage.Description()))
	if err != nil {
		return nil, err
	}
	fsUsage, err := m.Int64ObservableUpDownCounter(sysFSUsage.Name(), metric.WithUnit(sysFSUsage.Unit()), metric.WithDescription(sysFSUsage.Description()))
	if err != nil {
		return nil, err
	}
	fsUtil, err := m.Float64ObservableGauge(sysFSUtilization.Name(), metric.WithUnit(sysFSUtilization.Unit()), metric.WithDescription(sysFSUtilization.Description()))
	if err != nil {
		return nil, err
	}
	ncpu := int(n.Cores)
	type cpuSets struct{ user, system, idle metric.MeasurementOption }
	sets := make([]cpuSets, ncpu)
	for c := range ncpu {
		num := semconv.CPULogicalNumber(c)
		sets[c] = cpuSets{
			user:   metric.WithAttributeSet(attribute.NewSet(num, semconv.CPUModeUser)),
			system: metric.WithAttributeSet(attribute.NewSet(num, semconv.CPUModeSystem)),
			idle:   metric.WithAttributeSet(attribute.NewSet(num, semconv.CPUModeIdle)),
		}
	}
	memUsed := metric.WithAttributeSet(attribute.NewSet(semconv.SystemMemoryStateUsed))
	memFree := metric.WithAttributeSet(attribute.NewSet(semconv.SystemMemoryStateFree))
	var vols []*model.Volume
	for _, v := range t.sys.Volumes {
		if v.Node == n {
			vols = append(vols, v)
		}
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		busy := min(1, n.CPUUsed/n.Cores)
		for _, s := range sets {
			o.ObserveFloat64(cpu, busy*0.8, s.user)
			o.ObserveFloat64(cpu, busy*0.2, s.system)
			o.ObserveFloat64(cpu, 1-busy, s.idle)
		}
		used := min(1, n.MemUsed/n.Memory)
		o.ObserveFloat64(memUtil, used, memUsed)
		o.ObserveFloat64(memUtil, 1-used, memFree)
		o.ObserveInt64(memUsage, int64(n.MemUsed), memUsed)
		o.ObserveInt64(memUsage, int64(n.Memory-n.MemUsed), memFree)
		for _, v := range vols {
			base := []attribute.KeyValue{semconv.SystemDevice(v.Device), semconv.SystemFilesystemMountpoint(v.Mountpoint), semconv.SystemFilesystemTypeExt4}
			set := func(state attribute.KeyValue) metric.MeasurementOption {
				return metric.WithAttributeSet(attribute.NewSet(append(base, state)...))
			}
			o.ObserveInt64(fsUsage, int64(v.Used), set(semconv.SystemFilesystemStateUsed))
			o.ObserveInt64(fsUsage, int64(v.Capacity-v.Used), set(semconv.SystemFilesystemStateFree))
			o.ObserveFloat64(fsUtil, v.Used/v.Capacity, set(semconv.SystemFilesystemStateUsed))
			o.ObserveFloat64(fsUtil, 1-v.Used/v.Capacity, set(semconv.SystemFilesystemStateFree))
		}
		return nil
	}, cpu, memUtil, memUsage, fsUsage, fsUtil)
	return in, err
}

// newQueueInfra reports the job queues' depth and the age of their oldest
// job, as a Celery queue exporter would.
func (t *Telemetry) newQueueInfra() (*infra, error) {
	in, err := t.newInfra(semconv.ServiceName(queueService), semconv.ServiceInstanceID(queueService+"-0"), semconv.HostName("redis-queue"))
	if err != nil {
		return nil, fmt.Errorf("resource of the queue: %w", err)
	}
	m := in.mp.Meter(scope)
	depth, err := m.Int64ObservableGauge(queueDepth, metric.WithUnit("{job}"), metric.WithDescription("Jobs waiting in the queue."))
	if err != nil {
		return nil, err
	}
	latency, err := m.Float64ObservableGauge(queueLatency, metric.WithUnit("s"), metric.WithDescription("How long the oldest waiting job has waited."))
	if err != nil {
		return nil, err
	}
	opts := map[string]metric.MeasurementOption{}
	for _, q := range t.sys.Queues {
		opts[q.Name] = metric.WithAttributeSet(attribute.NewSet(semconv.MessagingSystemKey.String("redis"), semconv.MessagingDestinationName(q.Name)))
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, q := range t.sys.Queues {
			o.ObserveInt64(depth, int64(q.Depth+0.5), opts[q.Name])
			o.ObserveFloat64(latency, q.OldestAge, opts[q.Name])
		}
		return nil
	}, depth, latency)
	return in, err
}
