//! A model's right-hand side as data: running `rhs` on [`Sym`] records every
//! operation on a tape, folding constant parameters as it goes. Other stages
//! replay the tape on their own number types (tensors for the physics loss
//! of PINN training) without the model being written a second time.

use std::cell::RefCell;
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::cell::{Form, Model, Real};
use crate::Error;

/// One recorded operation; operands are indices of earlier entries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Const(f64),
    /// A parameter that varies (an input of the evaluation).
    Param(usize),
    State(usize),
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Div(usize, usize),
    Neg(usize),
    /// `a * b + c`
    MulAdd(usize, usize, usize),
    Exp(usize),
}

/// The recorded right-hand side: `outputs[i]` is the entry holding dx_i/dt.
#[derive(Debug, Clone, PartialEq)]
pub struct Tape {
    pub ops: Vec<Op>,
    pub outputs: Vec<usize>,
}

thread_local! {
    static TAPE: RefCell<Vec<Op>> = const { RefCell::new(Vec::new()) };
}

/// A symbolic number: an entry of the tape being recorded.
#[derive(Debug, Clone, Copy)]
pub struct Sym(usize);

fn push(op: Op) -> Sym {
    TAPE.with(|t| {
        let mut t = t.borrow_mut();
        t.push(op);
        Sym(t.len() - 1)
    })
}

fn constant(s: Sym) -> Option<f64> {
    TAPE.with(|t| match t.borrow()[s.0] {
        Op::Const(c) => Some(c),
        _ => None,
    })
}

macro_rules! binary {
    ($tr:ident, $f:ident, $op:ident, $fold:expr) => {
        impl $tr for Sym {
            type Output = Sym;
            fn $f(self, o: Sym) -> Sym {
                match (constant(self), constant(o)) {
                    (Some(a), Some(b)) => push(Op::Const($fold(a, b))),
                    _ => push(Op::$op(self.0, o.0)),
                }
            }
        }
    };
}
binary!(Add, add, Add, |a: f64, b: f64| a + b);
binary!(Sub, sub, Sub, |a: f64, b: f64| a - b);
binary!(Mul, mul, Mul, |a: f64, b: f64| a * b);
binary!(Div, div, Div, |a: f64, b: f64| a / b);

impl Neg for Sym {
    type Output = Sym;
    fn neg(self) -> Sym {
        match constant(self) {
            Some(a) => push(Op::Const(-a)),
            None => push(Op::Neg(self.0)),
        }
    }
}

impl Real for Sym {
    fn splat(x: f64) -> Self {
        push(Op::Const(x))
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        match (constant(self), constant(a), constant(b)) {
            (Some(x), Some(y), Some(z)) => push(Op::Const(x * y + z)),
            _ => push(Op::MulAdd(self.0, a.0, b.0)),
        }
    }
    fn exp(self) -> Self {
        match constant(self) {
            Some(a) => push(Op::Const(a.exp())),
            None => push(Op::Exp(self.0)),
        }
    }
}

/// Records `model`'s right-hand side. `params[i]` is `Some(value)` for a
/// parameter fixed to a constant and `None` for one given at evaluation.
/// Built-in models only: an imported model's equations are not traced.
pub fn trace(model: &dyn Model, params: &[Option<f64>]) -> Result<Tape, Error> {
    let Form::Builtin(rhs) = model.form() else {
        return Err(Error::invalid(
            "train.mode",
            format!("the physics loss of imported model `{}` cannot be built yet: the tape has no time, ln, pow or comparisons, which its equations use", model.info().name),
            "train a data-driven surrogate (mode: ddnn or itnn) on this model",
        ));
    };
    TAPE.with(|t| t.borrow_mut().clear());
    let n = model.info().states.len();
    let p: Vec<Sym> = params
        .iter()
        .enumerate()
        .map(|(i, v)| push(v.map_or(Op::Param(i), Op::Const)))
        .collect();
    let x: Vec<Sym> = (0..n).map(|i| push(Op::State(i))).collect();
    let mut dx = vec![Sym(0); n];
    rhs.rhs_sym(&p, &x, &mut dx);
    let ops = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    Ok(Tape {
        ops,
        outputs: dx.iter().map(|s| s.0).collect(),
    })
}

impl Tape {
    /// Replays the tape in f64 (`params` holds the varying parameters by index).
    pub fn eval_f64(&self, params: &[f64], state: &[f64]) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.ops.len());
        self.eval_into(params, state, &mut v);
        self.outputs.iter().map(|&o| v[o]).collect()
    }

    /// Replays the tape into `v` (one value per op; the right-hand side is
    /// `v[outputs[i]]`), which [`Tape::vjp`] then differentiates.
    pub fn eval_into(&self, params: &[f64], state: &[f64], v: &mut Vec<f64>) {
        v.clear();
        for op in &self.ops {
            let x = match *op {
                Op::Const(c) => c,
                Op::Param(i) => params[i],
                Op::State(i) => state[i],
                Op::Add(a, b) => v[a] + v[b],
                Op::Sub(a, b) => v[a] - v[b],
                Op::Mul(a, b) => v[a] * v[b],
                Op::Div(a, b) => v[a] / v[b],
                Op::Neg(a) => -v[a],
                Op::MulAdd(a, b, c) => v[a] * v[b] + v[c],
                Op::Exp(a) => v[a].exp(),
            };
            v.push(x);
        }
    }

    /// Reverse mode over a replay `v` from [`Tape::eval_into`]: adds
    /// `Σ_i seed[i]·∂f_i/∂x_j` to `d_state[j]` (`adj` is scratch space).
    pub fn vjp(&self, v: &[f64], seed: &[f64], adj: &mut Vec<f64>, d_state: &mut [f64]) {
        adj.clear();
        adj.resize(self.ops.len(), 0.0);
        for (&o, s) in self.outputs.iter().zip(seed) {
            adj[o] += s;
        }
        for (k, op) in self.ops.iter().enumerate().rev() {
            let g = adj[k];
            if g == 0.0 {
                continue;
            }
            match *op {
                Op::Const(_) | Op::Param(_) => {}
                Op::State(i) => d_state[i] += g,
                Op::Add(a, b) => {
                    adj[a] += g;
                    adj[b] += g;
                }
                Op::Sub(a, b) => {
                    adj[a] += g;
                    adj[b] -= g;
                }
                Op::Mul(a, b) => {
                    adj[a] += g * v[b];
                    adj[b] += g * v[a];
                }
                Op::Div(a, b) => {
                    adj[a] += g / v[b];
                    adj[b] -= g * v[k] / v[b];
                }
                Op::Neg(a) => adj[a] -= g,
                Op::MulAdd(a, b, c) => {
                    adj[a] += g * v[b];
                    adj[b] += g * v[a];
                    adj[c] += g;
                }
                Op::Exp(a) => adj[a] += g * v[k],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tape_replays_the_model_and_folds_constants() {
        for model in crate::cell::all() {
            let info = model.info();
            let p = info.defaults();
            let x = [0.37, 0.05];
            let mut want = vec![0.0; 2];
            let Form::Builtin(rhs) = model.form() else { unreachable!("built-in") };
            rhs.rhs_f64(&p, &x, &mut want);
            // every parameter fixed: only state-dependent ops remain
            let fixed = trace(*model, &p.iter().map(|&v| Some(v)).collect::<Vec<_>>()).unwrap();
            assert!(!fixed.ops.iter().any(|o| matches!(o, Op::Param(_))));
            let got = fixed.eval_f64(&[], &x);
            // last parameter varying
            let mut spec: Vec<Option<f64>> = p.iter().map(|&v| Some(v)).collect();
            *spec.last_mut().unwrap() = None;
            let varying = trace(*model, &spec).unwrap();
            let got2 = varying.eval_f64(&p, &x);
            for i in 0..2 {
                assert!(
                    (got[i] - want[i]).abs() < 1e-15 && (got2[i] - want[i]).abs() < 1e-15,
                    "{}",
                    info.name
                );
            }
            assert!(
                varying.ops.iter().any(|o| matches!(o, Op::Param(_))),
                "{}: the varying parameter was folded",
                info.name
            );
        }
    }

    /// The reverse sweep is the Jacobian: checked against central differences.
    #[test]
    fn vjp_is_the_jacobian() {
        for model in crate::cell::all() {
            let p = model.info().defaults();
            let tape = trace(*model, &p.iter().map(|&v| Some(v)).collect::<Vec<_>>()).unwrap();
            let x = [0.37, 0.05];
            let seed = [0.7, -1.3];
            let (mut v, mut adj, mut got) = (Vec::new(), Vec::new(), [0.0; 2]);
            tape.eval_into(&[], &x, &mut v);
            tape.vjp(&v, &seed, &mut adj, &mut got);
            for j in 0..2 {
                let h = 1e-6;
                let (mut up, mut down) = (x, x);
                up[j] += h;
                down[j] -= h;
                let (fu, fd) = (tape.eval_f64(&[], &up), tape.eval_f64(&[], &down));
                let want: f64 = (0..2).map(|i| seed[i] * (fu[i] - fd[i]) / (2.0 * h)).sum();
                assert!((got[j] - want).abs() < 1e-6 * (1.0 + want.abs()), "{}: d/dx{j} {} vs {want}", model.info().name, got[j]);
            }
        }
    }
}
