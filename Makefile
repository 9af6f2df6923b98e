# Portico — the two commands a new user needs: `make run` and `make test`.

CARGO       ?= cargo
JOBS        ?= 2
WASM_TARGET := wasm32-wasip2
EXAMPLES    := echo chat counter feed bridge
TEST_ONLY   := faulty probe
PLUGIN_OUT  := target/$(WASM_TARGET)/plugin
RUN_DIR     := target/run-plugins
DEV_SECRET  ?= portico-dev-secret-change-me
DEV_API_KEY ?= portico-dev-publish-key
DEV_ADMIN_TOKEN ?= portico-dev-admin-token
LISTEN      ?= 127.0.0.1:8080
PORTICO     := target/debug/portico

.PHONY: run test plugins build lint fmt wasm-target e2e-deps browser-deps redis-deps bench bench-quick bench-build bench-deps bench-micro bench-flap

## Build the example plugins and start one node on $(LISTEN) with a dev token.
run: plugins build
	@mkdir -p $(RUN_DIR) && cp $(addprefix $(PLUGIN_OUT)/,$(addsuffix .wasm,$(EXAMPLES))) $(RUN_DIR)/
	@echo "dev token (sub=alice, 24h):"
	@$(PORTICO) token mint --sub alice --ttl 24h --secret '$(DEV_SECRET)'
	@echo "demo page: http://$(LISTEN)/   client: io('http://$(LISTEN)/chat', { auth: { token } })"
	$(PORTICO) serve --dev --listen $(LISTEN) --plugins $(RUN_DIR) --jwt-secret '$(DEV_SECRET)' --cache-dir target/portico-cache --demo --api-key '$(DEV_API_KEY)' --admin-token '$(DEV_ADMIN_TOKEN)'

## Everything: unit, SDK, plugin and runtime tests, then end-to-end tests with real clients.
test: plugins build e2e-deps browser-deps redis-deps
	$(CARGO) test -j$(JOBS) --workspace
	cd e2e && PORTICO_BIN=../$(PORTICO) PORTICO_PLUGIN_DIR=../$(PLUGIN_OUT) node --test --test-concurrency=1

## Plugins (examples and test plugins) as wasm components.
plugins: wasm-target
	$(CARGO) build -j$(JOBS) --target $(WASM_TARGET) --profile plugin $(addprefix -p ,$(EXAMPLES) $(TEST_ONLY))

build:
	$(CARGO) build -j$(JOBS) -p portico

lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -j$(JOBS) --workspace --all-targets -- -D warnings
	$(CARGO) clippy -j$(JOBS) --target $(WASM_TARGET) $(addprefix -p ,$(EXAMPLES) $(TEST_ONLY)) -- -D warnings

fmt:
	$(CARGO) fmt --all

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

e2e-deps: e2e/node_modules/.package-lock.json

# Cluster tests start their own redis-server on a free port (never 6379's).
redis-deps:
	@if ! command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing redis-server (apt)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "The cluster tests need redis-server. Install it with: sudo apt-get install -y redis-server"; exit 1; \
	  fi; \
	fi

# The browser test drives Debian's Chromium (playwright-core never downloads a browser).
CHROMIUM ?= /usr/bin/chromium
browser-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium (apt)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "The browser test needs Chromium. Install it with: sudo apt-get install -y chromium"; exit 1; \
	  fi; \
	fi

e2e/node_modules/.package-lock.json: e2e/package.json e2e/package-lock.json
	cd e2e && npm ci --no-audit --no-fund

## Benchmarks against Node socket.io and native socketioxide; rewrites BENCHMARKS.md.
## Servers on core 0, the load generator on core 1; `bench-quick` takes under 3 minutes.
BENCH_RUN := ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); env -u RUST_BACKTRACE target/release/portico-bench

bench: bench-build bench-deps bench-micro bench-flap
	$(BENCH_RUN) --command "make bench"

bench-quick: bench-build bench-deps bench-micro bench-flap
	$(BENCH_RUN) --quick --command "make bench-quick"

bench-build: plugins
	$(CARGO) build --release -j$(JOBS) -p portico -p portico-bench -p portico-native-peer

bench-micro: bench-build
	env -u RUST_BACKTRACE $(CARGO) run --release -j$(JOBS) -p portico --example plugin_call -- --json $(CURDIR)/target/bench/plugin_call.json

bench-deps: bench/peers/node/node_modules/.package-lock.json

## Messages lost under network flaps: Portico, Node socket.io with and without recovery.
bench-flap: bench-build bench-deps e2e-deps
	@mkdir -p target/bench
	cd e2e && env -u RUST_BACKTRACE PORTICO_BIN=../target/release/portico PORTICO_PLUGIN_DIR=../$(PLUGIN_OUT) node bench/flap.mjs > ../target/bench/flap.jsonl

bench/peers/node/node_modules/.package-lock.json: bench/peers/node/package.json bench/peers/node/package-lock.json
	cd bench/peers/node && npm ci --no-audit --no-fund
