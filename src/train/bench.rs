//! Training throughput: the real training step (forward, loss, backward,
//! Adam) timed on a real dataset's rows, the measurement behind
//! `excite bench train`.

use std::time::Instant;

use burn::optim::AdamConfig;
use burn::tensor::Device;

use crate::data::{sampling::Rng, Array2, Kind, Metadata};
use crate::train::physics::PhysicsCtx;
use crate::train::spec::LossWeights;
use crate::train::trainer::{gather, gather_into, step, Physics};
use crate::train::{Architecture, Layer, Net, Normalization};
use crate::Error;

/// Samples per second of `steps` timed training steps (after a warm-up) of
/// an MLP with `hidden` layers on the training rows `x`, `y` of a dataset
/// described by `meta`, at mini-batch `batch`: DDNN (data loss only) or
/// PINN (with `batch` collocation points over the dataset's time range and
/// the default loss weights).
pub fn step_rate(hidden: &[Layer], meta: &Metadata, x: &Array2, y: &Array2, pinn: bool, batch: usize, steps: usize) -> Result<f64, Error> {
    if pinn && meta.kind != Kind::Trajectory {
        return Err(Error::invalid("dataset", "a PINN step needs a trajectory dataset (time as the first input)", "use a trajectory preset such as models/problem-c.yaml"));
    }
    if x.rows == 0 || x.rows != y.rows || batch == 0 {
        return Err(Error::invalid("dataset", format!("{} training rows and batch {batch}: nothing to time", x.rows), "use a dataset with training rows and a batch of at least 1"));
    }
    let arch = Architecture { inputs: meta.inputs.len(), hidden: hidden.to_vec(), outputs: meta.outputs.len() };
    arch.check()?;
    let norm = Normalization { inputs: meta.inputs.clone(), outputs: meta.outputs.clone() };
    let (xu, yu) = (Normalization::to_unit(&norm.inputs, &x.data), Normalization::to_unit(&norm.outputs, &y.data));
    let ctx = if pinn { Some(PhysicsCtx::new(meta)?) } else { None };
    let physics = ctx.as_ref().map(|c| Physics { ctx: c, tape: &c.tape, norm: &norm, t_range: (0.0, meta.time.t_end), points: batch, weights: LossWeights::default() });
    let device = Device::flex().autodiff();
    let mut net = Net::seeded(&arch, &device, true, 0);
    if !pinn {
        // the step DDNN and ITNN training take on the CPU
        let mut fused = crate::train::fused::Fused::from_net(&net);
        let mut rng = Rng::new(1);
        let (mut xb, mut yb) = (Vec::with_capacity(batch * arch.inputs), Vec::with_capacity(batch * arch.outputs));
        let mut run = |count: usize| {
            for _ in 0..count {
                let rows: Vec<usize> = (0..batch).map(|_| rng.below(x.rows)).collect();
                gather_into(&mut xb, &xu, arch.inputs, &rows);
                gather_into(&mut yb, &yu, arch.outputs, &rows);
                fused.step(&xb, &yb, batch, 1e-3);
            }
        };
        run(steps.div_ceil(10).max(2));
        let start = Instant::now();
        run(steps);
        return Ok((steps * batch) as f64 / start.elapsed().as_secs_f64());
    }
    let mut optim = AdamConfig::new().init();
    let mut rng = Rng::new(1);
    let mut run = |count: usize| {
        for _ in 0..count {
            let rows: Vec<usize> = (0..batch).map(|_| rng.below(x.rows)).collect();
            let (xb, yb) = (gather(&xu, arch.inputs, &rows, &device), gather(&yu, arch.outputs, &rows, &device));
            (net, _) = step(net.clone(), &mut optim, 1e-3, xb, yb, physics.as_ref(), &mut rng, &device, false);
        }
    };
    run(steps.div_ceil(10).max(2));
    let start = Instant::now();
    run(steps);
    Ok((steps * batch) as f64 / start.elapsed().as_secs_f64())
}
