# minipay — see README.md. `make run` and `make test` work on a fresh machine with only the
# Rust toolchain; PostgreSQL tests run when a server is reachable (required with CI=true).

CARGO ?= cargo
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

FUZZ_SECONDS ?= 60
SOAK_MINUTES ?= 10

.PHONY: run test test-postgres lint fmt bench bench-quick fuzz soak build clean-db

## run: API + workers + WeChat simulator on sqlite://minipay.db, http://127.0.0.1:8080
run:
	$(CARGO) run --release --locked --bin minipay -- all

## test: every test; PostgreSQL ones are skipped loudly when no server answers (CI=true: required)
test:
	$(CARGO) test --workspace --locked

## test-postgres: the same, failing if PostgreSQL is unreachable
test-postgres:
	CI=true MINIPAY_TEST_POSTGRES_URL=$(PG_URL) $(CARGO) test --workspace --locked

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release --locked --workspace --bins

## bench: protocol micro-benchmarks (criterion), then the load run against its ceilings on
## SQLite and PostgreSQL; writes BENCHMARKS.md
bench: build
	$(CARGO) bench --locked --bench protocol
	target/release/minipay-bench run --write BENCHMARKS.md

## bench-quick: the load run with small counts (about a minute after the build); prints the table
bench-quick: build
	target/release/minipay-bench run --quick

## fuzz: cargo-fuzz targets (xml_reader, notify_verifier, order_body, refund_notify),
## FUZZ_SECONDS each
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

## soak: SOAK_MINUTES of orders and notifies under injected faults, a PostgreSQL restart and a
## killed worker; prints the counts and fails on any lost or double-applied payment
soak: build
	target/release/minipay-bench soak --minutes $(SOAK_MINUTES)

clean-db:
	rm -f minipay.db minipay.db-shm minipay.db-wal minipay.db.lock
