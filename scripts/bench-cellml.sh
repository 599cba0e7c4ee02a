#!/usr/bin/env bash
# excite's compiled solver of an imported CellML model next to Myokit's
# Simulation1d on the same model, dt and cell count, interleaved in rounds
# on this machine (the figures in BENCHMARKS.md, "CellML models").
#   scripts/bench-cellml.sh [ROUNDS] [CELLS] [T_END]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cells=${2:-1024}
t_end=${3:-100}
# setup.sh exports the two models into models/cellml/ (scripts/myokit_models.py)
scripts/setup.sh
cargo build --release --quiet
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for r in $(seq "$rounds"); do
    echo "round $r"
    for model in lr1991 hh1952; do
        target/release/excite bench cellml "models/cellml/$model.cellml" --cells "$cells" --t-end "$t_end" --repeat 3
        PYTHONPATH=.deps/python python3 scripts/bench_myokit.py --model "$model" --cells "$cells" --t-end "$t_end" --repeat 3
    done
done
