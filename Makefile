# The README's two commands are `make run` and `make test`; `make demo`
# shows aiops at work on the simulated workflow engine.
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DATA    ?= $(CURDIR)/data
# Packages under test; override to narrow, e.g. make test PKGS=./storage/...
PKGS    ?= ./...
TESTFLAGS ?=

# Real clients the integration tests drive (pinned as tools in go.mod;
# helm in tools/helm, whose dependencies stay out of go.mod).
export PROMTOOL := $(BIN)/promtool
export AMTOOL   := $(BIN)/amtool
# Real Jaeger for the trace API's differential test; tools/jaeger is a
# module of its own, so its dependencies stay out of go.mod.
export JAEGER   := $(BIN)/jaeger
export HELM     := $(BIN)/helm

.PHONY: all build run demo test bench chaos fuzz tools test-deps vet fmt clean plugin plugin-frontend plugin-frontend-test image image-test

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/aiops ./cmd/aiops
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/aiops-bench ./cmd/aiops-bench

## run: start the all-in-one server on the embedded store in ./data
run: build
	$(BIN)/aiops serve --data-dir $(DATA)

## demo: aiops (embedded store, shipped rules) and the simulated workflow engine with a demo scenario
demo: build
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/workflow-sim ./cmd/workflow-sim
	BIN=$(BIN) DEMO_DATA=$(DATA)/demo ./scripts/demo.sh

tools:
	$(GO) build -o $(BIN)/ github.com/prometheus/prometheus/cmd/promtool github.com/prometheus/alertmanager/cmd/amtool
	cd tools/jaeger && $(GO) build -o $(BIN)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
	cd tools/helm && $(GO) build -o $(BIN)/helm helm.sh/helm/v4/cmd/helm

## test-deps: install what the tests need (Debian's clickhouse-server; Node.js and npm for the plugin's frontend)
test-deps:
	./scripts/install-test-deps.sh

## image: the container image (deploy/Containerfile) with podman, as $(IMAGE)
IMAGE ?= aiops:dev
image:
	./scripts/install-test-deps.sh podman
	VERSION=$(VERSION) ./scripts/build-image.sh $(IMAGE)

## image-test: build the image with podman and start its binary from the
## image's own filesystem as the image's user (as root); part of `make test`
image-test:
	./scripts/install-test-deps.sh podman
	$(GO) test -tags image -count=1 -run '^TestImage$$' -v ./deploy/

# stdmethods is off because Prometheus's chunkenc.Iterator, which the
# ClickHouse querier implements, has a Seek(int64) that is not io.Seeker.
vet:
	$(GO) vet -stdmethods=false $(PKGS)
	cd plugin && $(GO) vet ./pkg/...

## test: the whole suite, against real servers the tests start themselves
test: test-deps tools vet plugin-frontend-test
	$(GO) test -count=1 -timeout 60m $(TESTFLAGS) $(PKGS)
	cd plugin && $(GO) test -count=1 -timeout 10m $(TESTFLAGS) ./pkg/...
	$(MAKE) image-test

# The plugin's frontend (plugin/src, TypeScript) with Node.js and npm:
# npm ci installs the committed package-lock.json exactly, running no
# package's install scripts (none is needed: @swc/core's binary is a package
# of its own).
NPM_CI := npm ci --ignore-scripts --no-audit --no-fund

## plugin-frontend-test: the plugin's frontend type-checked, linted, unit-tested (jest) and built
plugin-frontend-test:
	./scripts/install-test-deps.sh node
	cd plugin && $(NPM_CI)
	cd plugin && npm run typecheck && npm run lint && npm run test:ci && npm run build

## plugin-frontend: the plugin's frontend built into plugin/dist
plugin-frontend:
	./scripts/install-test-deps.sh node
	cd plugin && $(NPM_CI) && npm run build

## plugin: the Grafana plugin's release archive (the built frontend, the backend for linux/amd64 and linux/arm64, plugin.json, provisioning)
PLUGIN_DIST := $(BIN)/plugin/aiops-aiops-datasource
plugin: plugin-frontend
	rm -rf $(BIN)/plugin && mkdir -p $(PLUGIN_DIST)
	cp -r plugin/dist/. $(PLUGIN_DIST)/
	cd plugin && GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o $(PLUGIN_DIST)/gpx_aiops_linux_amd64 ./pkg
	cd plugin && GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o $(PLUGIN_DIST)/gpx_aiops_linux_arm64 ./pkg
	sed -e 's/%VERSION%/$(VERSION)/' -e "s/%TODAY%/$$(date -u +%Y-%m-%d)/" plugin/src/plugin.json > $(PLUGIN_DIST)/plugin.json
	cp -r plugin/provisioning $(PLUGIN_DIST)/provisioning
	cp plugin/README.md $(PLUGIN_DIST)/README.md
	tar -C $(BIN)/plugin -czf $(BIN)/aiops-aiops-datasource-$(VERSION).tar.gz aiops-aiops-datasource

## bench: the benchmarks behind docs/BENCHMARKS.md (aiops-bench, a separate program)
bench: test-deps build
	$(BIN)/aiops-bench ingest
	$(BIN)/aiops-bench query
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Fuzz targets of the parsers of outside input, as package:FuzzName. Their
# seed corpora run in `make test`; `make fuzz` fuzzes each for FUZZTIME.
FUZZTIME ?= 30s
FUZZ_TARGETS += ./collector/storeexporter:FuzzWriteMetrics
FUZZ_TARGETS += ./api/promapi:FuzzParseExpr
FUZZ_TARGETS += ./api/auth:FuzzAuthenticate
FUZZ_TARGETS += ./cmd/aiops:FuzzDecodeConfig
FUZZ_TARGETS += ./alerting/ruler:FuzzCheckFiles
FUZZ_TARGETS += ./api/slackapp:FuzzVerify
FUZZ_TARGETS += ./api/slackapp:FuzzCommand

## fuzz: run every fuzz target for FUZZTIME (default 30s), one after another
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $$t"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

## chaos: the closed loop measured (docs/BENCHMARKS.md): the simulator's faults healed by the shipped rules and runbooks
CHAOSFLAGS ?=
chaos: build
	$(BIN)/aiops chaos run --out $(CURDIR)/chaos-report $(CHAOSFLAGS)

fmt:
	gofmt -l -w .

clean:
	rm -rf $(BIN)
