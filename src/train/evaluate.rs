//! The evaluation at the end of training: errors per output variable on
//! the validation set and, for an ITNN, the rollout of every validation
//! trajectory from its first state (`metrics.json`).

use serde::{Deserialize, Serialize};

use crate::data::{Array2, Metadata};
use crate::metrics::{self, VarMetrics};
use crate::train::{Mode, TrainedSurrogate};

/// ITNN rollout over whole validation trajectories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub trajectories: usize,
    /// Mean absolute error (all outputs) after each step of the rollout.
    pub mae_by_step: Vec<f64>,
    pub final_mae: f64,
    pub max_abs_error: f64,
}

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub variables: Vec<VarMetrics>,
    /// Mean of the per-variable MAEs (the paper's "Final Error 1").
    #[serde(deserialize_with = "crate::metrics::null_as_infinity")]
    pub mae: f64,
    /// A validation prediction was NaN or infinite (its errors are infinite).
    #[serde(default)]
    pub diverged: bool,
    /// For a diverged PINN, what made its residual not finite, where that can be found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_why: Option<String>,
    pub val_rows: usize,
    pub steps: usize,
    pub best_steps: Vec<usize>,
    pub train_seconds: f64,
    pub samples_per_s: f64,
    pub rollout: Option<Rollout>,
}

/// Errors of `s` on the validation rows, with the ITNN rollout for `mode` ITNN.
pub(super) fn evaluate(s: &TrainedSurrogate, meta: &Metadata, mode: Mode, x: &Array2, y: &Array2) -> (Vec<VarMetrics>, Option<Rollout>) {
    let names: Vec<String> = meta.outputs.iter().map(|v| v.name.clone()).collect();
    let variables = metrics::errors(&names, &s.predict(&x.data), &y.data);
    (variables, (mode == Mode::Itnn).then(|| rollout(s, meta, x, y)))
}

/// Rolls the one-step map out over each validation trajectory from its first state.
fn rollout(s: &TrainedSurrogate, meta: &Metadata, x: &Array2, y: &Array2) -> Rollout {
    let n_state = meta.outputs.len();
    // steps per trajectory (a one-sample grid has none, and no trajectory to roll out)
    let per = meta.time.samples_per_cell.saturating_sub(1);
    let cells = x.rows.checked_div(per).unwrap_or(0);
    let x0: Vec<f32> = (0..cells).flat_map(|c| x.row(c * per).to_vec()).collect();
    let time = meta.inputs.iter().position(|v| v.name == "t").map(|col| (col, meta.time.sample_every));
    let states = metrics::rollout(&x0, cells, n_state, per, time, |x, _| Ok::<_, ()>(s.predict(x))).unwrap_or_default();
    let mut mae_by_step = Vec::with_capacity(per);
    let mut all = metrics::Accumulator::default();
    for r in 0..per {
        let mut step = metrics::Accumulator::default();
        for c in 0..cells {
            let truth = y.row(c * per + r);
            for i in 0..n_state {
                let p = states[(r * cells + c) * n_state + i] as f64;
                step.add(p, truth[i] as f64);
                all.add(p, truth[i] as f64);
            }
        }
        mae_by_step.push(step.mae());
    }
    Rollout {
        trajectories: cells,
        final_mae: mae_by_step.last().copied().unwrap_or(0.0),
        mae_by_step,
        max_abs_error: all.max_abs_error(),
    }
}
