"""MLPs written the way other exporters write them, for tests/integration/foreign.rs.

Usage: foreign_models.py OUT_DIR

Writes OUT_DIR/<name>.onnx for each graph below, built with onnx.helper in
the exporters' own shapes (node types, attributes, constants as Constant
nodes or initializers, typed or raw tensor data), plus OUT_DIR/x.npy (probe
inputs) and OUT_DIR/<name>.ort.npy (ONNX Runtime's outputs on them: the
independent reference excite's reading is checked against). With
scikit-learn and skl2onnx importable, real skl2onnx exports too.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
N_IN, N_OUT, H = 3, 2, 12
x = rng.uniform(-2, 2, (64, N_IN)).astype(np.float32)
np.save(os.path.join(out, "x.npy"), x)


def w(r, c, scale=0.6):
    return (rng.standard_normal((r, c)) * scale).astype(np.float32)


def init(name, a, raw=True):
    if raw:
        return numpy_helper.from_array(np.asarray(a), name)
    # typed fields (float_data, int64_data), as skl2onnx writes them
    a = np.asarray(a)
    dtype = TensorProto.FLOAT if a.dtype == np.float32 else TensorProto.INT64
    return helper.make_tensor(name, dtype, a.shape, a.flatten().tolist())


def const_node(name, value):
    return helper.make_node("Constant", [], [name], name=name + "_node", value=numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))


def save(name, nodes, inits, inp="input", outp="output", opset=17, domains=(), n_out=N_OUT, in_dims=("batch", N_IN)):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(inp, TensorProto.FLOAT, list(in_dims))],
        [helper.make_tensor_value_info(outp, TensorProto.FLOAT, ["batch", n_out])], inits)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    m = helper.make_model(graph, opset_imports=opsets, producer_name=name)
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = os.path.join(out, name + ".onnx")
    onnx.save(m, path)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {inp: x})[0]
    np.save(os.path.join(out, name + ".ort.npy"), y.astype(np.float32))


# torch.onnx (TorchScript exporter): nn.Sequential(Linear, Tanh, Linear, GELU, Linear);
# Linear is Gemm with transB = 1 (weights [out, in]); GELU through Erf with Constant nodes
w0, w1, w2 = w(H, N_IN), w(H, H), w(N_OUT, H)
save("torch_script", [
    helper.make_node("Gemm", ["input", "0.weight", "0.bias"], ["/0/Gemm_output_0"], name="/0/Gemm", alpha=1.0, beta=1.0, transB=1),
    helper.make_node("Tanh", ["/0/Gemm_output_0"], ["/1/Tanh_output_0"], name="/1/Tanh"),
    helper.make_node("Gemm", ["/1/Tanh_output_0", "2.weight", "2.bias"], ["/2/Gemm_output_0"], name="/2/Gemm", alpha=1.0, beta=1.0, transB=1),
    const_node("/3/Constant_output_0", 1.4142135381698608),
    helper.make_node("Div", ["/2/Gemm_output_0", "/3/Constant_output_0"], ["/3/Div_output_0"], name="/3/Div"),
    helper.make_node("Erf", ["/3/Div_output_0"], ["/3/Erf_output_0"], name="/3/Erf"),
    const_node("/3/Constant_1_output_0", 1.0),
    helper.make_node("Add", ["/3/Erf_output_0", "/3/Constant_1_output_0"], ["/3/Add_output_0"], name="/3/Add"),
    helper.make_node("Mul", ["/2/Gemm_output_0", "/3/Add_output_0"], ["/3/Mul_output_0"], name="/3/Mul"),
    const_node("/3/Constant_2_output_0", 0.5),
    helper.make_node("Mul", ["/3/Mul_output_0", "/3/Constant_2_output_0"], ["/3/Mul_1_output_0"], name="/3/Mul_1"),
    helper.make_node("Gemm", ["/3/Mul_1_output_0", "4.weight", "4.bias"], ["output"], name="/4/Gemm", alpha=1.0, beta=1.0, transB=1),
], [init("0.weight", w0), init("0.bias", w(1, H)[0]), init("2.weight", w1), init("2.bias", w(1, H)[0]), init("4.weight", w2), init("4.bias", w(1, N_OUT)[0])], opset=14)

# torch.onnx dynamo exporter: MatMul with a transposed weight initializer + Add,
# input normalisation (x − mean) / std as Sub and Div, SiLU as Sigmoid·x, ReLU, Identity
mean, std = np.float32([0.1, -0.2, 0.3]), np.float32([1.5, 0.5, 2.0])
save("torch_dynamo", [
    helper.make_node("Sub", ["x", "mean"], ["sub"], name="node_sub"),
    helper.make_node("Div", ["sub", "std"], ["div"], name="node_div"),
    helper.make_node("MatMul", ["div", "linear.weight_t"], ["mm"], name="node_linear"),
    helper.make_node("Add", ["mm", "linear.bias"], ["linear"], name="node_linear_add"),
    helper.make_node("Sigmoid", ["linear"], ["sigmoid"], name="node_sigmoid"),
    helper.make_node("Mul", ["linear", "sigmoid"], ["silu"], name="node_silu"),
    helper.make_node("MatMul", ["silu", "linear_1.weight_t"], ["mm_1"], name="node_linear_1"),
    helper.make_node("Add", ["mm_1", "linear_1.bias"], ["linear_1"], name="node_linear_1_add"),
    helper.make_node("Relu", ["linear_1"], ["relu"], name="node_relu"),
    helper.make_node("MatMul", ["relu", "linear_2.weight_t"], ["mm_2"], name="node_linear_2"),
    helper.make_node("Add", ["mm_2", "linear_2.bias"], ["linear_2"], name="node_linear_2_add"),
    helper.make_node("Identity", ["linear_2"], ["y"], name="node_identity"),
], [init("mean", mean), init("std", std), init("linear.weight_t", w(N_IN, H)), init("linear.bias", w(1, H)[0]), init("linear_1.weight_t", w(H, H)), init("linear_1.bias", w(1, H)[0]), init("linear_2.weight_t", w(H, N_OUT)), init("linear_2.bias", w(1, N_OUT)[0])], inp="x", outp="y", opset=18)

# tf2onnx / keras: MatMul + Add (bias [1, n]) in typed float_data, Elu, LeakyRelu,
# Softplus, Sigmoid, a Reshape to [-1, n] and output scaling (Mul, Add) at the end
save("keras", [
    helper.make_node("MatMul", ["dense_input", "dense/kernel"], ["dense/MatMul"], name="dense/MatMul"),
    helper.make_node("Add", ["dense/MatMul", "dense/bias"], ["dense/BiasAdd"], name="dense/BiasAdd"),
    helper.make_node("Elu", ["dense/BiasAdd"], ["dense/Elu"], name="dense/Elu", alpha=1.0),
    helper.make_node("MatMul", ["dense/Elu", "dense_1/kernel"], ["dense_1/MatMul"], name="dense_1/MatMul"),
    helper.make_node("Add", ["dense_1/MatMul", "dense_1/bias"], ["dense_1/BiasAdd"], name="dense_1/BiasAdd"),
    helper.make_node("LeakyRelu", ["dense_1/BiasAdd"], ["dense_1/LeakyRelu"], name="dense_1/LeakyRelu", alpha=0.2),
    helper.make_node("MatMul", ["dense_1/LeakyRelu", "dense_2/kernel"], ["dense_2/MatMul"], name="dense_2/MatMul"),
    helper.make_node("Add", ["dense_2/MatMul", "dense_2/bias"], ["dense_2/BiasAdd"], name="dense_2/BiasAdd"),
    helper.make_node("Softplus", ["dense_2/BiasAdd"], ["dense_2/Softplus"], name="dense_2/Softplus"),
    helper.make_node("MatMul", ["dense_2/Softplus", "dense_3/kernel"], ["dense_3/MatMul"], name="dense_3/MatMul"),
    helper.make_node("Add", ["dense_3/MatMul", "dense_3/bias"], ["dense_3/BiasAdd"], name="dense_3/BiasAdd"),
    helper.make_node("Sigmoid", ["dense_3/BiasAdd"], ["dense_3/Sigmoid"], name="dense_3/Sigmoid"),
    helper.make_node("MatMul", ["dense_3/Sigmoid", "dense_4/kernel"], ["dense_4/MatMul"], name="dense_4/MatMul"),
    helper.make_node("Add", ["dense_4/MatMul", "dense_4/bias"], ["dense_4/BiasAdd"], name="dense_4/BiasAdd"),
    helper.make_node("Reshape", ["dense_4/BiasAdd", "shape"], ["reshaped"], name="reshape"),
    helper.make_node("Mul", ["reshaped", "out_scale"], ["scaled"], name="unscale"),
    helper.make_node("Add", ["out_offset", "scaled"], ["dense_4"], name="unshift"),
], [init("dense/kernel", w(N_IN, H), False), init("dense/bias", w(1, H), False), init("dense_1/kernel", w(H, H), False), init("dense_1/bias", w(1, H), False),
    init("dense_2/kernel", w(H, H), False), init("dense_2/bias", w(1, H), False), init("dense_3/kernel", w(H, H), False), init("dense_3/bias", w(1, H), False),
    init("dense_4/kernel", w(H, N_OUT), False), init("dense_4/bias", w(1, N_OUT), False), init("shape", np.int64([-1, N_OUT]), False),
    init("out_scale", np.float32([2.0, 0.5]), False), init("out_offset", np.float32([-1.0, 3.0]), False)],
    inp="dense_input", outp="dense_4", opset=13)

# opset 20: Gelu as one operator, Gemm with alpha and beta, Flatten, Cast to float
save("opset20_gelu", [
    helper.make_node("Cast", ["input"], ["cast"], name="cast", to=TensorProto.FLOAT),
    helper.make_node("Flatten", ["cast"], ["flat"], name="flatten", axis=1),
    helper.make_node("Gemm", ["flat", "W0", "B0"], ["z0"], name="gemm0", alpha=0.5, beta=2.0),
    helper.make_node("Gelu", ["z0"], ["a0"], name="gelu0", approximate="none"),
    helper.make_node("Gemm", ["a0", "W1", "B1"], ["output"], name="gemm1"),
], [init("W0", w(N_IN, H)), init("B0", w(1, H)[0]), init("W1", w(H, N_OUT)), init("B1", w(1, N_OUT)[0])], opset=20)

# opset 20 Gelu in its tanh form (jax and keras write the approximation)
save("gelu_tanh", [
    helper.make_node("Gemm", ["input", "W0", "B0"], ["z0"], name="gemm0"),
    helper.make_node("Gelu", ["z0"], ["a0"], name="gelu0", approximate="tanh"),
    helper.make_node("Gemm", ["a0", "W1", "B1"], ["output"], name="gemm1"),
], [init("W0", w(N_IN, H)), init("B0", w(1, H)[0]), init("W1", w(H, N_OUT)), init("B1", w(1, N_OUT)[0])], opset=20)

# not MLPs excite reads: a convolution; z·z, which is no activation
save("conv", [
    helper.make_node("Unsqueeze", ["input", "axes"], ["u"], name="unsqueeze"),
    helper.make_node("Conv", ["u", "K"], ["c"], name="conv0"),
    helper.make_node("Squeeze", ["c", "axes"], ["output"], name="squeeze"),
], [init("axes", np.int64([1])), init("K", w(1, 1).reshape(1, 1, 1))], n_out=N_IN)
save("square", [
    helper.make_node("Gemm", ["input", "W0", "B0"], ["z0"], name="gemm0"),
    helper.make_node("Mul", ["z0", "z0"], ["a0"], name="square0"),
    helper.make_node("Gemm", ["a0", "W1", "B1"], ["output"], name="gemm1"),
], [init("W0", w(N_IN, H)), init("B0", w(1, H)[0]), init("W1", w(H, N_OUT)), init("B1", w(1, N_OUT)[0])])

# real skl2onnx exports, where scikit-learn is installed (scripts/setup.sh installs it)
try:
    import warnings

    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx
except ImportError:
    sys.exit(0)
warnings.filterwarnings("ignore")
Y = np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 0]], 1)
for name, model in [
    ("sklearn_mlp", MLPRegressor(hidden_layer_sizes=(16, 16), activation="tanh", max_iter=300, random_state=0)),
    ("sklearn_pipeline", make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(8,), activation="relu", max_iter=300, random_state=0))),
]:
    model.fit(x, Y)
    m = to_onnx(model, x[:1])
    path = os.path.join(out, name + ".onnx")
    onnx.save(m, path)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    np.save(os.path.join(out, name + ".ort.npy"), y.reshape(len(x), -1).astype(np.float32))
    np.save(os.path.join(out, name + ".sklearn.npy"), model.predict(x).astype(np.float32))
