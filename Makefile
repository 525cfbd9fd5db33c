# rulegen — make targets are the entry points; `make help` lists them.
SHELL   := bash
GO      ?= go
BIN     := bin/rulegen
PKGS    := ./...
KUBE_VERSION := v1.37.2
KUBE_BIN     ?= $(HOME)/.cache/rulegen/kube-$(KUBE_VERSION)
KUBE_BINS    := $(KUBE_BIN)/kube-apiserver $(KUBE_BIN)/server $(KUBE_BIN)/kube-proxy $(KUBE_BIN)/kubectl
export RULEGEN_KUBE_BIN := $(KUBE_BIN)

.DEFAULT_GOAL := help
.PHONY: help build image test test-unit fuzz deps kube-bins bench bench-apply bench-scale soak lint fmt clean

# make bench-scale: services, endpoints per service, changes of each kind,
# and which proxies (empty: rulegen nft+ipt, kube-proxy nft, nft with
# min-sync-period 0, ipt).
N       ?= 5000
E       ?= 10
CHANGES ?= 10
PROXIES ?=

# make fuzz: how long each fuzz target runs, and the targets (package:name).
# Seeds are in each package's testdata/fuzz/<name>; a failing input the
# fuzzer finds is written there too (keep it as a regression seed).
FUZZTIME     ?= 30s
FUZZ_TARGETS := pkg/manifest:FuzzLoad pkg/rules:FuzzConvert pkg/rules:FuzzPlan pkg/rules/trace:FuzzTrace test/property:FuzzRender pkg/sync:FuzzRenderChanges

# make soak: how long, how many services x endpoints, changes per second,
# the share of refused kernel transactions (docs/reliability.md has the rest).
SOAK_DURATION  ?= 30m
SOAK_SERVICES  ?= 2000
SOAK_ENDPOINTS ?= 10
SOAK_RATE      ?= 20
SOAK_REFUSE    ?= 0.1

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# rulegen --version prints VERSION (the nearest tag; devel without one) and
# COMMIT (Go's own stamp wins when it has one; it has none with
# -buildvcs=false or in a git worktree).
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git status --porcelain 2>/dev/null | grep -q . && echo -dirty)

build: ## build bin/rulegen (VERSION= sets what --version prints)
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/rulegen

image: ## build the container image rulegen:$(VERSION) and :latest (VERSION=v0.3.0 for the tag deploy/ pins; needs a container engine; there is none on the dev machines)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t rulegen:$(VERSION) -t rulegen:latest .

deps: ## install missing kernel tools (nft, iptables, conntrack, ip) with apt-get when root
	@hack/install-deps.sh

kube-bins: $(KUBE_BINS) ## build kube-apiserver, etcd, kube-proxy, kubectl (the release pinned in hack/kube) from the Go module proxy, once

$(KUBE_BINS) &:
	@mkdir -p $(KUBE_BIN)
	@echo "building the Kubernetes $(KUBE_VERSION) control plane into $(KUBE_BIN) (minutes the first time, cached afterwards)"
	cd hack/kube && $(GO) build -o $(KUBE_BIN)/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3
	@touch $(KUBE_BINS)

test: deps kube-bins ## run every test: unit, golden, fuzz seeds and 3 s of each fuzz target, kernel, cluster, a small side-by-side scale run and a short soak (as root) — what CI runs
	$(GO) vet $(PKGS)
	$(GO) test -count=1 ./cmd/... ./pkg/... ./test/golden/... ./test/property/... ./test/packetflow/...
	@# the fuzz seeds ran above (plain go test runs them); fuzz each target briefly too
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s
	@# the kernel and cluster suites log every scenario by name; test/scale
	@# runs the side-by-side harness small (200 services), to keep it working
	set -o pipefail; $(GO) test -count=1 -timeout 25m -v ./test/e2e/... ./test/cluster/... ./test/scale/... 2>&1 | grep -v -e '^=== RUN' -e '^=== PAUSE' -e '^=== CONT' -e 'spec.externalIPs is deprecated'
	@# the fault injector of the soak build, then the soak harness's own
	@# tests and a short soak (36 s, 200 services x 5 endpoints, each fault
	@# once): its table, what the churn and the faults did, the first
	@# failures listed under the table, and the summary line
	$(GO) vet -tags soakfaults ./cmd/rulegen/
	$(GO) test -count=1 -tags soakfaults -run TestWithFaults ./cmd/rulegen/
	set -o pipefail; $(GO) test -count=1 -timeout 5m -v ./test/soak/ 2>&1 | grep -e '^|' -e '^churn:' -e '^faults:' -e '^first ' -e '^stale entries:' -e '^  [^ ]' -e '^soak:' -e '^--- FAIL' -e '_test.go:' -e '^FAIL' -e '^ok'

test-unit: ## fast tests only (no kernel, no cluster)
	$(GO) test -count=1 -short $(PKGS)

fuzz: ## run each fuzz target for FUZZTIME=30s: manifest loader, converters, planner, trace, both renderers, the daemon's renderer following changes (FuzzRender loads its output with nft/iptables-restore as root)
	@GO=$(GO) hack/fuzz.sh $(FUZZTIME) $(FUZZ_TARGETS)

bench: ## Go benchmarks of the pure parts: render 1k/10k/50k services x 10 endpoints, one endpoint change at 1k/10k/50k (ns/op, B/op, allocs/op)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5x ./pkg/...

bench-apply: ## (root) kernel writes (full and incremental, both backends), a daemon's sync per change end to end (DaemonChange) and data-plane connect latency, in scratch namespaces
	$(GO) test -run '^$$' -bench 'Apply|DaemonChange' -benchtime 3x -timeout 60m ./test/bench/
	$(GO) test -run '^$$' -bench DataPlane -benchtime 2000x -timeout 20m ./test/bench/

bench-scale: kube-bins ## (root) rulegen vs kube-proxy side by side on a real API server: N=5000 E=10 CHANGES=10 [PROXIES=a,b]; prints the table
	set -o pipefail; CI=true RULEGEN_SCALE_SERVICES=$(N) RULEGEN_SCALE_ENDPOINTS=$(E) RULEGEN_SCALE_CHANGES=$(CHANGES) RULEGEN_SCALE_PROXIES=$(PROXIES) \
		$(GO) test -count=1 -timeout 120m -v -run TestScale ./test/scale/ 2>&1 | grep -v -e '^=== RUN' -e 'spec.externalIPs is deprecated'

soak: deps kube-bins ## (root) churn, faults and probes at once for SOAK_DURATION=30m on SOAK_SERVICES=2000 x SOAK_ENDPOINTS=10 (SOAK_RATE=20/s); prints the summary table
	set -o pipefail; CI=true SOAK_DURATION=$(SOAK_DURATION) SOAK_SERVICES=$(SOAK_SERVICES) SOAK_ENDPOINTS=$(SOAK_ENDPOINTS) \
		SOAK_RATE=$(SOAK_RATE) SOAK_REFUSE=$(SOAK_REFUSE) \
		$(GO) test -count=1 -timeout 12h -v -run TestSoak ./test/soak/ 2>&1 | grep -v -e '^=== RUN'

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf bin
