# eemu: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing (.venv with torch==2.11.0) and build first.
SHELL := /bin/bash
ENV := source scripts/env.sh &&
DEMO_DIR ?= demo-data
DEMO_STORE ?= $(DEMO_DIR)/store
EEMU := target/release/eemu

.PHONY: setup build demo test bench-ingest bench-train bench-scoring bench-consensus bench-forget fmt lint clean-demo

setup:
	@scripts/setup.sh

build: setup
	$(ENV) cargo build --release --locked --workspace

## demo: generate the demo dataset, ingest it, run the nightly job (train + batch inference)
## and print where the top-K lists are.
demo: build
	$(EEMU) synth --out $(DEMO_DIR)/synth --seed 7
	$(EEMU) ingest --config configs/demo.toml --format csv \
		--input $(DEMO_DIR)/synth/interactions.csv \
		--users $(DEMO_DIR)/synth/users.csv --items $(DEMO_DIR)/synth/items.csv \
		--store $(DEMO_STORE)
	$(EEMU) nightly --store $(DEMO_STORE)
	$(EEMU) status --store $(DEMO_STORE)

## test: the whole test suite (what CI runs). Release profile: shares the build with `make demo`.
test: setup
	$(ENV) cargo test --release --locked --workspace
	$(ENV) cargo bench --locked --workspace --no-run

## bench-ingest: ingest throughput and peak memory on ../shared/data/ml-1m-partial.
bench-ingest: build
	$(ENV) cargo bench --locked --bench ingest

## bench-train: meta-training throughput (users/s, s/epoch) on ../shared/data/ml-100k, CPU.
bench-train: build
	$(ENV) cargo bench --locked --bench train

## bench-scoring: scoring + top-K throughput (users/s), 100k users x 50k items, S = 8, d = 128, CPU.
bench-scoring: build
	$(ENV) cargo bench --locked --bench scoring

## bench-consensus: consensus time and peak memory, dense vs factorized (5k, 50k, 1M users).
bench-consensus:
	cargo bench --locked -p eemu-core --bench consensus -- --users 5000 --method dense
	cargo bench --locked -p eemu-core --bench consensus -- --users 5000 --method factorized
	cargo bench --locked -p eemu-core --bench consensus -- --users 50000 --method factorized
	cargo bench --locked -p eemu-core --bench consensus -- --users 1000000 --method factorized

## bench-forget: full training vs `forget` of 1 interaction, 100 interactions and 1 user (CPU),
## on the demo data and ../shared/data/ml-100k. EPOCHS=N overrides train.epochs of both configs.
bench-forget: build
	$(ENV) cargo bench --locked --bench forget -- $(if $(EPOCHS),--epochs $(EPOCHS))

fmt:
	cargo fmt --all

## lint: clippy with warnings as errors; release profile, so tch's C++ wrapper is not built twice.
lint: setup
	$(ENV) cargo clippy --release --locked --workspace --all-targets -- -D warnings

clean-demo:
	rm -rf $(DEMO_DIR)
