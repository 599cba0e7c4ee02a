#!/usr/bin/env bash
# The test command (README and CI run exactly this): project-local set-up,
# then every test in the release profile, the one profile the binary uses too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# libexcite.so (the C ABI the ffi tests link against) is a build product of
# the library target, which `cargo test` alone does not produce.
cargo build --release --lib
cargo test --release "$@"
