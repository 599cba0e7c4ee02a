//! `excite build`: ONNX model → verified engine directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use excite::engine::manifest::Calibrator;
use excite::build::{self, BatchChoice, BuildSpec, PrecisionChoice};
use excite::engine::manifest::Target;
use excite::verify::{Budget, Settings};

use super::printer::{rate, Progress};

#[derive(Args)]
pub struct BuildArgs {
    /// The model: an ONNX file from `excite export`, or any MLP-shaped ONNX
    /// from torch.onnx, skl2onnx, tf2onnx, keras or jax2onnx (see README,
    /// "Bring your own model").
    model: PathBuf,
    /// For a model that does not record its problem (one trained elsewhere):
    /// the dataset it was trained on (its folder or dataset.json), which
    /// names the cell model, the inputs and outputs in column order, their
    /// ranges and the time grid. Needed to verify, to tune --batch auto and
    /// to calibrate int8 from input ranges.
    #[arg(long, value_name = "DATASET")]
    problem: Option<PathBuf>,
    /// Where the engine runs: ONNX Runtime's CPU, CUDA or TensorRT execution provider.
    #[arg(long, value_enum, default_value = "cpu")]
    target: Target,
    /// fp32, fp16, int8 (static QDQ with calibration), fp32-fast (native-cpu:
    /// tanh, sigmoid and SiLU to 1e-4 instead of 5e-7, 10-20% faster), bf16
    /// (native-cuda; fp16 and bf16 run its tensor-core kernel), or auto:
    /// build each the target supports, verify each, keep the fastest within
    /// the budget.
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

pub fn run(a: &BuildArgs) -> Result<ExitCode> {
    let precision = PrecisionChoice::parse(&a.precision, "--precision")?;
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
        batch: BatchChoice::parse(&a.batch, a.batch_cap, a.max_latency, "--batch")?,
        calibrator: a.calibrator,
        calibration_data: a.calibration_data.clone(),
        calibration_rows: a.calibration_rows,
        verify,
        seconds: a.seconds,
        problem: a.problem.as_deref().map(|p| excite::data::problem::ProblemMeta::from_dataset(p, "ddnn")).transpose()?,
    };
    let out = a.out.clone().unwrap_or_else(|| super::default_out(&a.model, "build"));
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
