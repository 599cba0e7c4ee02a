//! The physics loss: the cell model's right-hand side replayed on tensors
//! from its [`Tape`], so PINN training uses the very equations the Euler
//! reference solves.

use burn::tensor::Tensor;

use crate::cell::symbolic::{Op, Tape};

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
