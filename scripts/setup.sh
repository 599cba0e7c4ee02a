#!/usr/bin/env bash
# Installs what excite's tests and optional paths need beyond cargo, into the
# project-local folder .deps/:
#   - numpy: the dataset round-trip test and the numpy baseline of `excite bench euler`;
#   - NVRTC (PyPI nvidia-cuda-nvrtc-cu12): compiles the CUDA kernels, no GPU needed;
#     the CUDA headers the tensor-core kernel includes (mma.h, cuda_fp16.h,
#     cuda_bf16.h) come from nvidia-cuda-runtime-cu12 and nvidia-cuda-nvcc-cu12,
#     whose ptxas the tests use to assemble every kernel's PTX for sm_90;
#   - onnxruntime: its libonnxruntime.so is excite's ONNX Runtime engine, and with
#     onnx it is the independent reader the export tests check files with;
#   - scikit-learn and skl2onnx: real exporters' files for the tests of models
#     trained elsewhere (tests/integration/foreign.rs);
#   - maturin (builds the Python package in python/) and pytest (its tests);
#   - minisign, the one system-wide install (below).
# Safe to re-run: it does nothing when .deps/ already matches this list.
set -euo pipefail
cd "$(dirname "$0")/.."

# minisign (Debian package): the peer the signing tests check excite's
# bundle signatures against. System-wide, as Debian installs it.
if ! command -v minisign >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing minisign (apt-get)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq minisign >/dev/null
    else
        echo "setup: minisign is missing and this is not a root Debian shell; install it (apt-get install minisign, or https://jedisct1.github.io/minisign/) and re-run" >&2
        exit 1
    fi
fi

requirements="numpy==2.4.6 nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-nvcc-cu12==12.9.86 onnxruntime==1.31.1 onnx==1.23.2 scikit-learn==1.9.1 skl2onnx==1.20.0 maturin==1.16.0 pytest==9.0.1"
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
