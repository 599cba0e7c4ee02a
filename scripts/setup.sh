#!/usr/bin/env bash
# Installs what excite's tests and optional paths need beyond cargo, into the
# project-local folder .deps/ (nothing system-wide):
#   - numpy: the dataset round-trip test and the numpy baseline of `excite bench euler`;
#   - NVRTC (PyPI nvidia-cuda-nvrtc-cu12): compiles the CUDA kernels, no GPU needed;
#     the CUDA headers the tensor-core kernel includes (mma.h, cuda_fp16.h,
#     cuda_bf16.h) come from nvidia-cuda-runtime-cu12 and nvidia-cuda-nvcc-cu12,
#     whose ptxas the tests use to assemble every kernel's PTX for sm_90;
#   - onnxruntime: its libonnxruntime.so is excite's ONNX Runtime engine, and with
#     onnx it is the independent reader the export tests check files with.
# Safe to re-run: it does nothing when .deps/ already matches this list.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements="numpy==2.4.6 nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-nvcc-cu12==12.9.86 onnxruntime==1.31.1 onnx==1.23.2"
python="${PYTHON:-python3}"
target=.deps/python
stamp=.deps/installed.txt

if [[ -f $stamp && "$(cat "$stamp")" == "$requirements" ]]; then
    exit 0
fi
echo "setup: installing $requirements into $target" >&2
rm -rf "$target" "$stamp"
mkdir -p .deps
# shellcheck disable=SC2086
"$python" -m pip install --quiet --disable-pip-version-check --no-input --target "$target" $requirements
echo "$requirements" > "$stamp"
