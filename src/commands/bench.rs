//! `excite bench euler`: Euler reference throughput, every path in one run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use excite::data::{self, DatasetSpec};
use excite::isa::Isa;
use excite::solve::{cpu, cuda::CudaSolver, scalar, Trajectories};
use serde::Serialize;

use super::printer::rate;

#[derive(Args)]
pub struct EulerArgs {
    /// Cells for the SIMD and CUDA runs (the scalar loop runs a twentieth).
    #[arg(long, default_value_t = 1_000_000)]
    cells: usize,
    /// Euler steps per cell (a multiple of 100; one sample is stored every 100).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Timed repetitions of each path; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also solve on the GPU, and report the largest difference to the CPU result.
    #[arg(long)]
    cuda: bool,
    /// Skip the numpy baseline.
    #[arg(long)]
    no_numpy: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    path: String,
    threads: usize,
    cells: usize,
    cell_steps_per_s: f64,
    ratio_to_scalar: f64,
}

#[derive(Serialize)]
struct Report {
    model: &'static str,
    steps: usize,
    kernel: &'static str,
    rows: Vec<Row>,
    cuda_max_abs_diff_to_cpu: Option<f64>,
    notes: Vec<String>,
}

pub fn euler(a: &EulerArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        a.steps >= 100 && a.steps % 100 == 0,
        "--steps {}: must be a positive multiple of 100",
        a.steps
    );
    anyhow::ensure!(
        a.cells >= 20 && a.repeat >= 1,
        "--cells must be at least 20 and --repeat at least 1"
    );
    let dt = 0.01;
    let spec_for = |cells: usize| -> Result<DatasetSpec> {
        Ok(DatasetSpec::from_yaml(&format!(
            "name: bench\nmodel: fhn-cardiac\ntime: {{t_end: {}, dt: {dt}, sample_every: 1.0}}\n\
             sample: {{u: [0.0, 0.9], v: [0.0, 0.12], k: [0.0, 1.0]}}\ncells: {cells}\nseed: 3\n",
            a.steps as f64 * dt
        ))?)
    };
    let big = spec_for(a.cells)?;
    let small = spec_for((a.cells / 20).max(20))?;
    let (big_cells, small_cells) = (data::sample_cells(&big), data::sample_cells(&small));
    let model = big.model;
    let all = rayon::current_num_threads();

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let time = |f: &mut dyn FnMut()| {
        median(
            (0..a.repeat)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let push = |path: &str, threads: usize, cells: usize, seconds: f64, rows: &mut Vec<Row>| {
        let r = (cells * a.steps) as f64 / seconds;
        let base = rows.first().map(|b: &Row| b.cell_steps_per_s).unwrap_or(r);
        rows.push(Row {
            path: path.into(),
            threads,
            cells,
            cell_steps_per_s: r,
            ratio_to_scalar: r / base,
        });
    };

    let s = time(&mut || {
        drop(std::hint::black_box(
            scalar::solve_model::<f32>(model, &small.grid, &small_cells),
        ))
    });
    push("scalar loop (f32)", 1, small.cells, s, &mut rows);
    for kernel in Isa::available() {
        let s = time(&mut || {
            drop(std::hint::black_box(cpu::solve_with(
                model, &big.grid, &big_cells, 1, kernel,
            )))
        });
        push(
            &format!("simd {} (f32)", kernel.name()),
            1,
            big.cells,
            s,
            &mut rows,
        );
    }
    let mut cpu_result: Option<Trajectories<f32>> = None;
    let s = time(&mut || cpu_result = cpu::solve_best(model, &big.grid, &big_cells, all).ok());
    push(
        &format!("simd {} (f32)", cpu::kernel_name()),
        all,
        big.cells,
        s,
        &mut rows,
    );

    let mut cuda_diff = None;
    if a.cuda {
        let gpu = CudaSolver::new()?;
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..a.repeat + 1 {
            let t = gpu.solve_timed(model, &big.grid, &big_cells)?;
            times.push(t.kernel_seconds);
            last = Some(t.trajectories);
        }
        times.remove(0); // the first launch includes module loading
        push(
            &format!("cuda kernel ({})", gpu.device_name()),
            0,
            big.cells,
            median(times),
            &mut rows,
        );
        cuda_diff = Some(last.unwrap().max_abs_diff(cpu_result.as_ref().unwrap()));
    }

    if !a.no_numpy {
        match numpy_baseline(a.cells, 100) {
            Ok(r) => push(
                "numpy, vectorised (f32)",
                1,
                a.cells,
                (a.cells * a.steps) as f64 / r,
                &mut rows,
            ),
            Err(e) => notes.push(format!(
                "numpy baseline skipped: {e:#} (hint: run scripts/setup.sh)"
            )),
        }
    }

    let report = Report {
        model: "fhn-cardiac",
        steps: a.steps,
        kernel: cpu::kernel_name(),
        rows,
        cuda_max_abs_diff_to_cpu: cuda_diff,
        notes,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Euler reference, fhn-cardiac, dt = {dt}, {} steps per cell, median of {}",
            a.steps, a.repeat
        );
        println!(
            "{:<44} {:>7} {:>9} {:>16} {:>9}",
            "path", "threads", "cells", "cell-steps/s", "× scalar"
        );
        for r in &report.rows {
            let threads = if r.threads == 0 {
                "gpu".to_string()
            } else {
                r.threads.to_string()
            };
            println!(
                "{:<44} {:>7} {:>9} {:>16} {:>9.2}",
                r.path,
                threads,
                r.cells,
                rate(r.cell_steps_per_s),
                r.ratio_to_scalar
            );
        }
        if let Some(d) = report.cuda_max_abs_diff_to_cpu {
            println!("max |cuda - cpu| over all samples: {d:.3e}");
        }
        for n in &report.notes {
            eprintln!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `scripts/bench_numpy.py`; returns its cell-steps per second.
fn numpy_baseline(cells: usize, steps: usize) -> Result<f64> {
    let script =
        find_in_ancestors("scripts/bench_numpy.py").context("scripts/bench_numpy.py not found")?;
    let root = script
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    let deps = root.join(".deps/python");
    let pythonpath = match std::env::var_os("PYTHONPATH") {
        Some(p) => format!("{}:{}", deps.display(), p.to_string_lossy()),
        None => deps.display().to_string(),
    };
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["--cells", &cells.to_string(), "--steps", &steps.to_string()])
        .env("PYTHONPATH", pythonpath)
        .output()
        .context("running python3")?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["cell_steps_per_s"]
        .as_f64()
        .context("no cell_steps_per_s in the script's output")
}

/// The metadata and training rows of a dataset folder, or of a dataset
/// configuration generated in memory (a relative path is also looked up
/// from the project root, so the default preset works from anywhere in it).
fn training_rows(path: &std::path::Path) -> Result<(data::Metadata, data::Array2, data::Array2)> {
    let path = if path.exists() { path.to_path_buf() } else { path.to_str().and_then(find_in_ancestors).unwrap_or_else(|| path.to_path_buf()) };
    if path.is_dir() {
        let d = data::load(&path)?;
        let array = |name: &str| d.arrays.iter().find(|(n, _)| n == name).map(|(_, a)| a.clone()).with_context(|| format!("{}: no `{name}` array", path.display()));
        let (x, y) = (array("x_train")?, array("y_train")?);
        return Ok((d.meta, x, y));
    }
    let spec = DatasetSpec::from_file(&path)?;
    let d = data::generate(&spec, 0, &excite::report::Silent)?;
    let [(x, y), _, _] = d.splits;
    Ok((d.meta, x, y))
}

fn find_in_ancestors(rel: &str) -> Option<PathBuf> {
    excite::fsio::search_roots().into_iter().map(|r| r.join(rel)).find(|p| p.is_file())
}

#[derive(Args)]
pub struct TrainArgs {
    /// Hidden layer widths.
    #[arg(long, value_delimiter = ',', default_value = "64,64,64")]
    hidden: Vec<usize>,
    /// Activation of every hidden layer (relu, leaky_relu, elu, silu, gelu, tanh, sigmoid).
    #[arg(long, default_value = "tanh")]
    activation: String,
    /// The data the steps train on, which also sets the network's inputs and
    /// outputs and the PINN's time range: a dataset configuration (generated
    /// in memory first) or a dataset folder from `excite simulate`.
    #[arg(long, default_value = "models/problem-c.yaml")]
    dataset: PathBuf,
    /// Mini-batch size.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Where the PINN step evaluates its physics residual, as training's
    /// `collocation:` setting: a number of fresh points per step, or `batch`
    /// for the mini-batch's own rows. As many fresh points as the batch when absent.
    #[arg(long)]
    collocation: Option<String>,
    /// Initial-condition rows per PINN step (training's `initial_points:`);
    /// as many as the residual's points when absent.
    #[arg(long)]
    initial_points: Option<usize>,
    /// Timed steps per measurement (after a warm-up).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Repetitions, interleaved DDNN/PINN; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[arg(long)]
    json: bool,
}

/// `excite bench train`: samples per second of the real training step.
pub fn train(a: &TrainArgs) -> Result<ExitCode> {
    use excite::train::spec::Collocation;
    use excite::train::{step_rate, Activation, Layer, PinnForm};
    let act = Activation::parse(&a.activation).with_context(|| {
        format!(
            "--activation {}: unknown; use relu, leaky_relu, elu, silu, gelu, tanh or sigmoid",
            a.activation
        )
    })?;
    let (meta, x, y) = training_rows(&a.dataset)?;
    let hidden: Vec<Layer> = a.hidden.iter().map(|&w| Layer(act, w)).collect();
    let arch = excite::train::Architecture { inputs: meta.inputs.len(), hidden: hidden.clone(), outputs: meta.outputs.len() };
    let collocation = match a.collocation.as_deref() {
        None => Collocation::Points(a.batch),
        Some("batch") => Collocation::Batch,
        Some(n) => Collocation::Points(n.parse().ok().filter(|&n| n > 0).with_context(|| format!("--collocation {n}: give a number of points ≥ 1, or `batch`"))?),
    };
    anyhow::ensure!(a.initial_points != Some(0), "--initial-points 0: give at least 1 (the initial condition needs a row)");
    let form = PinnForm { collocation, initial_points: a.initial_points };
    let (mut ddnn, mut pinn) = (Vec::new(), Vec::new());
    for _ in 0..a.repeat {
        ddnn.push(step_rate(&hidden, &meta, &x, &y, None, a.batch, a.steps)?);
        pinn.push(step_rate(&hidden, &meta, &x, &y, Some(form), a.batch, a.steps)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, p) = (median(ddnn), median(pinn));
    let report = serde_json::json!({
        "architecture": arch.summary(), "dataset": a.dataset.display().to_string(), "batch": a.batch, "threads": rayon::current_num_threads(),
        "ddnn_samples_per_s": d, "pinn_samples_per_s": p, "ddnn_step_ms": a.batch as f64 / d * 1e3,
        "pinn_step_ms": a.batch as f64 / p * 1e3, "pinn_cost_ratio": d / p,
        "collocation": collocation, "initial_points": a.initial_points,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "training step, {} on {}, batch {}, Adam, median of {}",
            arch.summary(),
            a.dataset.display(),
            a.batch,
            a.repeat
        );
        println!(
            "  DDNN  {:>10} samples/s  ({:.2} ms/step)",
            rate(d),
            a.batch as f64 / d * 1e3
        );
        let residual = match collocation {
            Collocation::Points(n) => format!("residual at {n} fresh points"),
            Collocation::Batch => "residual at the batch's rows".into(),
        };
        let initial = a.initial_points.map_or("as many".into(), |n| n.to_string());
        println!(
            "  PINN  {:>10} samples/s  ({:.2} ms/step, {:.2}× a DDNN step; {residual}, initial condition at {initial})",
            rate(p),
            a.batch as f64 / p * 1e3,
            d / p
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct EngineArgs {
    /// Exported models (`excite export`) or engine directories (`excite build`);
    /// several are timed interleaved, for fair side-by-side ratios.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024,16384")]
    batches: Vec<usize>,
    /// Seconds per measurement (warm-up excluded).
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Time exactly this many batches per measurement instead of --seconds.
    #[arg(long)]
    iterations: Option<usize>,
    /// Rounds over all engines and batch sizes; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Engine threads for ONNX files (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Cells the Euler reference is timed on.
    #[arg(long, default_value_t = 100_000)]
    reference_cells: usize,
    /// The dataset the models were trained on, for realistic inputs and the
    /// Euler reference's rate: needed by models that do not record their
    /// problem, and taken in place of what a model records (as `verify
    /// --problem`). Without either, engines are timed on uniform inputs in
    /// [0, 1) and there is no reference line.
    #[arg(long, value_name = "DATASET")]
    problem: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// `excite bench engine`: engines' throughput and latency per batch size,
/// interleaved, next to the Euler reference of the same problem, in one run.
pub fn engine(a: &EngineArgs) -> Result<ExitCode> {
    use excite::verify::{reference_rate, time_engine_for, Latency, Problem, Timing};
    anyhow::ensure!(a.batches.iter().all(|&b| b > 0) && a.repeat > 0, "--batches sizes and --repeat must be at least 1");
    let timing = a.iterations.map_or(Timing::Seconds(a.seconds), Timing::Iterations);
    // Only one engine is alive at a time: ONNX Runtime's intra-op threads spin
    // after each run, and idle sessions beside the timed one would steal its cores.
    let mut engines = Vec::new();
    let mut runs: Vec<Vec<Vec<(f64, Latency)>>> = vec![vec![Vec::new(); a.batches.len()]; a.models.len()];
    let given = a.problem.as_deref().map(Problem::from_dataset).transpose()?;
    for round in 0..a.repeat {
        for (e, path) in a.models.iter().enumerate() {
            let (mut engine, onnx, _) = excite::engine::open_path(path, a.threads)?;
            // --problem, else the file's own, else uniform inputs and no
            // reference: the same order as verify and build
            let problem = match &given {
                Some(p) => Some(p.clone()),
                None => Problem::from_onnx(&onnx).ok(),
            };
            for (j, &b) in a.batches.iter().enumerate() {
                let measured = match &problem {
                    Some(p) => time_engine_for(p, engine.as_mut(), &p.cells(256, 7), b, timing)?,
                    None => {
                        let n_in = engine.info().inputs;
                        let pool: Vec<f32> = (0..256 * n_in).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
                        excite::verify::time_rows(engine.as_mut(), &pool, n_in, b, timing)?
                    }
                };
                runs[e][j].push(measured);
            }
            if round == 0 {
                engines.push((path.clone(), engine.info(), problem));
            }
        }
    }
    let reference = match engines.iter().find_map(|e| e.2.as_ref()) {
        Some(p) if a.reference_cells > 0 => Some((reference_rate(p, a.reference_cells, 11, 0)?, p.grid.steps_per_sample)),
        _ => None,
    };
    let (cell_steps, ref_rate, steps_per_sample) = match reference {
        Some(((c, r), s)) => (Some(c), Some(r), Some(s)),
        None => (None, None, None),
    };
    let median = |v: &[(f64, Latency)]| {
        let mut s = v.to_vec();
        s.sort_by(|x, y| x.0.total_cmp(&y.0));
        s[s.len() / 2]
    };
    let mut report = Vec::new();
    for (e, (path, info, _)) in engines.iter().enumerate() {
        let rows: Vec<_> = a.batches.iter().enumerate().map(|(j, &b)| {
            let (r, lat) = median(&runs[e][j]);
            // side by side: each engine's median over the first engine's
            let first = median(&runs[0][j]).0;
            serde_json::json!({"batch": b, "samples_per_s": r, "latency_ms": lat, "ratio_to_reference": ref_rate.map(|f| r / f), "ratio_to_first": r / first})
        }).collect();
        report.push(serde_json::json!({"model": path, "engine": info, "rows": rows}));
    }
    let out = serde_json::json!({"engines": report, "reference_cell_steps_per_s": cell_steps, "reference_samples_per_s": ref_rate, "steps_per_sample": steps_per_sample, "repeat": a.repeat});
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &report {
        let info = &e["engine"];
        println!("{} {} ({}), {}", info["backend"].as_str().unwrap_or(""), info["precision"].as_str().unwrap_or(""), info["runtime"].as_str().unwrap_or(""), e["model"].as_str().unwrap_or(""));
        println!("{:>7} {:>13} {:>9} {:>9} {:>9} {:>9} {:>12} {:>9}", "batch", "samples/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "÷ reference", "÷ first");
        for r in e["rows"].as_array().unwrap() {
            let l = |k: &str| r["latency_ms"][k].as_f64().unwrap();
            let to_ref = r["ratio_to_reference"].as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
            println!("{:>7} {:>13} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>12} {:>9.3}", r["batch"].as_u64().unwrap_or(0), rate(r["samples_per_s"].as_f64().unwrap()), l("mean"), l("p50"), l("p90"), l("p99"), to_ref, r["ratio_to_first"].as_f64().unwrap());
        }
    }
    if report.len() > 1 {
        let ratios: Vec<f64> = report[1..].iter().flat_map(|e| e["rows"].as_array().unwrap().iter().map(|r| r["ratio_to_first"].as_f64().unwrap())).collect();
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        println!("geometric mean of the ratios to the first engine: {geo:.3}×");
    }
    match (ref_rate, cell_steps, steps_per_sample) {
        (Some(r), Some(c), Some(s)) => println!("Euler reference: {} sample-equivalents/s ({} cell-steps/s, {s} steps per sample, all threads); medians of {} interleaved rounds", rate(r), rate(c), a.repeat),
        _ => println!("no Euler reference: no model records its problem (pass --problem DATASET); medians of {} interleaved rounds, uniform inputs", a.repeat),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct CellmlArgs {
    /// The CellML file (1.0, 1.1 or 2.0).
    model: PathBuf,
    /// Cells, all starting from the model's initial state.
    #[arg(long, default_value_t = 1024)]
    cells: usize,
    /// Simulated time, in the model's time units.
    #[arg(long, default_value_t = 100.0)]
    t_end: f64,
    /// Step size, in the model's time units.
    #[arg(long, default_value_t = 0.01)]
    dt: f64,
    /// Thread counts to time.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also solve on the GPU (the generated CUDA kernel, f64), and report the
    /// largest difference to the CPU result (relative to each value's size).
    #[arg(long)]
    cuda: bool,
    #[arg(long)]
    json: bool,
}

/// `excite bench cellml`: the imported model's reference solver, timed.
pub fn cellml(a: &CellmlArgs) -> Result<ExitCode> {
    use excite::solve::imported::{program, solve_cells, solve_cells_by, solve_cuda, Exec, Scheme};
    use excite::solve::{Cells, Column, TimeGrid};
    anyhow::ensure!(a.cells >= 1 && a.repeat >= 1, "--cells and --repeat must be at least 1");
    let eq = excite::cell::cellml::load(&a.model)?;
    let grid = TimeGrid::new(a.t_end, a.dt, a.t_end)?;
    let cells = Cells { n: a.cells, init: eq.initial_state().into_iter().map(Column::Same).collect(), params: eq.param_values().into_iter().map(Column::Same).collect() };
    let steps = (grid.total_steps() * a.cells) as f64;
    let mut rows = Vec::new();
    // why there is no native figure, where there is none
    let mut native_missing = None;
    for scheme in [Scheme::Euler, Scheme::RushLarsen] {
        for exec in [Exec::Native, Exec::Interpreted] {
            // one step first: the native step's build is not the solver's speed
            if let Err(e) = solve_cells_by(exec, &eq, scheme, &TimeGrid::new(a.dt, a.dt, a.dt)?, &cells, 1) {
                match exec {
                    Exec::Native => {
                        native_missing.get_or_insert_with(|| format!("{e}; {}", e.hint().unwrap_or("")));
                        continue;
                    }
                    Exec::Interpreted => return Err(e.into()),
                }
            }
            for &threads in &a.threads {
                let mut times = Vec::new();
                for _ in 0..a.repeat {
                    let start = std::time::Instant::now();
                    let out = solve_cells_by(exec, &eq, scheme, &grid, &cells, threads)?;
                    times.push(start.elapsed().as_secs_f64());
                    anyhow::ensure!(out.data.iter().all(|x| x.is_finite()), "{}: the {scheme:?} solution is not finite at dt {}", a.model.display(), a.dt);
                }
                times.sort_by(f64::total_cmp);
                let rate = steps / times[times.len() / 2];
                rows.push(serde_json::json!({"path": "cpu", "exec": exec, "scheme": scheme, "threads": threads, "cell_steps_per_s": rate}));
            }
        }
        if a.cuda {
            // timed whole: NVRTC compile, transfers and kernel
            let cpu = solve_cells(&eq, scheme, &grid, &cells, 0)?;
            let mut times = Vec::new();
            let mut gpu = None;
            for _ in 0..a.repeat {
                let start = std::time::Instant::now();
                gpu = Some(solve_cuda(&eq, scheme, &grid, &cells)?);
                times.push(start.elapsed().as_secs_f64());
            }
            let gpu = gpu.expect("at least one run");
            let worst = cpu.data.iter().zip(&gpu.data).map(|(c, g)| if (c - g).is_nan() { f64::INFINITY } else { (c - g).abs() / (1.0 + c.abs()) }).fold(0.0, f64::max);
            times.sort_by(f64::total_cmp);
            rows.push(serde_json::json!({"path": "cuda", "scheme": scheme, "threads": 0, "cell_steps_per_s": steps / times[times.len() / 2], "max_rel_diff_to_cpu": worst}));
        }
    }
    // the summary's figures are those of the Rush–Larsen program (Euler's has no gate updates)
    let program = program(&eq, Scheme::RushLarsen);
    let gates = program.gates.iter().filter(|g| g.is_some()).count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({
            "model": eq.name, "file": a.model.display().to_string(), "states": eq.states.len(), "gates": gates,
            "cells": a.cells, "dt": a.dt, "t_end": a.t_end, "cpu": excite::isa::cpu_name(), "rows": rows,
            "instructions_per_step": program.code.len(), "instructions_per_block": program.setup.len(), "registers": program.n_regs,
            "native_missing": native_missing,
        }))?);
    } else {
        println!("{} ({} states, {gates} gates for Rush–Larsen), {} cells, dt {}, {} time units, f64, median of {}", eq.name, eq.states.len(), a.cells, a.dt, a.t_end, a.repeat);
        println!("  compiled: {} instructions a step, {} once per block, {} registers", program.code.len(), program.setup.len(), program.n_regs);
        if let Some(why) = &native_missing {
            println!("  native: not built ({why}); the interpreter's figures only");
        }
        for r in &rows {
            let place = if r["path"] == "cuda" { "GPU      ".to_string() } else { format!("{} thread{}", r["threads"], if r["threads"] == 1 { " " } else { "s" }) };
            let diff = r["max_rel_diff_to_cpu"].as_f64().map_or(String::new(), |d| format!("  max |Δ| to CPU {d:.2e} (relative)"));
            let path = if r["path"] == "cuda" { "cuda" } else { r["exec"].as_str().unwrap_or("") };
            println!("  {:<12} {path:<12} {place}  {:>10} cell-steps/s{diff}", r["scheme"].as_str().unwrap_or(""), rate(r["cell_steps_per_s"].as_f64().unwrap_or(0.0)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
