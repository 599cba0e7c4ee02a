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
    let model = dir.join(&m.model);
    let engine: Box<dyn Engine> = match m.target {
        manifest::Target::Reference => Box::new(reference::Interpreter::load(&model)?),
        manifest::Target::NativeCpu => Box::new(native::NativeEngine::load(&model, threads)?.with_fast_activations(m.precision == crate::build::precision::Precision::Fp32Fast)),
        manifest::Target::NativeCuda => Box::new(native_cuda::NativeCudaEngine::load_with(&model, m.precision.tensor_core())?),
        _ => Box::new(ort::OrtEngine::load(&model, &ort::Options { target: ort::TargetOptions::for_manifest(&m, dir), threads, ..Default::default() })?),
    };
    Ok((m, engine))
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
        let model = path.join(&m.model);
        Ok((e, model, Some(m)))
    } else {
        let e = ort::OrtEngine::load(
            path,
            &ort::Options {
                threads,
                ..Default::default()
            },
        )?;
        Ok((Box::new(e), path.to_path_buf(), None))
    }
}

/// Checks that `x` holds `rows` rows of `inputs` values.
pub fn check_rows(x: &[f32], rows: usize, inputs: usize) -> Result<(), Error> {
    if x.len() != rows * inputs {
        return Err(Error::invalid("inputs", format!("{} values are not {rows} rows of {inputs} inputs", x.len()), "pass rows × inputs values, row-major"));
    }
    Ok(())
}

/// A built surrogate that evaluates batches: `x` row-major [rows, inputs]
/// in physical units → [rows, outputs].
pub trait Engine {
    fn info(&self) -> EngineInfo;
    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error>;
}
