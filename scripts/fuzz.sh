#!/usr/bin/env bash
# Runs the fuzzer (tests/fuzz.rs) for MINUTES (default 30) and writes its
# summary to target/fuzz-summary.json; findings go to target/fuzz-findings/.
# The test command runs the same program for one minute.
#   scripts/fuzz.sh 30            # half an hour, a fresh random seed
#   EXCITE_FUZZ_SEED=42 scripts/fuzz.sh 5
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
scripts/setup.sh
export EXCITE_FUZZ_SECONDS=$((minutes * 60))
export EXCITE_FUZZ_SUMMARY="${EXCITE_FUZZ_SUMMARY:-$PWD/target/fuzz-summary.json}"
lscpu | sed -n 's/^Model name: *//p' >&2
exec cargo test --release --test fuzz
