#!/usr/bin/env bash
# Installs the Debian packages cnn needs that are missing; quick when none are.
# The CUDA toolkit is not a Debian package here: the CUDA backend is built when
# nvcc is found (PATH or /usr/local/cuda/bin) and skipped otherwise.
# For `make fuzz` and `make sanitize`: clang, its libFuzzer and sanitizer runtimes
# (libclang-rt-14-dev: clang does not pull it in with --no-install-recommends), its
# OpenMP (libomp-dev) and llvm (llvm-symbolizer, for readable sanitizer stacks).
# ONNX: protobuf-c (runtime and protoc-c) with Debian's onnx.proto (libonnx-dev);
# python3-venv for scripts/setup-python.sh (onnxruntime for the exchange tests).
# libdnnl-dev: oneDNN, the optional cpu conv engine (docs/cpu-engines.md).
set -euo pipefail
pkgs=(cmake make gcc pkg-config zlib1g-dev libjpeg-dev libopenblas-dev libcjson-dev libstb-dev
      dataset-fashion-mnist clang libclang-rt-14-dev libomp-dev llvm
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev python3-venv
      libdnnl-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exec "$(dirname "$0")/setup-python.sh"; fi
echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
exec "$(dirname "$0")/setup-python.sh"
