# Two commands: `make run` (install what is missing, build, start the demo:
# two Handover authorities on embedded SQLite in ./data/demo with a simulated
# fleet) and `make test` (install what is missing, run every check and test).
# Each install step is skipped when already done.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

CARGO_HOME ?= $(HOME)/.cargo
export PATH := $(CURDIR)/node_modules/.bin:$(CARGO_HOME)/bin:$(PATH)

LEPTOS_VERSION := 0.3.10
WASM_BINDGEN_VERSION := $(shell sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := chromium postgresql-15 libwbxml2-utils

# PostgreSQL for the tests: a role that may create one fresh database per test.
PG_URL := postgres://handover:handover@127.0.0.1:5432/postgres

# cargo-leptos builds debug with exactly this flag; tests and clippy use the
# same so that all three share one set of compiled dependencies. (Not exported:
# cargo-leptos would append its own copy and rebuild everything.)
DEBUG_FLAGS := RUSTFLAGS="--cfg erase_components"

.PHONY: run test tools test-tools apt postgres build lint unit fuzz e2e clean

## Installs the Rust and npm tools the build needs.
tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@cargo leptos --version 2>/dev/null | grep -q " $(LEPTOS_VERSION)" || cargo install cargo-leptos --version $(LEPTOS_VERSION) --locked
	@wasm-bindgen --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)" || cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	@[ -x node_modules/.bin/tailwindcss ] && [ -x node_modules/.bin/wasm-opt ] && [ -d node_modules/@playwright/test ] || npm ci --no-audit --no-fund

## Also the Debian packages and cargo-fuzz the tests need.
test-tools: tools apt
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## Starts PostgreSQL 15 on loopback, creates the test role and drops the
## test databases a killed run left behind (more than six hours old).
## Recovery after an unclean shutdown can take minutes, hence the timeout.
postgres: apt
	@pg_lsclusters -h | grep -q '^15 *main .*online' || $(SUDO) pg_ctlcluster 15 main start -- -t 900
	@for i in $$(seq 1 300); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
	@$(SUDO) runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c \
	  "DO \$$\$$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'handover') THEN CREATE ROLE handover LOGIN PASSWORD 'handover' CREATEDB; END IF; END \$$\$$;"
	@# A test's DROP DATABASE ... WITH (FORCE) also ends an autovacuum worker busy in it.
	@$(SUDO) runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "GRANT pg_signal_backend TO handover"
	@echo "SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database \
	  WHERE datname ~ '^handover_test_[0-9a-f]{32}$$' OR (datname ~ '^handover_test_[0-9]+_' \
	  AND split_part(datname, '_', 3)::bigint < extract(epoch FROM now()) - 21600) \gexec" \
	  | $(SUDO) runuser -u postgres -- psql -q -v ON_ERROR_STOP=1

run: tools
	cargo leptos build --release
	./target/release/handover demo --dir data/demo --site-root target/site

test: test-tools postgres
	cargo fmt --all -- --check
	$(DEBUG_FLAGS) cargo clippy --workspace --all-targets -- -D warnings
	$(DEBUG_FLAGS) HANDOVER_TEST_PG=$(PG_URL) cargo test --workspace
	fuzz/run.sh 20
	cargo leptos build
	cd end2end && npx playwright test

clean:
	cargo clean
	rm -rf node_modules end2end/test-results
