#!/usr/bin/env bash
# Full-length training runs for problems A, B and C (fhn-cardiac), the
# figures in BENCHMARKS.md. Takes about half an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/excite
for p in problem-a problem-a-dense problem-b problem-c problem-c-large problem-c-itnn; do
    "$bin" simulate -c "models/$p.yaml" -o "runs/$p/simulate"
done
for t in problem-a problem-a-dense problem-a-pinn problem-b problem-c problem-c-large problem-c-itnn; do
    "$bin" train -c "models/$t-train.yaml" -o "runs/$t/train" --json > "runs/$t.metrics.json"
    echo "$t: $(python3 -c "import json; print(json.load(open('runs/$t.metrics.json'))['mae'])")"
done
