"""The Python user's baseline for `excite bench euler`: forward Euler of
fhn-cardiac over many cells as vectorised numpy float32 array operations.
Prints {"cell_steps_per_s": ...} as JSON (best of three)."""
import argparse
import json
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--cells", type=int, default=1_000_000)
ap.add_argument("--steps", type=int, default=100)
args = ap.parse_args()

rng = np.random.default_rng(0)
f32 = np.float32
u0 = rng.uniform(0.0, 0.9, args.cells).astype(f32)
v0 = rng.uniform(0.0, 0.12, args.cells).astype(f32)
stim = (0.08 + 0.04 * rng.uniform(0.0, 1.0, args.cells)).astype(f32)
k1, alpha, e1, e2, dt = f32(10), f32(0.4), f32(0.04), f32(0.16), f32(0.01)


def run(u, v):
    for _ in range(args.steps):
        du = k1 * (u * (u - alpha) * (f32(1) - u) - v + stim)
        dv = e1 * u - e2 * v
        u = u + dt * du
        v = v + dt * dv
    return u, v


best = float("inf")
for _ in range(3):
    t = time.perf_counter()
    run(u0.copy(), v0.copy())
    best = min(best, time.perf_counter() - t)
print(json.dumps({"cell_steps_per_s": args.cells * args.steps / best, "numpy": np.__version__}))
