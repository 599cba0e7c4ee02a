//! Training surrogates with burn: data-driven (DDNN), physics-informed (PINN)
//! and iterative (ITNN) networks from datasets written by `excite simulate`.
//!
//! A run folder holds `surrogate.json` (architecture, normalisation, names,
//! windows, provenance), the best weights per time window (`model-K.bpk`,
//! burn's record format), `losses.csv`, `metrics.json`, and `checkpoint/` for
//! resuming. The normalisation is part of the surrogate: [`TrainedSurrogate`] takes
//! and returns physical values.

mod adaptive;
pub mod arch;
mod bench;
mod checkpoint;
mod evaluate;
pub mod fastmath;
pub mod fused;
mod log;
pub mod net;
pub mod physics;
pub mod spec;
mod trainer;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::{ModelMeta, TimeMeta, VarRange};
use crate::Error;
pub use arch::{Activation, Architecture, Layer};
pub use net::Net;
pub use spec::{Mode, TrainSpec};
pub use bench::{step_rate, PinnForm};
pub use evaluate::{Metrics, Rollout};
pub use trainer::{train, Outcome};

/// Version tag of the run folder layout.
pub const FORMAT: &str = "excite-surrogate/1";
pub const SURROGATE_FILE: &str = "surrogate.json";
/// The validation errors and timing of a run ([`Metrics`]).
pub const METRICS_FILE: &str = "metrics.json";

/// Where a training run that diverged is kept: beside its output folder
/// (`train` → `train.rejected`), which keeps its previous content.
pub fn rejected_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "train".into());
    out.with_file_name(format!("{name}.rejected"))
}

/// What to try when training of `mode` diverged.
pub fn diverged_hint(mode: Mode) -> &'static str {
    match mode {
        Mode::Pinn => "for a PINN whose equations leave their domain where the network strays (a logarithm of a concentration), set `clamp_states: true` in the train section; else lower train.lr",
        _ => "train again with a lower learning rate (train.lr) or another seed",
    }
}

/// Min-max scaling of each column to [-1, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub inputs: Vec<VarRange>,
    pub outputs: Vec<VarRange>,
}

impl Normalization {
    /// (mid, half-width) of one range: unit = (x − mid) / half.
    pub fn span(r: &VarRange) -> (f64, f64) {
        let half = (r.max - r.min) / 2.0;
        ((r.max + r.min) / 2.0, if half > 0.0 { half } else { 1.0 })
    }

    /// Physical → unit, row-major with `cols = ranges.len()`.
    pub fn to_unit(ranges: &[VarRange], data: &[f32]) -> Vec<f32> {
        let spans: Vec<_> = ranges.iter().map(Self::span).collect();
        data.iter()
            .enumerate()
            .map(|(i, &x)| {
                let (mid, half) = spans[i % spans.len()];
                ((x as f64 - mid) / half) as f32
            })
            .collect()
    }

    /// Unit → physical.
    pub fn from_unit(ranges: &[VarRange], data: &[f32]) -> Vec<f32> {
        let spans: Vec<_> = ranges.iter().map(Self::span).collect();
        data.iter()
            .enumerate()
            .map(|(i, &y)| {
                let (mid, half) = spans[i % spans.len()];
                (y as f64 * half + mid) as f32
            })
            .collect()
    }

    /// (mid, half-width) of each range: unit = (x − mid) / half.
    pub fn spans(ranges: &[VarRange]) -> Vec<(f64, f64)> {
        ranges.iter().map(Self::span).collect()
    }
}

/// A time window of a split model: rows with `t0 ≤ t ≤ t1` go to `file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub t0: f64,
    pub t1: f64,
    pub file: String,
}

/// `surrogate.json`: everything needed to rebuild and trust the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurrogateMeta {
    pub format: String,
    pub name: String,
    pub mode: Mode,
    pub architecture: Architecture,
    pub normalization: Normalization,
    /// One entry per sub-model; a single window spans the whole time range.
    pub windows: Vec<Window>,
    pub model: ModelMeta,
    pub time: TimeMeta,
    /// Fixed initial values of the states that were not sampled.
    #[serde(default)]
    pub initial: std::collections::BTreeMap<String, f64>,
    /// Ranges the dataset's cells were sampled from (`u0`, `k`, …).
    #[serde(default)]
    pub sampling: std::collections::BTreeMap<String, [f64; 2]>,
    pub dataset_sha256: String,
    pub excite_version: String,
}

/// A trained surrogate, ready to predict physical outputs from physical inputs.
pub struct TrainedSurrogate {
    pub meta: SurrogateMeta,
    nets: Vec<Net>,
    device: Device,
}

impl TrainedSurrogate {
    /// Loads a training run folder.
    pub fn load(dir: &Path) -> Result<TrainedSurrogate, Error> {
        let path = dir.join(SURROGATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let meta: SurrogateMeta = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &path,
                format!("not a surrogate description ({FORMAT}): {e}"),
                "train one with `excite train`",
            )
        })?;
        let device = Device::flex();
        let nets = meta
            .windows
            .iter()
            .map(|w| load_net(&meta.architecture, &dir.join(&w.file), &device))
            .collect::<Result<_, _>>()?;
        Ok(TrainedSurrogate { meta, nets, device })
    }

    pub(crate) fn from_parts(meta: SurrogateMeta, nets: Vec<Net>, device: Device) -> TrainedSurrogate {
        TrainedSurrogate { meta, nets, device }
    }

    /// The network of each time window, on [`TrainedSurrogate::device`].
    pub(crate) fn nets(&self) -> &[Net] {
        &self.nets
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Predicts outputs for `x` (row-major, `inputs` columns, physical units).
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let n_in = self.meta.architecture.inputs;
        let n_out = self.meta.architecture.outputs;
        let rows = x.len() / n_in;
        let unit = Normalization::to_unit(&self.meta.normalization.inputs, x);
        let mut out = vec![0.0f32; rows * n_out];
        // Rows go to the window their time falls in (column 0 is t for trajectory surrogates).
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.nets.len()];
        for r in 0..rows {
            let w = if self.nets.len() == 1 {
                0
            } else {
                window_of(&self.meta.windows, x[r * n_in] as f64)
            };
            groups[w].push(r);
        }
        for (w, rows_w) in groups.iter().enumerate().filter(|(_, g)| !g.is_empty()) {
            for chunk in rows_w.chunks(65536) {
                let xs: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&r| unit[r * n_in..(r + 1) * n_in].iter().copied())
                    .collect();
                let t =
                    Tensor::<2>::from_data(TensorData::new(xs, [chunk.len(), n_in]), &self.device);
                let y = self.nets[w]
                    .forward(t)
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("f32 output");
                let y = Normalization::from_unit(&self.meta.normalization.outputs, &y);
                for (i, &r) in chunk.iter().enumerate() {
                    out[r * n_out..(r + 1) * n_out].copy_from_slice(&y[i * n_out..(i + 1) * n_out]);
                }
            }
        }
        out
    }

    /// The network of window `w` (for export).
    pub fn net(&self, w: usize) -> &Net {
        &self.nets[w]
    }
}

/// The window containing `t` (the last one whose start is ≤ t).
pub fn window_of(windows: &[Window], t: f64) -> usize {
    windows.iter().rposition(|w| t >= w.t0).unwrap_or(0)
}

pub(crate) fn load_net(arch: &Architecture, path: &Path, device: &Device) -> Result<Net, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record =
        ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| {
            Error::format(
                path,
                format!("not a burn record: {e:?}"),
                "retrain, or restore the file from the run folder",
            )
        })?;
    Net::new(arch, device, true)
        .try_load_record(record)
        .map_err(|e| {
            Error::format(
                path,
                format!(
                    "weights do not fit the architecture {}: {e:?}",
                    arch.summary()
                ),
                "retrain with the matching surrogate.json",
            )
        })
}

pub(crate) fn net_bytes(net: &Net) -> Vec<u8> {
    net.clone()
        .into_record()
        .into_bytes()
        .expect("records serialise")
        .to_vec()
}
