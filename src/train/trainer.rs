//! The training loop: Adam with a learning-rate schedule on mini-batches,
//! validation every N steps, early stopping, best-weights saving, and a
//! checkpoint at every validation that `--resume` continues from exactly.
//! Training happens in a resumable staging folder; the run folder is
//! replaced only when every window has finished.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::cell::{self, symbolic};
use crate::data::{self, sampling::Rng, Array2, Kind, Metadata};
use crate::fsio::{write_atomic, StagingDir};
use crate::report::Reporter;
use crate::train::spec::{Mode, Schedule, TrainSpec};
use crate::train::{
    load_net, net_bytes, physics, Architecture, Net, Normalization, TrainedSurrogate, SurrogateMeta,
    Window, FORMAT, SURROGATE_FILE,
};
use crate::metrics::{self, VarMetrics};
use crate::Error;

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
    pub mae: f64,
    /// A validation prediction was NaN or infinite (its errors are infinite).
    #[serde(default)]
    pub diverged: bool,
    pub val_rows: usize,
    pub steps: usize,
    pub best_steps: Vec<usize>,
    pub train_seconds: f64,
    pub samples_per_s: f64,
    pub rollout: Option<Rollout>,
}

/// What a finished run reports.
pub struct Outcome {
    pub dir: PathBuf,
    pub metrics: Metrics,
    /// The step training resumed from, if it did.
    pub resumed_at: Option<usize>,
}

/// Everything a checkpoint holds besides weights and optimizer state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: usize,
    lr: f64,
    best_val: f64,
    best_step: usize,
    bad_checks: usize,
    plateau_bad: usize,
    rng: [u64; 4],
    hard: Vec<u32>,
    samples: u64,
    seconds: f64,
    log: Vec<String>,
    stopped_early: bool,
}

const LOG_HEADER: &str = "window,step,lr,train_loss,val_loss,val_mae,elapsed_s";

/// Trains the surrogate `spec` describes into `out`. With `resume`, continues
/// from the checkpoint an interrupted run left (or from `out`'s own).
pub fn train(
    spec: &TrainSpec,
    out: &Path,
    resume: bool,
    reporter: &dyn Reporter,
) -> Result<Outcome, Error> {
    spec.check()?;
    let ds = data::load(&spec.dataset)?;
    let meta = &ds.meta;
    match (spec.mode, meta.kind) {
        (Mode::Itnn, Kind::Itnn) | (Mode::Ddnn | Mode::Pinn, Kind::Trajectory) => {}
        (mode, kind) => {
            return Err(Error::invalid(
                "mode",
                format!(
                    "mode {mode:?} cannot train on a {kind:?} dataset ({})",
                    spec.dataset.display()
                ),
                "ITNN needs a dataset with `kind: itnn`; DDNN and PINN need `kind: trajectory`",
            ))
        }
    }
    if spec.windows > 1 && meta.kind != Kind::Trajectory {
        return Err(Error::invalid(
            "windows",
            "time-domain splitting needs a trajectory dataset",
            "set windows: 1",
        ));
    }
    let arch = Architecture {
        inputs: meta.inputs.len(),
        hidden: spec.hidden()?,
        outputs: meta.outputs.len(),
    };
    arch.check()?;
    let norm = Normalization {
        inputs: meta.inputs.clone(),
        outputs: meta.outputs.clone(),
    };
    let array = |name: &str| {
        ds.arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| {
                Error::format(
                    spec.dataset.join(data::NPZ_FILE),
                    format!("no array `{name}`"),
                    "regenerate the dataset with `excite simulate`",
                )
            })
    };
    let (x_train, y_train, x_val, y_val) = (
        array("x_train")?,
        array("y_train")?,
        array("x_val")?,
        array("y_val")?,
    );

    let k = spec.windows;
    let t_end = meta.time.t_end;
    let windows: Vec<Window> = (0..k)
        .map(|w| Window {
            t0: t_end * w as f64 / k as f64,
            t1: t_end * (w + 1) as f64 / k as f64,
            file: format!("model-{w}.bpk"),
        })
        .collect();

    let staging = StagingDir::resumable(out, !resume)?;
    let work = staging.path().to_path_buf();
    let mut resumed_at = None;
    if resume && !work.join("checkpoint-0").exists() && out.join("checkpoint-0").exists() {
        crate::fsio::copy_dir(out, &work)?;
    }
    if resume && !work.join("checkpoint-0").exists() {
        return Err(Error::invalid(
            "--resume",
            format!(
                "no checkpoint to resume from in {} or its staging folder",
                out.display()
            ),
            "run without --resume to start a new training run",
        ));
    }

    let physics_ctx = if spec.mode == Mode::Pinn {
        Some(PhysicsCtx::new(meta)?)
    } else {
        None
    };
    let mut nets = Vec::new();
    let (mut steps, mut seconds, mut samples, mut best_steps) = (0usize, 0.0f64, 0u64, Vec::new());
    for (w, window) in windows.iter().enumerate() {
        let select = |x: &Array2, y: &Array2| {
            if k == 1 {
                (x.clone(), y.clone())
            } else {
                rows_in(x, y, window.t0, window.t1)
            }
        };
        let (xt, yt) = select(&x_train, &y_train);
        let (xv, yv) = select(&x_val, &y_val);
        let data = WindowData {
            x_train: Normalization::to_unit(&norm.inputs, &xt.data),
            y_train: Normalization::to_unit(&norm.outputs, &yt.data),
            x_val: Normalization::to_unit(&norm.inputs, &xv.data),
            y_val: Normalization::to_unit(&norm.outputs, &yv.data),
            y_val_phys: yv.data.clone(),
        };
        let ctx = WindowCtx {
            spec,
            arch: &arch,
            norm: &norm,
            physics: physics_ctx.as_ref(),
            window: w,
            t_range: (window.t0, window.t1),
            dir: &work,
            reporter,
        };
        let (net, state, resumed) = train_window(&ctx, &data)?;
        if let Some(s) = resumed {
            resumed_at.get_or_insert(s);
        }
        steps += state.step;
        seconds += state.seconds;
        samples += state.samples;
        best_steps.push(state.best_step);
        nets.push(net);
    }

    reporter.phase("evaluating on the validation set");
    let surrogate_meta = SurrogateMeta {
        format: FORMAT.into(),
        name: spec.name.clone(),
        mode: spec.mode,
        architecture: arch.clone(),
        normalization: norm.clone(),
        windows,
        model: meta.model.clone(),
        time: meta.time.clone(),
        initial: meta.sampling.initial.clone(),
        sampling: meta.sampling.ranges.clone(),
        dataset_sha256: meta.content_sha256.clone(),
        excite_version: env!("CARGO_PKG_VERSION").into(),
    };
    let surrogate = TrainedSurrogate::from_parts(surrogate_meta.clone(), nets, Device::flex());
    let pred = surrogate.predict(&x_val.data);
    let variables = metrics::errors(
        &meta
            .outputs
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>(),
        &pred,
        &y_val.data,
    );
    let rollout = (spec.mode == Mode::Itnn).then(|| rollout(&surrogate, meta, &x_val, &y_val));
    let metrics = Metrics {
        mae: variables.iter().map(|v| v.mae).sum::<f64>() / variables.len() as f64,
        diverged: variables.iter().any(VarMetrics::diverged),
        variables,
        val_rows: x_val.rows,
        steps,
        best_steps,
        train_seconds: seconds,
        samples_per_s: samples as f64 / seconds.max(1e-9),
        rollout,
    };
    write_atomic(
        &work.join(SURROGATE_FILE),
        &serde_json::to_vec_pretty(&surrogate_meta).expect("serialises"),
    )?;
    write_atomic(
        &work.join("metrics.json"),
        &serde_json::to_vec_pretty(&metrics).expect("serialises"),
    )?;
    staging.commit()?;
    Ok(Outcome {
        dir: out.to_path_buf(),
        metrics,
        resumed_at,
    })
}

struct WindowData {
    x_train: Vec<f32>,
    y_train: Vec<f32>,
    x_val: Vec<f32>,
    y_val: Vec<f32>,
    y_val_phys: Vec<f32>,
}

struct WindowCtx<'a> {
    spec: &'a TrainSpec,
    arch: &'a Architecture,
    norm: &'a Normalization,
    physics: Option<&'a PhysicsCtx>,
    window: usize,
    t_range: (f64, f64),
    dir: &'a Path,
    reporter: &'a dyn Reporter,
}

/// Trains (or resumes, or skips a finished) window; returns its best net.
fn train_window(ctx: &WindowCtx, d: &WindowData) -> Result<(Net, State, Option<usize>), Error> {
    let spec = ctx.spec;
    let (n_in, n_out) = (ctx.arch.inputs, ctx.arch.outputs);
    let n_train = d.x_train.len() / n_in;
    if n_train == 0 || d.x_val.is_empty() {
        return Err(Error::invalid(
            "dataset",
            format!("window {} has no training or validation rows", ctx.window),
            "use fewer windows or a dataset with more samples",
        ));
    }
    let ckpt = ctx.dir.join(format!("checkpoint-{}", ctx.window));
    let best_path = ctx.dir.join(format!("model-{}.bpk", ctx.window));
    let host = spec.device == crate::train::spec::TrainDevice::Cpu;
    let device = spec.device.burn_device()?.autodiff();
    device.seed(spec.seed.wrapping_add(ctx.window as u64));
    let mut net = Net::new(ctx.arch, &device, host);
    let mut optim = AdamConfig::new().init();
    let mut state = State {
        step: 0,
        lr: spec.lr,
        best_val: f64::INFINITY,
        best_step: 0,
        bad_checks: 0,
        plateau_bad: 0,
        rng: Rng::new(spec.seed ^ (0xA5A5 + ctx.window as u64)).state(),
        hard: Vec::new(),
        samples: 0,
        seconds: 0.0,
        log: Vec::new(),
        stopped_early: false,
    };
    let mut resumed = None;
    let state_path = ckpt.join("state.json");
    if state_path.exists() {
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        state = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &state_path,
                format!("damaged checkpoint: {e}"),
                "start again without --resume",
            )
        })?;
        net = load_net(ctx.arch, &ckpt.join("model.bpk"), &device)?;
        net.host_activations = host;
        let opt_path = ckpt.join("optimizer.bpk");
        let bytes = std::fs::read(&opt_path).map_err(|e| Error::io(&opt_path, e))?;
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| {
                Error::format(
                    &opt_path,
                    format!("damaged optimizer state: {e:?}"),
                    "start again without --resume",
                )
            })?;
        // A finished window stays finished unless more steps were asked for.
        if state.stopped_early || state.step >= spec.steps {
            let best = load_net(ctx.arch, &best_path, &Device::flex())?;
            return Ok((best, state, None));
        }
        resumed = Some(state.step);
        ctx.reporter.note(&format!(
            "window {}: resuming at step {}",
            ctx.window, state.step
        ));
    }
    let mut rng = Rng::from_state(state.rng);
    let tape = ctx.physics.map(|p| p.tape.clone());
    let plain = device.clone().inner();
    let x_val = Tensor::<2>::from_data(
        TensorData::new(d.x_val.clone(), [d.x_val.len() / n_in, n_in]),
        &plain,
    );
    let y_val = Tensor::<2>::from_data(
        TensorData::new(d.y_val.clone(), [d.y_val.len() / n_out, n_out]),
        &plain,
    );
    let batch = spec.batch.min(n_train);
    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut last_loss = f64::NAN;
    ctx.reporter.phase(&format!(
        "training window {} ({:?}, {}, {} rows)",
        ctx.window,
        spec.mode,
        ctx.arch.summary(),
        n_train
    ));

    while state.step < spec.steps {
        if let Schedule::Cosine { min_lr } = spec.schedule {
            let p = state.step as f64 / spec.steps as f64;
            state.lr = min_lr + 0.5 * (spec.lr - min_lr) * (1.0 + (std::f64::consts::PI * p).cos());
        }
        let rows = draw(
            &mut rng,
            n_train,
            batch,
            &state.hard,
            spec.adaptive.map(|a| (a.fraction, a.boost)),
        );
        let xb = gather(&d.x_train, n_in, &rows, &device);
        let yb = gather(&d.y_train, n_out, &rows, &device);
        let physics = ctx.physics.zip(tape.as_ref()).map(|(p, tape)| Physics {
            ctx: p,
            tape,
            norm: ctx.norm,
            t_range: ctx.t_range,
            points: spec.collocation,
            weights: spec.loss,
        });
        let check = (state.step + 1) % spec.val_every == 0 || state.step + 1 == spec.steps;
        let loss;
        (net, loss) = step(
            net,
            &mut optim,
            state.lr,
            xb,
            yb,
            physics.as_ref(),
            &mut rng,
            &device,
            check,
        );
        if let Some(l) = loss {
            last_loss = l;
        }
        state.step += 1;
        state.samples += batch as u64;

        if let Some(a) = spec.adaptive {
            if state.step % a.every == 0 {
                state.hard = hardest_rows(
                    &net.valid(),
                    &d.x_train,
                    &d.y_train,
                    n_in,
                    n_out,
                    a.fraction,
                    &plain,
                );
            }
        }
        if check {
            let valid = net.valid();
            let (val_loss, val_mae) = validate(&valid, &x_val, &y_val, ctx.norm, &d.y_val_phys);
            if val_loss < state.best_val {
                state.best_val = val_loss;
                state.best_step = state.step;
                state.bad_checks = 0;
                state.plateau_bad = 0;
                write_atomic(&best_path, &net_bytes(&valid))?;
            } else {
                state.bad_checks += 1;
                state.plateau_bad += 1;
                if let Schedule::Plateau {
                    factor,
                    patience,
                    min_lr,
                } = spec.schedule
                {
                    if state.plateau_bad >= patience.max(1) {
                        state.lr = (state.lr * factor).max(min_lr);
                        state.plateau_bad = 0;
                    }
                }
            }
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            state.log.push(format!(
                "{},{},{:.3e},{:.6e},{:.6e},{:.6e},{:.2}",
                ctx.window, state.step, state.lr, last_loss, val_loss, val_mae, state.seconds
            ));
            let stop = spec.patience > 0 && state.bad_checks >= spec.patience;
            state.stopped_early = stop;
            state.rng = rng.state();
            save_checkpoint(&ckpt, &net, &optim, &state)?;
            write_log(ctx.dir, ctx.window, &state.log)?;
            let eta = state.seconds / state.step as f64 * (spec.steps - state.step) as f64;
            ctx.reporter.progress(state.step, spec.steps, &format!("loss {last_loss:.2e} val {val_loss:.2e} mae {val_mae:.2e} lr {:.1e} eta {eta:.0}s", state.lr));
            if stop {
                ctx.reporter.note(&format!(
                    "window {}: early stop at step {} (best at {})",
                    ctx.window, state.step, state.best_step
                ));
                break;
            }
        }
    }
    let best = load_net(ctx.arch, &best_path, &Device::flex())?;
    Ok((best, state, resumed))
}

/// The physics terms of a PINN step.
struct Physics<'a> {
    ctx: &'a PhysicsCtx,
    tape: &'a symbolic::Tape,
    norm: &'a Normalization,
    t_range: (f64, f64),
    points: usize,
    weights: crate::train::spec::LossWeights,
}

/// One optimisation step on a batch; returns the updated net, and the loss if `read_loss`.
#[allow(clippy::too_many_arguments)]
fn step(
    net: Net,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    xb: Tensor<2>,
    yb: Tensor<2>,
    physics: Option<&Physics>,
    rng: &mut Rng,
    device: &Device,
    read_loss: bool,
) -> (Net, Option<f64>) {
    let data_loss = (net.forward(xb) - yb).square().mean();
    let loss = match physics {
        Some(p) => {
            let (phys, ic) = p
                .ctx
                .losses(&net, p.tape, p.norm, p.t_range, p.points, rng, device);
            data_loss.mul_scalar(p.weights.data)
                + phys.mul_scalar(p.weights.physics)
                + ic.mul_scalar(p.weights.initial)
        }
        None => data_loss,
    };
    let value = read_loss.then(|| loss.clone().into_scalar::<f32>() as f64);
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    (optim.step(lr, net, grads), value)
}

/// Training throughput in samples per second for `arch` on synthetic data:
/// `steps` timed steps of the real training step after a warm-up, DDNN
/// (data loss only) or PINN (with `batch` collocation points on fhn-cardiac
/// problem-C-like inputs: t, u0, v0, k).
pub fn step_rate(arch: &Architecture, pinn: bool, batch: usize, steps: usize) -> f64 {
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut net = Net::new(arch, &device, true);
    let mut optim = AdamConfig::new().init();
    let mut rng = Rng::new(1);
    let n = 16384;
    let x: Vec<f32> = (0..n * arch.inputs)
        .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let y: Vec<f32> = (0..n * arch.outputs)
        .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let range = |name: &str, min: f64, max: f64| crate::data::VarRange {
        name: name.into(),
        min,
        max,
    };
    let norm = Normalization {
        inputs: [
            ("t", 0.0, 20.0),
            ("u0", 0.0, 0.9),
            ("v0", 0.0, 0.12),
            ("k", 0.0, 1.0),
        ]
        .iter()
        .take(arch.inputs)
        .map(|&(n, a, b)| range(n, a, b))
        .collect(),
        outputs: vec![range("u", -0.1, 1.1), range("v", 0.0, 0.2)],
    };
    let model = cell::by_name("fhn-cardiac").expect("built in");
    let fixed: Vec<Option<f64>> = model
        .info()
        .params
        .iter()
        .map(|p| {
            if p.name == "k" && arch.inputs == 4 {
                None
            } else {
                Some(p.default)
            }
        })
        .collect();
    let ctx = PhysicsCtx {
        tape: symbolic::trace(model, &fixed),
        param_cols: model
            .info()
            .params
            .iter()
            .map(|p| {
                if p.name == "k" && arch.inputs == 4 {
                    Some(3)
                } else {
                    None
                }
            })
            .collect(),
        initial: vec![Ok(1), Ok(2)],
    };
    let weights = crate::train::spec::LossWeights {
        data: 10.0,
        physics: 1.0,
        initial: 1.0,
    };
    let physics = Physics {
        ctx: &ctx,
        tape: &ctx.tape,
        norm: &norm,
        t_range: (0.0, 20.0),
        points: batch,
        weights,
    };
    let mut run = |count: usize| {
        for _ in 0..count {
            let rows: Vec<usize> = (0..batch).map(|_| rng.below(n)).collect();
            let (xb, yb) = (
                gather(&x, arch.inputs, &rows, &device),
                gather(&y, arch.outputs, &rows, &device),
            );
            let p = pinn.then_some(&physics);
            (net, _) = step(
                net.clone(),
                &mut optim,
                1e-3,
                xb,
                yb,
                p,
                &mut rng,
                &device,
                false,
            );
        }
    };
    run(steps.div_ceil(10).max(2));
    let start = Instant::now();
    run(steps);
    (steps * batch) as f64 / start.elapsed().as_secs_f64()
}

fn save_checkpoint(
    dir: &Path,
    net: &Net,
    optim: &burn::optim::ModuleOptimizer,
    state: &State,
) -> Result<(), Error> {
    // Weights and optimizer first, state last: a state file always describes complete files.
    write_atomic(&dir.join("model.bpk"), &net_bytes(net))?;
    write_atomic(
        &dir.join("optimizer.bpk"),
        &optim.into_bytes().expect("optimizer state serialises"),
    )?;
    write_atomic(
        &dir.join("state.json"),
        &serde_json::to_vec(state).expect("serialises"),
    )
}

/// `losses.csv` holds every window's rows; rewritten whole at each validation.
fn write_log(dir: &Path, window: usize, rows: &[String]) -> Result<(), Error> {
    let path = dir.join("losses.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| !l.starts_with(&format!("{window},")))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    lines.extend(rows.iter().cloned());
    lines.sort_by_key(|l| {
        l.split(',')
            .next()
            .and_then(|w| w.parse::<usize>().ok())
            .unwrap_or(0)
    });
    let text = std::iter::once(LOG_HEADER.to_string())
        .chain(lines)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    write_atomic(&path, text.as_bytes())
}

/// Batch rows: uniform, or with the hard rows drawn `boost` times as often.
fn draw(
    rng: &mut Rng,
    n: usize,
    batch: usize,
    hard: &[u32],
    adaptive: Option<(f64, f64)>,
) -> Vec<usize> {
    let q = match adaptive {
        Some((f, boost)) if !hard.is_empty() => f * boost / (f * boost + (1.0 - f)),
        _ => 0.0,
    };
    (0..batch)
        .map(|_| {
            if q > 0.0 && rng.uniform() < q {
                hard[rng.below(hard.len())] as usize
            } else {
                rng.below(n)
            }
        })
        .collect()
}

fn gather(data: &[f32], cols: usize, rows: &[usize], device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(rows.len() * cols);
    for &r in rows {
        v.extend_from_slice(&data[r * cols..(r + 1) * cols]);
    }
    Tensor::from_data(TensorData::new(v, [rows.len(), cols]), device)
}

/// Validation loss (unit-space MSE) and mean physical MAE over outputs.
fn validate(
    net: &Net,
    x: &Tensor<2>,
    y: &Tensor<2>,
    norm: &Normalization,
    _y_phys: &[f32],
) -> (f64, f64) {
    let pred = net.forward(x.clone());
    let diff = pred - y.clone();
    let mse = diff.clone().square().mean().into_scalar::<f32>() as f64;
    let spans = Normalization::spans(&norm.outputs);
    let mae_unit = diff
        .abs()
        .mean_dim(0)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let mae = mae_unit
        .iter()
        .zip(&spans)
        .map(|(m, (_, half))| *m as f64 * half)
        .sum::<f64>()
        / spans.len() as f64;
    (mse, mae)
}

/// The `fraction` of training rows with the largest squared error.
fn hardest_rows(
    net: &Net,
    x: &[f32],
    y: &[f32],
    n_in: usize,
    n_out: usize,
    fraction: f64,
    device: &Device,
) -> Vec<u32> {
    let rows = x.len() / n_in;
    let mut err = Vec::with_capacity(rows);
    for start in (0..rows).step_by(65536) {
        let end = (start + 65536).min(rows);
        let xt = Tensor::<2>::from_data(
            TensorData::new(x[start * n_in..end * n_in].to_vec(), [end - start, n_in]),
            device,
        );
        let yt = Tensor::<2>::from_data(
            TensorData::new(y[start * n_out..end * n_out].to_vec(), [end - start, n_out]),
            device,
        );
        let e = (net.forward(xt) - yt)
            .square()
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        err.extend(e);
    }
    let mut idx: Vec<u32> = (0..rows as u32).collect();
    let keep = ((rows as f64 * fraction).ceil() as usize).clamp(1, rows);
    idx.select_nth_unstable_by(keep - 1, |&a, &b| {
        err[b as usize].total_cmp(&err[a as usize])
    });
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

/// Rows whose time (column 0) lies in [t0, t1].
fn rows_in(x: &Array2, y: &Array2, t0: f64, t1: f64) -> (Array2, Array2) {
    let eps = 1e-6 * t1.abs().max(1.0);
    let keep: Vec<usize> = (0..x.rows)
        .filter(|&r| (x.row(r)[0] as f64) >= t0 - eps && (x.row(r)[0] as f64) <= t1 + eps)
        .collect();
    let pick = |a: &Array2| Array2 {
        rows: keep.len(),
        cols: a.cols,
        data: keep
            .iter()
            .flat_map(|&r| a.row(r).iter().copied())
            .collect(),
    };
    (pick(x), pick(y))
}

/// Rolls the one-step map out over each validation trajectory from its first state.
fn rollout(s: &TrainedSurrogate, meta: &Metadata, x: &Array2, y: &Array2) -> Rollout {
    let n_state = meta.outputs.len();
    let per = meta.time.samples_per_cell - 1;
    let cells = x.rows / per;
    let x0: Vec<f32> = (0..cells).flat_map(|c| x.row(c * per).to_vec()).collect();
    let states = metrics::rollout(&x0, cells, n_state, per, |x, _| Ok::<_, ()>(s.predict(x))).unwrap_or_default();
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

/// What the physics and initial-condition losses need from the dataset.
struct PhysicsCtx {
    tape: symbolic::Tape,
    /// For each model parameter: the input column it is sampled in, if any.
    param_cols: Vec<Option<usize>>,
    /// For each state: the input column of its sampled initial value, or its fixed initial value.
    initial: Vec<Result<usize, f64>>,
}

impl PhysicsCtx {
    fn new(meta: &Metadata) -> Result<Self, Error> {
        let model = cell::by_name(&meta.model.name)?;
        let info = model.info();
        let col = |name: &str| meta.inputs.iter().position(|v| v.name == name);
        let param_cols: Vec<Option<usize>> = info.params.iter().map(|p| col(p.name)).collect();
        let fixed: Vec<Option<f64>> = info
            .params
            .iter()
            .zip(&param_cols)
            .map(|(p, c)| {
                if c.is_some() {
                    None
                } else {
                    meta.model.params.get(p.name).copied().or(Some(p.default))
                }
            })
            .collect();
        let tape = symbolic::trace(model, &fixed);
        let initial = info
            .states
            .iter()
            .map(|s| {
                col(&format!("{}0", s.name))
                    .ok_or(meta.sampling.initial.get(s.name).copied().unwrap_or(0.0))
            })
            .collect();
        if meta.inputs.first().map(|v| v.name.as_str()) != Some("t") {
            return Err(Error::invalid(
                "mode",
                "PINN training needs time as the first input",
                "use a trajectory dataset",
            ));
        }
        Ok(PhysicsCtx {
            tape,
            param_cols,
            initial,
        })
    }

    /// (L_physics, L_B) on fresh collocation points inside the time window.
    #[allow(clippy::too_many_arguments)]
    fn losses(
        &self,
        net: &Net,
        tape: &symbolic::Tape,
        norm: &Normalization,
        t_range: (f64, f64),
        n: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> (Tensor<1>, Tensor<1>) {
        let n_in = norm.inputs.len();
        let ins = Normalization::spans(&norm.inputs);
        let outs = Normalization::spans(&norm.outputs);
        let (tmid, thalf) = ins[0];
        let (u0, u1) = ((t_range.0 - tmid) / thalf, (t_range.1 - tmid) / thalf);
        let mut xc = Vec::with_capacity(n * n_in);
        for _ in 0..n {
            xc.push((u0 + (u1 - u0) * rng.uniform()) as f32);
            for _ in 1..n_in {
                xc.push((rng.uniform() * 2.0 - 1.0) as f32);
            }
        }
        let x = Tensor::<2>::from_data(TensorData::new(xc.clone(), [n, n_in]), device);
        let (y, dy) = net.forward_tangent(x.clone(), 0, 1.0 / thalf);
        let state: Vec<Tensor<2>> = outs
            .iter()
            .enumerate()
            .map(|(i, (mid, half))| y.clone().narrow(1, i, 1).mul_scalar(*half).add_scalar(*mid))
            .collect();
        let params: Vec<Option<Tensor<2>>> = self
            .param_cols
            .iter()
            .map(|c| {
                c.map(|c| {
                    x.clone()
                        .narrow(1, c, 1)
                        .mul_scalar(ins[c].1)
                        .add_scalar(ins[c].0)
                })
            })
            .collect();
        let f = physics::rhs(tape, &params, &state);
        let residuals: Vec<Tensor<2>> = f
            .into_iter()
            .enumerate()
            .map(|(i, fi)| dy.clone().narrow(1, i, 1) - fi.div_scalar(outs[i].1))
            .collect();
        let phys = Tensor::cat(residuals, 1).square().mean();

        // Initial condition: the same points moved to t = 0 (only in the first window).
        let ic = if t_range.0 > 0.0 {
            Tensor::<1>::zeros([1], device)
        } else {
            let t0 = ((0.0 - tmid) / thalf) as f32;
            let mut x0 = xc;
            let mut target = Vec::with_capacity(n * outs.len());
            for r in 0..n {
                x0[r * n_in] = t0;
                for (i, init) in self.initial.iter().enumerate() {
                    let phys = match *init {
                        Ok(c) => x0[r * n_in + c] as f64 * ins[c].1 + ins[c].0,
                        Err(v) => v,
                    };
                    target.push(((phys - outs[i].0) / outs[i].1) as f32);
                }
            }
            let x0 = Tensor::<2>::from_data(TensorData::new(x0, [n, n_in]), device);
            let target = Tensor::<2>::from_data(TensorData::new(target, [n, outs.len()]), device);
            (net.forward(x0) - target).square().mean()
        };
        (phys, ic)
    }
}

