//! A model's right-hand side as data: running `rhs` on [`Sym`] records every
//! operation on a tape, folding constant parameters as it goes. Other stages
//! replay the tape on their own number types (tensors for the physics loss
//! of PINN training) without the model being written a second time.

use std::cell::RefCell;
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::cell::equations::{Equations, Expr, Func};
use crate::cell::{Form, Model, Real};

/// One recorded operation; operands are indices of earlier entries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Const(f64),
    /// A parameter that varies (an input of the evaluation).
    Param(usize),
    State(usize),
    /// Time (an imported model's stimulus reads it).
    Time,
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Div(usize, usize),
    Neg(usize),
    /// `a * b + c`
    MulAdd(usize, usize, usize),
    Exp(usize),
    /// A function of one argument of imported models' equations ([`Func::unary`]).
    Unary(Func, usize),
    Pow(usize, usize),
    /// 1 where the comparison ([`Func::compare`]) holds, else 0 (no derivative).
    Cmp(Func, usize, usize),
    /// `v[a]` where `v[c]` is not 0, else `v[b]` (a piecewise).
    Select(usize, usize, usize),
}

/// d f(x) / dx of a function of one argument ([`Func::unary`]), given x and y = f(x).
fn derivative(f: Func, x: f64, y: f64) -> f64 {
    match f {
        Func::Exp => y,
        Func::Ln => 1.0 / x,
        Func::Log10 => 1.0 / (x * std::f64::consts::LN_10),
        Func::Sqrt => 0.5 / y,
        Func::Abs => x.signum(),
        Func::Floor | Func::Ceil => 0.0,
        Func::Sin => x.cos(),
        Func::Cos => -x.sin(),
        Func::Tan => 1.0 + y * y,
        Func::Asin => 1.0 / (1.0 - x * x).sqrt(),
        Func::Acos => -1.0 / (1.0 - x * x).sqrt(),
        Func::Atan => 1.0 / (1.0 + x * x),
        Func::Sinh => x.cosh(),
        Func::Cosh => x.sinh(),
        Func::Tanh => 1.0 - y * y,
        other => unreachable!("{other:?} is not a function of one argument"),
    }
}

impl Op {
    /// Its value, given the values `v` of earlier entries.
    #[inline]
    fn value(&self, v: &[f64], params: &[f64], state: &[f64], time: f64) -> f64 {
        match *self {
            Op::Const(c) => c,
            Op::Param(i) => params[i],
            Op::State(i) => state[i],
            Op::Time => time,
            Op::Add(a, b) => v[a] + v[b],
            Op::Sub(a, b) => v[a] - v[b],
            Op::Mul(a, b) => v[a] * v[b],
            Op::Div(a, b) => v[a] / v[b],
            Op::Neg(a) => -v[a],
            Op::MulAdd(a, b, c) => v[a] * v[b] + v[c],
            Op::Exp(a) => v[a].exp(),
            Op::Unary(f, a) => f.unary(v[a]),
            Op::Pow(a, b) => v[a].powf(v[b]),
            Op::Cmp(c, a, b) => f64::from(u8::from(c.compare(v[a], v[b]))),
            Op::Select(c, a, b) => {
                if v[c] != 0.0 {
                    v[a]
                } else {
                    v[b]
                }
            }
        }
    }

    /// The entries it reads.
    fn operands(&self) -> ([usize; 3], usize) {
        match *self {
            Op::Const(_) | Op::Param(_) | Op::State(_) | Op::Time => ([0; 3], 0),
            Op::Neg(a) | Op::Exp(a) | Op::Unary(_, a) => ([a, 0, 0], 1),
            Op::Add(a, b)
            | Op::Sub(a, b)
            | Op::Mul(a, b)
            | Op::Div(a, b)
            | Op::Pow(a, b)
            | Op::Cmp(_, a, b) => ([a, b, 0], 2),
            Op::MulAdd(a, b, c) | Op::Select(a, b, c) => ([a, b, c], 3),
        }
    }
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
/// A built-in model is run on [`Sym`]s; an imported one's equations are
/// translated ([`trace_equations`]).
pub fn trace(model: &dyn Model, params: &[Option<f64>]) -> Tape {
    let rhs = match model.form() {
        Form::Builtin(rhs) => rhs,
        Form::Imported(m) => return trace_equations(&m.equations, params),
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
    Tape {
        ops,
        outputs: dx.iter().map(|s| s.0).collect(),
    }
}

/// An imported model's rates as a tape, in the order the IR evaluates them
/// (so it gives the same numbers as [`Equations::rates`]), constants folded.
/// `params` follows `eq.params`.
pub fn trace_equations(eq: &Equations, params: &[Option<f64>]) -> Tape {
    let mut b = Builder {
        ops: Vec::new(),
        consts: Vec::new(),
    };
    let mut var = vec![usize::MAX; eq.vars.len()];
    for (k, &s) in eq.states.iter().enumerate() {
        var[s] = b.push(Op::State(k));
    }
    for (i, (&p, fixed)) in eq.params.iter().zip(params).enumerate() {
        var[p] = b.push(fixed.map_or(Op::Param(i), Op::Const));
    }
    for (v, e) in &eq.algebraic {
        var[*v] = b.expr(e, &var);
    }
    let outputs = eq.rates.iter().map(|e| b.expr(e, &var)).collect();
    Tape {
        ops: b.ops,
        outputs,
    }
}

/// Builds a tape from IR expressions, folding operations on constants.
struct Builder {
    ops: Vec<Op>,
    /// Each entry's value where it is a constant (NaN otherwise).
    consts: Vec<f64>,
}

impl Builder {
    fn push(&mut self, op: Op) -> usize {
        let (args, n) = op.operands();
        let leaf = matches!(op, Op::Param(_) | Op::State(_) | Op::Time);
        let op = if !leaf
            && args[..n]
                .iter()
                .all(|&a| matches!(self.ops[a], Op::Const(_)))
        {
            Op::Const(op.value(&self.consts, &[], &[], 0.0))
        } else {
            op
        };
        self.consts
            .push(if let Op::Const(c) = op { c } else { f64::NAN });
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn constant(&self, k: usize) -> Option<f64> {
        matches!(self.ops[k], Op::Const(_)).then(|| self.consts[k])
    }

    /// `v[k] != 0` as 1 or 0.
    fn truth(&mut self, k: usize) -> usize {
        let zero = self.push(Op::Const(0.0));
        self.push(Op::Cmp(Func::Ne, k, zero))
    }

    fn expr(&mut self, e: &Expr, var: &[usize]) -> usize {
        match e {
            Expr::Num(x) => self.push(Op::Const(*x)),
            Expr::Var(i) => var[*i],
            Expr::Time => self.push(Op::Time),
            Expr::Piecewise(pieces, otherwise) => {
                // the first piece whose condition holds: nested from the last
                let mut acc = self.expr(otherwise, var);
                for (value, cond) in pieces.iter().rev() {
                    let c = self.expr(cond, var);
                    acc = match self.constant(c) {
                        Some(c) if c != 0.0 => self.expr(value, var),
                        Some(_) => acc,
                        None => {
                            let v = self.expr(value, var);
                            self.push(Op::Select(c, v, acc))
                        }
                    };
                }
                acc
            }
            Expr::Call(f, args) => {
                let a: Vec<usize> = args.iter().map(|x| self.expr(x, var)).collect();
                match f {
                    Func::Add => a[1..].iter().fold(a[0], |acc, &x| self.push(Op::Add(acc, x))),
                    Func::Mul => a[1..].iter().fold(a[0], |acc, &x| self.push(Op::Mul(acc, x))),
                    Func::Sub if a.len() == 1 => self.push(Op::Neg(a[0])),
                    Func::Sub => self.push(Op::Sub(a[0], a[1])),
                    Func::Div => self.push(Op::Div(a[0], a[1])),
                    Func::Neg => self.push(Op::Neg(a[0])),
                    Func::Pow => self.push(Op::Pow(a[0], a[1])),
                    Func::Exp => self.push(Op::Exp(a[0])),
                    Func::Ln | Func::Log10 | Func::Floor | Func::Ceil | Func::Abs | Func::Sqrt | Func::Sin | Func::Cos | Func::Tan | Func::Asin | Func::Acos | Func::Atan | Func::Sinh | Func::Cosh | Func::Tanh => self.push(Op::Unary(*f, a[0])),
                    Func::Lt | Func::Le | Func::Gt | Func::Ge | Func::Eq | Func::Ne => self.push(Op::Cmp(*f, a[0], a[1])),
                    Func::Not => {
                        let zero = self.push(Op::Const(0.0));
                        self.push(Op::Cmp(Func::Eq, a[0], zero))
                    }
                    Func::And => {
                        let t: Vec<usize> = a.iter().map(|&x| self.truth(x)).collect();
                        t[1..]
                            .iter()
                            .fold(t[0], |acc, &x| self.push(Op::Mul(acc, x)))
                    }
                    Func::Or => {
                        let t: Vec<usize> = a.iter().map(|&x| self.truth(x)).collect();
                        let any = t[1..]
                            .iter()
                            .fold(t[0], |acc, &x| self.push(Op::Add(acc, x)));
                        self.truth(any)
                    }
                    Func::Xor => {
                        let t: Vec<usize> = a.iter().map(|&x| self.truth(x)).collect();
                        t[1..]
                            .iter()
                            .fold(t[0], |acc, &x| self.push(Op::Cmp(Func::Ne, acc, x)))
                    }
                }
            }
        }
    }
}

impl Tape {
    /// Replays the tape in f64 (`params` holds the varying parameters by index).
    pub fn eval_f64(&self, params: &[f64], state: &[f64], time: f64) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.ops.len());
        self.eval_into(params, state, time, &mut v);
        self.outputs.iter().map(|&o| v[o]).collect()
    }

    /// Replays the tape into `v` (one value per op; the right-hand side is
    /// `v[outputs[i]]`), which [`Tape::vjp`] then differentiates.
    pub fn eval_into(&self, params: &[f64], state: &[f64], time: f64, v: &mut Vec<f64>) {
        v.clear();
        for op in &self.ops {
            let x = op.value(v, params, state, time);
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
                Op::Time | Op::Cmp(..) => {}
                Op::Unary(f, a) => adj[a] += g * derivative(f, v[a], v[k]),
                Op::Pow(a, b) => {
                    adj[a] += g * v[b] * v[a].powf(v[b] - 1.0);
                    if !matches!(self.ops[b], Op::Const(_)) {
                        adj[b] += g * v[k] * v[a].ln();
                    }
                }
                Op::Select(c, a, b) => {
                    if v[c] != 0.0 {
                        adj[a] += g
                    } else {
                        adj[b] += g
                    }
                }
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
            let Form::Builtin(rhs) = model.form() else {
                unreachable!("built-in")
            };
            rhs.rhs_f64(&p, &x, &mut want);
            // every parameter fixed: only state-dependent ops remain
            let fixed = trace(*model, &p.iter().map(|&v| Some(v)).collect::<Vec<_>>());
            assert!(!fixed.ops.iter().any(|o| matches!(o, Op::Param(_))));
            let got = fixed.eval_f64(&[], &x, 0.0);
            // last parameter varying
            let mut spec: Vec<Option<f64>> = p.iter().map(|&v| Some(v)).collect();
            *spec.last_mut().unwrap() = None;
            let varying = trace(*model, &spec);
            let got2 = varying.eval_f64(&p, &x, 0.0);
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
            let tape = trace(*model, &p.iter().map(|&v| Some(v)).collect::<Vec<_>>());
            let x = [0.37, 0.05];
            let seed = [0.7, -1.3];
            let (mut v, mut adj, mut got) = (Vec::new(), Vec::new(), [0.0; 2]);
            tape.eval_into(&[], &x, 0.0, &mut v);
            tape.vjp(&v, &seed, &mut adj, &mut got);
            for j in 0..2 {
                let h = 1e-6;
                let (mut up, mut down) = (x, x);
                up[j] += h;
                down[j] -= h;
                let (fu, fd) = (tape.eval_f64(&[], &up, 0.0), tape.eval_f64(&[], &down, 0.0));
                let want: f64 = (0..2).map(|i| seed[i] * (fu[i] - fd[i]) / (2.0 * h)).sum();
                assert!(
                    (got[j] - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "{}: d/dx{j} {} vs {want}",
                    model.info().name,
                    got[j]
                );
            }
        }
    }

    /// Every function of the IR on the tape: the same values as the IR's own
    /// evaluation, and a reverse sweep that is the Jacobian (central differences).
    #[test]
    fn equations_trace_to_the_same_values_and_derivatives() {
        use crate::cell::equations::{Kind, Variable};
        let var = |name: &str, kind: Kind| Variable {
            name: name.into(),
            units: "1".into(),
            kind,
        };
        let (x, y, p) = (Expr::Var(0), Expr::Var(1), Expr::Var(2));
        let call = |f: Func, args: Vec<Expr>| Expr::Call(f, args);
        let unaries = [
            Func::Exp,
            Func::Ln,
            Func::Log10,
            Func::Sqrt,
            Func::Abs,
            Func::Floor,
            Func::Ceil,
            Func::Sin,
            Func::Cos,
            Func::Tan,
            Func::Asin,
            Func::Acos,
            Func::Atan,
            Func::Sinh,
            Func::Cosh,
            Func::Tanh,
        ];
        // x in (0.2, 0.6), y in (0.3, 0.7): every function defined and smooth near the points
        let mut terms: Vec<Expr> = unaries
            .iter()
            .map(|&f| {
                call(
                    Func::Mul,
                    vec![
                        Expr::Num(0.1),
                        call(f, vec![call(Func::Mul, vec![x.clone(), y.clone()])]),
                    ],
                )
            })
            .collect();
        terms.push(call(Func::Pow, vec![x.clone(), y.clone()]));
        terms.push(call(Func::Pow, vec![y.clone(), Expr::Num(3.0)]));
        terms.push(call(Func::Div, vec![p.clone(), y.clone()]));
        terms.push(call(Func::Sub, vec![x.clone()]));
        terms.push(call(Func::Neg, vec![Expr::Time]));
        let stimulus = Expr::Piecewise(
            vec![
                (
                    call(Func::Mul, vec![Expr::Num(2.0), x.clone()]),
                    call(
                        Func::And,
                        vec![
                            call(Func::Lt, vec![Expr::Time, Expr::Num(1.0)]),
                            call(Func::Ge, vec![x.clone(), Expr::Num(0.4)]),
                        ],
                    ),
                ),
                (
                    y.clone(),
                    call(
                        Func::Or,
                        vec![
                            call(Func::Gt, vec![Expr::Time, Expr::Num(2.0)]),
                            call(Func::Le, vec![y.clone(), Expr::Num(0.31)]),
                        ],
                    ),
                ),
                (
                    Expr::Num(5.0),
                    call(
                        Func::Xor,
                        vec![
                            call(Func::Eq, vec![x.clone(), Expr::Num(0.0)]),
                            call(
                                Func::Not,
                                vec![call(Func::Ne, vec![y.clone(), Expr::Num(0.0)])],
                            ),
                        ],
                    ),
                ),
            ],
            Box::new(call(Func::Sub, vec![x.clone(), y.clone()])),
        );
        let eq = Equations {
            name: "all".into(),
            time: ("t".into(), "1".into()),
            vars: vec![
                var("c.x", Kind::State { initial: 0.3 }),
                var("c.y", Kind::State { initial: 0.5 }),
                var("c.p", Kind::Param { value: 1.5 }),
                var("c.a", Kind::Algebraic),
            ],
            states: vec![0, 1],
            rates: vec![
                call(Func::Add, terms),
                call(Func::Mul, vec![Expr::Var(3), p.clone()]),
            ],
            params: vec![2],
            algebraic: vec![(3, stimulus)],
        };
        for fixed in [true, false] {
            let tape = trace_equations(&eq, &[fixed.then_some(1.5)]);
            assert_eq!(tape.ops.iter().any(|o| matches!(o, Op::Param(_))), !fixed);
            for (t, state) in [
                (0.5, [0.45, 0.5]),
                (0.5, [0.3, 0.6]),
                (1.5, [0.25, 0.305]),
                (3.0, [0.55, 0.35]),
                (1.5, [0.5, 0.5]),
            ] {
                let want = eq.rates(t, &state, &[1.5]);
                let got = tape.eval_f64(&[1.5], &state, t);
                for k in 0..2 {
                    assert!(
                        (got[k] - want[k]).abs() <= 1e-14 * (1.0 + want[k].abs()),
                        "t {t}, {state:?}: rate {k} {} vs {}",
                        got[k],
                        want[k]
                    );
                }
                let seed = [0.7, -1.3];
                let (mut v, mut adj, mut grad) = (Vec::new(), Vec::new(), [0.0; 2]);
                tape.eval_into(&[1.5], &state, t, &mut v);
                tape.vjp(&v, &seed, &mut adj, &mut grad);
                for j in 0..2 {
                    let h = 1e-6;
                    let (mut up, mut down) = (state, state);
                    up[j] += h;
                    down[j] -= h;
                    let (fu, fd) = (eq.rates(t, &up, &[1.5]), eq.rates(t, &down, &[1.5]));
                    let want: f64 = (0..2).map(|i| seed[i] * (fu[i] - fd[i]) / (2.0 * h)).sum();
                    assert!(
                        (grad[j] - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "t {t}, {state:?}: d/dx{j} {} vs {want}",
                        grad[j]
                    );
                }
            }
        }
    }

    /// The built-in cardiac FHN and its CellML twin give the same tape values.
    #[test]
    fn the_cellml_fhn_tape_is_the_built_in_one() {
        let dir = std::env::temp_dir().join(format!("excite-tape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fhn.cellml");
        std::fs::write(&file, include_str!("../../models/fhn-cardiac.cellml")).unwrap();
        let imported = crate::cell::imported::load(&file).unwrap();
        let builtin = crate::cell::by_name("fhn-cardiac").unwrap();
        // parameters by bare name, in each model's order
        let bare = |n: &str| n.rsplit('.').next().unwrap().to_string();
        let value = |n: &str| {
            builtin
                .info()
                .params
                .iter()
                .find(|p| p.name == bare(n))
                .unwrap()
                .default
        };
        let ours = trace(
            imported,
            &imported
                .info()
                .params
                .iter()
                .map(|p| Some(value(p.name)))
                .collect::<Vec<_>>(),
        );
        let theirs = trace(
            builtin,
            &builtin
                .info()
                .params
                .iter()
                .map(|p| Some(p.default))
                .collect::<Vec<_>>(),
        );
        for x in [[0.37, 0.05], [0.9, 0.1], [-0.1, 0.0]] {
            let (a, b) = (ours.eval_f64(&[], &x, 1.0), theirs.eval_f64(&[], &x, 1.0));
            for k in 0..2 {
                assert!((a[k] - b[k]).abs() < 1e-12, "{x:?}: {} vs {}", a[k], b[k]);
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
