"""The Python package's cost over the Rust call, on one engine, one machine, one run.

Usage: PYTHONPATH=.deps/python:.deps/excite python3 scripts/bench_python.py ENGINE_DIR

Times Surrogate.predict at batch 1 and 16384 (median of rounds) and
`excite bench engine` on the same engine folder, interleaved, and prints
the per-call overhead (batch 1 latency difference) and the throughput ratio
at 16384 (the goals: at most 5 µs, within 5%)."""
import json
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

import excite

engine = pathlib.Path(sys.argv[1])
exe = pathlib.Path(__file__).resolve().parents[1] / "target" / "release" / "excite"
s = excite.Surrogate.load(engine)
n_in = len(s.inputs)
rng = np.random.default_rng(0)


def py_time(batch, seconds=1.0):
    x = rng.uniform(0, 1, (batch, n_in)).astype(np.float32)
    for _ in range(10):
        s.predict(x)
    lat = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(lat) < 10:
        t = time.perf_counter()
        s.predict(x)
        lat.append(time.perf_counter() - t)
    return statistics.mean(lat), batch * len(lat) / sum(lat)


def rust_time():
    out = subprocess.run([exe, "bench", "engine", engine, "--batches", "1,16384", "--seconds", "1", "--repeat", "1", "--reference-cells", "0", "--json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)["engines"][0]["rows"]
    return rows[0]["latency_ms"]["mean"] / 1e3, rows[1]["samples_per_s"]


py1, py16, rust1, rust16 = [], [], [], []
for _ in range(3):
    py1.append(py_time(1)[0])
    py16.append(py_time(16384)[1])
    r1, r16 = rust_time()
    rust1.append(r1)
    rust16.append(r16)
m = statistics.median
print(f"cpu: {pathlib.Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
print(f"engine: {s.info['engine']}")
print(f"batch 1: python {m(py1) * 1e6:.2f} µs per call, rust {m(rust1) * 1e6:.2f} µs, overhead {(m(py1) - m(rust1)) * 1e6:.2f} µs")
print(f"batch 16384: python {m(py16):.4g} samples/s, rust {m(rust16):.4g}, ratio {m(py16) / m(rust16):.3f}")
