#!/usr/bin/env bash
# One call on a GPU machine checks and times every CUDA path:
#  1. Euler: the same million cells on CPU and CUDA (fhn-cardiac, dt = 0.01,
#     2500 steps); fails if they differ by more than 1e-5.
#  2. Surrogates on the GPU (`excite bench gpu`): the quick surrogate (problem
#     A, 1 input, 3×32 tanh) and a problem-C-shaped 4-64-64-2 tanh network,
#     each next to the CUDA Euler kernel of its own problem: native-cuda rows
#     and in-kernel time grid, native-cpu; fails if native-cuda and native-cpu
#     differ by more than 1e-5.
#  3. The same networks through PyTorch (fp32, fp16, bf16) as a peer
#     (`scripts/torch_peer.py`), and one table of everything.
#  4. With cargo: the `gpu-train` feature (burn's CUDA backend) compiles.
#  Between 1 and 2: imported CellML models (FHN as CellML; Luo-Rudy 1991 and
#     Decker 2009 where Python can import myokit) through the generated CUDA
#     kernel next to the CPU solver; fails if they differ by more than 1e-5.
#
# Usage: scripts/gpu-check.sh [OUT_DIR]     (OUT_DIR receives the JSON reports)
# Without cargo on the GPU machine, build here and carry a stripped copy (the
# release binary keeps line tables and is ~180 MB; stripped ~13 MB):
#   cargo build --release && mkdir -p .gpu && strip -o .gpu/excite target/release/excite
# (with .gpu/ in .git/info/exclude and `carry: [".gpu"]`); EXCITE_BIN=.gpu/excite.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp}}"
mkdir -p "$out"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || echo "nvidia-smi: not found"
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
python3 - "$out/gpu-check-euler.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for row in r["rows"]:
    print(f"{row['path']:<40} {row['threads']:>3} threads {row['cell_steps_per_s']:.3e} cell-steps/s")
d = r["cuda_max_abs_diff_to_cpu"]
print(f"max |cuda - cpu| = {d:.3e} (limit 1e-5)")
sys.exit(0 if d is not None and d <= 1e-5 else 1)
PY

echo "== imported (CellML) models: the generated CUDA kernel vs the CPU, f64"
cellml_models=(models/fhn-cardiac.cellml)
if PYTHONPATH=.deps/python python3 -c 'import myokit' 2>/dev/null; then
    PYTHONPATH=.deps/python python3 tests/integration/cellml_models.py "$out/cellml" >/dev/null
    cellml_models+=("$out/cellml/lr1991-2.0.cellml" "$out/cellml/decker2009-2.0.cellml")
else
    echo "myokit not importable here: only the FHN CellML file is checked"
fi
for m in "${cellml_models[@]}"; do
    "$bin" bench cellml "$m" --cuda --cells 100000 --t-end 100 --dt 0.01 --threads 16 --repeat 1 --json > "$out/gpu-check-cellml-$(basename "$m" .cellml).json"
    python3 - "$out/gpu-check-cellml-$(basename "$m" .cellml).json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = False
for row in r["rows"]:
    d = row.get("max_rel_diff_to_cpu")
    print(f"{r['model']:<32} {row['path']:<5} {row['scheme']:<12} {row['cell_steps_per_s']:.3e} cell-steps/s" + ("" if d is None else f"  max rel |cuda - cpu| {d:.2e} (limit 1e-5)"))
    bad |= d is not None and not d <= 1e-5
sys.exit(1 if bad else 0)
PY
done

echo "== surrogates: the quick one and a problem-C-shaped 4-64-64-2"
work="$out/gpu-check-run"
mkdir -p "$work"
"$bin" pipeline models/quick.yaml --out "$work/quick" --until export
sed 's/cells: 1000/cells: 200/' models/problem-c.yaml > "$work/c-data.yaml"
"$bin" simulate -c "$work/c-data.yaml" -o "$work/c-data" >/dev/null
printf 'name: c64\ndataset: %s\nmode: ddnn\narchitecture:\n  hidden: [[tanh, 64], [tanh, 64]]\nsteps: 300\nbatch: 256\nval_every: 300\n' "$work/c-data" > "$work/c-train.yaml"
"$bin" train -c "$work/c-train.yaml" -o "$work/c-run" >/dev/null
"$bin" export "$work/c-run" -o "$work/c64.onnx"
cp "$work/quick/export/model.onnx" "$work/quick.onnx"
status=0
for m in quick c64; do
    echo "-- $m"
    "$bin" bench gpu "$work/$m.onnx" --cells 100000 --repeat 5 --out "$out/peer-$m" || status=1
    python3 scripts/torch_peer.py "$out/peer-$m" || echo "(PyTorch peer failed for $m)"
done

echo "== engines through excite build (Engine::run, copies included)"
"$bin" build "$work/c64.onnx" --target native-cpu --no-verify --out "$work/native-cpu"
"$bin" build "$work/c64.onnx" --target native-cuda --no-verify --out "$work/native-cuda"
"$bin" bench engine "$work/native-cpu" "$work/native-cuda" --batches 1024,65536,1048576 --repeat 3

echo "== one table (samples/s; ratio to the CUDA Euler kernel of the same problem)"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for m in ["quick", "c64"]:
    d = os.path.join(out, f"peer-{m}")
    rows = []
    for f in ["report.json", "torch.json"]:
        p = os.path.join(d, f)
        if os.path.exists(p):
            rows += json.load(open(p))["rows"]
    r = json.load(open(os.path.join(d, "report.json"))) if os.path.exists(os.path.join(d, "report.json")) else {}
    print(f"{m}: {r.get('cells', '?')} cells x {r.get('samples_per_cell', '?')} samples, {r.get('steps_per_sample', '?')} Euler steps per sample, {r.get('device', '?')}")
    print(f"  {'path':<44} {'samples/s':>11} {'÷ Euler':>9} {'max|Δ| cpu':>11}")
    for x in rows:
        ratio = x.get("ratio_to_cuda_euler")
        diff = x.get("max_abs_diff_to_cpu")
        print(f"  {x['path']:<44} {x['samples_per_s']:>11.3e} {ratio if ratio is None else round(ratio, 3)!s:>9} {'-' if diff is None else f'{diff:.1e}':>11}")
PY

if command -v cargo >/dev/null; then
    echo "== the gpu-train feature compiles"
    cargo check --release --quiet --features gpu-train || status=1
fi
exit $status
