"""The CellML files the models/lr1991*.yaml and hh1952.yaml presets import,
exported from the real models Myokit ships (PyPI `myokit`; scripts/setup.sh
installs it and runs this): Luo-Rudy 1991 with its pacing protocol (a 0.5 ms
stimulus at 50 ms, every 1000 ms) embedded as a stimulus equation, and
Hodgkin-Huxley 1952 from Myokit's SBML test file (no stimulus), as CellML
2.0. They are made, not committed, as the tests' models are.

usage: python3 myokit_models.py DIR
"""
import os
import sys
import warnings

import myokit
import myokit.formats

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
warnings.simplefilter("ignore")
data = os.path.join(os.path.dirname(myokit.__file__), "tests", "data")
lr1991, protocol, _ = myokit.load("example")
hh1952 = myokit.formats.importer("sbml").model(os.path.join(data, "formats", "sbml", "HodgkinHuxley.xml"))
for name, model, protocol in [("lr1991", lr1991, protocol), ("hh1952", hh1952, None)]:
    path = os.path.join(out, name + ".cellml")
    tmp = path + ".tmp"
    myokit.formats.exporter("cellml").model(tmp, model, protocol=protocol, version="2.0")
    os.replace(tmp, path)
    print(path)
