# The targets a user types. CMake + CTest do the work underneath.
BUILD ?= build
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE_FLAGS ?=

.PHONY: all setup configure build test test-gpu install clean train

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

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)

# Trains the default model on Fashion-MNIST on the best device found: resnet9 on a
# CUDA GPU; on a CPU-only machine the smaller fashion model (see models/fashion.cfg).
# Prints the final test accuracy; the run folder is runs/<model>.
TRAIN_FLAGS ?=
train: build
	@if $(BUILD)/cnn devices --json | grep -q '"compute_capability"'; then \
	  model=models/resnet9.cfg; else model=models/fashion.cfg; fi; \
	echo "make train: $$model on Fashion-MNIST"; \
	$(BUILD)/cnn train $$model --data fashion-mnist --device auto $(TRAIN_FLAGS)
