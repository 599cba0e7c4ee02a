//! Checkpoints: a window's weights, Adam state and the loop's own state
//! (step, learning rate, best validation, RNG, adaptive rows, log) at its
//! last validation, so `--resume` continues exactly where a run stopped.

use std::path::Path;

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::sampling::Rng;
use crate::fsio::write_atomic;
use crate::train::log::LossRow;
use crate::train::{load_net, net_bytes, Architecture, Net};
use crate::Error;

/// Everything a checkpoint holds besides weights and optimizer state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    pub step: usize,
    pub lr: f64,
    #[serde(deserialize_with = "crate::metrics::null_as_infinity")]
    pub best_val: f64,
    pub best_step: usize,
    pub bad_checks: usize,
    pub plateau_bad: usize,
    pub rng: [u64; 4],
    pub hard: Vec<u32>,
    pub samples: u64,
    pub seconds: f64,
    #[serde(deserialize_with = "crate::train::log::rows_or_lines")]
    pub log: Vec<LossRow>,
    pub stopped_early: bool,
}

impl State {
    /// The state before the first step of window `window`.
    pub fn new(lr: f64, seed: u64, window: usize) -> State {
        State {
            step: 0,
            lr,
            best_val: f64::INFINITY,
            best_step: 0,
            bad_checks: 0,
            plateau_bad: 0,
            rng: Rng::new(seed ^ (0xA5A5 + window as u64)).state(),
            hard: Vec::new(),
            samples: 0,
            seconds: 0.0,
            log: Vec::new(),
            stopped_early: false,
        }
    }
}

/// Writes the checkpoint into `dir`: weights and optimizer first, state
/// last, so a state file always describes complete files.
pub(super) fn save(dir: &Path, net: &Net, optim: &ModuleOptimizer, state: &State) -> Result<(), Error> {
    write_atomic(&dir.join("model.bpk"), &net_bytes(net))?;
    write_atomic(&dir.join("optimizer.bpk"), &optim.into_bytes().expect("optimizer state serialises"))?;
    write_atomic(&dir.join("state.json"), &serde_json::to_vec(state).expect("serialises"))
}

/// The checkpoint in `dir`, if one was written: `optim` with the saved
/// optimizer state, and the saved state and weights (on `device`); else
/// `optim` as it was.
pub(super) fn load(dir: &Path, arch: &Architecture, device: &Device, optim: ModuleOptimizer) -> Result<(ModuleOptimizer, Option<(State, Net)>), Error> {
    let state_path = dir.join("state.json");
    if !state_path.exists() {
        return Ok((optim, None));
    }
    let damaged = |path: &Path, what: String| Error::format(path, what, "start again without --resume");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: State = serde_json::from_str(&text).map_err(|e| damaged(&state_path, format!("damaged checkpoint: {e}")))?;
    let net = load_net(arch, &dir.join("model.bpk"), device)?;
    let opt_path = dir.join("optimizer.bpk");
    let bytes = std::fs::read(&opt_path).map_err(|e| Error::io(&opt_path, e))?;
    let optim = optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| damaged(&opt_path, format!("damaged optimizer state: {e:?}")))?;
    Ok((optim, Some((state, net))))
}
