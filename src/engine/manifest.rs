//! `engine.json`: what an engine directory holds and how it was built —
//! target, precision, batch profile, input/output names and shapes, runtime
//! versions, device, calibration, the verification result, and the sha256 of
//! every file (an engine whose files changed is refused).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::native_cuda::TensorCore;
use crate::Error;

pub const ENGINE_FILE: &str = "engine.json";
pub const FORMAT: &str = "excite-engine/1";
/// The int8 calibration ranges in an engine folder, in TensorRT's calibration cache format.
pub const CALIBRATION_FILE: &str = "calibration.cache";

/// Where an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// ONNX Runtime, CPU execution provider.
    Cpu,
    /// ONNX Runtime, CUDA execution provider.
    Cuda,
    /// ONNX Runtime, TensorRT execution provider.
    Tensorrt,
    /// excite's native fused-MLP kernel on the CPU (fp32; no runtime library).
    #[serde(rename = "native-cpu")]
    #[value(name = "native-cpu")]
    NativeCpu,
    /// excite's fused-MLP kernel on an NVIDIA GPU (NVRTC at load time; fp32).
    #[serde(rename = "native-cuda")]
    #[value(name = "native-cuda")]
    NativeCuda,
    /// excite's own interpreter: needs no runtime library, slow (the scalar reference).
    Reference,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
            Target::Tensorrt => "tensorrt",
            Target::NativeCpu => "native-cpu",
            Target::NativeCuda => "native-cuda",
            Target::Reference => "reference",
        }
    }
}

/// Numeric precision of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
    /// fp32 arithmetic with the native engine's fast tanh, sigmoid and SiLU
    /// (≤ 1e-4 against f64 instead of 5e-7).
    #[serde(rename = "fp32-fast")]
    #[value(name = "fp32-fast")]
    Fp32Fast,
    /// bfloat16 operands with fp32 sums (native-cuda's tensor-core kernel).
    Bf16,
}

impl Precision {
    /// The tensor-core operand type of a native-cuda engine at this precision.
    pub fn tensor_core(self) -> Option<TensorCore> {
        use crate::engine::native_cuda::TensorCore;
        match self {
            Precision::Fp16 => Some(TensorCore::Fp16),
            Precision::Bf16 => Some(TensorCore::Bf16),
            _ => None,
        }
    }
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
            Precision::Fp32Fast => "fp32-fast",
            Precision::Bf16 => "bf16",
        }
    }
}

/// How a tensor's clipping range is chosen from calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Calibrator {
    /// The largest absolute value seen.
    Minmax,
    /// The 99.99th percentile of absolute values.
    Percentile,
    /// TensorRT's entropy calibration: the threshold minimising the KL divergence
    /// between the fp32 histogram and its 128-level quantisation.
    Entropy,
}

/// Batch sizes an engine is built for; `opt` is the one it was tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProfile {
    pub min: usize,
    pub opt: usize,
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// `-1` marks the dynamic batch dimension.
    pub shape: Vec<i64>,
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    pub name: String,
    pub version: String,
    pub library: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub method: Calibrator,
    pub rows: usize,
    pub source: String,
}

/// The verification of the built engine against the Euler reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub passed: bool,
    pub mae: BTreeMap<String, f64>,
    pub max_abs_error: BTreeMap<String, f64>,
    pub engine_samples_per_s: f64,
    pub reference_samples_per_s: f64,
    pub speedup: f64,
    pub failure: Option<String>,
}

/// One precision tried by `--precision auto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub precision: Precision,
    pub verified: Verified,
    pub chosen: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub target: Target,
    pub precision: Precision,
    pub batch: BatchProfile,
    /// The ONNX file the engine runs, inside the directory.
    pub model: String,
    pub input: TensorSpec,
    pub output: TensorSpec,
    pub runtime: Runtime,
    /// GPU name and compute capability, for GPU targets.
    pub device: Option<String>,
    pub source_model_sha256: String,
    pub calibration: Option<Calibration>,
    pub verify: Option<Verified>,
    pub candidates: Vec<Candidate>,
    pub excite_version: String,
    /// sha256 of every other file in the directory.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads `engine.json` and checks every file's hash.
    pub fn load(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(ENGINE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &path,
                format!("not an engine manifest ({FORMAT}): {e}"),
                "build the engine with `excite build`",
            )
        })?;
        crate::fsio::confined(dir, &m.model, "engine.json `model`")?;
        // hashed by walking the folder, which never follows a link out of it; ONNX
        // Runtime may add cache files at run time, so files beyond the list are allowed
        let found = crate::fsio::file_hashes(dir)?;
        crate::fsio::check_hashes(dir, ENGINE_FILE, &m.files, &found, false, "rebuild the engine with `excite build`")?;
        Ok(m)
    }
}
