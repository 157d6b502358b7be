# tokengate: run `make help` for the targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Keep these flags identical to the Dockerfile's build step.
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN      := bin/tokengate
# make image writes an OCI image layout here.
IMAGE_OUT ?= bin/image

.DEFAULT_GOAL := help

.PHONY: help build image demo test test-go test-deploy bench bench-go bench-load bench-short soak fmt vet lint check-config clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/tokengate (static, trimmed, version stamped)
	@echo "building $(BIN) (the first build compiles every dependency: minutes on a small machine; packages print as they compile)"
	CGO_ENABLED=0 $(GO) build -v -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tokengate

image: build ## OCI image layout of bin/tokengate in bin/image (IMAGE_OUT overrides), no Docker daemon: same user, paths, entrypoint as the Dockerfile
	cd deploy && $(GO) run ./cmd/tokengate-image -binary $(abspath $(BIN)) -out $(abspath $(IMAGE_OUT)) -version $(VERSION)

demo: build ## run tokengate on embedded defaults in front of a demo echo app
	./$(BIN) demo

test: vet test-go test-deploy ## the whole suite: go vet, go test -race, manifest validation

test-go: ## go test -race ./... (Redis/PostgreSQL tests skip unless TOKENGATE_TEST_REQUIRE_SERVICES=1)
	$(GO) test -race -count=1 -timeout 10m ./...

test-deploy: ## build every kustomization and decode it strictly, build and run the image (separate module under deploy/)
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

bench: bench-go bench-load ## Go benchmarks plus the load run against a bare ReverseProxy

bench-go: ## Go benchmarks of the hot path (allocs reported)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./access ./authn ./revocation ./proxy

# The chart goes to bin/ so a run never rewrites the tracked docs/bench.svg;
# publish one with `make bench-load BENCH_SVG=docs/bench.svg`.
BENCH_SVG ?= bin/bench.svg
bench-load: build ## load run: every scenario vs bare httputil.ReverseProxy, in turns; report in bench-load.md, chart in bin/bench.svg (BENCH_SVG=docs/bench.svg publishes it)
	$(GO) run ./cmd/tokengate-loadbench -tokengate $(BIN) -out bench-load.md -svg $(BENCH_SVG)

bench-short: build ## smoke run of the load run: every scenario, 1 round of 1 s (numbers not meaningful)
	$(GO) run ./cmd/tokengate-loadbench -tokengate $(BIN) -short

SOAK_DURATION ?= 5m
soak: ## steady load on the real binary for SOAK_DURATION (5m); fails if goroutines, heap or RSS grow in the second half
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 60m -run '^TestSoak$$' -v ./cmd/tokengate

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet and a gofmt check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: vet ## vet plus staticcheck (pinned; fetched by go run on first use)
	$(GO) run $(STATICCHECK) ./...

check-config: build ## validate config.example.yaml
	./$(BIN) check-config --config config.example.yaml

clean: ## remove build output
	rm -rf bin bench-load.md
