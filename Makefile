# The targets a user types. CMake + CTest do the work underneath.
BUILD ?= build
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all setup configure build test test-gpu install clean train sanitize fuzz bench

all: build

setup:
	@scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# GPU tests only (they exit 77, ctest SKIP, on a machine without a GPU)
test-gpu: build
	cd $(BUILD) && ctest -L gpu --output-on-failure

# The test suite built with gcc's AddressSanitizer + UndefinedBehaviorSanitizer
# (its own build folder, no CUDA); any memory error, leak or UB fails the test.
SAN_BUILD ?= build-asan
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize: setup
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Release -DCNN_SANITIZE=ON -DCNN_CUDA=OFF \
	  $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(SAN_BUILD) -j$(JOBS) -- --no-print-directory
	cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j$(JOBS)

# libFuzzer: builds the harnesses (clang, ASan + UBSan, in build-fuzz) and runs each
# for FUZZ_SECONDS on tests/fuzz/corpus/<target> (new inputs go to
# build-fuzz/corpus/<target>); a crashing input is written to
# tests/fuzz/regress/<target>/ (commit it: test_fuzz_regress replays it), one that
# times out or runs out of memory to tests/fuzz/slow/<target>/, and the target fails. FUZZ_TARGETS picks some: make fuzz FUZZ_TARGETS="cfg idx"; FUZZ_FLAGS
# adds libFuzzer flags.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: setup
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
	  -DCNN_FUZZ=ON -DCNN_CUDA=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers -- --no-print-directory
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)

# Trains the default model on Fashion-MNIST on the best device found: resnet9 on a
# CUDA GPU; on a CPU-only machine the smaller fashion model (see models/fashion.cfg).
# Prints the final test accuracy; the run folder is runs/<model>.
TRAIN_FLAGS ?=
train: build
	@if $(BUILD)/cnn devices --json | grep -q '"compute_capability"'; then \
	  model=models/resnet9.cfg; else model=models/fashion.cfg; fi; \
	echo "make train: $$model on Fashion-MNIST"; \
	$(BUILD)/cnn train $$model --data fashion-mnist --device auto $(TRAIN_FLAGS)

# cnn against PyTorch on the best device found (cuda when cnn devices finds a GPU, else
# the CPU: issue 11's rows, interleaved rounds, medians; BENCH_ROUNDS, BENCH_THREADS,
# BENCH_CNN_FLAGS): cnn bench and bench/pytorch_models.py on the same models,
# precisions and batches, the time to 94 % on Fashion-MNIST (GPU), then one markdown
# table with DESIGN.md's targets (runs/bench/table.md). BENCH_QUICK=1: about 4 minutes on
# an H200; BENCH_PYTHON: a Python with torch; more knobs in bench/run.sh, bench/README.md.
# Builds first only when $(BUILD)/cnn is missing (no setup step: a benchmark machine may
# have nothing to install from).
bench:
	@test -x $(BUILD)/cnn || $(MAKE) --no-print-directory build
	@BUILD=$(BUILD) bench/run.sh
