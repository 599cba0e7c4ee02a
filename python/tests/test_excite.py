"""The Python package against the CLI and the Rust loader on the same bundle.

Run by scripts/test.sh with the package built by maturin on PYTHONPATH."""

import os
import pathlib
import subprocess
import threading

import numpy as np
import pytest

import excite

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = ROOT / "target" / "release"


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    stages = excite.pipeline(ROOT / "models" / "quick.yaml", out=out)
    assert [s["stage"] for s in stages] == ["simulate", "train", "export", "build", "verify", "package"]
    return out


@pytest.fixture(scope="session")
def bundle(run):
    return run / "package" / "quick.tar.gz"


def test_predict_matches_the_rust_loader(bundle):
    s = excite.Surrogate.load(bundle)
    assert s.inputs == ["t"] and s.outputs == ["u", "v"]
    assert s.info["source"] == "bundle" and s.info["bundle"]["name"] == "quick"
    t = np.arange(6, dtype=np.float32).reshape(-1, 1) * 5.0
    y = s.predict(t)
    assert y.shape == (6, 2) and y.dtype == np.float32
    # the Rust example loads the same archive and prints the same rows
    rust = subprocess.run([TARGET / "examples" / "predict", bundle], capture_output=True, text=True, check=True)
    rows = [list(map(float, l.split())) for l in rust.stdout.splitlines() if not l.startswith("#")]
    assert len(rows) == 6
    for i, r in enumerate(rows):
        assert r[0] == t[i, 0]
        assert np.allclose(r[1:], y[i], atol=1e-6, rtol=0), (r, y[i])


def test_predict_takes_views_and_refuses_what_it_cannot_read(bundle):
    s = excite.Surrogate.load(bundle)
    x = np.linspace(0, 25, 40, dtype=np.float32).reshape(-1, 1)
    want = s.predict(x)
    # a strided view is copied, not refused
    wide = np.repeat(x, 2, axis=1)
    assert np.array_equal(s.predict(wide[:, :1]), want)
    with pytest.raises(excite.ExciteError) as e:
        s.predict(x.astype(np.float64))
    assert "float32" in str(e.value) and "float64" in str(e.value)
    assert "astype" in e.value.hint or "float32" in e.value.hint
    with pytest.raises(excite.ExciteError) as e:
        s.predict(np.zeros((3, 2), dtype=np.float32))
    assert "got 2 columns" in str(e.value)
    with pytest.raises(excite.ExciteError):
        s.predict([[1.0]])
    assert s.predict(np.zeros((0, 1), dtype=np.float32)).shape == (0, 2)


def test_jacobian_is_the_derivative_of_predict(bundle):
    s = excite.Surrogate.load(bundle)
    t = np.array([[1.0], [7.5], [20.0]], dtype=np.float32)
    j = s.jacobian(t)
    assert j.shape == (3, 2, 1)
    h = np.float32(1e-2)
    fd = (s.predict(t + h) - s.predict(t - h)) / (2 * h)
    assert np.allclose(j[:, :, 0], fd, atol=2e-3, rtol=1e-2), (j[:, :, 0], fd)


def test_threads_share_a_surrogate(bundle):
    s = excite.Surrogate.load(bundle)
    x = np.linspace(0, 25, 4096, dtype=np.float32).reshape(-1, 1)
    want = s.predict(x)
    results = []

    def work():
        for _ in range(20):
            results.append(np.array_equal(s.predict(x), want))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(results)


def test_engine_folders_and_onnx_files_load_too(run, bundle):
    x = np.linspace(0, 25, 16, dtype=np.float32).reshape(-1, 1)
    want = excite.Surrogate.load(bundle).predict(x)
    engine = excite.Surrogate.load(run / "build")
    assert engine.info["source"] == "engine" and engine.inputs == ["t"]
    assert np.allclose(engine.predict(x), want, atol=1e-6)
    onnx = excite.Surrogate.load(run / "export" / "model.onnx")
    assert onnx.info["source"] == "onnx"
    assert np.allclose(onnx.predict(x), want, atol=1e-5)


def test_errors_are_exceptions_with_excites_message_and_hint(tmp_path, bundle):
    with pytest.raises(excite.ExciteError) as e:
        excite.Surrogate.load(tmp_path / "missing")
    assert "missing" in str(e.value)
    assert e.value.hint
    with pytest.raises(excite.ExciteError) as e:
        excite.Surrogate.load(bundle, trusted_key=tmp_path / "none.pub")
    assert "none.pub" in str(e.value)
    with pytest.raises(excite.ExciteError) as e:
        excite.simulate("no-such-model", t_end=1.0)
    assert "no-such-model" in str(e.value)
    with pytest.raises(excite.ExciteError) as e:
        excite.simulate("fhn-cardiac", t_end=1.0, params={"kk": [1.0]})
    assert "kk" in str(e.value) and "k" in e.value.hint


def test_simulate_is_the_datasets_reference(run):
    out = excite.simulate("fhn-cardiac", t_end=25.0, dt=0.01, sample_every=0.1, initial={"u": [0.5], "v": [0.0]}, params={"i0": [0.0]})
    assert out["t"].shape == (251,) and out["u"].shape == (1, 251)
    assert out["u"][0, 0] == np.float32(0.5)
    # the quick dataset's rows are this trajectory at its time points
    d = np.load(run / "simulate" / "dataset.npz")
    k = np.rint(d["x_train"][:, 0] / 0.1).astype(int)
    assert np.array_equal(out["u"][0, k], d["y_train"][:, 0])
    assert np.array_equal(out["v"][0, k], d["y_train"][:, 1])
    # per-cell parameters: one trajectory per value
    many = excite.simulate("fhn-cardiac", t_end=5.0, initial={"u": [0.5]}, params={"k": [6.0, 8.0, 10.0]})
    assert many["u"].shape[0] == 3 and not np.array_equal(many["u"][0], many["u"][2])


def test_simulate_takes_a_cellml_file():
    cellml = ROOT / "models" / "fhn-cardiac.cellml"
    # the CellML twin of the built-in model: its defaults are the file's, its names component.variable
    ours = excite.simulate(str(cellml), t_end=5.0, params={"cell.i0": [0.0]})
    builtin = excite.simulate("fhn-cardiac", t_end=5.0, initial={"u": [0.5]}, params={"i0": [0.0]})
    assert ours["cell.u"][0, 0] == np.float32(0.5)
    assert np.max(np.abs(ours["cell.u"] - builtin["u"])) < 1e-5
    lr = ROOT / "models" / "cellml" / "lr1991.cellml"
    beat = excite.simulate(str(lr), t_end=100.0, sample_every=1.0, scheme="rush-larsen", params={"ina.gNa": [12.0, 20.0]})
    v = beat["membrane.V"]
    assert v.shape == (2, 101) and abs(v[0, 0] + 84.5286) < 1e-4 and v[:, 52].min() > 0.0
    with pytest.raises(excite.ExciteError) as e:
        excite.simulate(str(lr), t_end=1.0, scheme="heun")
    assert "heun" in str(e.value)
    with pytest.raises(excite.ExciteError) as e:
        excite.simulate("fhn-cardiac", t_end=1.0, scheme="rush-larsen")
    assert "Euler only" in str(e.value)


def test_verify_returns_the_report(run):
    r = excite.verify(run / "export" / "model.onnx", cells=1, seconds=0.05, reference_cells=2000, max_mae=0.05)
    assert r["passed"] is True
    assert [v["name"] for v in r["variables"]] == ["u", "v"]
    assert all(0 < v["mae"] < 0.05 for v in r["variables"])


@pytest.fixture(scope="session")
def problem_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("problem-c-small")
    excite.pipeline(ROOT / "models" / "problem-c-small.yaml", out=out)
    return out / "package" / "problem-c-small.tar.gz"


def test_parameter_fit_through_the_surrogates_jacobian(problem_c):
    """examples/python/fit_problem_c.py: (u0, v0, k) recovered from a noisy
    trace through the surrogate's Jacobian and through the Euler reference."""
    out = subprocess.run([os.environ.get("PYTHON", "python3"), ROOT / "examples" / "python" / "fit_problem_c.py", problem_c, "--json"], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr
    r = __import__("json").loads(out.stdout)
    true, span = np.array(r["true"]), np.array([0.9, 0.12, 1.0])
    for name in ("surrogate", "euler"):
        est = np.array(r[name]["estimate"])
        # within 2% of each parameter's range of the truth (the surrogate's own error
        # shows as a small bias; the reference's as none)
        assert np.all(np.abs(est - true) <= 0.02 * span), (name, est)
    assert r["surrogate"]["jacobian_evals"] > 0
