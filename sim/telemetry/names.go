package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/k8sconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/processconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/systemconv"
)

// Instrument names, units and descriptions come from the semantic
// conventions package where it has them, so that they cannot drift from
// the conventions deploy/rules is written against.
var (
	httpServerDuration = httpconv.ServerRequestDuration{}
	dbConnCount        = dbconv.ClientConnectionCount{}
	dbConnMax          = dbconv.ClientConnectionMax{}
	dbConnPending      = dbconv.ClientConnectionPendingRequests{}
	dbConnTimeouts     = dbconv.ClientConnectionTimeouts{}
	msgProcessDuration = messagingconv.ProcessDuration{}
	msgSent            = messagingconv.ClientSentMessages{}
	msgConsumed        = messagingconv.ClientConsumedMessages{}
	procCPUUtilization = processconv.CPUUtilization{}
	procMemoryUsage    = processconv.MemoryUsage{}
	k8sMemoryLimit     = k8sconv.ContainerMemoryLimitCurrent{}
	k8sRestartCount    = k8sconv.ContainerRestartCount{}
	sysCPUUtilization  = systemconv.CPUUtilization{}
	sysMemUtilization  = systemconv.MemoryUtilization{}
	sysMemUsage        = systemconv.MemoryUsage{}
	sysFSUsage         = systemconv.FilesystemUsage{}
	sysFSUtilization   = systemconv.FilesystemUtilization{}
)

// The GenAI conventions are not in the Go semantic conventions package
// yet; these are their names as the specification gives them.
const (
	genAIOperationDuration = "gen_ai.client.operation.duration"
	genAITokenUsage        = "gen_ai.client.token.usage"

	genAIOperationName = attribute.Key("gen_ai.operation.name")
	genAIProviderName  = attribute.Key("gen_ai.provider.name")
	genAIRequestModel  = attribute.Key("gen_ai.request.model")
	genAIResponseModel = attribute.Key("gen_ai.response.model")
	genAITokenType     = attribute.Key("gen_ai.token.type")
	genAIInputTokens   = attribute.Key("gen_ai.usage.input_tokens")
	genAIOutputTokens  = attribute.Key("gen_ai.usage.output_tokens")
	// peerService names the remote service of a client span, which the
	// service graph uses for dependencies that send no spans of their own.
	peerService = attribute.Key("peer.service")
)

// The queue's depth and the age of its oldest job have no semantic
// convention; they are named in the engine's own namespace.
const (
	queueDepth   = "workflow.queue.depth"
	queueLatency = "workflow.queue.latency"
)

// Bucket boundaries recommended by the conventions for each histogram.
var (
	httpBuckets    = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	genAIBuckets   = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	tokenBuckets   = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	messageBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}
	schemaURL      = semconv.SchemaURL
)
