//go:build tools

// Package deps pins the libraries the rooms of aiops build on, so that
// go.mod keeps one resolved set of versions while rooms are being written.
// It is never built into the binary.
package deps

import (
	_ "github.com/ClickHouse/clickhouse-go/v2"
	_ "github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	_ "github.com/prometheus/alertmanager/api"
	_ "github.com/prometheus/alertmanager/dispatch"
	_ "github.com/prometheus/alertmanager/inhibit"
	_ "github.com/prometheus/alertmanager/nflog"
	_ "github.com/prometheus/alertmanager/notify"
	_ "github.com/prometheus/alertmanager/provider/mem"
	_ "github.com/prometheus/alertmanager/silence"
	_ "github.com/prometheus/prometheus/promql"
	_ "github.com/prometheus/prometheus/promql/promqltest"
	_ "github.com/prometheus/prometheus/rules"
	_ "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	_ "github.com/prometheus/prometheus/tsdb"
	_ "github.com/prometheus/prometheus/web/api/v1"
	_ "github.com/segmentio/kafka-go"
	_ "github.com/twmb/franz-go/pkg/kfake"
	_ "go.opentelemetry.io/collector/confmap/provider/envprovider"
	_ "go.opentelemetry.io/collector/confmap/provider/fileprovider"
	_ "go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	_ "go.opentelemetry.io/collector/exporter/exporterhelper"
	_ "go.opentelemetry.io/collector/otelcol"
	_ "go.opentelemetry.io/collector/otelcol/otelcoltest"
	_ "go.opentelemetry.io/collector/processor/batchprocessor"
	_ "go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	_ "go.opentelemetry.io/collector/receiver/otlpreceiver"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	_ "go.opentelemetry.io/otel/sdk/log"
	_ "go.opentelemetry.io/otel/sdk/metric"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "gonum.org/v1/gonum/stat"
	_ "modernc.org/sqlite"
)
