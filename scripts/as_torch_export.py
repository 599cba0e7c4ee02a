"""Rewrites an excite export the way torch.onnx writes nn.Linear layers:
Gemm with transB = 1 and weights stored [outputs, inputs], tensor names in
torch's style, no excite metadata. For the benchmark of a foreign model's
native-cpu engine against excite's own export of the same network.

Usage: PYTHONPATH=.deps/python python3 scripts/as_torch_export.py MODEL.onnx OUT.onnx"""
import sys

import onnx
from onnx import numpy_helper

m = onnx.load(sys.argv[1])
inits = {t.name: t for t in m.graph.initializer}
for i, n in enumerate(m.graph.node):
    if n.op_type != "Gemm":
        continue
    w = inits[n.input[1]]
    a = numpy_helper.to_array(w).T.copy()
    w.CopyFrom(numpy_helper.from_array(a, f"linear{i}.weight"))
    n.input[1] = f"linear{i}.weight"
    n.attribute.append(onnx.helper.make_attribute("transB", 1))
del m.metadata_props[:]
m.producer_name = "pytorch"
onnx.checker.check_model(m)
onnx.save(m, sys.argv[2])
