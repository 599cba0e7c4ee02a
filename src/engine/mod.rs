//! Inference engines: one small trait, one file per backend. `verify`,
//! `bench` and the bundle loader work with any [`Engine`].

pub mod ort;

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

/// A built surrogate that evaluates batches: `x` row-major [rows, inputs]
/// in physical units → [rows, outputs].
pub trait Engine {
    fn info(&self) -> EngineInfo;
    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error>;
}
