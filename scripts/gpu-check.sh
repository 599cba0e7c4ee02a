#!/usr/bin/env bash
# One call on a GPU machine: build (or use a carried binary), then solve the
# same million cells on CPU and CUDA over the reference problem (fhn-cardiac,
# dt = 0.01, t in [0, 25]), print both throughputs and the largest difference,
# and fail if the difference exceeds 1e-5; then build the quick surrogate as a
# native-cuda engine, check it against native-cpu and time both.
#
# Usage: scripts/gpu-check.sh [OUT_DIR]     (OUT_DIR receives the JSON report)
# Without cargo on the GPU machine, build here and carry a stripped copy (the
# release binary keeps line tables and is ~180 MB; stripped ~13 MB):
#   cargo build --release && mkdir -p .gpu && strip -o .gpu/excite target/release/excite
# (with .gpu/ in .git/info/exclude and `carry: [".gpu"]`); EXCITE_BIN=.gpu/excite.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp}}"
mkdir -p "$out"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
nproc

# NVRTC from the CUDA toolkit or from pip's nvidia packages (as PyTorch ships them).
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, q, "lib") for p in nvidia.__path__ for q in os.listdir(p)))' 2>/dev/null || true); do
    [[ -d $d ]] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
if [[ -z "${EXCITE_NVRTC_LIB:-}" ]]; then
    lib=$(ls /usr/local/cuda/lib64/libnvrtc.so.* 2>/dev/null | grep -v builtins | head -n1 || true)
    [[ -n $lib ]] && export EXCITE_NVRTC_LIB=$lib
fi

echo "== build"
if command -v cargo >/dev/null; then
    cargo build --release --quiet
else
    echo "cargo: not found, using the carried ${EXCITE_BIN:-target/release/excite}"
fi
bin=${EXCITE_BIN:-target/release/excite}
[[ -x $bin ]] || { echo "error: $bin missing; build it where cargo exists and carry it" >&2; exit 2; }

echo "== Euler: CPU vs CUDA, 1e6 cells, 2500 steps"
"$bin" bench euler --cuda --cells 1000000 --steps 2500 --repeat 3 --no-numpy --json > "$out/gpu-check-euler.json"
"$bin" bench euler --cuda --cells 1000000 --steps 2500 --repeat 3 --no-numpy
python3 - "$out/gpu-check-euler.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["cuda_max_abs_diff_to_cpu"]
print(f"max |cuda - cpu| = {d:.3e} (limit 1e-5)")
sys.exit(0 if d is not None and d <= 1e-5 else 1)
PY

echo "== native-cuda engine vs native-cpu on the quick surrogate"
work="$out/gpu-check-run"
"$bin" pipeline models/quick.yaml --out "$work" --until export
"$bin" build "$work/export/model.onnx" --target native-cpu --no-verify --out "$work/native-cpu"
"$bin" build "$work/export/model.onnx" --target native-cuda --max-mae 0.02 --out "$work/native-cuda"
"$bin" verify "$work/native-cuda" --max-mae 0.02 --json > "$out/gpu-check-native-cuda.json"
"$bin" verify "$work/native-cpu" --max-mae 0.02 --json > "$out/gpu-check-native-cpu.json"
python3 - "$out/gpu-check-native-cuda.json" "$out/gpu-check-native-cpu.json" <<'PY'
import json, sys
g, c = (json.load(open(p)) for p in sys.argv[1:3])
for vg, vc in zip(g["variables"], c["variables"]):
    d = abs(vg["mae"] - vc["mae"])
    print(f"{vg['name']}: MAE native-cuda {vg['mae']:.4e} vs native-cpu {vc['mae']:.4e} (diff {d:.1e})")
    assert d <= 1e-5, "native-cuda and native-cpu disagree"
PY
"$bin" bench engine "$work/native-cpu" "$work/native-cuda" --batches 1024,65536,1048576 --repeat 3
