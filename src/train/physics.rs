//! The physics loss: the cell model's right-hand side replayed on tensors
//! from its [`Tape`], so PINN training uses the very equations the Euler
//! reference solves, and [`PhysicsCtx`], which draws the collocation points
//! and computes the physics and initial-condition losses of a PINN step.

use burn::tensor::{Device, Tensor, TensorData};

use crate::cell::{self, symbolic};
use crate::cell::symbolic::{Op, Tape};
use crate::data::{sampling::Rng, Metadata};
use crate::train::{Net, Normalization};
use crate::Error;

/// A tape value: a constant folds into scalar tensor ops.
#[derive(Clone)]
enum V {
    C(f64),
    T(Tensor<2>),
}

fn add(a: V, b: V) -> V {
    match (a, b) {
        (V::C(x), V::C(y)) => V::C(x + y),
        (V::C(c), V::T(t)) | (V::T(t), V::C(c)) => V::T(t.add_scalar(c)),
        (V::T(x), V::T(y)) => V::T(x + y),
    }
}

fn mul(a: V, b: V) -> V {
    match (a, b) {
        (V::C(x), V::C(y)) => V::C(x * y),
        (V::C(c), V::T(t)) | (V::T(t), V::C(c)) => V::T(t.mul_scalar(c)),
        (V::T(x), V::T(y)) => V::T(x * y),
    }
}

fn neg(a: V) -> V {
    match a {
        V::C(x) => V::C(-x),
        V::T(t) => V::T(t.neg()),
    }
}

/// Evaluates the right-hand side on columns `[rows, 1]`: `state[i]` for each
/// state variable, `params[i]` for each parameter the tape leaves varying.
pub fn rhs(tape: &Tape, params: &[Option<Tensor<2>>], state: &[Tensor<2>]) -> Vec<Tensor<2>> {
    let mut v: Vec<V> = Vec::with_capacity(tape.ops.len());
    for op in &tape.ops {
        let x = match *op {
            Op::Const(c) => V::C(c),
            Op::Param(i) => V::T(params[i].clone().expect("a varying parameter is given")),
            Op::State(i) => V::T(state[i].clone()),
            Op::Add(a, b) => add(v[a].clone(), v[b].clone()),
            Op::Sub(a, b) => add(v[a].clone(), neg(v[b].clone())),
            Op::Mul(a, b) => mul(v[a].clone(), v[b].clone()),
            Op::Div(a, b) => match (v[a].clone(), v[b].clone()) {
                (x, V::C(c)) => mul(x, V::C(1.0 / c)),
                (V::C(c), V::T(t)) => V::T(t.recip().mul_scalar(c)),
                (V::T(x), V::T(y)) => V::T(x / y),
            },
            Op::Neg(a) => neg(v[a].clone()),
            Op::MulAdd(a, b, c) => add(mul(v[a].clone(), v[b].clone()), v[c].clone()),
            Op::Exp(a) => match v[a].clone() {
                V::C(c) => V::C(c.exp()),
                V::T(t) => V::T(t.exp()),
            },
        };
        v.push(x);
    }
    let rows = state[0].dims()[0];
    let device = state[0].device();
    tape.outputs
        .iter()
        .map(|&o| match v[o].clone() {
            V::T(t) => t,
            V::C(c) => Tensor::<2>::ones([rows, 1], &device).mul_scalar(c),
        })
        .collect()
}

/// What the physics and initial-condition losses need from the dataset.
pub(super) struct PhysicsCtx {
    pub tape: symbolic::Tape,
    /// For each model parameter: the input column it is sampled in, if any.
    pub param_cols: Vec<Option<usize>>,
    /// For each state: the input column of its sampled initial value, or its fixed initial value.
    pub initial: Vec<Result<usize, f64>>,
}

impl PhysicsCtx {
    pub fn new(meta: &Metadata) -> Result<Self, Error> {
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
    pub fn losses(
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
        let f = rhs(tape, &params, &state);
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
            // with time the only input (problem A) every moved point is the
            // same one: its loss is the mean over identical rows, so one row
            // gives the same loss and gradient at a fraction of the cost
            let n = if n_in == 1 { 1 } else { n };
            x0.truncate(n * n_in);
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
