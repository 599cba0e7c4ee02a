//! The physics loss: the cell model's right-hand side replayed on tensors
//! from its [`Tape`], so PINN training uses the very equations the Euler
//! reference solves, and [`PhysicsCtx`], which draws the collocation points
//! and computes the physics and initial-condition losses of a PINN step.

use burn::tensor::{Device, Tensor, TensorData};

use crate::cell::symbolic;
use crate::cell::equations::Func;
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

/// `v` as a tensor of `like`'s shape.
fn tensor(v: V, like: &Tensor<2>) -> Tensor<2> {
    match v {
        V::T(t) => t,
        V::C(c) => like.zeros_like().add_scalar(c),
    }
}

/// A function of one argument ([`Func::unary`]) on a tensor.
fn unary(f: Func, t: Tensor<2>) -> Tensor<2> {
    match f {
        Func::Exp => t.exp(),
        Func::Ln => t.log(),
        Func::Log10 => t.log().div_scalar(std::f64::consts::LN_10),
        Func::Sqrt => t.sqrt(),
        Func::Abs => t.abs(),
        Func::Floor => t.floor(),
        Func::Ceil => t.ceil(),
        Func::Sin => t.sin(),
        Func::Cos => t.cos(),
        Func::Tan => t.tan(),
        Func::Asin => t.asin(),
        Func::Acos => t.acos(),
        Func::Atan => t.atan(),
        Func::Sinh => t.sinh(),
        Func::Cosh => t.cosh(),
        Func::Tanh => t.tanh(),
        other => unreachable!("{other:?} is not a function of one argument"),
    }
}

/// Evaluates the right-hand side on columns `[rows, 1]`: `state[i]` for each
/// state variable, `params[i]` for each parameter the tape leaves varying,
/// `time` the physical time of each row.
pub fn rhs(tape: &Tape, params: &[Option<Tensor<2>>], state: &[Tensor<2>], time: &Tensor<2>) -> Vec<Tensor<2>> {
    let mut v: Vec<V> = Vec::with_capacity(tape.ops.len());
    for op in &tape.ops {
        let x = match *op {
            Op::Const(c) => V::C(c),
            Op::Param(i) => V::T(params[i].clone().expect("a varying parameter is given")),
            Op::State(i) => V::T(state[i].clone()),
            Op::Time => V::T(time.clone()),
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
            Op::Unary(f, a) => match v[a].clone() {
                V::C(c) => V::C(f.unary(c)),
                V::T(t) => V::T(unary(f, t)),
            },
            Op::Pow(a, b) => match (v[a].clone(), v[b].clone()) {
                (V::C(x), V::C(y)) => V::C(x.powf(y)),
                (V::T(x), V::C(y)) => V::T(x.powf_scalar(y)),
                (V::C(x), V::T(y)) => V::T(y.mul_scalar(x.ln()).exp()),
                (V::T(x), V::T(y)) => V::T(x.powf(y)),
            },
            Op::Cmp(c, a, b) => match (v[a].clone(), v[b].clone()) {
                (V::C(x), V::C(y)) => V::C(f64::from(u8::from(c.compare(x, y)))),
                (x, y) => {
                    let like = match (&x, &y) {
                        (V::T(t), _) | (_, V::T(t)) => t.clone(),
                        _ => unreachable!("one side is a tensor"),
                    };
                    let (x, y) = (tensor(x, &like), tensor(y, &like));
                    V::T(match c {
                        Func::Lt => x.lower(y),
                        Func::Le => x.lower_equal(y),
                        Func::Gt => x.greater(y),
                        Func::Ge => x.greater_equal(y),
                        Func::Eq => x.equal(y),
                        Func::Ne => x.not_equal(y),
                        other => unreachable!("{other:?} is not a comparison"),
                    }
                    .float())
                }
            },
            Op::Select(c, a, b) => match v[c].clone() {
                V::C(c) => v[if c != 0.0 { a } else { b }].clone(),
                V::T(cond) => {
                    let yes = tensor(v[a].clone(), &cond);
                    let no = tensor(v[b].clone(), &cond);
                    V::T(no.mask_where(cond.clone().not_equal(cond.zeros_like()), yes))
                }
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
    /// For each state, the range the residual reads it clamped to
    /// (`clamp_states`: the dataset's range of it), if any.
    pub clamp: Option<Vec<(f64, f64)>>,
}

impl PhysicsCtx {
    pub fn new(meta: &Metadata, clamp_states: bool) -> Result<Self, Error> {
        let model = meta.model.resolve()?;
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
                    .ok_or(meta.sampling.initial.get(s.name).copied().unwrap_or(s.initial))
            })
            .collect();
        // the residual needs every state, in the model's order, as the network's outputs
        if !meta.outputs.iter().map(|v| v.name.as_str()).eq(info.states.iter().map(|s| s.name)) {
            return Err(Error::invalid(
                "mode",
                format!("a PINN's residual needs every state of `{}` as an output, in its order; the dataset's outputs are {}", info.name, meta.outputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")),
                "leave `outputs` out of the dataset for a PINN, or train a ddnn",
            ));
        }
        if meta.inputs.first().map(|v| v.name.as_str()) != Some("t") {
            return Err(Error::invalid(
                "mode",
                "PINN training needs time as the first input",
                "use a trajectory dataset",
            ));
        }
        let clamp = clamp_states.then(|| meta.outputs.iter().map(|v| (v.min, v.max)).collect());
        Ok(PhysicsCtx {
            tape,
            param_cols,
            initial,
            clamp,
        })
    }

    /// `n` fresh collocation points (unit space, `[n][inputs]`): time
    /// uniform over the window, every other input uniform over its range.
    pub fn collocation(norm: &Normalization, t_range: (f64, f64), n: usize, rng: &mut Rng) -> Vec<f32> {
        let n_in = norm.inputs.len();
        let (tmid, thalf) = Normalization::span(&norm.inputs[0]);
        let (u0, u1) = ((t_range.0 - tmid) / thalf, (t_range.1 - tmid) / thalf);
        let mut xc = Vec::with_capacity(n * n_in);
        for _ in 0..n {
            xc.push((u0 + (u1 - u0) * rng.uniform()) as f32);
            for _ in 1..n_in {
                xc.push((rng.uniform() * 2.0 - 1.0) as f32);
            }
        }
        xc
    }

    /// The initial-condition rows: the first `m` of the points `xc` moved to
    /// t = 0, and their initial states (unit space); none past the first
    /// window. With time the only input every moved point is the same one,
    /// whose mean loss one row gives at a fraction of the cost.
    pub fn initial_rows(&self, norm: &Normalization, t_range: (f64, f64), xc: &[f32], m: usize) -> InitialRows {
        let n_in = norm.inputs.len();
        if t_range.0 > 0.0 || xc.is_empty() {
            return InitialRows { x: Vec::new(), y: Vec::new(), rows: 0 };
        }
        let ins = Normalization::spans(&norm.inputs);
        let outs = Normalization::spans(&norm.outputs);
        let rows = if n_in == 1 { 1 } else { m.min(xc.len() / n_in) };
        let t0 = ((0.0 - ins[0].0) / ins[0].1) as f32;
        let mut x = xc[..rows * n_in].to_vec();
        let mut y = Vec::with_capacity(rows * outs.len());
        for r in 0..rows {
            x[r * n_in] = t0;
            for (i, init) in self.initial.iter().enumerate() {
                let phys = match *init {
                    Ok(c) => x[r * n_in + c] as f64 * ins[c].1 + ins[c].0,
                    Err(v) => v,
                };
                y.push(((phys - outs[i].0) / outs[i].1) as f32);
            }
        }
        InitialRows { x, y, rows }
    }

    /// (L_physics, L_B) on burn tensors: the residual at the collocation
    /// points `xc` (`n` rows) and the initial condition at `ic`.
    #[allow(clippy::too_many_arguments)]
    pub fn losses(&self, net: &Net, norm: &Normalization, xc: Vec<f32>, n: usize, ic: InitialRows, device: &Device) -> (Tensor<1>, Tensor<1>) {
        let n_in = norm.inputs.len();
        let ins = Normalization::spans(&norm.inputs);
        let outs = Normalization::spans(&norm.outputs);
        let x = Tensor::<2>::from_data(TensorData::new(xc, [n, n_in]), device);
        let (y, dy) = net.forward_tangent(x.clone(), 0, 1.0 / ins[0].1);
        let state: Vec<Tensor<2>> = outs
            .iter()
            .enumerate()
            .map(|(i, (mid, half))| {
                let s = y.clone().narrow(1, i, 1).mul_scalar(*half).add_scalar(*mid);
                match &self.clamp {
                    Some(c) => s.clamp(c[i].0, c[i].1),
                    None => s,
                }
            })
            .collect();
        let params: Vec<Option<Tensor<2>>> = self
            .param_cols
            .iter()
            .map(|c| c.map(|c| x.clone().narrow(1, c, 1).mul_scalar(ins[c].1).add_scalar(ins[c].0)))
            .collect();
        let time = x.clone().narrow(1, 0, 1).mul_scalar(ins[0].1).add_scalar(ins[0].0);
        let f = rhs(&self.tape, &params, &state, &time);
        let residuals: Vec<Tensor<2>> = f
            .into_iter()
            .enumerate()
            .map(|(i, fi)| dy.clone().narrow(1, i, 1) - fi.div_scalar(outs[i].1))
            .collect();
        let phys = Tensor::cat(residuals, 1).square().mean();
        let ic = if ic.rows == 0 {
            Tensor::<1>::zeros([1], device)
        } else {
            let x0 = Tensor::<2>::from_data(TensorData::new(ic.x, [ic.rows, n_in]), device);
            let target = Tensor::<2>::from_data(TensorData::new(ic.y, [ic.rows, outs.len()]), device);
            (net.forward(x0) - target).square().mean()
        };
        (phys, ic)
    }
}

impl PhysicsCtx {
    /// One point in physical units from its unit-space inputs `x` and
    /// network outputs `y` (`ins`, `outs`: their spans): the sampled
    /// parameters into `params` (the others are constants on the tape), the
    /// states into `state` (clamped where `clamp` says); returns its time.
    fn physical(&self, ins: &[(f64, f64)], outs: &[(f64, f64)], x: &[f32], y: &[f32], params: &mut [f64], state: &mut [f64]) -> f64 {
        for (p, c) in params.iter_mut().zip(&self.param_cols) {
            if let Some(c) = *c {
                *p = x[c] as f64 * ins[c].1 + ins[c].0;
            }
        }
        for (j, st) in state.iter_mut().enumerate() {
            *st = y[j] as f64 * outs[j].1 + outs[j].0;
            if let Some(c) = &self.clamp {
                *st = st.clamp(c[j].0, c[j].1);
            }
        }
        x[0] as f64 * ins[0].1 + ins[0].0
    }

    /// Why the residual is not finite at `net`'s outputs (`which` network:
    /// "untrained", say), if it is not at some of 4096 collocation points over
    /// `t_range`: the state whose rate fails, the operation where the first
    /// non-finite value arises, and the states the network puts outside the
    /// dataset's range there.
    pub fn diagnose(&self, net: &Net, which: &str, norm: &Normalization, t_range: (f64, f64), device: &Device) -> Option<String> {
        let n = 4096;
        let n_in = norm.inputs.len();
        let xc = Self::collocation(norm, t_range, n, &mut Rng::new(1));
        let y = net.forward(Tensor::<2>::from_data(TensorData::new(xc.clone(), [n, n_in]), device));
        let y = y.into_data().convert::<f32>().try_into_vec::<f32>().ok()?;
        let (ins, outs) = (Normalization::spans(&norm.inputs), Normalization::spans(&norm.outputs));
        let (mut params, mut state, mut values) = (vec![0.0; self.param_cols.len()], vec![0.0; outs.len()], Vec::new());
        for r in 0..n {
            let (xr, yr) = (&xc[r * n_in..(r + 1) * n_in], &y[r * outs.len()..(r + 1) * outs.len()]);
            if yr.iter().any(|v| !v.is_finite()) {
                // the network itself gives NaN: its weights are, and the equations are not to blame
                return None;
            }
            let time = self.physical(&ins, &outs, xr, yr, &mut params, &mut state);
            self.tape.eval_into(&params, &state, time, &mut values);
            let Some(bad) = self.tape.outputs.iter().position(|&o| !values[o].is_finite()) else { continue };
            let first = values.iter().position(|v| !v.is_finite()).expect("a value is not finite");
            let arg = |i: usize| format!("{:.3e}", values[i]);
            let cause = match self.tape.ops[first] {
                Op::Unary(f, a) => format!("{f:?} of {}", arg(a)),
                Op::Exp(a) => format!("Exp of {}", arg(a)),
                Op::Div(a, b) => format!("{} divided by {}", arg(a), arg(b)),
                Op::Pow(a, b) => format!("{} to the power {}", arg(a), arg(b)),
                _ => "an operation of finite values".into(),
            };
            // the network's own values, before any clamp
            let strays: Vec<String> = yr
                .iter()
                .zip(&outs)
                .map(|(&u, (mid, half))| u as f64 * half + mid)
                .zip(&norm.outputs)
                .filter(|(v, range)| *v < range.min || *v > range.max)
                .map(|(v, range)| format!("{} = {v:.3e} (the dataset's range: {:.3e} to {:.3e})", range.name, range.min, range.max))
                .collect();
            let strays = if strays.is_empty() { String::new() } else { format!("; there the network puts {}", strays.join(", ")) };
            return Some(format!("the physics residual is not finite at the {which} network's outputs: d({})/dt at t = {time:.4} is {} (from {cause}){strays}", norm.outputs[bad].name, values[self.tape.outputs[bad]]));
        }
        None
    }
}

/// Initial-condition rows (unit space) from [`PhysicsCtx::initial_rows`].
pub(super) struct InitialRows {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub rows: usize,
}

/// The physics residual on the host, for the fused PINN step: the tape
/// replayed per point in f64 and differentiated in reverse.
pub(super) struct HostResidual<'a> {
    ctx: &'a PhysicsCtx,
    ins: Vec<(f64, f64)>,
    outs: Vec<(f64, f64)>,
}

/// One thread's scratch space for [`HostResidual::add_gradients`].
#[derive(Default)]
pub(super) struct ResidualScratch {
    params: Vec<f64>,
    state: Vec<f64>,
    values: Vec<f64>,
    adj: Vec<f64>,
    seed: Vec<f64>,
    d_state: Vec<f64>,
}

impl<'a> HostResidual<'a> {
    pub fn new(ctx: &'a PhysicsCtx, norm: &Normalization) -> Self {
        HostResidual { ctx, ins: Normalization::spans(&norm.inputs), outs: Normalization::spans(&norm.outputs) }
    }

    /// d(unit time)/d(physical time): the scale of the input tangent.
    pub fn time_scale(&self) -> f32 {
        (1.0 / self.ins[0].1) as f32
    }

    /// The residuals r = dŷ/dt − f(ŷ)/half at `rows` points `x` (unit
    /// space) with network outputs `y` and time derivatives `dy`: adds
    /// `coef`·∂(Σr²)/∂y to `g_y` and `coef`·∂(Σr²)/∂dy to `g_dy`, returns Σr².
    #[allow(clippy::too_many_arguments)]
    pub fn add_gradients(&self, s: &mut ResidualScratch, x: &[f32], y: &[f32], dy: &[f32], rows: usize, coef: f64, g_y: &mut [f32], g_dy: &mut [f32]) -> f64 {
        let (n_in, n_out) = (self.ins.len(), self.outs.len());
        let tape = &self.ctx.tape;
        s.params.resize(self.ctx.param_cols.len(), 0.0);
        s.state.resize(n_out, 0.0);
        s.seed.resize(n_out, 0.0);
        let mut sum = 0.0;
        for r in 0..rows {
            let (xr, yr) = (&x[r * n_in..(r + 1) * n_in], &y[r * n_out..(r + 1) * n_out]);
            let time = self.ctx.physical(&self.ins, &self.outs, xr, yr, &mut s.params, &mut s.state);
            tape.eval_into(&s.params, &s.state, time, &mut s.values);
            for i in 0..n_out {
                let res = dy[r * n_out + i] as f64 - s.values[tape.outputs[i]] / self.outs[i].1;
                sum += res * res;
                g_dy[r * n_out + i] += (2.0 * coef * res) as f32;
                s.seed[i] = -2.0 * coef * res / self.outs[i].1;
            }
            s.d_state.clear();
            s.d_state.resize(n_out, 0.0);
            tape.vjp(&s.values, &s.seed, &mut s.adj, &mut s.d_state);
            for j in 0..n_out {
                // a clamped state does not move with the network's output
                let held = self.ctx.clamp.as_ref().is_some_and(|c| {
                    let v = yr[j] as f64 * self.outs[j].1 + self.outs[j].0;
                    v < c[j].0 || v > c[j].1
                });
                if !held {
                    g_y[r * n_out + j] += (s.d_state[j] * self.outs[j].1) as f32;
                }
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::equations::{Equations, Expr, Kind, Variable};
    use crate::data::VarRange;
    use crate::train::arch::{Activation, Architecture, Layer as Hidden};

    /// A residual that takes the logarithm of a state: an untrained network
    /// puts the state below zero somewhere, and the diagnosis names the
    /// state, the function and the range; clamped, there is nothing to find.
    #[test]
    fn a_residual_out_of_its_domain_is_named() {
        let var = |name: &str, kind: Kind| Variable { name: name.into(), units: "1".into(), kind };
        let eq = Equations {
            name: "log".into(),
            time: ("t".into(), "1".into()),
            vars: vec![var("c.u", Kind::State { initial: 0.5 })],
            states: vec![0],
            rates: vec![Expr::Call(Func::Mul, vec![Expr::Num(0.1), Expr::Call(Func::Ln, vec![Expr::Var(0)])])],
            params: vec![],
            algebraic: vec![],
        };
        let tape = symbolic::trace_equations(&eq, &[]);
        let range = |name: &str, min: f64, max: f64| VarRange { name: name.into(), min, max };
        // four inputs (time and three the equations do not read) give the untrained outputs room to stray
        let norm = Normalization { inputs: vec![range("t", 0.0, 10.0), range("a", 0.0, 1.0), range("b", 0.0, 1.0), range("c", 0.0, 1.0)], outputs: vec![range("c.u", 0.01, 1.0)] };
        let device = Device::flex();
        let net = Net::seeded(&Architecture { inputs: 4, hidden: vec![Hidden(Activation::Tanh, 32)], outputs: 1 }, &device, true, 3);
        let mut ctx = PhysicsCtx { tape, param_cols: vec![], initial: vec![Err(0.5)], clamp: None };
        let why = ctx.diagnose(&net, "untrained", &norm, (0.0, 10.0), &device).expect("an untrained network strays below 0 somewhere in 4096 points");
        assert!(why.contains("d(c.u)/dt") && why.contains("from Ln of -") && why.contains("c.u = -") && why.contains("1.000e-2 to 1.000e0"), "{why}");
        ctx.clamp = Some(vec![(0.01, 1.0)]);
        assert_eq!(ctx.diagnose(&net, "untrained", &norm, (0.0, 10.0), &device), None);
    }
}
