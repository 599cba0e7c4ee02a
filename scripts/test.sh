#!/usr/bin/env bash
# The test command (README and CI run exactly this): project-local set-up,
# then every test in the release profile, the one profile the binary uses too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release "$@"
