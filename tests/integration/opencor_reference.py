"""OpenCOR's reference solution of a CellML file: libopencor (OpenCOR's
simulation library) with CVODE at tight tolerances, the state every 1 time
unit over [0, T]. Run with the Python 3.12 of scripts/setup.sh
(.deps/python312): libopencor has no wheel for 3.11.

usage: python3.12 opencor_reference.py FILE T OUT.json
"""
import json
import sys

import libopencor as oc

path, t_end, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
doc = oc.SedDocument(oc.File(path))
if doc.has_issues:
    raise SystemExit(f"{path}: " + "; ".join(i.description for i in doc.issues))
sim = doc.simulations[0]
sim.output_end_time = t_end
sim.number_of_steps = int(round(t_end))
cvode = sim.ode_solver
cvode.relative_tolerance = 1e-10
cvode.absolute_tolerance = 1e-10
# small enough never to step over a 0.5 ms stimulus
cvode.maximum_step = 0.01
cvode.maximum_number_of_steps = 1_000_000
instance = doc.instantiate()
instance.run()
if instance.has_issues:
    raise SystemExit(f"{path}: " + "; ".join(i.description for i in instance.issues))
task = instance.tasks[0]
states = {task.state_name(i).replace("/", "."): list(task.state(i)) for i in range(task.state_count)}
json.dump({"solver": f"libopencor {oc.version_string()} CVODE rtol=atol=1e-10", "time": list(task.voi), "states": states}, open(out, "w"))
