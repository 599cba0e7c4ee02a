"""Recover problem C's parameters from a noisy trace, twice: through a
surrogate with its exact Jacobian, and through the Euler reference with
finite differences (scipy.optimize.least_squares both times).

Usage: PYTHONPATH=.deps/python:.deps/excite python3 examples/python/fit_problem_c.py BUNDLE [--json]

BUNDLE is a problem C surrogate ((t, u0, v0, k) -> (u, v)), for example the
package of `excite pipeline models/problem-c-small.yaml`. A cell with known
(u0, v0, k) is solved with the Euler reference over t in [0, 20], Gaussian
noise is added to u and v, and both fits start from the middle of the
ranges. Prints the estimates, the wall time and the model evaluations."""
import json
import sys
import time

import numpy as np
from scipy.optimize import least_squares

import excite

bundle = sys.argv[1]
TRUE = np.array([0.3, 0.05, 0.6])  # u0, v0, k
NOISE = np.array([0.02, 0.002])  # on u, on v
LOW, HIGH = np.array([0.0, 0.0, 0.0]), np.array([0.9, 0.12, 1.0])
START = (LOW + HIGH) / 2
FIXED = {"i0": [0.08], "i1": [0.04]}

s = excite.Surrogate.load(bundle)
assert s.inputs == ["t", "u0", "v0", "k"] and s.outputs == ["u", "v"], (s.inputs, s.outputs)
t = np.arange(201, dtype=np.float32) * 0.1


def euler(theta):
    out = excite.simulate("fhn-cardiac", t_end=20.0, dt=0.01, sample_every=0.1, initial={"u": [theta[0]], "v": [theta[1]]}, params={"k": [theta[2]], **FIXED})
    return np.stack([out["u"][0], out["v"][0]], axis=1).astype(np.float64)


rng = np.random.default_rng(42)
observed = euler(TRUE) + rng.standard_normal((len(t), 2)) * NOISE
weights = 1.0 / NOISE  # residuals in units of the noise


def rows(theta):
    x = np.empty((len(t), 4), dtype=np.float32)
    x[:, 0] = t
    x[:, 1:] = theta
    return x


counts = {"surrogate": [0, 0], "euler": [0, 0]}


def residual_surrogate(theta):
    counts["surrogate"][0] += 1
    return ((s.predict(rows(theta)) - observed) * weights).ravel()


def jacobian_surrogate(theta):
    counts["surrogate"][1] += 1
    j = s.jacobian(rows(theta))[:, :, 1:]  # d(u, v)/d(u0, v0, k): (n, 2, 3)
    return (j * weights[None, :, None]).reshape(-1, 3)


def residual_euler(theta):
    counts["euler"][0] += 1
    return ((euler(theta) - observed) * weights).ravel()


results = {}
for name, fit in [("surrogate", lambda: least_squares(residual_surrogate, START, jac=jacobian_surrogate, bounds=(LOW, HIGH), x_scale="jac")),
                  # the reference computes in float32: finite differences need steps far above
                  # scipy's default (√ε·|x| ≈ 1e-8), or every derivative rounds to zero
                  ("euler", lambda: least_squares(residual_euler, START, jac="2-point", diff_step=1e-3, bounds=(LOW, HIGH), x_scale="jac"))]:
    start = time.perf_counter()
    r = fit()
    wall = time.perf_counter() - start
    # standard errors from the Jacobian at the optimum (residuals are in noise units)
    cov = np.linalg.pinv(r.jac.T @ r.jac)
    results[name] = {"estimate": r.x.tolist(), "stderr": np.sqrt(np.diag(cov)).tolist(), "wall_s": wall, "residual_evals": counts[name][0], "jacobian_evals": counts[name][1], "nfev": int(r.nfev), "cost": float(r.cost), "success": bool(r.success)}

out = {"true": TRUE.tolist(), "noise": NOISE.tolist(), "engine": s.info["engine"], **results}
if "--json" in sys.argv:
    print(json.dumps(out))
else:
    for name in ("surrogate", "euler"):
        r = results[name]
        est = ", ".join(f"{n} {v:.4f} ± {e:.4f}" for n, v, e in zip(("u0", "v0", "k"), r["estimate"], r["stderr"]))
        print(f"{name:9s} {est}; {r['wall_s'] * 1e3:.1f} ms, {r['residual_evals']} residual and {r['jacobian_evals']} Jacobian evaluations")
    print(f"true      u0 {TRUE[0]}, v0 {TRUE[1]}, k {TRUE[2]}")
