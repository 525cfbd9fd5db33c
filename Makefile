# rulegen — make targets are the entry points; `make help` lists them.
SHELL   := bash
GO      ?= go
BIN     := bin/rulegen
PKGS    := ./...

.DEFAULT_GOAL := help
.PHONY: help build test test-unit deps bench lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/rulegen
	$(GO) build -o $(BIN) ./cmd/rulegen

deps: ## install missing kernel tools (nft, iptables, conntrack, ip) with apt-get when root
	@hack/install-deps.sh

test: deps ## run every test: unit, golden, kernel (as root) — what CI runs
	$(GO) vet $(PKGS)
	$(GO) test -count=1 ./cmd/... ./pkg/... ./test/golden/...
	@# the kernel suites log every scenario by name
	set -o pipefail; $(GO) test -count=1 -v ./test/e2e/... 2>&1 | grep -v -e '^=== RUN' -e '^=== PAUSE' -e '^=== CONT'

test-unit: ## fast tests only (no kernel, no cluster)
	$(GO) test -count=1 -short $(PKGS)

bench: ## run the Go benchmarks and print ns/op, B/op, allocs/op
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5x $(PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf bin
