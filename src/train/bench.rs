//! Training throughput: the real training step (forward, loss, backward,
//! Adam) timed on a real dataset's rows, the measurement behind
//! `excite bench train`.

use std::time::Instant;

use burn::tensor::Device;

use crate::data::{sampling::Rng, Array2, Kind, Metadata};
use crate::train::fused::{Fused, PinnTerms};
use crate::train::physics::{HostResidual, PhysicsCtx};
use crate::train::spec::{Collocation, LossWeights};
use crate::train::trainer::{gather_into, Physics};
use crate::train::{Architecture, Layer, Net, Normalization};
use crate::Error;

/// The PINN terms a timed step adds: where the residual is evaluated and
/// at how many points the initial condition (the training settings of the same names).
#[derive(Debug, Clone, Copy)]
pub struct PinnForm {
    pub collocation: Collocation,
    pub initial_points: Option<usize>,
}

/// Samples per second of `steps` timed training steps (after a warm-up) of
/// an MLP with `hidden` layers on the training rows `x`, `y` of a dataset
/// described by `meta`, at mini-batch `batch`: the fused CPU step training
/// takes, DDNN (data loss only) or, with `pinn`, a PINN step with its
/// physics residual and initial condition over the dataset's time range
/// and the default loss weights.
pub fn step_rate(hidden: &[Layer], meta: &Metadata, x: &Array2, y: &Array2, pinn: Option<PinnForm>, batch: usize, steps: usize) -> Result<f64, Error> {
    if pinn.is_some() && meta.kind != Kind::Trajectory {
        return Err(Error::invalid("dataset", "a PINN step needs a trajectory dataset (time as the first input)", "use a trajectory preset such as models/problem-c.yaml"));
    }
    if x.rows == 0 || x.rows != y.rows || batch == 0 {
        return Err(Error::invalid("dataset", format!("{} training rows and batch {batch}: nothing to time", x.rows), "use a dataset with training rows and a batch of at least 1"));
    }
    let arch = Architecture { inputs: meta.inputs.len(), hidden: hidden.to_vec(), outputs: meta.outputs.len() };
    arch.check()?;
    let norm = Normalization { inputs: meta.inputs.clone(), outputs: meta.outputs.clone() };
    let (xu, yu) = (Normalization::to_unit(&norm.inputs, &x.data), Normalization::to_unit(&norm.outputs, &y.data));
    let ctx = if pinn.is_some() { Some(PhysicsCtx::new(meta, false)?) } else { None };
    let physics = ctx.as_ref().zip(pinn).map(|(c, form)| Physics { ctx: c, norm: &norm, t_range: (0.0, meta.time.t_end), collocation: form.collocation, initial_points: form.initial_points, weights: LossWeights::default() });
    let device = Device::flex().autodiff();
    let net = Net::seeded(&arch, &device, true, 0);
    // the step training takes on the CPU
    let mut fused = Fused::from_net(&net);
    let residual = ctx.as_ref().map(|c| HostResidual::new(c, &norm));
    let mut rng = Rng::new(1);
    let (mut xb, mut yb) = (Vec::with_capacity(batch * arch.inputs), Vec::with_capacity(batch * arch.outputs));
    let mut run = |count: usize| {
        for _ in 0..count {
            let rows: Vec<usize> = (0..batch).map(|_| rng.below(x.rows)).collect();
            gather_into(&mut xb, &xu, arch.inputs, &rows);
            gather_into(&mut yb, &yu, arch.outputs, &rows);
            match (&physics, &residual) {
                (Some(p), Some(residual)) => {
                    let points = p.draw(&xb, batch, &mut rng);
                    let terms = PinnTerms { residual, collocation: points.fresh.as_deref().map(|x| (x, points.count)), initial: &points.initial, weights: p.weights };
                    fused.step_pinn(&xb, &yb, batch, &terms, 1e-3)
                }
                _ => fused.step(&xb, &yb, batch, 1e-3),
            };
        }
    };
    run(steps.div_ceil(10).max(2));
    let start = Instant::now();
    run(steps);
    Ok((steps * batch) as f64 / start.elapsed().as_secs_f64())
}
