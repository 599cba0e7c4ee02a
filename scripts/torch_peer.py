#!/usr/bin/env python3
"""The same MLP through PyTorch on the GPU: a peer for excite's native-cuda engine.

Reads what `excite bench gpu MODEL.onnx --out DIR` wrote (layers.npz,
layers.json, check.npz and, when the GPU run finished, report.json), checks
the network against excite's native-cpu outputs, and times it in fp32, fp16
and bf16 (tensor cores) at --rows rows per call. Prints a table and writes
DIR/torch.json; with report.json present, each row gets its ratio to the
CUDA Euler kernel of the same problem.

  scripts/torch_peer.py DIR [--rows N] [--repeat K] [--numpy-only]

--numpy-only checks the files with a numpy forward pass and needs no torch
(the test suite runs it).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np


def load(d):
    acts = json.load(open(os.path.join(d, "layers.json")))
    z = np.load(os.path.join(d, "layers.npz"))
    layers = [(z[f"w{i}"], z[f"b{i}"].reshape(-1), a["act"], a["param"]) for i, a in enumerate(acts)]
    c = np.load(os.path.join(d, "check.npz"))
    return layers, c["x"], c["y"]


def erf_np(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def act_np(name, p, x):
    return {
        "linear": lambda: x,
        "relu": lambda: np.maximum(x, 0),
        "leaky_relu": lambda: np.where(x >= 0, x, p * x),
        "elu": lambda: np.where(x > 0, x, p * np.expm1(x)),
        "tanh": lambda: np.tanh(x),
        "sigmoid": lambda: 1 / (1 + np.exp(-x)),
        "silu": lambda: x / (1 + np.exp(-x)),
        "gelu": lambda: 0.5 * x * (1 + erf_np(x / math.sqrt(2))),
    }[name]()


def forward_np(layers, x):
    h = x.astype(np.float64)
    for w, b, a, p in layers:
        h = act_np(a, p, h @ w.astype(np.float64) + b)
    return h


def act_torch(torch, name, p, x):
    F = torch.nn.functional
    return {
        "linear": lambda: x,
        "relu": lambda: F.relu(x),
        "leaky_relu": lambda: F.leaky_relu(x, p),
        "elu": lambda: F.elu(x, p),
        "tanh": lambda: torch.tanh(x),
        "sigmoid": lambda: torch.sigmoid(x),
        "silu": lambda: F.silu(x),
        "gelu": lambda: F.gelu(x),
    }[name]()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--rows", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--numpy-only", action="store_true")
    a = ap.parse_args()
    layers, x, y = load(a.dir)
    d = float(np.max(np.abs(forward_np(layers, x) - y)))
    print(f"numpy (f64) forward vs excite native-cpu on {len(x)} rows: max |diff| = {d:.2e}")
    if d > 1e-5:
        sys.exit("error: the peer files do not reproduce excite's outputs (limit 1e-5)")
    if a.numpy_only:
        return

    import torch
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    euler = None
    rp = os.path.join(a.dir, "report.json")
    if os.path.exists(rp):
        euler = json.load(open(rp))["rows"][0]["samples_per_s"]
    rows = []
    xs = torch.tensor(x, device=dev)
    big = xs.repeat((a.rows + len(x) - 1) // len(x), 1)[: a.rows]
    for dtype, name in [(torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")]:
        if dev == "cpu" and dtype != torch.float32:
            continue
        ws = [(torch.tensor(w, device=dev, dtype=dtype), torch.tensor(b, device=dev, dtype=dtype), act, p) for w, b, act, p in layers]

        def net(h):
            for w, b, act, p in ws:
                h = act_torch(torch, act, p, torch.addmm(b, h, w))
            return h

        with torch.inference_mode():
            out = net(xs.to(dtype)).float().cpu().numpy()
            diff = float(np.max(np.abs(out - y)))
            h = big.to(dtype)
            for _ in range(3):
                net(h)
            if dev == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(a.repeat):
                net(h)
            if dev == "cuda":
                torch.cuda.synchronize()
            r = a.rows * a.repeat / (time.perf_counter() - t)
        rows.append({"path": f"torch {name} ({dev}, {a.rows} rows/call)", "samples_per_s": r, "ratio_to_cuda_euler": r / euler if euler else None, "max_abs_diff_to_cpu": diff})
    device = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    out = os.path.join(a.dir, "torch.json")
    with open(out + ".tmp", "w") as f:  # atomically, like every file excite writes
        json.dump({"device": device, "torch": torch.__version__, "rows": rows}, f, indent=2)
    os.replace(out + ".tmp", out)
    print(f"PyTorch {torch.__version__} on {device}")
    for r in rows:
        ratio = f"{r['ratio_to_cuda_euler']:.3f}" if r["ratio_to_cuda_euler"] else "-"
        print(f"{r['path']:<44} {r['samples_per_s']:>10.3e} {ratio:>10} {r['max_abs_diff_to_cpu']:>10.2e}")


if __name__ == "__main__":
    main()
