"""The honest speed-up of a surrogate of an imported (CellML) model: its error
and the reference's own error against one fine solution, on the same fresh
cells, and each reference configuration's speed in sample-equivalents per
second, all measured in this run.

For the cells of PRESET's problem (a pipeline file such as models/lr1991.yaml,
with a new seed), it solves with `excite simulate` a fine solution (forward
Euler at a twentieth of the preset's dt: first order, so about 20x closer to
the exact solution) and the reference at other steps (forward Euler and
Rush-Larsen, every step that divides the sample interval), runs the
surrogate (the bundle's model.onnx, ONNX Runtime, fp32) on the same inputs,
and prints the MAE of the first output of each against the fine solution.
The surrogate is timed at batch 1024 for a second; the reference by `excite
bench cellml` (cell-steps/s on all cores, timed at the preset's dt: a step
costs the same at any dt), divided by the steps a sample takes.

Engine directories after CELLS (`excite build RUN_DIR/export/model.onnx
--target native-cpu -o DIR`, say) are timed too, by `excite bench engine` at
batch 1024 in the same run: the same network, so the surrogate's MAE above,
within the budget their own verification checked.

usage: python3 scripts/equal_accuracy.py PRESET RUN_DIR [CELLS [ENGINE_DIR...]]
  (RUN_DIR: `excite pipeline PRESET -o RUN_DIR` ran there)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

preset, run = sys.argv[1], sys.argv[2]
cells = int(sys.argv[3]) if len(sys.argv) > 3 else 50
engines = sys.argv[4:]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
excite = os.path.join(root, "target", "release", "excite")
text = open(preset).read()
name = re.search(r"^name: (\S+)", text, re.M).group(1)
cellml = os.path.join(os.path.dirname(os.path.abspath(preset)), re.search(r"cellml: ([^}\s]+)", text).group(1))
time_line = re.search(r"time: \{t_end: ([^,]+), dt: ([^,]+), sample_every: ([^}]+)\}", text)
t_end, dt0, every = (float(v) for v in time_line.groups())
tmp = tempfile.mkdtemp(prefix="equal-accuracy-")


def divides(dt):
    r = every / dt
    return abs(r - round(r)) < 1e-9 * r


def dataset(scheme, dt):
    """x and y of every split, in file order (the same cells and rows for every dt); None if it diverged."""
    config = os.path.join(tmp, f"{scheme}-{dt}.yaml")
    body = text.replace(time_line.group(0), f"time: {{t_end: {t_end}, dt: {dt}, sample_every: {every}}}")
    body = re.sub(r"cellml: [^}\s]+", f"cellml: {cellml}", body)
    body = re.sub(r"scheme: \S+", f"scheme: {scheme}", body)
    body = re.sub(r"^  cells: \d+", f"  cells: {cells}", body, flags=re.M)
    body = re.sub(r"^  seed: \d+", "  seed: 77", body, flags=re.M)
    with open(config, "w") as f:
        f.write(body)
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


def rate(scheme):
    """Cell-steps per second of the compiled reference on every core, at the preset's dt,
    run the fastest way this machine has (native where a C compiler is, else interpreted)."""
    done = subprocess.run([excite, "bench", "cellml", cellml, "--cells", "2048", "--t-end", str(min(t_end, 100.0)), "--dt", str(dt0), "--threads", str(os.cpu_count()), "--repeat", "3", "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    rates = [r["cell_steps_per_s"] for r in json.loads(done.stdout)["rows"] if r["scheme"] == scheme and r["path"] == "cpu"]
    if not rates:
        raise SystemExit(f"no {scheme} row in {done.stdout}")
    return max(rates)


x, fine = dataset("euler", dt0 / 20)
session = ort.InferenceSession(os.path.join(run, "package", name, "model.onnx"), providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
surrogate = session.run(None, {input_name: x.astype(np.float32)})[0][:, 0].astype(np.float64)
# the surrogate's throughput in this run: batches of 1024 rows for a second, after a warm-up
batch = x[:1024].astype(np.float32)
session.run(None, {input_name: batch})
rows, start = 0, time.perf_counter()
while time.perf_counter() - start < 1.0:
    session.run(None, {input_name: batch})
    rows += len(batch)
print(f"{name}: {cells} fresh cells x {len(x) // cells} samples; MAE of the first output against forward Euler at dt {dt0 / 20:g}")
print(f"{'':36} {'MAE':>12} {'sample-equivalents/s':>22}")
print(f"{'surrogate (ONNX Runtime, fp32, 1024)':36} {np.mean(np.abs(surrogate - fine)):12.4g} {rows / (time.perf_counter() - start):22.4e}")
if engines:
    done = subprocess.run([excite, "bench", "engine", *engines, "--batches", "1024", "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    for e in json.loads(done.stdout)["engines"]:
        label = f"surrogate, {e['engine']['backend'].removeprefix('excite-')} {e['engine']['precision']}"
        print(f"{label:36} {'(as above)':>12} {e['rows'][0]['samples_per_s']:22.4e}")
for scheme, factors in [("euler", [0.5, 1, 2]), ("rush-larsen", [1, 2, 5, 10, 20, 50])]:
    steps_per_s = rate(scheme)
    for dt in [round(dt0 * f, 12) for f in factors]:
        if not divides(dt) or dt > every:
            continue
        _, y = dataset(scheme, dt)
        err = np.mean(np.abs(y - fine)) if y is not None else float("inf")
        print(f"{scheme + ' dt ' + format(dt, 'g'):36} {err:12.4g} {steps_per_s * dt / every:22.4e}")
