#!/usr/bin/env bash
# The native-cpu vs ONNX Runtime grid of BENCHMARKS.md: 4-H-H-2 tanh networks
# (H = 16, 32, 64), briefly trained on problem-C inputs and exported, timed
# with `excite bench engine` (ONNX file = ONNX Runtime CPU, engine directory =
# native-cpu) at batches 1024 and 16384 on 1 and 2 threads, interleaved,
# medians of 5 rounds. Prints one line per cell and the geometric mean of
# native ÷ ORT. Needs ONNX Runtime (scripts/setup.sh).
#
# Usage: scripts/native-grid.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/excite-native-grid}"
mkdir -p "$work"
cargo build --release --quiet
bin=target/release/excite
sed 's/cells: 1000/cells: 50/; s/t_end: 20/t_end: 2/' models/problem-c.yaml > "$work/data.yaml"
"$bin" simulate -c "$work/data.yaml" -o "$work/data" >/dev/null
for h in 16 32 64; do
    printf 'name: h%s\ndataset: %s\nmode: ddnn\narchitecture:\n  hidden: [[tanh, %s], [tanh, %s]]\nsteps: 50\nbatch: 64\nval_every: 50\n' "$h" "$work/data" "$h" "$h" > "$work/t$h.yaml"
    "$bin" train -c "$work/t$h.yaml" -o "$work/run$h" >/dev/null
    "$bin" export "$work/run$h" -o "$work/m$h.onnx" >/dev/null
    "$bin" build "$work/m$h.onnx" --target native-cpu --no-verify -o "$work/native$h" >/dev/null
done
echo "H threads batch ORT native ratio"
for t in 1 2; do
    for h in 16 32 64; do
        "$bin" bench engine "$work/m$h.onnx" "$work/native$h" --batches 1024,16384 --threads "$t" --repeat 5 --seconds 0.4 --reference-cells 20000 --json > "$work/r-$h-$t.json"
        python3 - "$work/r-$h-$t.json" "$h" "$t" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for o, n in zip(r["engines"][0]["rows"], r["engines"][1]["rows"]):
    print(sys.argv[2], sys.argv[3], o["batch"], f"{o['samples_per_s']:.3e}", f"{n['samples_per_s']:.3e}", f"{n['ratio_to_first']:.2f}")
PY
    done
done | tee "$work/grid.txt"
python3 -c "
import math, sys
r = [float(l.split()[-1]) for l in open('$work/grid.txt') if l[0].isdigit()]
print(f'geometric mean native / ORT over {len(r)} cells: {math.exp(sum(map(math.log, r)) / len(r)):.2f}x')"
