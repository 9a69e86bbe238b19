# The walkthrough's commands. Each service runs in the foreground of its terminal; Ctrl-C
# stops it cleanly (ratings instances deregister first).
#
#   make registry                  the registry on 127.0.0.1:8500
#   make market                    the market on http://127.0.0.1:5000
#   make startRatings COUNT=3      ratings instances 1..3 (127.0.0.1:8001..8003)
#   make startRatings INSTANCE=2   just instance 2
#   make pauseRatings INSTANCE=1   Ctrl-Z an instance from another terminal (SIGSTOP)
#   make resumeRatings INSTANCE=1  and `fg` it (SIGCONT)
#   make stopRatings               stop every instance started by startRatings (SIGTERM)
#   make run                       registry + 3 instances + market in one terminal
#   make watch                     the market's view of each instance, redrawn every second
#   make prometheus                Prometheus on 127.0.0.1:9090 scraping all of the above
#   make test                      every test, unit to end-to-end
#
# TLS=1 on registry, market, startRatings, run, watch (and the fault targets below) runs
# the walkthrough over HTTPS: every program serves HTTP/2 and HTTP/1.1 over TLS with a
# certificate from a throwaway CA in .run/tls/ (made by test-certs' make-certs: afresh by
# `make run TLS=1`, once if missing by the others) and trusts that CA in its own calls.

CARGO    ?= cargo
PROFILE  ?= debug
BIN      := target/$(PROFILE)
COUNT    ?= 3
INSTANCE ?=
RUN_DIR  := .run
TLS      ?=
TLS_DIR  := $(RUN_DIR)/tls

# TLS=1 (anything but empty, 0, false or no): the flags and environment that make each
# program serve HTTPS and trust the throwaway CA; empty otherwise.
ifneq ($(filter-out 0 false no,$(TLS)),)
SCHEME      := https
TLS_CERTS   := $(TLS_DIR)/ca.pem
SERVE_TLS   := --tls-cert $(TLS_DIR)/server.pem --tls-key $(TLS_DIR)/server.key
TRUST_TLS   := --ca-file $(TLS_DIR)/ca.pem
RATINGS_TLS := RATINGS_TLS_CERT=$(TLS_DIR)/server.pem RATINGS_TLS_KEY=$(TLS_DIR)/server.key RATINGS_CA_FILE=$(TLS_DIR)/ca.pem
SCRIPT_TLS  := TLS_DIR=$(TLS_DIR)
else
SCHEME      := http
endif
REGISTRY ?= $(SCHEME)://127.0.0.1:8500
MARKET   ?= $(SCHEME)://127.0.0.1:5000

ifeq ($(PROFILE),release)
BUILD_FLAGS := --release
endif

.PHONY: build registry market startRatings pauseRatings resumeRatings stopRatings run watch prometheus promtool test lint example

build:
	$(CARGO) build $(BUILD_FLAGS) --bin registry --bin ratings-service --bin market

# The throwaway CA and the certificate every program serves (localhost, 127.0.0.1, ::1).
$(TLS_DIR)/ca.pem:
	$(CARGO) run -q -p test-certs --bin make-certs -- $(TLS_DIR)

registry: build $(TLS_CERTS)
	$(BIN)/registry $(SERVE_TLS)

market: build $(TLS_CERTS)
	$(BIN)/market --registry $(REGISTRY) $(SERVE_TLS) $(TRUST_TLS)

startRatings: build $(TLS_CERTS)
	@$(RATINGS_TLS) BIN=$(BIN) RUN_DIR=$(RUN_DIR) REGISTRY_URL=$(REGISTRY) scripts/start-ratings.sh "$(if $(INSTANCE),$(INSTANCE),$(shell seq -s ' ' 1 $(COUNT)))"

pauseRatings:
	@test -n "$(INSTANCE)" || { echo "usage: make pauseRatings INSTANCE=N" >&2; exit 2; }
	@scripts/signal-ratings.sh STOP $(INSTANCE)

resumeRatings:
	@test -n "$(INSTANCE)" || { echo "usage: make resumeRatings INSTANCE=N" >&2; exit 2; }
	@scripts/signal-ratings.sh CONT $(INSTANCE)

stopRatings:
	@scripts/signal-ratings.sh TERM all

run: build
ifdef TLS_CERTS
	@rm -rf $(TLS_DIR)
	$(CARGO) run -q -p test-certs --bin make-certs -- $(TLS_DIR)
endif
	@$(SCRIPT_TLS) BIN=$(BIN) RUN_DIR=$(RUN_DIR) scripts/run-all.sh

watch: $(TLS_CERTS)
	$(CARGO) build $(BUILD_FLAGS) -p market-app --bin watch
	$(BIN)/watch --market $(MARKET) $(TRUST_TLS)

# A real Prometheus (Debian: prometheus) against a running walkthrough, with
# deploy/prometheus/prometheus.yml: the registry, the market, and every ratings instance
# found through the registry's /v1/prometheus/targets; the recording rules and alerts of
# deploy/prometheus/rules/. Its data goes to .run/prometheus/. PROMETHEUS_LISTEN to move it.
PROMETHEUS_LISTEN ?= 127.0.0.1:9090
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { echo "prometheus is not installed (apt-get install -y prometheus)" >&2; exit 2; }
	@mkdir -p $(RUN_DIR)/prometheus
	prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=$(RUN_DIR)/prometheus --web.listen-address=$(PROMETHEUS_LISTEN)

# The Prometheus configuration, rules and alerts: syntax, and the alerts' unit tests.
# Without promtool (Debian: prometheus) skipped with a message, unless CI is set.
promtool:
	@if command -v promtool >/dev/null 2>&1 || [ -n "$$CI" ]; then \
		set -e; \
		promtool check config deploy/prometheus/prometheus.yml; \
		promtool check rules deploy/prometheus/rules/*.yml; \
		promtool test rules deploy/prometheus/tests/*.yml; \
	else \
		echo "skipped: the Prometheus config, rules and alert tests need promtool (apt-get install -y prometheus)"; \
	fi

# The second step tests the etcd store and etcd discovery (cargo feature `etcd`, off by
# default) against a real etcd started on loopback. Building them needs protoc (Debian:
# protobuf-compiler): without it the step is skipped with a message, unless CI is set (then
# it runs, and fails). Without etcd (Debian: etcd-server) the tests skip themselves, unless
# CI is set.
test: promtool
	$(CARGO) test --workspace
	@if command -v protoc >/dev/null 2>&1 || [ -n "$$CI" ]; then \
		echo "$(CARGO) test -p registry -p discovery-client --features registry/etcd,discovery-client/etcd"; \
		$(CARGO) test -p registry -p discovery-client --features registry/etcd,discovery-client/etcd; \
	else \
		echo "skipped: the etcd store and discovery tests need protoc to build (apt-get install -y protobuf-compiler; and etcd-server to run them)"; \
	fi

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

example: build
	$(CARGO) run -p examples --example call-ratings -- $(REGISTRY)

# Chaos and fault injection (docs/RELIABILITY.md).
#   make chaos                              every fault under load, full form (200 req/s, 60 s each)
#   make chaos CHAOS=--quick                the short form CI runs (40 req/s, a few s each)
#   make chaos CHAOS="--scenario pause"     one fault (see: make chaos CHAOS=--list)
# The etcd-* faults run the registry on a 3-member etcd on loopback: they need etcd
# (etcd-server) and protoc (to build the registry with `etcd`), and are skipped with a line
# saying why without them, unless CI is set.
# The network faults (netdelay, netloss, partition) run instance 1 in its own network
# namespace behind a veth: they need root (skipped with a line saying why without it, CI
# or not), `ip` (iproute2) and, for netloss and partition, iptables (skipped without it,
# unless CI is set).
# The fault targets below use instance N's admin endpoint (http://127.0.0.1:800N/admin/faults,
# https:// with TLS=1),
# which exists only on instances started with `make startRatings ADMIN=1`; if the instances
# were given RATINGS_ADMIN_TOKEN, export the same variable here. They need curl.
#   make slowRatings INSTANCE=1 MS=1500     add latency before each answer
#   make failRatings INSTANCE=1 RATE=0.5    answer 500 at this rate
#   make garbageRatings INSTANCE=1 RATE=0.5 answer 200 with a garbage body at this rate
#   make throttleRatings INSTANCE=1 RATE=0.5 answer 429 with Retry-After: 2 at this rate
#   make healRatings INSTANCE=1             clear every fault
CHAOS       ?= --full
# Release: at 200 req/s a debug build spends enough CPU to starve the instances it measures.
CHAOS_BUILD ?= --release
MS          ?=
RATE        ?=

.PHONY: chaos slowRatings failRatings garbageRatings throttleRatings healRatings

chaos:
	$(CARGO) run $(CHAOS_BUILD) -p chaos --bin chaos -- $(CHAOS)

slowRatings:
	@test -n "$(INSTANCE)" && test -n "$(MS)" || { echo "usage: make slowRatings INSTANCE=N MS=1500" >&2; exit 2; }
	@$(SCRIPT_TLS) scripts/ratings-faults.sh $(INSTANCE) '{"latency_ms": $(MS)}'

failRatings:
	@test -n "$(INSTANCE)" && test -n "$(RATE)" || { echo "usage: make failRatings INSTANCE=N RATE=0.5" >&2; exit 2; }
	@$(SCRIPT_TLS) scripts/ratings-faults.sh $(INSTANCE) '{"error_rate": $(RATE)}'

garbageRatings:
	@test -n "$(INSTANCE)" && test -n "$(RATE)" || { echo "usage: make garbageRatings INSTANCE=N RATE=0.5" >&2; exit 2; }
	@$(SCRIPT_TLS) scripts/ratings-faults.sh $(INSTANCE) '{"garbage_rate": $(RATE)}'

throttleRatings:
	@test -n "$(INSTANCE)" && test -n "$(RATE)" || { echo "usage: make throttleRatings INSTANCE=N RATE=0.5" >&2; exit 2; }
	@$(SCRIPT_TLS) scripts/ratings-faults.sh $(INSTANCE) '{"throttle_rate": $(RATE)}'

healRatings:
	@test -n "$(INSTANCE)" || { echo "usage: make healRatings INSTANCE=N" >&2; exit 2; }
	@$(SCRIPT_TLS) scripts/ratings-faults.sh $(INSTANCE) '{"latency_ms": 0, "error_rate": 0, "garbage_rate": 0, "throttle_rate": 0}'

# Benchmarks (crates/bench, results in docs/BENCHMARKS.md): release builds, everything on
# loopback, nginx and HAProxy used when installed (apt-get install -y nginx haproxy) and
# skipped with a message when not. Not part of `make test`.
BENCH_BIN := $${CARGO_TARGET_DIR:-target}/release/bench
.PHONY: bench bench-quick bench-gray bench-build bench-stores
bench-build:
	$(CARGO) build --release -p bench -p ratings-service -p registry -p market-app --bins

bench: bench-build
	$(CARGO) bench -p bench --bench hot_path
	$(BENCH_BIN) --out $${CARGO_TARGET_DIR:-target}/bench-results.md

bench-quick: bench-build
	$(CARGO) bench -p bench --bench hot_path -- --warm-up-time 0.1 --measurement-time 0.3
	$(BENCH_BIN) --quick --out $${CARGO_TARGET_DIR:-target}/bench-results-quick.md

# Issue 13's scenarios only (gray failures, back-pressure, tower's balance example, slow
# start, a starved client): docs/BENCHMARKS.md, "Gray failures (issue 13)".
bench-gray: bench-build
	$(BENCH_BIN) --scenario gray,backpressure,tower-balance,slow-start,starved --out $${CARGO_TARGET_DIR:-target}/bench-gray.md

# The registry on each store, same harness, same run: heartbeats per second and the time from
# a write to a parked blocking query's answer (needs etcd-server and protoc, like the etcd tests).
bench-stores:
	$(CARGO) run --release -p registry --features etcd --example store_bench
