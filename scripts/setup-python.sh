#!/usr/bin/env bash
# The Python the exchange tests use: onnxruntime (an independent runtime the ONNX
# files cnn writes and reads are checked against), onnx (to build PyTorch-style test
# models) and numpy, from PyPI into a virtual environment at $CNN_VENV (default:
# .venv in the source tree, ignored by git). Quick when it is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CNN_VENV:-$root/.venv}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import onnxruntime, onnx, numpy' 2>/dev/null; then exit 0; fi
echo "setup: creating $venv with onnxruntime, onnx and numpy (PyPI)"
python3 -m venv "$venv"
"$py" -m pip install -q --disable-pip-version-check onnxruntime onnx numpy
"$py" -c 'import onnxruntime, onnx, numpy'
