//! `excite build`: ONNX model → verified engine directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use excite::build::precision::{Calibrator, Precision};
use excite::build::{self, BatchChoice, BuildSpec, PrecisionChoice};
use excite::engine::manifest::{BatchProfile, Target};
use excite::verify::{Budget, Settings};

use super::printer::{rate, Progress};

#[derive(Args)]
pub struct BuildArgs {
    /// The exported model (`excite export`).
    model: PathBuf,
    /// Where the engine runs: ONNX Runtime's CPU, CUDA or TensorRT execution provider.
    #[arg(long, value_enum, default_value = "cpu")]
    target: Target,
    /// fp32, fp16, int8 (static QDQ with calibration), or auto: build each, verify
    /// each, keep the fastest within the budget.
    #[arg(long, default_value = "fp32")]
    precision: String,
    /// A batch size N, a profile MIN:OPT:MAX, or auto (sweep powers of two up to --batch-cap).
    #[arg(long, default_value = "1:1024:65536")]
    batch: String,
    /// Largest batch of the auto sweep.
    #[arg(long, default_value_t = 65536)]
    batch_cap: usize,
    /// With --batch auto: pick the largest batch whose p99 latency (ms) stays within this.
    #[arg(long)]
    max_latency: Option<f64>,
    /// How int8 clipping ranges are chosen.
    #[arg(long, value_enum, default_value = "entropy")]
    calibrator: Calibrator,
    /// Dataset folder whose training inputs calibrate int8 (default: samples of the input ranges).
    #[arg(long)]
    calibration_data: Option<PathBuf>,
    /// Rows in the calibration set.
    #[arg(long, default_value_t = 4096)]
    calibration_rows: usize,
    /// Accuracy budget: largest mean absolute error of any output variable.
    #[arg(long)]
    max_mae: Option<f64>,
    /// Accuracy budget: largest absolute error of any output variable.
    #[arg(long)]
    max_abs_error: Option<f64>,
    /// Fresh cells the engine is verified on.
    #[arg(long, default_value_t = 100)]
    cells: usize,
    /// Skip verification (not with --precision auto).
    #[arg(long)]
    no_verify: bool,
    /// Seconds per timing measurement.
    #[arg(long, default_value_t = 0.3)]
    seconds: f64,
    /// Engine directory [default: runs/<model name>/build].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Print engine.json.
    #[arg(long)]
    json: bool,
}

fn parse_batch(s: &str, cap: usize, max_latency: Option<f64>) -> Result<BatchChoice> {
    if s == "auto" {
        return Ok(BatchChoice::Auto {
            cap,
            max_latency_ms: max_latency,
        });
    }
    let parts: Vec<usize> = s
        .split(':')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--batch {s}: expected N, MIN:OPT:MAX or auto"))?;
    Ok(BatchChoice::Fixed(match parts[..] {
        [n] => BatchProfile {
            min: n,
            opt: n,
            max: n,
        },
        [a, b, c] => BatchProfile {
            min: a,
            opt: b,
            max: c,
        },
        _ => bail!("--batch {s}: expected N, MIN:OPT:MAX or auto"),
    }))
}

pub fn run(a: &BuildArgs) -> Result<ExitCode> {
    let precision = match a.precision.as_str() {
        "auto" => PrecisionChoice::Auto,
        "fp32" => PrecisionChoice::Fixed(Precision::Fp32),
        "fp16" => PrecisionChoice::Fixed(Precision::Fp16),
        "int8" => PrecisionChoice::Fixed(Precision::Int8),
        other => bail!("--precision {other}: use fp32, fp16, int8 or auto"),
    };
    if a.max_latency.is_some() && a.batch != "auto" {
        bail!("--max-latency only applies with --batch auto");
    }
    let budget = Budget {
        max_mae: a.max_mae,
        max_abs_error: a.max_abs_error,
    };
    let verify = (!a.no_verify).then(|| Settings {
        cells: a.cells,
        budget,
        seconds: a.seconds,
        reference_cells: 20_000,
        ..Settings::default()
    });
    let spec = BuildSpec {
        target: a.target,
        precision,
        batch: parse_batch(&a.batch, a.batch_cap, a.max_latency)?,
        calibrator: a.calibrator,
        calibration_data: a.calibration_data.clone(),
        calibration_rows: a.calibration_rows,
        verify,
        seconds: a.seconds,
    };
    let stem = a
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(stem).join("build"));
    let m = build::build(&a.model, &out, &spec, &Progress::new())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!(
            "built {} ({} {}, batch {}:{}:{}, {})",
            out.display(),
            m.target.name(),
            m.precision.name(),
            m.batch.min,
            m.batch.opt,
            m.batch.max,
            m.runtime.name.clone() + " " + &m.runtime.version
        );
        for c in &m.candidates {
            let worst = c.verified.mae.values().copied().fold(0.0, f64::max);
            println!(
                "  {:<5} {:>10} samples/s  worst MAE {:.3e}  {}{}",
                c.precision.name(),
                rate(c.verified.engine_samples_per_s),
                worst,
                if c.verified.passed {
                    "within budget"
                } else {
                    "over budget"
                },
                if c.chosen { "  ← chosen" } else { "" }
            );
        }
        if let Some(v) = &m.verify {
            println!(
                "  verified: {} (speed-up vs Euler {:.3}×)",
                if v.passed { "passed" } else { "FAILED" },
                v.speedup
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
