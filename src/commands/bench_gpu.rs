//! `excite bench gpu`: a surrogate on the GPU next to the CUDA Euler
//! reference of its own problem, in one run and one table.
//!
//! Solves fresh cells of the surrogate's problem with the CUDA Euler kernel,
//! evaluates the same trajectories with the native-cuda engine (rows in,
//! and the time grid made in the kernel) and with native-cpu, checks the GPU
//! outputs against the CPU ones, and reports sample-equivalents per second
//! and the ratio to CUDA Euler (the paper's headline figure); then the
//! tensor-core kernel with fp16 and bf16 operands (errors reported, not
//! gated). Kernels are
//! timed alone with their inputs on the GPU, as the Euler kernel is; the
//! rows path is also timed end to end (copies included). With `--out`, it
//! first writes the network and a check set for `scripts/torch_peer.py`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use excite::data::npz::{self, Array2};
use excite::engine::native::NativeEngine;
use excite::engine::native_cuda::{NativeCudaEngine, TensorCore};
use excite::engine::Engine;
use excite::solve::cuda::CudaSolver;
use excite::train::Mode;
use excite::verify::{trajectory_inputs, Problem};
use serde::Serialize;

use super::printer::rate;

#[derive(Args)]
pub struct GpuArgs {
    /// An exported trajectory surrogate (DDNN or PINN; `excite export`).
    model: PathBuf,
    /// Fresh cells (Latin hypercube over the surrogate's sampled ranges).
    #[arg(long, default_value_t = 100_000)]
    cells: usize,
    /// Timed launches per GPU path (after one warm-up); the Euler kernel runs
    /// this many times and its median is used.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Folder for the PyTorch peer's inputs (layers.npz, layers.json,
    /// check.npz) and report.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    path: String,
    samples_per_s: f64,
    ratio_to_cuda_euler: f64,
    max_abs_diff_to_cpu: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    cells: usize,
    samples_per_cell: usize,
    steps_per_sample: usize,
    rows: Vec<Row>,
    notes: Vec<String>,
}

pub fn gpu(a: &GpuArgs) -> Result<ExitCode> {
    anyhow::ensure!(a.cells > 0 && a.repeat > 0, "--cells and --repeat must be at least 1");
    let problem = Problem::from_onnx(&a.model)?;
    anyhow::ensure!(problem.kind != Mode::Itnn, "{}: an ITNN surrogate maps one state to the next; bench gpu times trajectory surrogates (ddnn, pinn)", a.model.display());
    let cells = problem.cells(a.cells, 7);
    let samples = problem.grid.n_samples;
    let rows = cells.n * samples;
    let x = trajectory_inputs(&problem, &cells);
    let n_in = problem.inputs.len();

    // native-cpu: the outputs every GPU path is checked against
    let mut cpu = NativeEngine::load(&a.model, 0)?;
    cpu.run(&x[..n_in], 1)?;
    let t = Instant::now();
    let y_cpu = cpu.run(&x, rows)?;
    let cpu_rate = rows as f64 / t.elapsed().as_secs_f64();
    if let Some(dir) = &a.out {
        write_peer_files(dir, &cpu, &x, &y_cpu, n_in).with_context(|| format!("writing the PyTorch peer's inputs into {}", dir.display()))?;
    }

    let solver = CudaSolver::new().map_err(|e| {
        let written = a.out.as_ref().map_or(String::new(), |d| format!("; the PyTorch peer's inputs were written to {}", d.display()));
        excite::Error::unavailable("bench gpu", format!("{e}{written}"), "run on a machine with an NVIDIA GPU and driver (scripts/gpu-check.sh runs this command)")
    })?;
    let mut euler: Vec<f64> = (0..a.repeat).map(|_| solver.solve_timed(problem.model, &problem.grid, &cells).map(|r| r.kernel_seconds)).collect::<Result<_, _>>()?;
    euler.sort_by(f64::total_cmp);
    let euler_rate = rows as f64 / euler[euler.len() / 2];

    let mut gpu = NativeCudaEngine::load(&a.model)?;
    let y_rows = gpu.run(&x, rows)?;
    let rows_kernel = rows as f64 / gpu.time_rows(&x, rows, a.repeat)?;
    let t = Instant::now();
    for _ in 0..a.repeat {
        std::hint::black_box(gpu.run(&x, rows)?);
    }
    let rows_e2e = (rows * a.repeat) as f64 / t.elapsed().as_secs_f64();
    let per_cell: Vec<f32> = x.chunks(n_in).step_by(samples).flat_map(|r| r[1..].iter().copied()).collect();
    let dt = problem.grid.sample_every();
    let y_grid = gpu.run_grid(&per_cell, cells.n, dt, samples)?;
    let grid_kernel = rows as f64 / gpu.time_grid(&per_cell, cells.n, dt, samples, a.repeat)?;

    let row = |path: &str, r: f64, diff: Option<f64>| Row { path: path.into(), samples_per_s: r, ratio_to_cuda_euler: r / euler_rate, max_abs_diff_to_cpu: diff };
    // tensor cores: fp16 and bf16 operands, fp32 sums (reported, not gated)
    let mut tc_rows = Vec::new();
    let mut notes = Vec::new();
    for (tc, name) in [(TensorCore::Fp16, "fp16"), (TensorCore::Bf16, "bf16")] {
        match NativeCudaEngine::load_with(&a.model, Some(tc)) {
            Ok(mut e) => {
                let y = e.run(&x, rows)?;
                let r = rows as f64 / e.time_rows(&x, rows, a.repeat)?;
                tc_rows.push(row(&format!("native-cuda {name} tensor cores, kernel"), r, Some(excite::metrics::max_abs_error(&y, &y_cpu))));
                let yg = e.run_grid(&per_cell, cells.n, dt, samples)?;
                let rg = rows as f64 / e.time_grid(&per_cell, cells.n, dt, samples, a.repeat)?;
                tc_rows.push(row(&format!("native-cuda {name} tensor cores, grid"), rg, Some(excite::metrics::max_abs_error(&yg, &y_cpu))));
            }
            Err(e) => notes.push(format!("native-cuda {name}: {e}")),
        }
    }
    let fp32_worst = [excite::metrics::max_abs_error(&y_rows, &y_cpu), excite::metrics::max_abs_error(&y_grid, &y_cpu)].into_iter().fold(0.0, f64::max);
    let report = Report {
        model: a.model.display().to_string(),
        device: gpu.info().runtime,
        cells: cells.n,
        samples_per_cell: samples,
        steps_per_sample: problem.grid.steps_per_sample,
        rows: vec![
            row("cuda euler kernel (reference)", euler_rate, None),
            row("native-cuda rows, kernel", rows_kernel, Some(excite::metrics::max_abs_error(&y_rows, &y_cpu))),
            row("native-cuda rows, with copies", rows_e2e, None),
            row("native-cuda time grid in kernel", grid_kernel, Some(excite::metrics::max_abs_error(&y_grid, &y_cpu))),
            row("native-cpu, all threads", cpu_rate, Some(0.0)),
        ]
        .into_iter()
        .chain(tc_rows)
        .collect(),
        notes,
    };
    if let Some(dir) = &a.out {
        excite::fsio::write_atomic(&dir.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} on {}: {} cells × {} samples ({} Euler steps each)", report.model, report.device, report.cells, samples, problem.grid.steps_per_sample);
        println!("{:<40} {:>13} {:>14} {:>16}", "path", "samples/s", "÷ CUDA Euler", "max |Δ| vs cpu");
        for r in &report.rows {
            let d = r.max_abs_diff_to_cpu.map_or("-".into(), |d| format!("{d:.2e}"));
            println!("{:<40} {:>13} {:>14.3} {:>16}", r.path, rate(r.samples_per_s), r.ratio_to_cuda_euler, d);
        }
        for n in &report.notes {
            println!("note: {n}");
        }
    }
    anyhow::ensure!(fp32_worst <= 1e-5, "native-cuda fp32 differs from native-cpu by {fp32_worst:.2e} (limit 1e-5)");
    Ok(ExitCode::SUCCESS)
}

/// layers.npz (w0, b0, w1, b1, …; w as [in][out]), layers.json (activation
/// and parameter per layer) and check.npz (up to 65 536 rows of x and the
/// native-cpu outputs y).
fn write_peer_files(dir: &std::path::Path, cpu: &NativeEngine, x: &[f32], y: &[f32], n_in: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let layers = cpu.dense();
    let mut arrays = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        arrays.push((format!("w{i}"), Array2 { rows: l.d_in, cols: l.d_out, data: l.w.clone() }));
        arrays.push((format!("b{i}"), Array2 { rows: 1, cols: l.d_out, data: l.b.clone() }));
    }
    let named: Vec<(&str, &Array2)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    excite::fsio::write_atomic(&dir.join("layers.npz"), &npz::to_bytes(&named))?;
    let acts: Vec<_> = layers.iter().map(|l| serde_json::json!({"act": l.act, "param": l.param})).collect();
    excite::fsio::write_atomic(&dir.join("layers.json"), serde_json::to_string_pretty(&acts)?.as_bytes())?;
    let n_out = layers.last().map_or(0, |l| l.d_out);
    let n = (x.len() / n_in).min(65_536);
    let xa = Array2 { rows: n, cols: n_in, data: x[..n * n_in].to_vec() };
    let ya = Array2 { rows: n, cols: n_out, data: y[..n * n_out].to_vec() };
    excite::fsio::write_atomic(&dir.join("check.npz"), &npz::to_bytes(&[("x", &xa), ("y", &ya)]))?;
    Ok(())
}
