//! Training surrogates: accuracy on problem A, the exact PINN tangent,
//! repeatability, resuming, ITNN rollouts and time windows.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use excite::data;
use excite::report::{Reporter, Silent};
use excite::train::{self, arch, Activation, Architecture, Layer, Net, TrainedSurrogate, TrainSpec};

use crate::util::{preset_data, quick_data, reference_dir, scratch};

fn spec(data: &Path, body: &str) -> TrainSpec {
    TrainSpec::from_yaml(&format!("name: t\ndataset: {}\n{body}", data.display())).unwrap()
}

const SMALL: &str =
    "architecture:\n  hidden: [[tanh, 32], [tanh, 32], [tanh, 32]]\nbatch: 128\nlr: 0.003\n";

#[test]
fn ddnn_learns_problem_a() {
    let dir = scratch("train-a");
    let data = quick_data(&dir);
    let s = spec(&data, &format!("mode: ddnn\n{SMALL}steps: 3000\nschedule: {{kind: cosine, min_lr: 0.00003}}\nval_every: 250\n"));
    let out = dir.join("run");
    let o = train::train(&s, &out, false, &Silent).unwrap();
    assert!(
        o.metrics.mae <= 1e-2,
        "validation MAE {:.3e}",
        o.metrics.mae
    );
    for f in [
        "surrogate.json",
        "model-0.bpk",
        "losses.csv",
        "metrics.json",
        "checkpoint-0/state.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The saved surrogate reproduces the reported error from physical inputs.
    let loaded = data::load(&data).unwrap();
    let get = |n: &str| {
        loaded
            .arrays
            .iter()
            .find(|(a, _)| a == n)
            .unwrap()
            .1
            .clone()
    };
    let (x, y) = (get("x_val"), get("y_val"));
    let pred = TrainedSurrogate::load(&out).unwrap().predict(&x.data);
    let mae: f64 = pred
        .iter()
        .zip(&y.data)
        .map(|(p, t)| (p - t).abs() as f64)
        .sum::<f64>()
        / pred.len() as f64;
    assert!(
        (mae - o.metrics.mae).abs() < 1e-6,
        "reloaded MAE {mae:.4e} vs reported {:.4e}",
        o.metrics.mae
    );
    let log = std::fs::read_to_string(out.join("losses.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 3000 / 250, "{log}");
}

/// The forward-propagated time derivative equals reverse mode and finite differences.
#[test]
fn pinn_tangent_is_exact() {
    let device = Device::flex().autodiff();
    let x_host: Vec<f32> = (0..8 * 3)
        .map(|i| ((i * 37 % 19) as f32 / 19.0) * 2.0 - 1.0)
        .collect();
    for act in Activation::ALL {
        let arch = Architecture {
            inputs: 3,
            hidden: vec![Layer(act, 16), Layer(act, 16)],
            outputs: 2,
        };
        let net = Net::seeded(&arch, &device, true, 5);
        let x = Tensor::<2>::from_data(TensorData::new(x_host.clone(), [8, 3]), &device);
        let (_, dy) = net.forward_tangent(x.clone(), 0, 1.0);
        let dy = dy.into_data().try_to_vec::<f32>().unwrap();
        for j in 0..2 {
            let xg = x.clone().require_grad();
            let grads = net.forward(xg.clone()).narrow(1, j, 1).sum().backward();
            let g = xg
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for r in 0..8 {
                let (tangent, reverse) = (dy[r * 2 + j], g[r * 3]);
                assert!(
                    (tangent - reverse).abs() <= 1e-6 * (1.0 + reverse.abs()),
                    "{act:?}: tangent {tangent} vs reverse mode {reverse}"
                );
            }
        }
        // central differences in the time column
        let h = 1e-3f32;
        let shifted = |d: f32| {
            let v: Vec<f32> = x_host
                .iter()
                .enumerate()
                .map(|(i, &x)| if i % 3 == 0 { x + d } else { x })
                .collect();
            net.forward(Tensor::<2>::from_data(TensorData::new(v, [8, 3]), &device))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (up, mid, down) = (shifted(h), shifted(0.0), shifted(-h));
        for i in 0..16 {
            // Central difference where smooth; next to a kink (ReLU family) the
            // one-sided quotient on the kink-free side is the derivative.
            let quotients = [
                (up[i] - down[i]) / (2.0 * h),
                (up[i] - mid[i]) / h,
                (mid[i] - down[i]) / h,
            ];
            let best = quotients
                .iter()
                .map(|q| (q - dy[i]).abs())
                .fold(f32::INFINITY, f32::min);
            assert!(
                best <= 2e-3 * (1.0 + dy[i].abs()),
                "{act:?}: finite differences {quotients:?} vs tangent {}",
                dy[i]
            );
        }
    }
}

/// Stops the run (as a crash would) once `at` steps are checkpointed.
struct CrashAt(usize);

impl Reporter for CrashAt {
    fn phase(&self, _: &str) {}
    fn note(&self, _: &str) {}
    fn progress(&self, done: usize, _: usize, _: &str) {
        if done >= self.0 {
            panic!("simulated interruption at step {done}");
        }
    }
}

#[test]
fn same_seed_same_weights_and_resume_continues_exactly() {
    let dir = scratch("train-resume");
    let data = quick_data(&dir);
    let body = |seed: u64| {
        format!("mode: ddnn\n{SMALL}steps: 300\nval_every: 100\nschedule: {{kind: constant}}\nseed: {seed}\n")
    };
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    train::train(&spec(&data, &body(1)), &a, false, &Silent).unwrap();
    train::train(&spec(&data, &body(1)), &b, false, &Silent).unwrap();
    let weights = |d: &Path| -> Vec<f32> {
        let s = TrainedSurrogate::load(d).unwrap();
        s.net(0)
            .layers
            .iter()
            .flat_map(|l| {
                let mut w = l.weight.val().into_data().try_to_vec::<f32>().unwrap();
                w.extend(
                    l.bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap(),
                );
                w
            })
            .collect()
    };
    assert_eq!(weights(&a), weights(&b), "same seed, different weights");

    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::train(&spec(&data, &body(1)), &c, false, &CrashAt(200))
    }));
    assert!(crashed.is_err());
    assert!(
        !c.exists(),
        "an interrupted run must not publish a run folder"
    );
    let o = train::train(&spec(&data, &body(1)), &c, true, &Silent).unwrap();
    assert_eq!(o.resumed_at, Some(200));
    assert_eq!(
        weights(&a),
        weights(&c),
        "resumed run differs from the uninterrupted one"
    );
    let losses = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("losses.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(losses(&a), losses(&c));

    let d = dir.join("d");
    train::train(&spec(&data, &body(2)), &d, false, &Silent).unwrap();
    assert_ne!(weights(&a), weights(&d), "the seed has no effect");
}

#[test]
fn itnn_rolls_out_whole_trajectories() {
    let dir = scratch("train-itnn");
    let data = preset_data(&dir, "problem-c-itnn.yaml", &[("cells: 1000", "cells: 40"), ("t_end: 20", "t_end: 5")]);
    let s = spec(&data, "mode: itnn\narchitecture:\n  hidden: [[tanh, 32], [tanh, 32]]\nsteps: 1500\nbatch: 256\nlr: 0.003\nval_every: 500\n");
    let o = train::train(&s, &dir.join("run"), false, &Silent).unwrap();
    let r = o.metrics.rollout.expect("ITNN reports a rollout");
    assert_eq!(r.trajectories, 10);
    assert_eq!(r.mae_by_step.len(), 50);
    assert!(r.mae_by_step.iter().all(|e| e.is_finite()));
    assert!(o.metrics.mae < 2e-2, "one-step MAE {:.3e}", o.metrics.mae);
    // Errors compound: the end of the rollout is worse than its first step.
    assert!(r.final_mae > r.mae_by_step[0], "{:?}", r.mae_by_step);
}

#[test]
fn pinn_and_time_windows_train() {
    let dir = scratch("train-pinn");
    let data = quick_data(&dir);
    let s = spec(&data, &format!("mode: pinn\n{SMALL}steps: 1500\ncollocation: 256\nval_every: 500\nwindows: 2\nadaptive: {{every: 500, fraction: 0.1, boost: 4}}\n"));
    let out = dir.join("run");
    let o = train::train(&s, &out, false, &Silent).unwrap();
    assert!(
        o.metrics.mae <= 2e-2,
        "validation MAE {:.3e}",
        o.metrics.mae
    );
    let sur = TrainedSurrogate::load(&out).unwrap();
    assert_eq!(sur.meta.windows.len(), 2);
    assert!(out.join("model-1.bpk").is_file());
    assert_eq!(train::window_of(&sur.meta.windows, 3.0), 0);
    assert_eq!(train::window_of(&sur.meta.windows, 20.0), 1);
}

#[test]
fn wrong_dataset_kind_is_refused() {
    let dir = scratch("train-kind");
    let data = quick_data(&dir);
    let e = train::train(
        &spec(&data, &format!("mode: itnn\n{SMALL}steps: 10\n")),
        &dir.join("run"),
        false,
        &Silent,
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("Trajectory") && e.hint().unwrap().contains("kind: itnn"),
        "{e}"
    );
}

#[test]
fn authors_zoo_loads() {
    let zoo = arch::load_zoo(&reference_dir().join("ufjf-results/model-zoo-800.csv")).unwrap();
    assert_eq!(zoo.len(), 800);
    for e in &zoo {
        assert_eq!(
            e.hidden.iter().map(|l| l.1).sum::<usize>(),
            e.total_neurons,
            "entry {}",
            e.id
        );
        assert!(e.hidden.iter().all(|l| [16, 32, 64, 128].contains(&l.1)));
    }
    assert_eq!(
        zoo[0].hidden,
        vec![
            Layer(Activation::Elu, 32),
            Layer(Activation::Silu, 64),
            Layer(Activation::Relu, 64)
        ]
    );
}

#[cfg(not(feature = "gpu-train"))]
#[test]
fn cuda_training_needs_the_gpu_build() {
    let dir = scratch("train-cuda");
    let data = quick_data(&dir);
    let e = train::train(
        &spec(
            &data,
            &format!("mode: ddnn\n{SMALL}steps: 10\ndevice: cuda\n"),
        ),
        &dir.join("run"),
        false,
        &Silent,
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("device: cuda")
            && e.hint().unwrap().contains("--features gpu-train"),
        "{e}"
    );
}

/// burn draws weights from one generator per process: a seeded network is
/// the same whatever other threads initialise meanwhile (tests, sweeps and
/// Python callers train side by side in one process).
#[test]
fn seeded_weights_do_not_depend_on_other_threads() {
    let arch = Architecture { inputs: 3, hidden: vec![Layer(Activation::Tanh, 32), Layer(Activation::Tanh, 32)], outputs: 2 };
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(vec![0.1f32, -0.4, 0.7], [1, 3]), &device);
    let out = |net: &Net| net.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let alone: Vec<Vec<f32>> = (0..4).map(|s| out(&Net::seeded(&arch, &device, true, s))).collect();
    assert_ne!(alone[0], alone[1], "the seed has no effect");
    std::thread::scope(|scope| {
        for (s, want) in alone.iter().enumerate() {
            let (arch, device, out) = (&arch, &device, &out);
            scope.spawn(move || {
                for _ in 0..25 {
                    assert_eq!(&out(&Net::seeded(arch, device, true, s as u64)), want, "seed {s}");
                    let _ = Net::new(arch, device, true); // an unseeded draw in between
                }
            });
        }
    });
}
