# msgin5g front door. `make test` and `make run` work on a fresh Debian 12 machine:
# they install what is missing (apt-get, when root), build, then test or run.
SHELL := /bin/bash
.DEFAULT_GOAL := all

APT_PKGS := build-essential cmake ninja-build pkg-config openssl libssl-dev libnghttp2-dev \
  nghttp2-client libcurl4-openssl-dev curl libjansson-dev libcjose-dev libhttp-parser-dev \
  libsqlite3-dev sqlite3 libyaml-dev libcmocka-dev libcoap3-dev python3 nodejs npm \
  mosquitto

BUILD_TEST := build/asan
BUILD_REL  := build/release
JOBS ?= $(shell nproc)

.PHONY: all deps build build-test test run bench bench-full bench-build clean distclean

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

# Benchmarks (docs/benchmarks.md): m5s vs Mosquitto side by side, point-to-point then group
# fan-out. Their own dependencies (mosquitto, libmosquitto-dev; valgrind for bench-full's
# callgrind count) are installed here, not for make test. `make bench` takes about 6 minutes,
# `make bench-full` about 20; results in bench/results/. BENCH_ARGS adds bench/run.sh options,
# e.g. BENCH_ARGS="--fan-via topic" (the fan-out through a Messaging Topic instead of a group).
BENCH_ARGS ?=
BENCH_PKGS := mosquitto libmosquitto-dev

bench-build: deps
	@./tools/ensure-deps.sh $(BENCH_PKGS)
	@cmake -S . -B $(BUILD_REL) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DM5_TESTS=OFF -DM5_BENCH=ON -DM5_TEST_HOOKS=OFF >/dev/null
	@cmake --build $(BUILD_REL) -j $(JOBS)

bench: bench-build
	@./bench/run.sh --quick --build $(BUILD_REL) $(BENCH_ARGS)

bench-full: bench-build
	@./tools/ensure-deps.sh valgrind
	@./bench/run.sh --full --callgrind --build $(BUILD_REL) $(BENCH_ARGS)

clean:
	rm -rf build

distclean: clean
	rm -rf var tests/schema/node_modules
