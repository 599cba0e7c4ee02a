//! Verification: an exported engine against the Euler reference, on fresh
//! inputs drawn with a new seed (never the training set), with accuracy per
//! output variable and over time, a pass/fail budget, and timing of both in
//! the same run. Everything needed comes from the ONNX file's own metadata.

pub mod chart;
mod problem;
mod report;
mod timing;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineInfo};
use crate::report::Reporter;
use crate::solve::{Cells, Trajectories};
use crate::train::Mode;
use crate::Error;
pub use problem::Problem;
pub use report::{sci, write, REPORT_FILE};
pub use timing::{euler_line, reference_rate, time_engine, time_engine_for, time_rows, EulerPoint, Timing};

/// Error limits; a variable passes when every given limit holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub max_mae: Option<f64>,
    pub max_abs_error: Option<f64>,
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Fresh cells (trajectories) to compare on.
    pub cells: usize,
    pub seed: u64,
    /// Batch the engine is timed at.
    pub batch: usize,
    pub budget: Budget,
    /// Seconds spent timing the engine.
    pub seconds: f64,
    /// Cells the Euler reference is timed on.
    pub reference_cells: usize,
    /// Threads for the Euler reference (0 = all).
    pub threads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cells: 200,
            seed: 0x5EED_0F_7E57,
            batch: 1024,
            budget: Budget::default(),
            seconds: 1.0,
            reference_cells: 100_000,
            threads: 0,
        }
    }
}

/// Accuracy of one output variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarReport {
    pub name: String,
    pub mae: f64,
    pub rmse: f64,
    pub max_abs_error: f64,
    pub passed: bool,
    /// Where the largest error is: time, cell, engine and reference values.
    pub worst: Worst,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worst {
    pub t: f64,
    pub cell: usize,
    pub engine: f64,
    pub reference: f64,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model_file: String,
    pub model_sha256: String,
    pub engine: EngineInfo,
    pub cell_model: String,
    /// The reference's scheme.
    #[serde(default)]
    pub scheme: crate::solve::Scheme,
    pub kind: Mode,
    pub cells: usize,
    pub seed: u64,
    pub budget: Budget,
    pub variables: Vec<VarReport>,
    /// Sample times, and the MAE over cells of each variable at each time
    /// (for ITNN: after each rollout step).
    pub error_vs_time: ErrorVsTime,
    pub passed: bool,
    /// What the compared points are, and why no training row is among them.
    #[serde(default)]
    pub held_out: String,
    /// The first variable over budget, in words.
    pub failure: Option<String>,
    pub batch: usize,
    pub engine_samples_per_s: f64,
    pub latency_ms: Latency,
    pub reference_samples_per_s: f64,
    pub reference_cell_steps_per_s: f64,
    pub steps_per_sample: usize,
    pub speedup: f64,
    /// A few trajectories, engine and reference, for the plots.
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorVsTime {
    pub t: Vec<f64>,
    pub mae: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub cell: usize,
    /// `[variable][sample]`
    pub engine: Vec<Vec<f64>>,
    pub reference: Vec<Vec<f64>>,
}

/// Verifies `engine` (built from the ONNX file `model`) against the Euler
/// reference, on the problem the file records.
pub fn verify(
    model: &Path,
    engine: &mut dyn Engine,
    s: &Settings,
    reporter: &dyn Reporter,
) -> Result<Report, Error> {
    verify_on(&Problem::from_onnx(model)?, model, engine, s, reporter)
}

/// [`verify`] on problem `p` (for a model that does not record it).
pub fn verify_on(
    p: &Problem,
    model: &Path,
    engine: &mut dyn Engine,
    s: &Settings,
    reporter: &dyn Reporter,
) -> Result<Report, Error> {
    let info = engine.info();
    if info.inputs != p.inputs.len() || info.outputs != p.outputs.len() {
        return Err(Error::format(
            model,
            format!(
                "engine takes {} inputs and gives {} outputs; the problem has {} and {}",
                info.inputs,
                info.outputs,
                p.inputs.len(),
                p.outputs.len()
            ),
            "rebuild the engine from this ONNX file",
        ));
    }
    if s.cells == 0 || s.batch == 0 {
        return Err(Error::invalid(
            "--cells/--batch",
            "must be at least 1",
            "use --cells 200 --batch 1024",
        ));
    }
    // With nothing sampled every cell is the same trajectory (problem A),
    // the training trajectory itself: compare on one, at the midpoints
    // between its samples, which no training row holds.
    let (grid, compared, held_out) = held_out_grid(p);
    let sampled = p;
    let p = &Problem { grid, ..p.clone() };
    let cells = p.cells(if p.sampling.is_empty() { 1 } else { s.cells }, s.seed);
    reporter.phase(&format!(
        "solving {} fresh cells with the reference ({})",
        cells.n, p.time.scheme.name()
    ));
    let truth = p.solve(&p.grid, &cells, s.threads)?;
    let state_of = p.output_states()?;
    reporter.phase("running the engine");
    let pred = match p.kind {
        Mode::Itnn => rollout(&p, engine, &cells, &truth)?,
        _ => trajectories(&p, engine, &cells, s.batch)?,
    };
    let n_out = p.outputs.len();
    let samples = p.grid.n_samples;
    let first = if p.kind == Mode::Itnn { 1 } else { 0 };
    let mut variables = Vec::new();
    let mut mae_t = BTreeMap::new();
    for (i, out) in p.outputs.iter().enumerate() {
        let mut acc = crate::metrics::Accumulator::default();
        let mut worst = Worst {
            t: 0.0,
            cell: 0,
            engine: 0.0,
            reference: 0.0,
        };
        let mut max = -1.0f64;
        let mut by_t = vec![0.0; samples];
        for c in 0..cells.n {
            for smp in (first..samples).filter(|&smp| compared(smp)) {
                let (e, r) = (pred.get(i, smp, c) as f64, truth.get(state_of[i], smp, c) as f64);
                let d = acc.add(e, r);
                by_t[smp] += d / cells.n as f64;
                if d > max {
                    max = d;
                    worst = Worst {
                        t: p.grid.time(smp),
                        cell: c,
                        engine: e,
                        reference: r,
                    };
                }
            }
        }
        let (mae, rmse) = (acc.mae(), acc.rmse());
        // a diverged engine (NaN or infinite output) fails whatever the budget
        let passed = max.is_finite()
            && s.budget.max_mae.is_none_or(|b| mae <= b)
            && s.budget.max_abs_error.is_none_or(|b| max <= b);
        mae_t.insert(out.name.clone(), by_t);
        variables.push(VarReport {
            name: out.name.clone(),
            mae,
            rmse,
            max_abs_error: max,
            passed,
            worst,
        });
    }
    let failure = variables.iter().find(|v| !v.passed).map(|v| {
        let over = match (s.budget.max_mae, s.budget.max_abs_error) {
            _ if !v.max_abs_error.is_finite() => "diverged (a NaN or infinite output)".to_string(),
            (Some(b), _) if v.mae > b => format!("MAE {:.3e} > budget {b:.3e}", v.mae),
            (_, Some(b)) => format!("max abs error {:.3e} > budget {b:.3e}", v.max_abs_error),
            _ => String::new(),
        };
        format!(
            "{}: {over}; worst at t = {:.4} (cell {}): engine {:.6}, reference {:.6}",
            v.name, v.worst.t, v.worst.cell, v.worst.engine, v.worst.reference
        )
    });

    reporter.phase(&format!(
        "timing the engine at batch {} and the Euler reference",
        s.batch
    ));
    let (engine_rate, latency) = time_engine(&p, engine, &cells, s.batch, s.seconds)?;
    let (cell_steps, reference_rate) = reference_rate(
        sampled,
        s.reference_cells.max(cells.n),
        s.seed ^ 0xBEEF,
        s.threads,
    )?;

    let examples = (0..cells.n.min(3))
        .map(|c| Example {
            cell: c,
            engine: (0..n_out)
                .map(|i| (0..samples).filter(|&smp| compared(smp)).map(|smp| pred.get(i, smp, c) as f64).collect())
                .collect(),
            reference: (0..n_out)
                .map(|i| {
                    (0..samples)
                        .filter(|&smp| compared(smp))
                        .map(|smp| truth.get(state_of[i], smp, c) as f64)
                        .collect()
                })
                .collect(),
        })
        .collect();
    let model_sha256 =
        crate::hash::sha256_hex(&std::fs::read(model).map_err(|e| Error::io(model, e))?);
    Ok(Report {
        model_file: model.display().to_string(),
        model_sha256,
        engine: info,
        cell_model: p.model_meta.name.clone(),
        scheme: p.time.scheme,
        kind: p.kind,
        cells: cells.n,
        seed: s.seed,
        budget: s.budget,
        passed: failure.is_none(),
        variables,
        error_vs_time: ErrorVsTime {
            t: (0..samples).filter(|&i| compared(i)).map(|i| p.grid.time(i)).collect(),
            mae: mae_t.into_iter().map(|(k, v)| (k, v.into_iter().enumerate().filter(|&(i, _)| compared(i)).map(|(_, e)| e).collect())).collect(),
        },
        held_out,
        failure,
        batch: s.batch,
        engine_samples_per_s: engine_rate,
        latency_ms: latency,
        reference_samples_per_s: reference_rate,
        reference_cell_steps_per_s: cell_steps,
        steps_per_sample: sampled.grid.steps_per_sample,
        speedup: engine_rate / reference_rate,
        examples,
    })
}

/// The grid verify compares on, which of its samples count, and what makes
/// them held out. A problem that samples cells is checked on fresh cells
/// (a new seed) at its own times; one with a single trajectory (nothing
/// sampled) on a grid of half the sample spacing, counting only the
/// midpoints, where the dataset has no row — when the Euler grid has a step
/// there; otherwise on the training times, and the report says so.
fn held_out_grid(p: &Problem) -> (crate::solve::TimeGrid, fn(usize) -> bool, String) {
    let g = &p.grid;
    if !p.sampling.is_empty() || p.kind == Mode::Itnn {
        return (g.clone(), |_| true, "fresh cells (a new seed), at the training sample times".into());
    }
    if g.steps_per_sample % 2 == 0 {
        let half = crate::solve::TimeGrid { dt: g.dt, steps_per_sample: g.steps_per_sample / 2, n_samples: 2 * g.n_samples - 1 };
        return (half, |i| i % 2 == 1, "held-out times: the midpoints between the training samples (one trajectory)".into());
    }
    (g.clone(), |_| true, "the training trajectory at its sample times (no Euler step falls between samples: not held out)".into())
}

/// Input rows `[t, sampled…]` of every cell at every sample time, cell-major.
/// The engine inputs of whole trajectories, [cells][samples][inputs]: time
/// (input 0) on the problem's sample grid, then each cell's values.
pub fn trajectory_inputs(p: &Problem, cells: &Cells) -> Vec<f32> {
    let mut x = Vec::with_capacity(cells.n * p.grid.n_samples * p.inputs.len());
    for c in 0..cells.n {
        for smp in 0..p.grid.n_samples {
            for (j, input) in p.inputs.iter().enumerate() {
                x.push(if j == 0 {
                    p.grid.time(smp) as f32
                } else {
                    p.input_value(cells, &input.name, c) as f32
                });
            }
        }
    }
    x
}

fn trajectories(
    p: &Problem,
    engine: &mut dyn Engine,
    cells: &Cells,
    batch: usize,
) -> Result<Trajectories<f32>, Error> {
    let (n_in, n_out, samples) = (p.inputs.len(), p.outputs.len(), p.grid.n_samples);
    let x = trajectory_inputs(p, cells);
    let mut y = Vec::with_capacity(cells.n * samples * n_out);
    for chunk in x.chunks(batch * n_in) {
        y.extend(engine.run(chunk, chunk.len() / n_in)?);
    }
    let mut t = Trajectories::filled(n_out, samples, cells.n, 0.0f32);
    for c in 0..cells.n {
        for smp in 0..samples {
            for i in 0..n_out {
                t.data[(i * samples + smp) * cells.n + c] = y[(c * samples + smp) * n_out + i];
            }
        }
    }
    Ok(t)
}

/// ITNN: every cell starts from its true initial state; the engine's own
/// output is fed back for every later sample.
fn rollout(
    p: &Problem,
    engine: &mut dyn Engine,
    cells: &Cells,
    truth: &Trajectories<f32>,
) -> Result<Trajectories<f32>, Error> {
    let (n_in, n_out, samples) = (p.inputs.len(), p.outputs.len(), p.grid.n_samples);
    let mut x0 = vec![0.0f32; cells.n * n_in];
    for c in 0..cells.n {
        for i in 0..n_out {
            x0[c * n_in + i] = truth.get(i, 0, c);
        }
        for (j, input) in p.inputs.iter().enumerate().skip(n_out) {
            // time starts at 0
            x0[c * n_in + j] = if input.name == "t" { 0.0 } else { p.input_value(cells, &input.name, c) as f32 };
        }
    }
    let time = p.inputs.iter().position(|v| v.name == "t").map(|col| (col, p.grid.sample_every()));
    let states = crate::metrics::rollout(&x0, cells.n, n_out, samples - 1, time, |x, rows| engine.run(x, rows))?;
    let mut out = Trajectories::filled(n_out, samples, cells.n, 0.0f32);
    for c in 0..cells.n {
        for i in 0..n_out {
            out.data[i * samples * cells.n + c] = x0[c * n_in + i];
            for smp in 1..samples {
                out.data[(i * samples + smp) * cells.n + c] = states[((smp - 1) * cells.n + c) * n_out + i];
            }
        }
    }
    Ok(out)
}

