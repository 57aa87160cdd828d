# TracSeq Transaction Service. `make` (or `make help`) lists the targets.

GO      ?= go
BINARY  ?= bin/tracseq-tx
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS    ?= ./...

.DEFAULT_GOAL := help
.PHONY: help run test race bench bench-dtm db-cost lint build clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## Run the service on :8080 (in memory if no PostgreSQL answers)
	$(GO) run ./cmd/tracseq-tx

test: ## Run every test against a real PostgreSQL (starts one if needed)
	./scripts/test.sh $(PKGS)

race: ## Run the tests with the race detector, twice each (flushes out flaky ordering)
	./scripts/test.sh -count=2 $(PKGS)

bench: ## Run the benchmarks without the race detector (PostgreSQL on 127.0.0.1:5432 or TEST_DATABASE_URL)
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-postgres://$$(id -un)@127.0.0.1:5432/postgres?sslmode=disable}" \
		$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

bench-dtm: ## Side by side with DTM v1.19.0 on PostgreSQL at c = 1, 16, 64 (a few minutes; BENCH_DURATION, BENCH_WARMUP)
	./scripts/bench-dtm.sh

db-cost: ## The database's work per saga (commits, statements, rows, index entries, WAL, CPU) on a private cluster (DBCOST_SAGAS, DBCOST_C)
	./scripts/db-cost.sh

lint: ## gofmt -l and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

build: ## Build a static binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/tracseq-tx

clean: ## Remove bin/
	rm -rf bin
