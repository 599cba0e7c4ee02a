"""The honest speed-up of a Luo-Rudy 1991 surrogate: its error and the
reference's own error against one fine solution, on the same fresh cells,
and each reference configuration's speed in sample-equivalents per second.

For the cells of models/lr1991.yaml's problem (a new seed), it solves with
`excite simulate` a fine solution (forward Euler, dt 0.0005 ms: first order,
so about 20x closer to the exact beat than dt 0.01) and the reference at
coarser steps (Euler, Rush-Larsen), runs the surrogate (the bundle's
model.onnx, ONNX Runtime) on the same inputs, and prints the MAE of V of
each against the fine solution. Speeds come from `excite bench cellml`
(cell-steps/s on all cores, timed at dt 0.01: a step costs the same at any
dt), divided by the steps a 1 ms sample takes.

usage: python3 scripts/lr1991_equal_accuracy.py RUN_DIR [CELLS]
  (RUN_DIR: `excite pipeline models/lr1991.yaml -o RUN_DIR` ran there)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

run = sys.argv[1]
cells = int(sys.argv[2]) if len(sys.argv) > 2 else 50
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
excite = os.path.join(root, "target", "release", "excite")
cellml = os.path.join(root, "models", "cellml", "lr1991.cellml")
tmp = tempfile.mkdtemp(prefix="lr1991-accuracy-")


def dataset(scheme, dt):
    """x and y of every split, in file order (the same cells and rows for every dt)."""
    config = os.path.join(tmp, f"{scheme}-{dt}.yaml")
    with open(config, "w") as f:
        f.write(f"""name: lr
model: {{cellml: {cellml}}}
scheme: {scheme}
time: {{t_end: 500, dt: {dt}, sample_every: 1}}
sample:
  ina.gNa: [12, 20]
  ica.gCa: [0.06, 0.12]
  membrane.stim_amplitude: [-100, -60]
outputs: [membrane.V]
cells: {cells}
seed: 77
""")
    out = os.path.join(tmp, f"{scheme}-{dt}")
    done = subprocess.run([excite, "simulate", "--config", config, "-o", out], capture_output=True, text=True)
    if done.returncode != 0:
        if "diverged" in done.stderr:
            return None, None
        raise SystemExit(done.stderr)
    z = np.load(os.path.join(out, "dataset.npz"))
    x = np.concatenate([z[f"x_{s}"] for s in ["train", "val", "test"]])
    y = np.concatenate([z[f"y_{s}"] for s in ["train", "val", "test"]])
    return x, y[:, 0].astype(np.float64)


def rate(scheme, dt):
    """Cell-steps per second of the compiled reference on every core."""
    done = subprocess.run([excite, "bench", "cellml", cellml, "--cells", "2048", "--t-end", "100", "--dt", str(dt), "--threads", str(os.cpu_count()), "--repeat", "3", "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        # the bench's cells (the file's own, paced at 50 ms) diverge at this step
        return float("nan")
    out = done.stdout
    for r in json.loads(out)["rows"]:
        if r["scheme"] == scheme:
            return r["cell_steps_per_s"]
    raise SystemExit(f"no {scheme} run in {out}")


x, fine = dataset("euler", 0.0005)
session = ort.InferenceSession(os.path.join(run, "package", "lr1991", "model.onnx"), providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
surrogate = session.run(None, {name: x.astype(np.float32)})[0][:, 0].astype(np.float64)
print(f"{cells} fresh cells x {len(x) // cells} samples; errors in V against forward Euler at dt 0.0005 ms")
print(f"{'':34} {'MAE of V (mV)':>14} {'sample-equivalents/s':>22}")
# the surrogate's throughput in this run: batches of 1024 rows for a second, after a warm-up
batch = x[:1024].astype(np.float32)
session.run(None, {name: batch})
rows, start = 0, time.perf_counter()
while time.perf_counter() - start < 1.0:
    session.run(None, {name: batch})
    rows += len(batch)
print(f"{'surrogate (ONNX Runtime, fp32, 1024)':34} {np.mean(np.abs(surrogate - fine)):14.4f} {rows / (time.perf_counter() - start):22.4e}")
# A step costs the same at any dt (the same instructions), so each scheme is
# timed once, at dt 0.01 (where the bench's own cells stay finite with both).
for scheme, dts in [("euler", [0.005, 0.01, 0.02]), ("rush-larsen", [0.01, 0.02, 0.05, 0.1, 0.2])]:
    steps_per_s = rate(scheme, 0.01)
    for dt in dts:
        _, y = dataset(scheme, dt)
        err = np.mean(np.abs(y - fine)) if y is not None else float("inf")
        print(f"{scheme + ' dt ' + str(dt):34} {err:14.4f} {steps_per_s * dt / 1.0:22.4e}")
