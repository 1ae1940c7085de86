# msgin5g front door. `make test` and `make run` work on a fresh Debian 12 machine:
# they install what is missing (apt-get, when root), build, then test or run.
SHELL := /bin/bash
.DEFAULT_GOAL := all

APT_PKGS := build-essential cmake ninja-build pkg-config openssl libssl-dev libnghttp2-dev \
  nghttp2-client libcurl4-openssl-dev curl libjansson-dev libcjose-dev libhttp-parser-dev \
  libsqlite3-dev sqlite3 libyaml-dev libcmocka-dev libcoap3-dev python3 nodejs npm \
  mosquitto mosquitto-clients \
  libsmpp34-dev nats-server libnats-dev

BUILD_TEST := build/asan
BUILD_REL  := build/release
JOBS ?= $(shell nproc)

.PHONY: all deps build build-test test run run-cluster bench bench-full bench-build bench-js bench-store clean distclean

all: build

deps:
	@./tools/ensure-deps.sh $(APT_PKGS)

build: deps
	@cmake -S . -B $(BUILD_REL) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DM5_TESTS=OFF -DM5_TEST_HOOKS=OFF >/dev/null
	@cmake --build $(BUILD_REL) -j $(JOBS)

build-test: deps
	@cmake -S . -B $(BUILD_TEST) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DM5_SANITIZE=ON -DM5_BENCH=ON -DM5_TEST_HOOKS=ON >/dev/null
	@cmake --build $(BUILD_TEST) -j $(JOBS)

# make test also builds the release tree: `make run` builds with -O2 and _FORTIFY_SOURCE, whose
# extra warnings (format truncation, ...) a Debug build never shows.
test: build build-test
	@./tests/schema/ensure-node-deps.sh
	@cd $(BUILD_TEST) && ctest --output-on-failure -j $(JOBS) --timeout 300

run: build
	@./tools/run-dev.sh $(BUILD_REL)

# Two m5s nodes on a three-node NATS JetStream cluster, all on loopback (docs/scale-out.md):
# pid files, configs, stores and logs under var/cluster/.
run-cluster: build
	@./tools/run-cluster.sh $(BUILD_REL)

# Benchmarks (docs/benchmarks.md): m5s vs Mosquitto side by side with bench/vs-mosquitto (the
# fair harness: same TLS 1.3 suite and group, Mosquitto with persistence, fresh stores, pinned
# cores, rotated order, latency open-loop at half of Mosquitto's saturation), then the group
# fan-out of bench/run.sh. Their own dependencies (mosquitto is also make test's, for the
# harness's smoke test; valgrind for bench-full's callgrind count, gnuplot-nox for its
# latency-against-offered-load plot, rabbitmq-server for its durable peer) are installed
# here. `make bench` takes about 6-8 minutes, `make bench-full` about 35; results in
# bench/results/<date>-<commit>-*.txt (+ .json). VS_ARGS adds bench/vs-mosquitto options (e.g.
# VS_ARGS="--pairs 1000"), BENCH_ARGS bench/run.sh options (e.g. BENCH_ARGS="--fan-via topic").
VS_ARGS ?=
BENCH_ARGS ?=
BENCH_PKGS := mosquitto

bench-build: deps
	@./tools/ensure-deps.sh $(BENCH_PKGS)
	@cmake -S . -B $(BUILD_REL) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DM5_TESTS=OFF -DM5_BENCH=ON -DM5_TEST_HOOKS=OFF >/dev/null
	@cmake --build $(BUILD_REL) -j $(JOBS)

# All three parts run; the target fails when one did (a lost / refused message, a lost session,
# a generator-bound run). The scale-out part (bench/js.sh: one node on SQLite, one on JetStream,
# two nodes on three nats-servers) adds about 4-5 minutes (docs/benchmarks.md).
bench: bench-build
	@rc=0; ./bench/vs-mosquitto --no-build --build $(BUILD_REL) $(VS_ARGS) || rc=1; \
	  ./bench/run.sh --only fan --build $(BUILD_REL) $(BENCH_ARGS) || rc=1; \
	  ./bench/js.sh --build $(BUILD_REL) $(JS_BENCH_ARGS) || rc=1; exit $$rc

bench-full: bench-build
	@./tools/ensure-deps.sh valgrind gnuplot-nox rabbitmq-server
	@rc=0; ./bench/vs-mosquitto --full --no-build --build $(BUILD_REL) $(VS_ARGS) || rc=1; \
	  ./bench/run.sh --only fan --runs 5 --callgrind --build $(BUILD_REL) $(BENCH_ARGS) || rc=1; exit $$rc

# Scale-out alone (docs/benchmarks.md "Scale-out on JetStream"): point-to-point throughput and
# p99 of one m5s on SQLite, one on JetStream (1 nats-server, replicas 1) and two nodes on 3
# nats-servers (replicas 3), side by side (also the last part of make bench); bench-store: the
# message store alone on the same three (bench/storeload.sh).
JS_BENCH_ARGS ?=
bench-js: bench-build
	@./bench/js.sh --build $(BUILD_REL) $(JS_BENCH_ARGS)

bench-store: bench-build
	@./bench/storeload.sh --build $(BUILD_REL)

clean:
	rm -rf build

distclean: clean
	rm -rf var tests/schema/node_modules
