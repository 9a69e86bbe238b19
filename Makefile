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
#   make test                      every test, unit to end-to-end

CARGO    ?= cargo
PROFILE  ?= debug
BIN      := target/$(PROFILE)
REGISTRY ?= http://127.0.0.1:8500
COUNT    ?= 3
INSTANCE ?=
RUN_DIR  := .run

ifeq ($(PROFILE),release)
BUILD_FLAGS := --release
endif

.PHONY: build registry market startRatings pauseRatings resumeRatings stopRatings run test lint example

build:
	$(CARGO) build $(BUILD_FLAGS) --bin registry --bin ratings-service --bin market

registry: build
	$(BIN)/registry

market: build
	$(BIN)/market --registry $(REGISTRY)

startRatings: build
	@BIN=$(BIN) RUN_DIR=$(RUN_DIR) REGISTRY_URL=$(REGISTRY) scripts/start-ratings.sh "$(if $(INSTANCE),$(INSTANCE),$(shell seq -s ' ' 1 $(COUNT)))"

pauseRatings:
	@test -n "$(INSTANCE)" || { echo "usage: make pauseRatings INSTANCE=N" >&2; exit 2; }
	@scripts/signal-ratings.sh STOP $(INSTANCE)

resumeRatings:
	@test -n "$(INSTANCE)" || { echo "usage: make resumeRatings INSTANCE=N" >&2; exit 2; }
	@scripts/signal-ratings.sh CONT $(INSTANCE)

stopRatings:
	@scripts/signal-ratings.sh TERM all

run: build
	@BIN=$(BIN) RUN_DIR=$(RUN_DIR) scripts/run-all.sh

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

example: build
	$(CARGO) run -p examples --example call-ratings -- $(REGISTRY)
