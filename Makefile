# minipay — see README.md. `make run` and `make test` work on a fresh machine with only the
# Rust toolchain; PostgreSQL tests run when a server is reachable, browser tests when Chromium is
# installed (`make browser-deps`); both are required with CI=true.

CARGO ?= cargo
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

FUZZ_SECONDS ?= 60
SOAK_MINUTES ?= 10
BILL_ROWS ?= 100000

.PHONY: run test openapi test-js test-postgres test-browser browser-deps screenshots lint fmt bench bench-quick bench-bill bench-edge bench-events bench-refunds fuzz soak build clean-db

## run: API + workers + WeChat simulator on sqlite://minipay.db, http://127.0.0.1:8080
run:
	$(CARGO) run --release --locked --bin minipay -- all

## test: every test; PostgreSQL and browser ones are skipped loudly when no server answers or
## no Chromium is installed (CI=true: required)
test:
	$(CARGO) test --workspace --locked
	@$(MAKE) --no-print-directory test-js

## test-js: the mini-program client helper's Node tests against the real service (simulator
## mode); skipped loudly when node (20.10 or later) is missing
test-js:
	@if ! command -v node >/dev/null 2>&1; then \
	  echo "test-js: SKIPPED: node not found; clients/miniprogram was NOT tested (install Node 20.10+)" >&2; \
	elif ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'; then \
	  echo "test-js: SKIPPED: node $$(node --version) is older than 20.10; clients/miniprogram was NOT tested" >&2; \
	else \
	  set -e; \
	  $(CARGO) build --locked --bin minipay; \
	  target_dir=$$($(CARGO) metadata --format-version 1 --no-deps --locked \
	    | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))'); \
	  MINIPAY_BIN="$$target_dir/debug/minipay" node --test --test-concurrency=2 clients/miniprogram/test/*.test.js; \
	fi

## test-browser: the browser tests alone (tests/browser: the operator pages in headless
## Chromium); skipped loudly without Chromium (CI=true: required)
test-browser:
	$(CARGO) test --locked --test browser

## browser-deps: Debian's chromium and chromium-driver, which the browser tests drive
browser-deps:
	.ci/install-browser

## screenshots: the browser tests, writing what they see to docs/screenshots/*.png (installs
## Noto CJK fonts first, for the Chinese product names)
screenshots:
	.ci/install-browser --fonts
	MINIPAY_SCREENSHOTS=1 $(CARGO) test --locked --test browser

## test-postgres: the same, failing if PostgreSQL is unreachable
test-postgres:
	CI=true MINIPAY_TEST_POSTGRES_URL=$(PG_URL) $(CARGO) test --workspace --locked

## openapi: write docs/openapi.json, the OpenAPI 3.1 document generated from the code (a test
## fails when the committed file differs)
openapi:
	$(CARGO) run --quiet --locked --bin minipay -- openapi > docs/openapi.json.tmp
	mv docs/openapi.json.tmp docs/openapi.json

## lint: formatting, clippy (warnings are errors; no function over 80 lines, clippy.toml), and
## modcheck (no import cycle between modules, no production file over 400 lines)
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) run --quiet --locked -p modcheck -- src jobs/src

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release --locked --workspace --bins

## bench: protocol micro-benchmarks (criterion), then the load run against its ceilings on
## SQLite and PostgreSQL; writes BENCHMARKS.md; then the 100,000-row bill statement; then the
## edge section, merchant events and refunds
bench: build
	$(CARGO) bench --locked --bench protocol
	target/release/minipay-bench run --write BENCHMARKS.md
	target/release/minipay-bench bill --rows $(BILL_ROWS)
	target/release/minipay-bench edge
	target/release/minipay-bench events
	target/release/minipay-bench refunds

## bench-edge: a normal client's p99 and the service's RSS during slowloris, idle-connection,
## login and metrics-scrape floods (about 4 minutes after the build); prints the table
bench-edge: build
	target/release/minipay-bench edge

## bench-events: merchant events delivered per second on each backend; submit → ready and
## notify rates while every delivery hangs vs no webhook; RSS with 10,000 events for a dead endpoint
bench-events: build
	target/release/minipay-bench events

## bench-refunds: one full refund of each of 2,000 paid orders per backend: refund requests
## accepted per second (p50/p99) and refunds settled per second (request → succeeded)
bench-refunds: build
	target/release/minipay-bench refunds

## bench-bill: parse and reconcile a generated statement of BILL_ROWS lines: time, peak RSS growth
bench-bill: build
	target/release/minipay-bench bill --rows $(BILL_ROWS)

## bench-quick: the load run with small counts and the database work per operation, counted
## (about 70 s after the build); prints the table
bench-quick: build
	target/release/minipay-bench run --quick

## fuzz: cargo-fuzz targets (xml_reader, notify_verifier, order_body, bill_parser,
## refund_notify), FUZZ_SECONDS each
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

## soak: SOAK_MINUTES of orders and notifies under injected faults, a PostgreSQL restart and a
## killed worker; prints the counts and fails on any lost or double-applied payment
soak: build
	target/release/minipay-bench soak --minutes $(SOAK_MINUTES)

clean-db:
	rm -f minipay.db minipay.db-shm minipay.db-wal minipay.db.lock
