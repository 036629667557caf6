# prism-broker: `make run` starts the service with config/broker.yaml (it starts its own
# nats-server under data/); `make test` runs the whole test suite; `make cluster` starts a
# three-node cluster on loopback (config/cluster/), `make cluster-stop` stops it.
.PHONY: run test deps build lint fmt cluster cluster-stop cluster-status

CONFIG ?= config/broker.yaml

deps:
	@./scripts/install-nats-server.sh

build:
	cargo build --release

run: deps build
	./target/release/prism-broker --config $(CONFIG) serve

test: deps
	cargo build --quiet
	./target/debug/prism-broker --config $(CONFIG) check
	./target/debug/prism-broker --config $(CONFIG) test tests/routes
	./target/debug/prism-broker --config config/marketprism.yaml check
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --no-fail-fast --retries 0; \
	else \
		cargo test --no-fail-fast; \
	fi

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

cluster: deps build
	BIN=./target/release/prism-broker ./scripts/cluster.sh start

cluster-status:
	./scripts/cluster.sh status

cluster-stop:
	./scripts/cluster.sh stop
