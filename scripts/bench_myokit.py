"""Myokit's Simulation1d (compiled C, fixed step) timed on a model shipped
with Myokit: the peer of `excite bench cellml` on the same model exported as
CellML. Cells are uncoupled (conductance 0); prints cell-steps per second,
median of --repeat runs, for forward Euler and Rush-Larsen.

usage: python3 scripts/bench_myokit.py [--model lr1991] [--cells 1024]
       [--t-end 100] [--dt 0.01] [--repeat 3] [--json]
"""
import argparse
import json
import os
import time
import warnings

import myokit
import myokit.formats

warnings.simplefilter("ignore")
parser = argparse.ArgumentParser()
parser.add_argument("--model", default="lr1991")
parser.add_argument("--cells", type=int, default=1024)
parser.add_argument("--t-end", type=float, default=100.0)
parser.add_argument("--dt", type=float, default=0.01)
parser.add_argument("--repeat", type=int, default=3)
parser.add_argument("--json", action="store_true")
a = parser.parse_args()

data = os.path.join(os.path.dirname(myokit.__file__), "tests", "data")
if a.model == "lr1991":
    model, protocol, _ = myokit.load("example")
elif a.model == "hh1952":
    # Myokit's SBML copy of Hodgkin-Huxley, as tests/integration/cellml_models.py
    # exports it; Simulation1d needs the potential labelled and a diffusion current
    model = myokit.formats.importer("sbml").model(os.path.join(data, "formats", "sbml", "HodgkinHuxley.xml"))
    model.get("global.V").set_label("membrane_potential")
    i_diff = model.get("global").add_variable("i_diff")
    i_diff.set_rhs(0)
    i_diff.set_binding("diffusion_current")
    protocol = None
else:
    raise SystemExit(f"--model {a.model}: this script knows lr1991 and hh1952")
rows = []
for rl in [False, True]:
    sim = myokit.Simulation1d(model, protocol, ncells=a.cells, rl=rl)
    sim.set_step_size(a.dt)
    sim.set_conductance(0)
    times = []
    for _ in range(a.repeat):
        sim.reset()
        start = time.perf_counter()
        sim.run(a.t_end, log=myokit.LOG_NONE)
        times.append(time.perf_counter() - start)
    times.sort()
    steps = round(a.t_end / a.dt) * a.cells
    rows.append({"scheme": "rush-larsen" if rl else "euler", "threads": 1, "cell_steps_per_s": steps / times[len(times) // 2]})
if a.json:
    print(json.dumps({"peer": f"myokit {myokit.__version__} Simulation1d", "model": a.model, "cells": a.cells, "dt": a.dt, "t_end": a.t_end, "rows": rows}, indent=2))
else:
    print(f"myokit {myokit.__version__} Simulation1d, {a.model}, {a.cells} cells, dt {a.dt}, {a.t_end} ms, median of {a.repeat}")
    for r in rows:
        print(f"  {r['scheme']:<12} 1 thread   {r['cell_steps_per_s']:.3g} cell-steps/s")
