//! `excite train`: dataset → trained surrogate run folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use excite::train::{self, TrainSpec};

use super::printer::Progress;

pub fn run(config: &Path, out: Option<PathBuf>, resume: bool, json: bool) -> Result<ExitCode> {
    let spec = TrainSpec::from_file(config)?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&spec.name).join("train"));
    let progress = Progress::new();
    let outcome = train::train(&spec, &out, resume, &progress)?;
    let m = &outcome.metrics;
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "trained {} ({} steps in {:.1}s, {:.3e} samples/s)",
        outcome.dir.display(),
        m.steps,
        m.train_seconds,
        m.samples_per_s
    );
    println!(
        "{:<6} {:>12} {:>12} {:>12}   (validation, {} rows)",
        "var", "mae", "rmse", "max abs", m.val_rows
    );
    for v in &m.variables {
        println!(
            "{:<6} {:>12.4e} {:>12.4e} {:>12.4e}",
            v.name, v.mae, v.rmse, v.max_abs_error
        );
    }
    println!("mean MAE {:.4e}", m.mae);
    if let Some(r) = &m.rollout {
        println!(
            "rollout over {} trajectories, {} steps: final MAE {:.4e}, max abs {:.4e}",
            r.trajectories,
            r.mae_by_step.len(),
            r.final_mae,
            r.max_abs_error
        );
    }
    Ok(ExitCode::SUCCESS)
}
