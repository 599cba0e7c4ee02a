//! `import excite`: surrogates on numpy arrays, the Euler reference,
//! verification and pipelines, from Python. A thin layer over the excite
//! crate: every computation is the library's, run with the GIL released;
//! every error is an `excite.ExciteError` carrying excite's message and its
//! `hint`. The API is described for editors in `excite.pyi`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use excite::engine::Engine;
use excite::onnx::mlp::Mlp;
use numpy::{IntoPyArray, PyArray2, PyArray3, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::create_exception!(excite, ExciteError, PyException, "An error from excite: the message names what is at fault; `hint` says how to fix it.");

/// An excite error as an `ExciteError` with `.hint` (None when there is none).
fn raise(e: excite::Error) -> PyErr {
    let hint = e.hint().map(excite::printable);
    let text = excite::printable(&e.to_string());
    let message = match &hint {
        Some(h) => format!("{text}\nhint: {h}"),
        None => text,
    };
    Python::attach(|py| {
        let err = ExciteError::new_err(message);
        let _ = err.value(py).setattr("hint", hint);
        err
    })
}

fn invalid(field: &str, problem: String, hint: &str) -> PyErr {
    raise(excite::Error::invalid(field, problem, hint))
}

/// A JSON value as Python objects.
fn to_python<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// A loaded surrogate: a bundle, an engine folder or an ONNX file.
#[pyclass(module = "excite", frozen)]
struct Surrogate {
    engine: Mutex<Box<dyn Engine>>,
    network: Option<Mlp>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    info: serde_json::Value,
}

/// Names of the problem `model` records, or x0…, y0… for a file without one.
fn names(model: &excite::onnx::Model, n_in: usize, n_out: usize) -> (Vec<String>, Vec<String>) {
    // the metadata alone: naming columns needs no cell model (an imported one's file may be elsewhere)
    match excite::data::problem::ProblemMeta::from_props(&model.metadata) {
        Ok(p) => (p.inputs.iter().map(|v| v.name.clone()).collect(), p.outputs.iter().map(|v| v.name.clone()).collect()),
        Err(_) => ((0..n_in).map(|i| format!("x{i}")).collect(), (0..n_out).map(|i| format!("y{i}")).collect()),
    }
}

fn open(path: &Path, trusted_key: Option<&Path>, threads: usize) -> Result<Surrogate, excite::Error> {
    let bundle = path.is_file() && path.to_string_lossy().ends_with(".tar.gz") || path.join(excite::bundle::BUNDLE_FILE).is_file();
    if bundle {
        let s = match trusted_key {
            Some(k) => excite::Surrogate::load_trusted(path, &excite::bundle::sign::TrustedKey::from_file(k)?)?,
            None => excite::Surrogate::load(path)?,
        };
        let (manifest, engine, name, network) = s.into_parts();
        let info = serde_json::json!({"source": "bundle", "path": path, "engine": name, "bundle": manifest});
        return Ok(Surrogate {
            engine: Mutex::new(engine),
            network,
            inputs: manifest.inputs.iter().map(|v| v.name.clone()).collect(),
            outputs: manifest.outputs.iter().map(|v| v.name.clone()).collect(),
            info,
        });
    }
    if trusted_key.is_some() {
        return Err(excite::Error::invalid("trusted_key", format!("{} is not a bundle; only bundles are signed", path.display()), "pass a bundle folder or .tar.gz, or load without trusted_key"));
    }
    let (engine, model, manifest) = excite::engine::open_path(path, threads)?;
    // one read of the file for the derivatives and the names
    let parsed = excite::onnx::read(&model)?;
    let network = Mlp::from_model(&parsed).ok();
    let e = engine.info();
    let (inputs, outputs) = names(&parsed, e.inputs, e.outputs);
    let info = serde_json::json!({"source": if manifest.is_some() { "engine" } else { "onnx" }, "path": path, "engine": format!("{} {}", e.backend, e.precision), "runtime": e.runtime, "manifest": manifest});
    Ok(Surrogate { engine: Mutex::new(engine), network, inputs, outputs, info })
}

/// `x` as rows of `n` float32 values: borrowed when it is a C-contiguous
/// float32 array, else a named error.
fn rows_of<'a>(x: &'a Bound<'_, PyAny>, n: usize, names: &[String]) -> PyResult<(numpy::PyReadonlyArray2<'a, f32>, usize)> {
    let expected = || format!("x must be a float32 numpy array of shape (n, {n}), columns {}", names.join(", "));
    let arr = x.cast::<PyArray2<f32>>().map_err(|_| {
        let (dtype, shape) = (x.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| x.get_type().to_string()), x.getattr("shape").map(|s| s.to_string()).unwrap_or_default());
        invalid("x", format!("{}; got {dtype} {shape}", expected()), "convert with numpy.asarray(x, dtype=numpy.float32).reshape(-1, inputs)")
    })?;
    let r = arr.readonly();
    let shape = r.shape();
    if shape[1] != n {
        return Err(invalid("x", format!("{}; got {} columns", expected(), shape[1]), "pass one column per input, in the order above"));
    }
    let rows = shape[0];
    Ok((r, rows))
}

#[pymethods]
impl Surrogate {
    /// Loads a bundle (folder or .tar.gz), an engine folder or an ONNX file.
    /// With `trusted_key` (a minisign public key file), a bundle must be
    /// signed by it.
    #[staticmethod]
    #[pyo3(signature = (path, trusted_key=None, threads=0))]
    fn load(py: Python<'_>, path: PathBuf, trusted_key: Option<PathBuf>, threads: usize) -> PyResult<Surrogate> {
        py.detach(|| open(&path, trusted_key.as_deref(), threads)).map_err(raise)
    }

    /// Outputs for `x` (n, inputs) float32 → (n, outputs) float32.
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (arr, rows) = rows_of(x, self.inputs.len(), &self.inputs)?;
        let owned;
        let slice = match arr.as_slice() {
            Ok(s) => s,
            Err(_) => {
                owned = arr.as_array().iter().copied().collect::<Vec<f32>>();
                &owned[..]
            }
        };
        let y = py.detach(|| {
            let mut e = self.engine.lock().map_err(|_| excite::Error::invalid("surrogate", "an earlier call failed inside excite", "load the surrogate again"))?;
            e.run(slice, rows)
        }).map_err(raise)?;
        y.into_pyarray(py).reshape([rows, self.outputs.len()])
    }

    /// d outputs / d inputs per row: (n, outputs, inputs) float32, exact
    /// derivatives of the network by forward-mode tangents through its layers.
    fn jacobian<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let (arr, rows) = rows_of(x, self.inputs.len(), &self.inputs)?;
        let v: Vec<f32> = arr.as_array().iter().copied().collect();
        let net = self.network.as_ref().ok_or_else(|| invalid("jacobian", "this model is not one MLP (a time-windowed surrogate, or an fp16/int8 engine's graph)".into(), "load the bundle or the fp32 model"))?;
        let j: Vec<f32> = py.detach(|| net.jacobian(&v, rows)).into_iter().map(|d| d as f32).collect();
        j.into_pyarray(py).reshape([rows, self.outputs.len(), self.inputs.len()])
    }

    /// Input names, in column order.
    #[getter]
    fn inputs(&self) -> Vec<String> {
        self.inputs.clone()
    }

    /// Output names, in column order.
    #[getter]
    fn outputs(&self) -> Vec<String> {
        self.outputs.clone()
    }

    /// What was loaded: source, path, engine, and the bundle's or engine's manifest.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.info)
    }

    fn __repr__(&self) -> String {
        format!("Surrogate({} → {}, {})", self.inputs.join(", "), self.outputs.join(", "), self.info["engine"].as_str().unwrap_or(""))
    }
}

/// Solves cells of a cell model with the reference: a built-in model by
/// name, or a CellML file (a path ending in `.cellml`), whose `scheme` may
/// be "rush-larsen". `initial` and `params` map names to a number or a
/// sequence (one per cell); unnamed ones take the model's defaults (built-in
/// states 0, a CellML file's own initial values). Returns a dict: "t"
/// (samples,) and each state (cells, samples), float32.
#[pyfunction]
#[pyo3(signature = (model, t_end, dt=0.01, sample_every=0.1, initial=None, params=None, threads=0, scheme="euler"))]
#[allow(clippy::too_many_arguments)]
fn simulate<'py>(py: Python<'py>, model: &str, t_end: f64, dt: f64, sample_every: f64, initial: Option<HashMap<String, Vec<f64>>>, params: Option<HashMap<String, Vec<f64>>>, threads: usize, scheme: &str) -> PyResult<Bound<'py, PyDict>> {
    let m = if model.ends_with(".cellml") { excite::cell::ModelRef::Cellml { cellml: model.into() } } else { excite::cell::ModelRef::Builtin(model.into()) };
    let m = m.resolve(Path::new("")).map_err(raise)?;
    let scheme = match scheme {
        "euler" => excite::solve::Scheme::Euler,
        "rush-larsen" => excite::solve::Scheme::RushLarsen,
        other => return Err(invalid("scheme", format!("unknown scheme `{other}`"), "use \"euler\" or \"rush-larsen\"")),
    };
    let info = m.info();
    let grid = excite::solve::TimeGrid::new(t_end, dt, sample_every).map_err(raise)?;
    let (initial, params) = (initial.unwrap_or_default(), params.unwrap_or_default());
    let n = initial.values().chain(params.values()).map(Vec::len).filter(|&l| l > 1).max().unwrap_or(1);
    let column = |v: Option<&Vec<f64>>, default: f64, name: &str| -> PyResult<excite::solve::Column> {
        match v.map(|v| v.as_slice()) {
            None | Some([]) => Ok(excite::solve::Column::Same(default)),
            Some([x]) => Ok(excite::solve::Column::Same(*x)),
            Some(v) if v.len() == n => Ok(excite::solve::Column::PerCell(v.to_vec())),
            Some(v) => Err(invalid(name, format!("{} values for {n} cells", v.len()), "give one value, or one per cell for every per-cell entry")),
        }
    };
    for k in initial.keys() {
        if info.state_index(k).is_none() {
            return Err(invalid("initial", format!("`{k}` is not a state of {model}"), &format!("states: {}", info.states.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))));
        }
    }
    for k in params.keys() {
        if info.param_index(k).is_none() {
            return Err(invalid("params", format!("`{k}` is not a parameter of {model}"), &format!("parameters: {}", info.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", "))));
        }
    }
    let cells = excite::solve::Cells {
        n,
        init: info.states.iter().map(|s| column(initial.get(s.name), s.initial, s.name)).collect::<PyResult<_>>()?,
        params: info.params.iter().map(|p| column(params.get(p.name), p.default, p.name)).collect::<PyResult<_>>()?,
    };
    let traj = py.detach(|| excite::solve::solve(m, &grid, &cells, scheme, excite::solve::Device::Cpu, threads)).map_err(raise)?;
    let out = PyDict::new(py);
    let t: Vec<f32> = (0..grid.n_samples).map(|k| (k as f64 * sample_every) as f32).collect();
    out.set_item("t", t.into_pyarray(py))?;
    for (v, s) in info.states.iter().enumerate() {
        let mut a = vec![0f32; n * grid.n_samples];
        for k in 0..grid.n_samples {
            for (c, x) in traj.row(v, k).iter().enumerate() {
                a[c * grid.n_samples + k] = *x;
            }
        }
        out.set_item(s.name, a.into_pyarray(py).reshape([n, grid.n_samples])?)?;
    }
    Ok(out)
}

/// Verifies a model (bundle's model.onnx, engine folder or ONNX file)
/// against the Euler reference on fresh cells; returns the report as a
/// dict. `problem` is the dataset of a model that does not record its own.
#[pyfunction]
#[pyo3(signature = (model, problem=None, cells=200, max_mae=None, max_abs_error=None, batch=1024, seconds=0.5, reference_cells=20000, out=None))]
#[allow(clippy::too_many_arguments)]
fn verify<'py>(py: Python<'py>, model: PathBuf, problem: Option<PathBuf>, cells: usize, max_mae: Option<f64>, max_abs_error: Option<f64>, batch: usize, seconds: f64, reference_cells: usize, out: Option<PathBuf>) -> PyResult<Bound<'py, PyAny>> {
    let report = py.detach(|| -> Result<excite::verify::Report, excite::Error> {
        let (mut engine, onnx, _) = excite::engine::open_path(&model, 0)?;
        let p = excite::verify::Problem::of(&onnx, problem.as_deref())?;
        let s = excite::verify::Settings { cells, batch, seconds, reference_cells, budget: excite::verify::Budget { max_mae, max_abs_error }, ..Default::default() };
        let r = excite::verify::verify_on(&p, &onnx, engine.as_mut(), &s, &excite::report::Silent)?;
        if let Some(dir) = &out {
            excite::verify::write(&r, dir)?;
        }
        Ok(r)
    }).map_err(raise)?;
    to_python(py, &serde_json::to_value(&report).expect("a report serialises"))
}

/// Runs a pipeline file (`excite pipeline FILE`) into `out` (default
/// runs/<name>); returns each stage's outcome as a dict.
#[pyfunction]
#[pyo3(signature = (file, out=None))]
fn pipeline<'py>(py: Python<'py>, file: PathBuf, out: Option<PathBuf>) -> PyResult<Bound<'py, PyAny>> {
    let outcomes = py.detach(|| -> Result<_, excite::Error> {
        let p = excite::pipeline::Pipeline::from_file(&file)?;
        let dir = out.unwrap_or_else(|| PathBuf::from("runs").join(&p.name));
        excite::pipeline::run(&p, &dir, &Default::default(), &excite::report::Silent)
    }).map_err(raise)?;
    to_python(py, &serde_json::to_value(&outcomes).expect("outcomes serialise"))
}

#[pymodule]
#[pyo3(name = "excite")]
fn excite_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ExciteError", m.py().get_type::<ExciteError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Surrogate>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline, m)?)?;
    Ok(())
}
