//! `excite build`: an engine directory for a target, precision and batch
//! profile, verified against the Euler reference.
//!
//! The flow: read the exported ONNX → make each precision variant asked for
//! (fp16, int8 QDQ with calibration) → load it on the target → verify it
//! (`--precision auto` keeps the fastest variant within the error budget) →
//! tune the batch size → write the directory (model, optimised model,
//! calibration cache, batch curve, verification report) with `engine.json`,
//! replacing a previous engine only once complete.

pub mod batch;
pub mod precision;
mod variant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::hash::sha256_hex;
use crate::engine::manifest::{
    BatchProfile, Candidate, Manifest, Runtime, Target, TensorSpec, Verified,
    CALIBRATION_FILE, ENGINE_FILE, FORMAT,
};
use crate::engine::ort::{self as ortengine, Phase};
use crate::engine::Spec;
use crate::fsio::{write_atomic, StagingDir};
use crate::report::Reporter;
use crate::verify::{self, Problem, Settings};
use crate::Error;
use variant::{variant, Variant};
use crate::engine::manifest::{Calibrator, Precision};

/// Which precision to build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PrecisionChoice {
    Fixed(Precision),
    /// Every precision the target supports; the fastest within the budget wins.
    Auto,
}

impl PrecisionChoice {
    /// `fp32`, `fp16`, `int8`, `fp32-fast`, `bf16` or `auto`; `field` names the setting in errors.
    pub fn parse(s: &str, field: &str) -> Result<PrecisionChoice, Error> {
        Ok(match s {
            "auto" => PrecisionChoice::Auto,
            "fp32" => PrecisionChoice::Fixed(Precision::Fp32),
            "fp16" => PrecisionChoice::Fixed(Precision::Fp16),
            "int8" => PrecisionChoice::Fixed(Precision::Int8),
            "fp32-fast" => PrecisionChoice::Fixed(Precision::Fp32Fast),
            "bf16" => PrecisionChoice::Fixed(Precision::Bf16),
            other => return Err(Error::invalid(field, format!("`{other}` is not a precision"), "use fp32, fp16, int8, fp32-fast (native-cpu), bf16 (native-cuda) or auto")),
        })
    }
}

/// Which batch profile to build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchChoice {
    Fixed(BatchProfile),
    /// Sweep powers of two up to `cap`; optionally the largest meeting a p99 limit.
    Auto {
        cap: usize,
        max_latency_ms: Option<f64>,
    },
}

impl BatchChoice {
    /// `N`, `MIN:OPT:MAX` or `auto` (sweeping up to `cap`, optionally under a
    /// p99 latency limit); `field` names the setting in errors.
    pub fn parse(s: &str, cap: usize, max_latency_ms: Option<f64>, field: &str) -> Result<BatchChoice, Error> {
        if s == "auto" {
            return Ok(BatchChoice::Auto { cap, max_latency_ms });
        }
        let bad = || Error::invalid(field, format!("`{s}` is not N, MIN:OPT:MAX or auto"), "write it as 1:1024:65536");
        let parts: Vec<usize> = s.split(':').map(|p| p.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        Ok(BatchChoice::Fixed(match parts[..] {
            [n] => BatchProfile { min: n, opt: n, max: n },
            [a, b, c] => BatchProfile { min: a, opt: b, max: c },
            _ => return Err(bad()),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub target: Target,
    pub precision: PrecisionChoice,
    pub batch: BatchChoice,
    pub calibrator: Calibrator,
    /// A dataset folder whose training inputs are the calibration set; else
    /// Latin-hypercube samples of the model's input domain.
    pub calibration_data: Option<PathBuf>,
    pub calibration_rows: usize,
    /// Verification settings; `None` skips verification (not allowed with `Auto`).
    pub verify: Option<Settings>,
    /// Seconds per timing measurement (batch sweep).
    pub seconds: f64,
    /// The problem of a model that does not record it (`--problem`): written
    /// into the engine's model.onnx, as `excite annotate` would.
    pub problem: Option<crate::data::problem::ProblemMeta>,
}

/// Precisions a target can run.
pub fn supported(target: Target) -> &'static [Precision] {
    match target {
        Target::Cpu | Target::Tensorrt | Target::Reference => &[Precision::Fp32, Precision::Fp16, Precision::Int8],
        Target::NativeCpu => &[Precision::Fp32, Precision::Fp32Fast],
        Target::NativeCuda => &[Precision::Fp32, Precision::Fp16, Precision::Bf16],
        Target::Cuda => &[Precision::Fp32, Precision::Fp16],
    }
}

fn summary(r: &verify::Report) -> Verified {
    Verified {
        passed: r.passed,
        mae: r
            .variables
            .iter()
            .map(|v| (v.name.clone(), v.mae))
            .collect(),
        max_abs_error: r
            .variables
            .iter()
            .map(|v| (v.name.clone(), v.max_abs_error))
            .collect(),
        engine_samples_per_s: r.engine_samples_per_s,
        reference_samples_per_s: r.reference_samples_per_s,
        speedup: r.speedup,
        failure: r.failure.clone(),
    }
}

/// Builds the engine for `onnx` into `out`.
pub fn build(
    onnx: &Path,
    out: &Path,
    spec: &BuildSpec,
    reporter: &dyn Reporter,
) -> Result<Manifest, Error> {
    let bytes = crate::onnx::read_bytes(onnx)?;
    // any exporter's MLP, in the one form every target and pass takes
    let mut source = crate::onnx::canonical(crate::onnx::parse_file(onnx, &bytes)?).map_err(|e| e.in_file(onnx))?;
    if let Some(meta) = &spec.problem {
        for (k, v) in meta.to_props() {
            source.set_meta(&k, &v);
        }
    }
    let problem = if source.meta(crate::data::problem::MODEL).is_some() {
        Some(Problem::from_props(&source.metadata).map_err(|e| e.in_file(onnx))?)
    } else {
        None
    };
    let needs_problem = |what: &str| {
        Error::invalid(what, format!("needs the problem the model solves (cell model, inputs and their ranges), which {} does not record", onnx.display()), "pass --problem DATASET (the dataset folder the model was trained on), or write it into the file once with `excite annotate`; without it, build with --no-verify, a fixed --batch and fp32 or fp16")
    };
    if problem.is_none() && spec.verify.is_some() {
        return Err(needs_problem("verification"));
    }
    if problem.is_none() && matches!(spec.batch, BatchChoice::Auto { .. }) {
        return Err(needs_problem("--batch auto"));
    }
    let (input, output) = (
        source.inputs[0].name.clone(),
        source.outputs[0].name.clone(),
    );
    let (n_in, n_out) = source.features();
    let (n_in, n_out) = (n_in.unwrap_or(0), n_out.unwrap_or(0));
    if let Some(p) = &problem {
        if (p.inputs.len(), p.outputs.len()) != (n_in, n_out) {
            return Err(Error::invalid("--problem", format!("the problem has {} inputs and {} outputs, the model {n_in} and {n_out}", p.inputs.len(), p.outputs.len()), "pass the dataset the model was trained on"));
        }
    }
    // how each engine below is loaded: the settings engine.json will record
    let engine_spec = |precision: Precision, batch: BatchProfile| Spec { target: spec.target, precision, batch, input: input.clone(), features: n_in };
    let precisions: Vec<Precision> = match spec.precision {
        PrecisionChoice::Fixed(p) => {
            if !supported(spec.target).contains(&p) {
                return Err(Error::invalid(
                    "--precision",
                    format!("{} engines do not support {}", spec.target.name(), p.name()),
                    format!("use one of {:?}", supported(spec.target)),
                ));
            }
            vec![p]
        }
        PrecisionChoice::Auto => {
            if spec
                .verify
                .as_ref()
                .is_none_or(|v| v.budget.max_mae.is_none() && v.budget.max_abs_error.is_none())
            {
                return Err(Error::invalid(
                    "--precision auto",
                    "needs an accuracy budget to choose by",
                    "add --max-mae or --max-abs-error",
                ));
            }
            supported(spec.target).to_vec()
        }
    };
    let runtime = match spec.target {
        Target::NativeCuda => Runtime { name: "excite-native-cuda".into(), version: env!("CARGO_PKG_VERSION").into(), library: String::new() },
        Target::NativeCpu => Runtime { name: "excite-native-cpu".into(), version: env!("CARGO_PKG_VERSION").into(), library: String::new() },
        Target::Reference => Runtime { name: "excite-reference".into(), version: env!("CARGO_PKG_VERSION").into(), library: String::new() },
        _ => {
            let rt = ortengine::runtime()?;
            Runtime { name: "onnxruntime".into(), version: rt.version.clone(), library: rt.library.display().to_string() }
        }
    };
    let staging = StagingDir::new(out)?;
    let dir = staging.path().to_path_buf();
    let initial_batch = match spec.batch {
        BatchChoice::Fixed(b) => b,
        BatchChoice::Auto { cap, .. } => BatchProfile {
            min: 1,
            opt: cap.min(1024),
            max: cap,
        },
    };
    if initial_batch.min == 0
        || initial_batch.min > initial_batch.opt
        || initial_batch.opt > initial_batch.max
    {
        return Err(Error::invalid(
            "--batch",
            format!(
                "{}:{}:{} is not MIN ≤ OPT ≤ MAX with MIN ≥ 1",
                initial_batch.min, initial_batch.opt, initial_batch.max
            ),
            "write it as 1:1024:65536",
        ));
    }

    // Build and verify every candidate precision, each in its own folder.
    let mut candidates: Vec<(Variant, Option<verify::Report>, PathBuf)> = Vec::new();
    for &prec in &precisions {
        reporter.phase(&format!("building {} {}", spec.target.name(), prec.name()));
        let v = variant(&source, problem.as_ref(), prec, spec)?;
        let cdir = dir.join(format!("candidate-{}", prec.name()));
        std::fs::create_dir_all(&cdir).map_err(|e| Error::io(&cdir, e))?;
        let model = cdir.join("model.onnx");
        write_atomic(&model, &v.bytes)?;
        if let Some((_, cache)) = &v.calibration {
            write_atomic(&cdir.join(CALIBRATION_FILE), cache.as_bytes())?;
        }
        let optimized = (spec.target == Target::Cpu).then(|| cdir.join("model.optimized.onnx"));
        let mut engine = crate::engine::load(&engine_spec(prec, initial_batch), &cdir, &model, 0, Phase::Build, optimized)?;
        let report = match &spec.verify {
            Some(s) => {
                reporter.phase(&format!(
                    "verifying {} against the Euler reference",
                    prec.name()
                ));
                let s = Settings {
                    batch: initial_batch.opt,
                    ..s.clone()
                };
                Some(verify::verify(&model, engine.as_mut(), &s, reporter)?)
            }
            None => None,
        };
        candidates.push((v, report, cdir));
    }
    let best = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.1.as_ref().filter(|r| r.passed).map(|r| (i, r.engine_samples_per_s)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    let chosen = match (spec.precision, best) {
        (PrecisionChoice::Fixed(_), _) => 0,
        (PrecisionChoice::Auto, Some(i)) => i,
        (PrecisionChoice::Auto, None) => {
            // Every candidate over budget: a failed gate, like a fixed precision's. The
            // previous engine stays; the candidates and their reports go beside it.
            let why: Vec<String> = candidates
                .iter()
                .map(|c| format!("{}: {}", c.0.precision.name(), c.1.as_ref().and_then(|r| r.failure.clone()).unwrap_or_default()))
                .collect();
            for (_, report, cdir) in &candidates {
                if let Some(r) = report {
                    verify::write(r, &cdir.join("verify"))?;
                }
            }
            let rejected = reject(&dir, out)?;
            return Err(Error::Gate {
                stage: "build".into(),
                problem: format!("no {} precision met the budget ({})", spec.target.name(), why.join("; ")),
                hint: format!("see {}/candidate-*/verify/report.md; relax --max-mae/--max-abs-error, or retrain a more accurate surrogate", rejected.display()),
            });
        }
    };

    // Move the chosen candidate's files to the top of the directory.
    let cdir = candidates[chosen].2.clone();
    for entry in std::fs::read_dir(&cdir).map_err(|e| Error::io(&cdir, e))? {
        let entry = entry.map_err(|e| Error::io(&cdir, e))?;
        let to = dir.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(|e| Error::io(&to, e))?;
    }
    let model_path = dir.join("model.onnx");
    let prec = candidates[chosen].0.precision;
    let calibration = candidates[chosen].0.calibration.clone();

    // Batch tuning on the chosen engine.
    let batch = match spec.batch {
        BatchChoice::Fixed(b) => b,
        BatchChoice::Auto {
            cap,
            max_latency_ms,
        } => {
            reporter.phase(&format!("tuning the batch size (1 … {cap})"));
            let mut engine = crate::engine::load(&engine_spec(prec, initial_batch), &dir, &model_path, 0, Phase::Build, None)?;
            let points = batch::sweep(problem.as_ref().ok_or_else(|| needs_problem("--batch auto"))?, engine.as_mut(), cap, spec.seconds)?;
            write_atomic(&dir.join("batch.csv"), &batch::csv(&points))?;
            write_atomic(&dir.join("batch.svg"), batch::svg(&points).as_bytes())?;
            let opt = batch::choose(&points, max_latency_ms)?;
            let tuned = BatchProfile {
                min: 1,
                opt,
                max: cap.max(opt),
            };
            if spec.target == Target::Tensorrt && tuned != initial_batch {
                // rebuild with the tuned profile, as the engine will be reopened with it
                crate::engine::load(&engine_spec(prec, tuned), &dir, &model_path, 0, Phase::Build, None)?;
            }
            tuned
        }
    };

    let mut verify_summary = None;
    if let Some(report) = &candidates[chosen].1 {
        verify::write(report, &dir.join("verify"))?;
        verify_summary = Some(summary(report));
    }
    let candidate_list: Vec<Candidate> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.1.as_ref().map(|r| Candidate {
                precision: c.0.precision,
                verified: summary(r),
                chosen: i == chosen,
            })
        })
        .collect();
    if spec.precision == PrecisionChoice::Auto {
        /// A row of `candidates.csv`: the worst variable's errors.
        #[derive(serde::Serialize)]
        struct Row {
            precision: &'static str,
            passed: bool,
            engine_samples_per_s: f64,
            speedup: f64,
            mae: f64,
            max_abs_error: f64,
            chosen: bool,
        }
        let worst = |m: &BTreeMap<String, f64>| m.values().copied().fold(0.0, f64::max); // errors are never NaN (metrics.rs)
        let rows: Vec<Row> = candidate_list
            .iter()
            .map(|c| Row {
                precision: c.precision.name(),
                passed: c.verified.passed,
                engine_samples_per_s: c.verified.engine_samples_per_s,
                speedup: c.verified.speedup,
                mae: worst(&c.verified.mae),
                max_abs_error: worst(&c.verified.max_abs_error),
                chosen: c.chosen,
            })
            .collect();
        write_atomic(&dir.join("candidates.csv"), &crate::fsio::csv_bytes(&rows))?;
    }
    for (_, _, c) in &candidates {
        let _ = std::fs::remove_dir_all(c);
    }

    let files = crate::fsio::file_hashes(&dir)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        target: spec.target,
        precision: prec,
        batch,
        model: "model.onnx".into(),
        input: TensorSpec {
            name: input,
            shape: vec![-1, n_in as i64],
            dtype: "float32".into(),
        },
        output: TensorSpec {
            name: output,
            shape: vec![-1, n_out as i64],
            dtype: "float32".into(),
        },
        runtime,
        device: match spec.target {
            Target::Cpu | Target::Reference | Target::NativeCpu => None,
            _ => crate::gpu::gpu_name(),
        },
        source_model_sha256: sha256_hex(&bytes),
        calibration: calibration.map(|c| c.0),
        verify: verify_summary,
        candidates: candidate_list,
        excite_version: env!("CARGO_PKG_VERSION").into(),
        files,
    };
    write_atomic(
        &dir.join(ENGINE_FILE),
        &serde_json::to_vec_pretty(&manifest).expect("serialises"),
    )?;
    if let Some(v) = manifest.verify.as_ref().filter(|v| !v.passed) {
        let rejected = reject(&dir, out)?;
        return Err(Error::Gate {
            stage: "build".into(),
            problem: format!("the {} {} engine is over budget: {}", spec.target.name(), prec.name(), v.failure.clone().unwrap_or_default()),
            hint: format!("see {}/verify/report.md; relax the budget, choose another precision, or retrain", rejected.display()),
        });
    }
    staging.commit()?;
    Ok(manifest)
}

/// A failed gate keeps the previous engine in `out`: the rejected build
/// (`dir`, its staging folder) goes beside it as `out.rejected` for inspection.
fn reject(dir: &Path, out: &Path) -> Result<PathBuf, Error> {
    let rejected = out.with_extension("rejected");
    let _ = std::fs::remove_dir_all(&rejected);
    std::fs::rename(dir, &rejected).map_err(|e| Error::io(&rejected, e))?;
    Ok(rejected)
}
