"""Real cell models for the CellML import tests, made at test time with Myokit
(PyPI `myokit`, which ships them): Luo-Rudy 1991, Beeler-Reuter 1977, Noble
1962 and Decker 2009 exported as CellML 1.0, 1.1 and 2.0 (with their pacing
protocols embedded as stimulus equations), Hodgkin-Huxley 1952 from Myokit's
SBML test file, and the real CellML 1.0 files from the model repository that
Myokit's tests carry. For every file, Myokit's own reading of it gives the
reference: its states, initial values, and derivatives at a few (time, state)
points, written to DIR/reference.json.

usage: python3 cellml_models.py DIR
"""
import json
import os
import shutil
import sys
import warnings

import myokit
import myokit.formats

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
data = os.path.join(os.path.dirname(myokit.__file__), "tests", "data")
warnings.simplefilter("ignore")

models = {
    "lr1991": myokit.load("example")[:2],
    "br1977": myokit.load(os.path.join(data, "beeler-1977-model.mmt"))[:2],
    "noble1962": myokit.load(os.path.join(data, "noble-1962.mmt"))[:2],
    "decker2009": myokit.load(os.path.join(data, "decker-2009.mmt"))[:2],
    "hh1952": (myokit.formats.importer("sbml").model(os.path.join(data, "formats", "sbml", "HodgkinHuxley.xml")), None),
}
files = []
for name, (model, protocol) in models.items():
    for version in ["1.0", "1.1", "2.0"]:
        path = os.path.join(out, f"{name}-{version}.cellml")
        myokit.formats.exporter("cellml").model(path, model, protocol=protocol, version=version)
        files.append(path)
for repo in ["br-1977.cellml", "corrias.cellml", "decker-2009.cellml"]:
    path = os.path.join(out, "repository-" + repo)
    shutil.copy(os.path.join(data, "formats", "cellml", repo), path)
    files.append(path)

reference = {}
for path in files:
    m = myokit.formats.importer("cellml").model(path)
    states = [v.qname() for v in m.states()]
    initial = m.initial_values(as_floats=True)
    perturbed = [x * 1.01 + 1e-4 for x in initial]
    points = []
    for t, state in [(0.0, initial), (50.2, initial), (3.7, perturbed)]:
        rates = m.evaluate_derivatives(state=state, inputs={"time": t})
        points.append({"t": t, "state": state, "rates": rates})
    reference[os.path.basename(path)] = {"states": states, "time": m.time().qname(), "points": points}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(reference, f)

# Myokit's own solvers on the same models: Simulation1d (compiled C, one cell,
# fixed step) with forward Euler and with Rush-Larsen, V every 1 ms over 1 s
# at dt 0.01 ms; the stimulus from the model's protocol.
traces = {}
for name in ["lr1991", "br1977", "noble1962"]:
    model, protocol = models[name]
    v = model.label("membrane_potential")
    if v is None or model.binding("diffusion_current") is None or protocol is None:
        continue
    for rl in [False, True]:
        sim = myokit.Simulation1d(model, protocol, ncells=1, rl=rl)
        sim.set_step_size(0.01)
        log = sim.run(1000, log=["0." + v.qname()], log_interval=1.0)
        traces[f"{name}-{'rl' if rl else 'euler'}"] = list(log["0." + v.qname()])
with open(os.path.join(out, "traces.json"), "w") as f:
    json.dump(traces, f)
