//! Inference engines: one small trait, one file per backend. `verify`,
//! `bench` and the bundle loader work with any [`Engine`].

pub mod manifest;
pub mod native;
pub mod native_cuda;
pub mod ort;
pub mod reference;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What an engine is, for reports and manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Backend, e.g. `onnxruntime-cpu`.
    pub backend: String,
    pub precision: String,
    pub inputs: usize,
    pub outputs: usize,
    /// Runtime library and version, e.g. `onnxruntime 1.31.1`.
    pub runtime: String,
}

/// Opens an engine directory written by `excite build` (files checked against
/// their recorded hashes).
pub fn open(dir: &std::path::Path) -> Result<(manifest::Manifest, Box<dyn Engine>), Error> {
    open_with(dir, 0)
}

/// [`open`] with `threads` CPU threads for the native engine and ONNX Runtime (0 = default).
pub fn open_with(dir: &std::path::Path, threads: usize) -> Result<(manifest::Manifest, Box<dyn Engine>), Error> {
    let m = manifest::Manifest::load(dir)?;
    let engine = load(&Spec::of(&m), dir, &crate::fsio::confined(dir, &m.model, "engine.json `model`")?, threads, ort::Phase::Reopen, None)?;
    Ok((m, engine))
}

/// What loading an engine needs to know of it (recorded in `engine.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub target: manifest::Target,
    pub precision: manifest::Precision,
    pub batch: manifest::BatchProfile,
    /// The input tensor's name and width.
    pub input: String,
    pub features: usize,
}

impl Spec {
    /// The spec an engine folder's manifest records.
    pub fn of(m: &manifest::Manifest) -> Spec {
        Spec {
            target: m.target,
            precision: m.precision,
            batch: m.batch,
            input: m.input.name.clone(),
            features: m.input.shape.get(1).and_then(|&d| usize::try_from(d).ok()).unwrap_or(1),
        }
    }
}

/// Loads the engine described by `spec` that lives in folder `dir` and runs
/// `model`, at build time or on reopening (`phase`): the one loader for both,
/// so a reopened engine runs with the settings it was built and verified
/// with. `optimized_model`: where ONNX Runtime CPU writes its optimised graph.
pub fn load(spec: &Spec, dir: &std::path::Path, model: &std::path::Path, threads: usize, phase: ort::Phase, optimized_model: Option<std::path::PathBuf>) -> Result<Box<dyn Engine>, Error> {
    use manifest::{Precision, Target};
    Ok(match spec.target {
        Target::Reference => Box::new(crate::onnx::Interpreter::load(model)?),
        Target::NativeCpu => Box::new(native::NativeEngine::load(model, threads)?.with_fast_activations(spec.precision == Precision::Fp32Fast)),
        Target::NativeCuda => Box::new(native_cuda::NativeCudaEngine::load_with(model, spec.precision.tensor_core())?),
        Target::Cpu | Target::Cuda | Target::Tensorrt => Box::new(ort::OrtEngine::load(model, &ort::Options { target: ort_options(spec, dir, phase), threads, optimized_model, model_bytes: None })?),
    })
}

/// The ONNX Runtime execution-provider options of the engine `spec` in `dir`.
pub fn ort_options(spec: &Spec, dir: &std::path::Path, phase: ort::Phase) -> ort::TargetOptions {
    ort::TargetOptions::for_engine(spec.target, spec.precision, spec.batch, &spec.input, spec.features, dir, phase)
}

/// Opens an ONNX file (ONNX Runtime CPU with `threads` intra-op threads) or
/// an engine directory; returns the engine, the ONNX file it runs, and the
/// manifest for a directory.
pub fn open_path(
    path: &std::path::Path,
    threads: usize,
) -> Result<
    (
        Box<dyn Engine>,
        std::path::PathBuf,
        Option<manifest::Manifest>,
    ),
    Error,
> {
    if path.is_dir() {
        let (m, e) = open_with(path, threads)?;
        let model = crate::fsio::confined(path, &m.model, "engine.json `model`")?;
        Ok((e, model, Some(m)))
    } else {
        // excite's form of the file (any exporter's MLP), as `excite build` would build it
        let canonical = crate::onnx::canonical(crate::onnx::read(path)?).map_err(|e| e.in_file(path))?;
        let e = ort::OrtEngine::load(
            path,
            &ort::Options {
                threads,
                model_bytes: Some(canonical.to_bytes()),
                ..Default::default()
            },
        )?;
        Ok((Box::new(e), path.to_path_buf(), None))
    }
}

/// A built surrogate that evaluates batches: `x` row-major [rows, inputs]
/// in physical units → [rows, outputs].
pub trait Engine: Send {
    fn info(&self) -> EngineInfo;
    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error>;
}
