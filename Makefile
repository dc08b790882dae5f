# minipay — see README.md. `make run` and `make test` work on a fresh machine with only the
# Rust toolchain; PostgreSQL tests run when a server is reachable (required with CI=true).

CARGO ?= cargo
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test test-postgres lint fmt bench bench-quick fuzz soak build release clean-db

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
	$(CARGO) build --release --locked --bins

## bench: protocol micro-benchmarks (criterion)
bench:
	$(CARGO) bench --locked --bench protocol

clean-db:
	rm -f minipay.db minipay.db-shm minipay.db-wal minipay.db.lock
