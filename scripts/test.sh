#!/usr/bin/env bash
# The test command (README and CI run exactly this): project-local set-up,
# then every test in the release profile, the one profile the binary uses too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# libexcite.so (the C ABI the ffi tests link against) is a build product of
# the library target, which `cargo test` alone does not produce.
# `--features mpi`: the build whose `excite sweep --mpi` the MPI test runs
# under a real mpirun; the Slurm test starts its one-node cluster itself
# (scripts/slurm-up.sh, idempotent).
cargo build --release --features mpi --lib
cargo test --release --features mpi "$@"
# the Python package: built by maturin into a wheel, installed into
# .deps/excite (import excite with PYTHONPATH=.deps/python:.deps/excite),
# tested with pytest against the CLI and the Rust loader
.deps/python/bin/maturin build --quiet --release -m python/Cargo.toml --out target/wheels --interpreter python3
rm -rf .deps/excite
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target .deps/excite target/wheels/excite-*.whl
PYTHONPATH=.deps/python:.deps/excite python3 -m pytest -q python/tests
