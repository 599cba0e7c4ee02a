//! `excite verify`: an ONNX engine against the Euler reference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use excite::verify::{self, Budget, Settings};

use super::printer::{rate, Progress};

#[derive(Args)]
pub struct VerifyArgs {
    /// The exported model (`excite export`), any MLP-shaped ONNX file, or an
    /// engine directory (`excite build`).
    model: PathBuf,
    /// For a model that does not record its problem (trained elsewhere): the
    /// dataset it was trained on (folder or dataset.json), which names the
    /// cell model, the inputs and outputs in column order and the time grid.
    #[arg(long, value_name = "DATASET")]
    problem: Option<PathBuf>,
    /// Report folder [default: runs/<model name>/verify].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Fresh cells (trajectories) to compare on.
    #[arg(long, default_value_t = 200)]
    cells: usize,
    /// Seed for the fresh cells (differs from any training seed by default).
    #[arg(long, default_value_t = Settings::default().seed)]
    seed: u64,
    /// Batch size the engine is timed at.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Fail if any variable's mean absolute error exceeds this.
    #[arg(long)]
    max_mae: Option<f64>,
    /// Fail if any variable's largest absolute error exceeds this.
    #[arg(long)]
    max_abs_error: Option<f64>,
    /// Seconds spent timing the engine.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Cells the Euler reference is timed on.
    #[arg(long, default_value_t = 100_000)]
    reference_cells: usize,
    /// Engine threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print report.json to stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &VerifyArgs) -> Result<ExitCode> {
    for (flag, v) in [
        ("--max-mae", a.max_mae),
        ("--max-abs-error", a.max_abs_error),
    ] {
        if let Some(v) = v {
            anyhow::ensure!(
                v.is_finite() && v >= 0.0,
                "{flag} {v}: must be a number ≥ 0"
            );
        }
    }
    let settings = Settings {
        cells: a.cells,
        seed: a.seed,
        batch: a.batch,
        budget: Budget {
            max_mae: a.max_mae,
            max_abs_error: a.max_abs_error,
        },
        seconds: a.seconds,
        reference_cells: a.reference_cells,
        threads: 0,
    };
    let (mut engine, onnx, _) = excite::engine::open_path(&a.model, a.threads)?;
    let problem = excite::verify::Problem::of(&onnx, a.problem.as_deref())?;
    let report = verify::verify_on(&problem, &onnx, engine.as_mut(), &settings, &Progress::new())?;
    let out = a.out.clone().unwrap_or_else(|| super::default_out(&a.model, "verify"));
    verify::write(&report, &out)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} {} vs Euler reference ({}, {} cells)\ncompared on {}",
            report.engine.backend, report.engine.precision, report.cell_model, report.cells, report.held_out
        );
        println!(
            "{:<6} {:>11} {:>11} {:>11} {:>8}",
            "var", "mae", "rmse", "max abs", "passed"
        );
        for v in &report.variables {
            println!(
                "{:<6} {:>11.3e} {:>11.3e} {:>11.3e} {:>8}",
                v.name,
                v.mae,
                v.rmse,
                v.max_abs_error,
                if v.passed { "yes" } else { "NO" }
            );
        }
        let l = report.latency_ms;
        println!(
            "engine    {} samples/s at batch {} (p50 {:.3} ms, p99 {:.3} ms)",
            rate(report.engine_samples_per_s),
            report.batch,
            l.p50,
            l.p99
        );
        println!(
            "reference {} samples/s ({} Euler steps each)",
            rate(report.reference_samples_per_s),
            report.steps_per_sample
        );
        println!("speed-up  {:.2}×", report.speedup);
        println!("report    {}", out.join("report.md").display());
    }
    if let Some(f) = &report.failure {
        eprintln!("error: verification failed: {f}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
