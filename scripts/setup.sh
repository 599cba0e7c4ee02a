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
#   - myokit: real cell models (exported as CellML at test time) and the peer the
#     CellML import and the cell-model solvers are checked against;
#   - libopencor, under Python 3.12 in .deps/python312 (see below);
#   - maturin (builds the Python package in python/) and pytest (its tests);
#   - and, system-wide, the Debian packages below (minisign, Open MPI, Slurm).
# Safe to re-run: it does nothing when .deps/ already matches this list.
set -euo pipefail
cd "$(dirname "$0")/.."

# System-wide Debian packages, as Debian installs them:
#   - minisign: the peer the signing tests check excite's bundle signatures against;
#   - openmpi-bin, libopenmpi-dev and libclang-dev: Open MPI, which the test
#     build links (`--features mpi`, rsmpi's bindings are made with libclang)
#     and whose mpirun runs the MPI sweep test;
#   - slurm-wlm and munge: a one-node Slurm cluster on this machine
#     (scripts/slurm-up.sh starts it) for the Slurm sweep test.
packages="minisign openmpi-bin libopenmpi-dev libclang-dev slurm-wlm munge"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [[ -n $missing ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing$missing (apt-get)" >&2
        apt-get update -qq >/dev/null
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "setup: missing Debian packages:$missing, and this is not a root Debian shell; install them (apt-get install$missing) and re-run" >&2
        exit 1
    fi
fi

# libopencor (OpenCOR's simulation library: CVODE on CellML files, the reference the
# imported models' solvers converge to) ships wheels for Python >= 3.12 only: it goes into
# .deps/python312 for the 3.12 this image has under pyenv.
opencor_requirements="libopencor==1.20261020.0"
opencor_stamp=.deps/installed-python312.txt
if [[ ! -f $opencor_stamp || "$(cat "$opencor_stamp")" != "$opencor_requirements" ]]; then
    # pyenv's own interpreter first: its shim may exist with 3.12 not selected
    py312=""
    for candidate in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 $(command -v python3.12 || true); do
        if [[ -x $candidate ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            py312=$candidate
            break
        fi
    done
    if [[ -z $py312 ]]; then
        echo "setup: no python3.12 (libopencor needs it): install Python 3.12 (pyenv install 3.12) and re-run" >&2
        exit 1
    fi
    echo "setup: installing $opencor_requirements into .deps/python312 ($py312)" >&2
    rm -rf .deps/python312 "$opencor_stamp"
    mkdir -p .deps
    "$py312" -m pip install --quiet --disable-pip-version-check --no-input --target .deps/python312 $opencor_requirements
    echo "$py312" > .deps/python312-interpreter.txt
    echo "$opencor_requirements" > "$opencor_stamp"
fi

requirements="numpy==2.4.6 nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79 nvidia-cuda-nvcc-cu12==12.9.86 onnxruntime==1.31.1 onnx==1.23.2 scikit-learn==1.9.1 skl2onnx==1.20.0 myokit==1.39.2 maturin==1.16.0 pytest==9.0.1"
python="${PYTHON:-python3}"
target=.deps/python
stamp=.deps/installed.txt

if [[ ! -f $stamp || "$(cat "$stamp")" != "$requirements" ]]; then
    echo "setup: installing $requirements into $target" >&2
    rm -rf "$target" "$stamp"
    mkdir -p .deps
    # shellcheck disable=SC2086
    "$python" -m pip install --quiet --disable-pip-version-check --no-input --target "$target" $requirements
    echo "$requirements" > "$stamp"
fi

# the CellML files the models/lr1991*.yaml and hh1952.yaml presets import, made from Myokit's models
if [[ ! -f models/cellml/lr1991.cellml || ! -f models/cellml/hh1952.cellml ]]; then
    PYTHONPATH="$target" "$python" scripts/myokit_models.py models/cellml >/dev/null
fi
