//! ONNX Runtime on the CPU through the `ort` crate, loading
//! `libonnxruntime` at run time (no download at build time). The library is
//! found through `ORT_DYLIB_PATH`, the project's `.deps/` (installed by
//! `scripts/setup.sh` from the PyPI `onnxruntime` wheel), or the
//! `onnxruntime` Python package on this machine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::engine::{Engine, EngineInfo};
use crate::Error;

const HINT: &str = "run scripts/setup.sh (installs the PyPI onnxruntime wheel into .deps/), \
or `pip install onnxruntime==1.31.1`, or set ORT_DYLIB_PATH to a libonnxruntime.so";

/// The loaded runtime: its environment, library path and version.
pub struct Runtime {
    pub env: Environment,
    pub library: PathBuf,
    pub version: String,
}

/// Loads ONNX Runtime once per process.
pub fn runtime() -> Result<&'static Runtime, Error> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let r = RT.get_or_init(|| {
        let library = find_library().ok_or_else(|| "libonnxruntime.so was not found (ORT_DYLIB_PATH, .deps/, python onnxruntime)".to_string())?;
        let env = ort::init_from(&library)
            .map_err(|e| format!("{} could not be loaded: {e}", library.display()))?
            .with_name("excite")
            .build()
            .map_err(|e| format!("{} could not be initialised: {e}", library.display()))?;
        // libonnxruntime.so.1.31.1 → 1.31.1
        let name = library.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let version = name.split(".so.").nth(1).unwrap_or("unknown version").to_string();
        Ok(Runtime { env, library, version })
    });
    r.as_ref().map_err(|problem| Error::unavailable("onnxruntime", problem.clone(), HINT))
}

fn find_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(PathBuf::from));
    }
    dirs.extend(roots.iter().map(|r| r.join(".deps/python/onnxruntime/capi")));
    if let Ok(out) = std::process::Command::new("python3").args(["-c", "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"]).output() {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi"));
        }
    }
    dirs.into_iter().find_map(|d| {
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&d)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
            .collect();
        libs.sort();
        libs.pop()
    })
}

/// How to build the session.
#[derive(Debug, Clone)]
pub struct Options {
    /// Intra-op threads (0 = ONNX Runtime's default).
    pub threads: usize,
    /// Write the graph after ONNX Runtime's optimisations here.
    pub optimized_model: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options { threads: 0, optimized_model: None }
    }
}

/// An ONNX model in an ONNX Runtime CPU session.
pub struct OrtEngine {
    session: Session,
    inputs: usize,
    outputs: usize,
    version: String,
}

impl OrtEngine {
    pub fn load(model: &Path, opts: &Options) -> Result<Self, Error> {
        let rt = runtime()?;
        let fail = |what: &str, e: ort::Error| Error::format(model, format!("{what}: {e}"), "export the model again with `excite export`");
        let mut builder = Session::builder(&rt.env).map_err(|e| fail("creating a session", e))?.with_optimization_level(GraphOptimizationLevel::All).map_err(|e| fail("setting optimisations", e.into()))?;
        if opts.threads > 0 {
            builder = builder.with_intra_threads(opts.threads).map_err(|e| fail("setting threads", e.into()))?;
        }
        if let Some(p) = &opts.optimized_model {
            builder = builder.with_optimized_model_path(p).map_err(|e| fail("setting the optimised model path", e.into()))?;
        }
        if !model.exists() {
            return Err(Error::io(model, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let session = builder.commit_from_file(model).map_err(|e| fail("not a model ONNX Runtime can load", e))?;
        let dims = |outlets: &[ort::value::Outlet], what: &str| -> Result<usize, Error> {
            let o = outlets.first().ok_or_else(|| Error::format(model, format!("the model has no {what}"), "export it with `excite export`"))?;
            match o.dtype().tensor_shape() {
                Some(shape) if shape.len() == 2 && shape[1] > 0 => Ok(shape[1] as usize),
                other => Err(Error::format(model, format!("{what} `{}` has shape {other:?}; excite engines take [N, features] float32", o.name()), "export it with `excite export`")),
            }
        };
        let inputs = dims(session.inputs(), "input")?;
        let outputs = dims(session.outputs(), "output")?;
        Ok(OrtEngine { session, inputs, outputs, version: format!("onnxruntime {}", rt.version) })
    }
}

impl Engine for OrtEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo { backend: "onnxruntime-cpu".into(), precision: "fp32".into(), inputs: self.inputs, outputs: self.outputs, runtime: self.version.clone() }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        if x.len() != rows * self.inputs {
            return Err(Error::invalid("inputs", format!("{} values are not {rows} rows of {} inputs", x.len(), self.inputs), "pass rows × inputs values"));
        }
        let fail = |e: ort::Error| Error::unavailable("onnxruntime", format!("inference failed: {e}"), "check the model with `excite verify`");
        let tensor = Tensor::from_array(([rows, self.inputs], x.to_vec())).map_err(fail)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(fail)?;
        let (_, y) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        Ok(y.to_vec())
    }
}
