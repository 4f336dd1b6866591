# hostlb — build, test and package.  `make help` lists the targets.
#
# Root-only targets (test-root, test, demo) need a Debian-like host with
# systemd-container, debootstrap, lintian and rpm; `.ci/run` installs them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
MAKEFLAGS += --no-print-directory

GO ?= go
MODULE := github.com/hostlb/hostlb

# Version of the binaries (hostlbd --version) and of the packages. The package
# version is valid for dpkg and rpm, and grows with every commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BASE_VERSION ?= 0.1.0
PKG_VERSION ?= $(shell packaging/version.sh $(BASE_VERSION))

# Tests that build packages in parallel pass their own BIN and DIST.
BIN ?= $(CURDIR)/bin
DIST ?= $(CURDIR)/dist
TOOLS_BIN := $(CURDIR)/bin/tools
NFPM := $(TOOLS_BIN)/nfpm
GOLANGCI_LINT := $(TOOLS_BIN)/golangci-lint
PROMTOOL := $(TOOLS_BIN)/promtool

DEB := $(DIST)/hostlb_$(PKG_VERSION)_amd64.deb
RPM := $(DIST)/hostlb-$(PKG_VERSION).x86_64.rpm
PKG_WORK := $(DIST)/.work-$(PKG_VERSION)
# What nfpm.yaml expands.
NFPM_ENV := PKG_VERSION='$(PKG_VERSION)' HOSTLB_BIN='$(BIN)' HOSTLB_PKG_WORK='$(PKG_WORK)'

# -s -w: stripped binaries (Debian policy 10.1); stack traces keep working.
STRIP_FLAGS ?= -s -w
LDFLAGS := $(STRIP_FLAGS) -X $(MODULE)/daemon/version.Version=$(VERSION) -X $(MODULE)/daemon/version.Commit=$(COMMIT)

# Root tests boot containers and build packages: allow them time.
ROOT_TEST_TIMEOUT ?= 45m
TESTFLAGS ?=

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build hostlbd and hostlbctl (static) into ./bin.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

.PHONY: test
test: deps test-unit fuzz-short test-root ## Run every test: unit, simulation, a short fuzz run and root tests.

.PHONY: test-unit
# promtool: daemon/metrics checks the shipped alert rules and dashboard with it.
test-unit: $(PROMTOOL) ## Unit and simulation tests (race detector), everything outside tests/.
	$(GO) test -race -count=1 $(TESTFLAGS) $$($(GO) list ./... | grep -v '^$(MODULE)/tests/')

# Fuzz targets run by fuzz-short, each for FUZZTIME (their seed corpora run
# in test-unit anyway): the decoders of gossip input, the merge of
# announced sets, and the heartbeat's datagram decoder. A count, not a
# duration: go1.26's fuzz coordinator can fail a duration-bounded run with
# "context deadline exceeded" on a busy machine (golang/go#75804, fixed in
# go1.27).
FUZZ_PKGS ?= ./gossip/ ./heartbeat/
FUZZTIME ?= 20000x

.PHONY: fuzz-short
fuzz-short: ## Run every fuzz target of FUZZ_PKGS for FUZZTIME (20,000 inputs) each.
	@for pkg in $(FUZZ_PKGS); do \
		targets="$$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz')"; \
		for target in $$targets; do \
			echo "fuzz-short: $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $(TESTFLAGS) $$pkg; \
		done; \
	done

.PHONY: test-root
test-root: $(NFPM) $(PROMTOOL) kube-bins ## Tests under tests/ (systemd-nspawn, packages, lab); skip unless root.
	@if [ "$$(id -u)" != 0 ]; then echo "test-root: not root, the tests under tests/ will skip"; fi
	$(GO) test -count=1 -v -timeout $(ROOT_TEST_TIMEOUT) $(TESTFLAGS) ./tests/...

# Repetitions of each fault in the failover benchmark (tests/failover).
FAILOVER_REPS ?= 30
FAILOVER_FLAGS ?=
# Forced two-owner conflicts in the conflict-resolution benchmark (tests/l2cluster).
CONFLICT_RUNS ?= 20
# Length of each idle or scraped window of the metrics cost benchmark (tests/metricsbench).
METRICS_WINDOW ?= 60s
# Windows of the heartbeat's false-loss benchmark (heartbeat/): idle and 2 busy processes each
# (the 0-per-hour target), then 8 busy processes and busy goroutines in the process each.
HB_WINDOW ?= 5m
HB_LOAD_WINDOW ?= 1m

.PHONY: bench
bench: kube-bins ## Benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem $(TESTFLAGS) ./daemon/... ./netif/...
	$(GO) test -run '^$$' -bench FalsePositivesUnderLoad -benchtime 1x -v $(TESTFLAGS) ./gossip/ -fp.window 20s
	$(GO) test -run '^$$' -bench 'FalseLossesUnderLoad/(idle|procs=2)$$' -benchtime 1x -v -timeout 30m $(TESTFLAGS) ./heartbeat/ -hb.window $(HB_WINDOW)
	$(GO) test -run '^$$' -bench 'FalseLossesUnderLoad/(procs=8|goroutines)' -benchtime 1x -v -timeout 30m $(TESTFLAGS) ./heartbeat/ -hb.window $(HB_LOAD_WINDOW)
	@if [ "$$(id -u)" != 0 ]; then echo "bench: not root, the ARP/NDP lab benchmark (tests/bench) will skip"; fi
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 10m $(TESTFLAGS) ./tests/bench/...
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m $(TESTFLAGS) ./tests/kubebench/
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 25m $(TESTFLAGS) ./tests/kubelabbench/
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m $(TESTFLAGS) ./tests/bgpbench/
	$(GO) run ./tests/failover/cmd/failover -reps $(FAILOVER_REPS) $(FAILOVER_FLAGS)
	$(GO) test -count=1 -run '^TestPartitionFencing$$' -v -timeout 15m $(TESTFLAGS) ./tests/l2cluster/ -l2cluster.conflict-runs $(CONFLICT_RUNS)
	$(GO) test -run '^$$' -bench ScrapeCost -benchtime 1x -v -timeout 20m $(TESTFLAGS) ./tests/metricsbench/ -metricsbench.window $(METRICS_WINDOW)

.PHONY: kube-bins
kube-bins: ## Build the pinned kube-apiserver, kube-controller-manager, etcd (tools/kube) once per pin.
	tests/scripts/build-kube.sh

.PHONY: packages deb rpm
packages: deb rpm ## Build dist/hostlb_<v>_amd64.deb and dist/hostlb-<v>.x86_64.rpm.
	@echo "packages: $(DEB)"
	@echo "          $(RPM)"

deb: build $(NFPM) $(PKG_WORK)/changelog.gz pkg-files
	@mkdir -p $(DIST)
	$(NFPM_ENV) $(NFPM) package --config nfpm.yaml --packager deb --target $(DEB)

rpm: build $(NFPM) pkg-files
	@mkdir -p $(DIST)
	$(NFPM_ENV) $(NFPM) package --config nfpm.yaml --packager rpm --target $(RPM)

# What the packages ship besides the binaries, into PKG_WORK: the man pages
# (docs/man, rendered from the usage texts by the binaries' man tests;
# go generate ./cmd/... rewrites them) gzipped, and the shell completions
# the built hostlbctl prints.
.PHONY: pkg-files
pkg-files: build
	@mkdir -p $(PKG_WORK)/man $(PKG_WORK)/completion
	for m in hostlbd hostlbctl; do gzip -9n < docs/man/$$m.8 > $(PKG_WORK)/man/$$m.8.gz; done
	$(BIN)/hostlbctl completion bash > $(PKG_WORK)/completion/hostlbctl
	$(BIN)/hostlbctl completion zsh > $(PKG_WORK)/completion/_hostlbctl
	$(BIN)/hostlbctl completion fish > $(PKG_WORK)/completion/hostlbctl.fish

# The Debian changelog lintian requires, stamped with the version and the
# commit's date so that rebuilding the same commit gives the same file.
$(PKG_WORK)/changelog.gz: packaging/changelog.in
	@mkdir -p $(PKG_WORK)
	date="$$(git log -1 --format=%cD 2>/dev/null || LC_ALL=C date -R)"; \
	maint="$$(sed -n 's/^maintainer: //p' nfpm.yaml)"; \
	sed -e 's|@VERSION@|$(PKG_VERSION)|g' -e 's|@COMMIT@|$(COMMIT)|g' \
	    -e "s|@MAINTAINER@|$$maint|g" -e "s|@DATE@|$$date|g" $< | gzip -9n > $@

.PHONY: lintian
lintian: deb ## Run lintian on the deb; fails on errors.
	lintian --fail-on error --info --display-info $(DEB)

.PHONY: print-version
print-version: ## Print the binary and package versions.
	@echo "VERSION=$(VERSION)"
	@echo "PKG_VERSION=$(PKG_VERSION)"

.PHONY: deps
deps: ## Install the Debian packages the tests and demo need (only the missing ones; root).
	tests/scripts/install-deps.sh

.PHONY: demo demo-kube demo-package
demo: deps build kube-bins ## The static demo, then the Kubernetes one: who answers each IP, a crash, the failover time (root).
	$(GO) run ./tests/cmd/demo -hostlbd $(BIN)/hostlbd
	$(GO) run ./tests/cmd/demo -kube

demo-kube: deps kube-bins ## The Kubernetes demo alone: a real control plane, a Service with 3 IPs, a crash, its delete (root).
	$(GO) run ./tests/cmd/demo -kube

demo-package: deps packages ## Boot a systemd container, install the deb, run hostlbd (root).
	$(GO) run ./tests/cmd/demo -package -deb $(DEB)

.PHONY: rootfs
rootfs: ## Build the cached Debian rootfs the systemd tests boot (root).
	$(GO) run ./tests/cmd/demo -rootfs-only

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (pinned in tools/go.mod).
	$(GOLANGCI_LINT) run ./...

.PHONY: fmt
fmt: $(GOLANGCI_LINT) ## Format the code (gofmt, goimports).
	$(GOLANGCI_LINT) fmt ./...

.PHONY: tools
tools: $(NFPM) $(GOLANGCI_LINT) $(PROMTOOL) ## Build the pinned tools into ./bin/tools.

# Tools are pinned by tools/go.mod (`tool` directives) and rebuilt when it
# changes; the Go build cache makes a rebuild after `make clean` quick.
$(NFPM): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS_BIN)/ github.com/goreleaser/nfpm/v2/cmd/nfpm
	touch $@

$(GOLANGCI_LINT): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS_BIN)/ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	touch $@

# promtool has a module of its own (tools/promtool/go.mod): its ~200
# dependencies must not move golangci-lint's and nfpm's pins.
$(PROMTOOL): tools/promtool/go.mod tools/promtool/go.sum
	cd tools/promtool && $(GO) build -o $(TOOLS_BIN)/ github.com/prometheus/prometheus/cmd/promtool
	touch $@

.PHONY: clean
clean: ## Remove ./bin and ./dist.
	rm -rf $(BIN) $(DIST)
