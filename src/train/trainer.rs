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

use crate::data::{self, sampling::Rng, Array2, Kind};
use crate::fsio::{write_atomic, StagingDir};
use crate::metrics::VarMetrics;
use crate::report::Reporter;
use crate::train::adaptive::{draw, hardest_rows};
use crate::train::checkpoint::{self, State};
use crate::train::evaluate::{evaluate, Metrics};
use crate::train::fused::{Fused, PinnTerms};
use crate::train::log::{self, LossRow};
use crate::train::physics::{HostResidual, InitialRows, PhysicsCtx};
use crate::train::spec::{Collocation, Mode, Schedule, TrainSpec};
use crate::train::{
    load_net, net_bytes, Architecture, Net, Normalization, SurrogateMeta, TrainedSurrogate, Window,
    FORMAT, SURROGATE_FILE,
};
use crate::Error;

/// What a finished run reports.
pub struct Outcome {
    pub dir: PathBuf,
    pub metrics: Metrics,
    /// The step training resumed from, if it did.
    pub resumed_at: Option<usize>,
}

/// Trains the surrogate `spec` describes into `out`. With `resume`, continues
/// from the checkpoint an interrupted run left (or from `out`'s own).
/// `n` rows of (x, y) drawn without replacement by a seeded shuffle, kept in dataset order.
fn subset(x: &Array2, y: &Array2, n: usize, seed: u64) -> (Array2, Array2) {
    let mut order: Vec<usize> = (0..x.rows).collect();
    let mut rng = Rng::new(seed ^ 0x5eed_0f_2075);
    for i in 0..n {
        let j = i + (rng.next_u64() % (x.rows - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut keep = order[..n].to_vec();
    keep.sort_unstable();
    let take = |a: &Array2| Array2 {
        rows: n,
        cols: a.cols,
        data: keep
            .iter()
            .flat_map(|&r| a.data[r * a.cols..(r + 1) * a.cols].iter().copied())
            .collect(),
    };
    (take(x), take(y))
}

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
    let (x_train, y_train) = match spec.rows {
        Some(n) if n < x_train.rows => subset(&x_train, &y_train, n, spec.seed),
        _ => (x_train, y_train),
    };

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
        Some(PhysicsCtx::new(meta, spec.clamp_states)?)
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
    let (variables, rollout) = evaluate(&surrogate, meta, spec.mode, &x_val, &y_val);
    let diverged = variables.iter().any(VarMetrics::diverged);
    // a diverged PINN: look for a residual that is not finite at its first
    // weights, then at the last ones saved before it diverged
    let diverged_why = match (&physics_ctx, diverged) {
        (Some(p), true) => {
            let device = spec.device.burn_device()?.autodiff();
            let first = Net::seeded(&arch, &device, spec.device == crate::train::spec::TrainDevice::Cpu, spec.seed);
            let window = (surrogate_meta.windows[0].t0, surrogate_meta.windows[0].t1);
            p.diagnose(&first, "untrained", &norm, window, &device).or_else(|| p.diagnose(&surrogate.nets()[0], "last saved", &norm, window, surrogate.device()))
        }
        _ => None,
    };
    let metrics = Metrics {
        mae: variables.iter().map(|v| v.mae).sum::<f64>() / variables.len() as f64,
        diverged,
        diverged_why,
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
        &work.join(crate::train::METRICS_FILE),
        &serde_json::to_vec_pretty(&metrics).expect("serialises"),
    )?;
    if metrics.diverged {
        // the previous output stays; the diverged run goes beside it, for its metrics
        let rejected = crate::train::rejected_dir(out);
        staging.commit_as(&rejected)?;
        return Err(Error::Gate {
            stage: "train".into(),
            problem: format!("the run diverged ({}); it is kept in {}, and {} is left as it was", metrics.diverged_why.as_deref().unwrap_or("a validation prediction is NaN or infinite"), rejected.display(), out.display()),
            hint: crate::train::diverged_hint(spec.mode).into(),
        });
    }
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
    let mut net = Net::seeded(
        ctx.arch,
        &device,
        host,
        spec.seed.wrapping_add(ctx.window as u64),
    );
    let mut state = State::new(spec.lr, spec.seed, ctx.window);
    let mut resumed = None;
    let (mut optim, saved) = checkpoint::load(&ckpt, ctx.arch, &device, AdamConfig::new().init())?;
    if let Some((saved_state, saved_net)) = saved {
        (state, net) = (saved_state, saved_net);
        net.host_activations = host;
        // A finished window stays finished unless more steps were asked for.
        if state.stopped_early || state.step >= spec.steps {
            return Ok((best_or_last(ctx, &best_path, &net)?, state, None));
        }
        resumed = Some(state.step);
        ctx.reporter.note(&format!(
            "window {}: resuming at step {}",
            ctx.window, state.step
        ));
    }
    // training on the CPU takes the fused step; burn's net is written from
    // it whenever it is read (validation, hard rows, checkpoints)
    let mut fused = if host {
        let mut f = Fused::from_net(&net);
        if resumed.is_some() {
            f.resume(&ckpt)?;
        }
        Some(f)
    } else {
        None
    };
    let physics = ctx.physics.map(|p| Physics { ctx: p, norm: ctx.norm, t_range: ctx.t_range, collocation: spec.collocation, initial_points: spec.initial_points, weights: spec.loss });
    let residual = ctx.physics.map(|p| HostResidual::new(p, ctx.norm));
    let (mut xf, mut yf) = (Vec::new(), Vec::new());
    let mut rng = Rng::from_state(state.rng);
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
        let check = (state.step + 1) % spec.val_every == 0 || state.step + 1 == spec.steps;
        gather_into(&mut xf, &d.x_train, n_in, &rows);
        gather_into(&mut yf, &d.y_train, n_out, &rows);
        if spec.input_noise > 0.0 {
            // an ITNN's inputs start with its states, in the outputs' order
            perturb_states(&mut xf, n_in, n_out, spec.input_noise, &mut rng);
        }
        if let Some(f) = fused.as_mut() {
            let loss = match (&physics, &residual) {
                (Some(p), Some(residual)) => {
                    let points = p.draw(&xf, rows.len(), &mut rng);
                    let terms = PinnTerms { residual, collocation: points.fresh.as_deref().map(|x| (x, points.count)), initial: &points.initial, weights: p.weights };
                    f.step_pinn(&xf, &yf, rows.len(), &terms, state.lr)
                }
                _ => f.step(&xf, &yf, rows.len(), state.lr),
            };
            if check {
                last_loss = loss;
            }
        } else {
            let loss;
            (net, loss) = step(
                net,
                &mut optim,
                state.lr,
                (&xf, &yf, rows.len()),
                physics.as_ref(),
                &mut rng,
                &device,
                check,
            );
            if let Some(l) = loss {
                last_loss = l;
            }
        }
        state.step += 1;
        let adapt = spec.adaptive.is_some_and(|a| state.step % a.every == 0);
        if let (Some(f), true) = (&fused, adapt || check) {
            net = f.write_into(net);
        }
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
            state.log.push(LossRow {
                window: ctx.window,
                step: state.step,
                lr: state.lr,
                train_loss: last_loss,
                val_loss,
                val_mae,
                elapsed_s: state.seconds,
            });
            // a loss that is not finite does not come back (the weights are NaN by now)
            let diverged = !(last_loss.is_finite() && val_loss.is_finite());
            let stop = diverged || (spec.patience > 0 && state.bad_checks >= spec.patience);
            state.stopped_early = stop;
            state.rng = rng.state();
            if let Some(f) = &fused {
                f.save(&ckpt)?;
            }
            checkpoint::save(&ckpt, &net, &optim, &state)?;
            log::write(ctx.dir, ctx.window, &state.log)?;
            let eta = state.seconds / state.step as f64 * (spec.steps - state.step) as f64;
            ctx.reporter.progress(state.step, spec.steps, &format!("loss {last_loss:.2e} val {val_loss:.2e} mae {val_mae:.2e} lr {:.1e} eta {eta:.0}s", state.lr));
            if diverged {
                ctx.reporter.note(&format!("window {}: diverged by step {} (training loss {last_loss:.3e}, validation loss {val_loss:.3e}); stopped", ctx.window, state.step));
                break;
            }
            if stop {
                ctx.reporter.note(&format!(
                    "window {}: early stop at step {} (best at {})",
                    ctx.window, state.step, state.best_step
                ));
                break;
            }
        }
    }
    if let Some(f) = &fused {
        net = f.write_into(net);
    }
    Ok((best_or_last(ctx, &best_path, &net)?, state, resumed))
}

/// The best weights saved; where no validation was ever finite (a diverged
/// run) there are none, and the last weights stand in, so the run ends and
/// its metrics say it diverged.
fn best_or_last(ctx: &WindowCtx, best_path: &Path, net: &Net) -> Result<Net, Error> {
    if !best_path.exists() {
        write_atomic(best_path, &net_bytes(&net.valid()))?;
    }
    load_net(ctx.arch, best_path, &Device::flex())
}

/// The physics terms of a PINN step.
pub(super) struct Physics<'a> {
    pub ctx: &'a PhysicsCtx,
    pub norm: &'a Normalization,
    pub t_range: (f64, f64),
    pub collocation: Collocation,
    pub initial_points: Option<usize>,
    pub weights: crate::train::spec::LossWeights,
}

/// Where one PINN step evaluates its residual and initial condition.
pub(super) struct PinnPoints {
    /// Fresh collocation points `[count][inputs]`; `None`: the batch's rows.
    pub fresh: Option<Vec<f32>>,
    pub count: usize,
    pub initial: InitialRows,
}

impl Physics<'_> {
    /// The residual's and the initial condition's points for a step on the
    /// `rows` mini-batch rows `x` (unit space): the one draw both the fused
    /// and burn's step take.
    pub fn draw(&self, x: &[f32], rows: usize, rng: &mut Rng) -> PinnPoints {
        let (fresh, count) = match self.collocation {
            Collocation::Points(n) => (Some(PhysicsCtx::collocation(self.norm, self.t_range, n, rng)), n),
            Collocation::Batch => (None, rows),
        };
        let initial = self.ctx.initial_rows(self.norm, self.t_range, fresh.as_deref().unwrap_or(x), self.initial_points.unwrap_or(count));
        PinnPoints { fresh, count, initial }
    }
}

/// One optimisation step with burn's autodiff on a batch (`x`, `y`, rows:
/// host rows, unit scale); returns the updated net, and the loss if `read_loss`.
pub(super) fn step(
    net: Net,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    (x, y, rows): (&[f32], &[f32], usize),
    physics: Option<&Physics>,
    rng: &mut Rng,
    device: &Device,
    read_loss: bool,
) -> (Net, Option<f64>) {
    let tensor = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, v.len() / rows]), device);
    let data_loss = (net.forward(tensor(x)) - tensor(y)).square().mean();
    let loss = match physics {
        Some(p) => {
            // the residual's points from the host rows (no copy back from the device)
            let points = p.draw(x, rows, rng);
            let xc = points.fresh.unwrap_or_else(|| x.to_vec());
            let (phys, ic) = p.ctx.losses(&net, p.norm, xc, points.count, points.initial, device);
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

/// The rows `rows` of `data` (`cols` wide), into `out` (its old contents dropped).
/// Adds N(0, σ²) to the first `states` columns of every row of `x`
/// (`cols` columns), by Box–Muller from `rng`.
fn perturb_states(x: &mut [f32], cols: usize, states: usize, sigma: f64, rng: &mut Rng) {
    for row in x.chunks_exact_mut(cols) {
        for v in &mut row[..states] {
            let (u1, u2) = (1.0 - rng.uniform(), rng.uniform());
            *v += (sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32;
        }
    }
}

pub(super) fn gather_into(out: &mut Vec<f32>, data: &[f32], cols: usize, rows: &[usize]) {
    out.clear();
    for &r in rows {
        out.extend_from_slice(&data[r * cols..(r + 1) * cols]);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Noise goes to the state columns only, with the standard deviation asked for.
    #[test]
    fn perturbed_states_only() {
        let (rows, cols, states) = (20_000, 4, 2);
        let x0: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut x = x0.clone();
        perturb_states(&mut x, cols, states, 0.02, &mut Rng::new(3));
        let mut moved = Vec::new();
        for (r, (a, b)) in x.chunks_exact(cols).zip(x0.chunks_exact(cols)).enumerate() {
            assert_eq!(&a[states..], &b[states..], "row {r}: a column past the states moved");
            moved.extend(a[..states].iter().zip(&b[..states]).map(|(a, b)| (a - b) as f64));
        }
        let mean = moved.iter().sum::<f64>() / moved.len() as f64;
        let sd = (moved.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / moved.len() as f64).sqrt();
        assert!(mean.abs() < 5e-4 && (sd - 0.02).abs() < 5e-4, "mean {mean}, sd {sd}");
    }
}
