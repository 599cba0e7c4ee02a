//! The equation IR of an imported cell model: named variables (states with
//! initial values, parameters with values, algebraic variables in the order
//! they can be computed) and expressions over them, in one set of units per
//! variable. CellML import produces it; [`Equations::rates`] evaluates it in
//! f64, the scalar reference the executable forms are checked against.

/// A function or operator of the IR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Add,
    Sub,
    Mul,
    Div,
    Neg,
    Pow,
    Exp,
    Ln,
    Log10,
    Floor,
    Ceil,
    Abs,
    Sqrt,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    /// Comparisons and logic give 1 for true and 0 for false.
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Xor,
    Not,
}

impl Func {
    /// The value of a function of one argument, `Exp` to `Tanh`.
    pub fn unary(self, x: f64) -> f64 {
        match self {
            Func::Exp => x.exp(),
            Func::Ln => x.ln(),
            Func::Log10 => x.log10(),
            Func::Floor => x.floor(),
            Func::Ceil => x.ceil(),
            Func::Abs => x.abs(),
            Func::Sqrt => x.sqrt(),
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Asin => x.asin(),
            Func::Acos => x.acos(),
            Func::Atan => x.atan(),
            Func::Sinh => x.sinh(),
            Func::Cosh => x.cosh(),
            Func::Tanh => x.tanh(),
            other => unreachable!("{other:?} is not a function of one argument"),
        }
    }

    /// Whether the comparison `Lt` to `Ne` holds.
    pub fn compare(self, a: f64, b: f64) -> bool {
        match self {
            Func::Lt => a < b,
            Func::Le => a <= b,
            Func::Gt => a > b,
            Func::Ge => a >= b,
            Func::Eq => a == b,
            Func::Ne => a != b,
            other => unreachable!("{other:?} is not a comparison"),
        }
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    /// A variable of the model (an index into [`Equations::vars`]).
    Var(usize),
    /// The free variable, time.
    Time,
    /// `Add` and `Mul` take any number of arguments, `Sub` one or two, the rest their arity.
    Call(Func, Vec<Expr>),
    /// The value of the first piece whose condition holds, else `otherwise`.
    Piecewise(Vec<(Expr, Expr)>, Box<Expr>),
}

impl Expr {
    /// `k · self`, leaving the expression alone when `k` is 1.
    pub fn scaled(self, k: f64) -> Expr {
        if k == 1.0 {
            self
        } else {
            Expr::Call(Func::Mul, vec![Expr::Num(k), self])
        }
    }

    /// Its value, with `vals` holding every variable's value and `t` the time.
    pub fn eval(&self, vals: &[f64], t: f64) -> f64 {
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            Expr::Num(v) => *v,
            Expr::Var(i) => vals[*i],
            Expr::Time => t,
            Expr::Piecewise(pieces, otherwise) => {
                for (value, cond) in pieces {
                    if cond.eval(vals, t) != 0.0 {
                        return value.eval(vals, t);
                    }
                }
                otherwise.eval(vals, t)
            }
            Expr::Call(f, args) => {
                let a = |i: usize| args[i].eval(vals, t);
                match f {
                    // left to right from the first term, as the compiled program does
                    Func::Add => args[1..].iter().fold(a(0), |acc, e| acc + e.eval(vals, t)),
                    Func::Mul => args[1..].iter().fold(a(0), |acc, e| acc * e.eval(vals, t)),
                    Func::Sub if args.len() == 1 => -a(0),
                    Func::Sub => a(0) - a(1),
                    Func::Div => a(0) / a(1),
                    Func::Neg => -a(0),
                    Func::Pow => a(0).powf(a(1)),
                    Func::Exp | Func::Ln | Func::Log10 | Func::Floor | Func::Ceil | Func::Abs | Func::Sqrt | Func::Sin | Func::Cos | Func::Tan | Func::Asin | Func::Acos | Func::Atan | Func::Sinh | Func::Cosh | Func::Tanh => f.unary(a(0)),
                    Func::Lt | Func::Le | Func::Gt | Func::Ge | Func::Eq | Func::Ne => truth(f.compare(a(0), a(1))),
                    Func::And => truth(args.iter().all(|e| e.eval(vals, t) != 0.0)),
                    Func::Or => truth(args.iter().any(|e| e.eval(vals, t) != 0.0)),
                    Func::Xor => truth(args.iter().filter(|e| e.eval(vals, t) != 0.0).count() % 2 == 1),
                    Func::Not => truth(a(0) == 0.0),
                }
            }
        }
    }

    /// Whether the expression reads time.
    pub fn reads_time(&self) -> bool {
        match self {
            Expr::Time => true,
            Expr::Num(_) | Expr::Var(_) => false,
            Expr::Call(_, args) => args.iter().any(Expr::reads_time),
            Expr::Piecewise(pieces, otherwise) => pieces.iter().any(|(v, c)| v.reads_time() || c.reads_time()) || otherwise.reads_time(),
        }
    }

    /// Whether the expression is a constant: it reads neither a variable nor time.
    pub fn is_constant(&self) -> bool {
        let mut constant = !self.reads_time();
        self.visit_vars(&mut |_| constant = false);
        constant
    }

    /// Calls `f` on every variable the expression reads.
    pub fn visit_vars(&self, f: &mut impl FnMut(usize)) {
        match self {
            Expr::Var(i) => f(*i),
            Expr::Num(_) | Expr::Time => {}
            Expr::Call(_, args) => args.iter().for_each(|a| a.visit_vars(f)),
            Expr::Piecewise(pieces, otherwise) => {
                for (v, c) in pieces {
                    v.visit_vars(f);
                    c.visit_vars(f);
                }
                otherwise.visit_vars(f);
            }
        }
    }
}

/// What a variable is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A state variable with its initial value; its rate is `Equations::rates`' entry.
    State { initial: f64 },
    /// A constant (a parameter a study may vary).
    Param { value: f64 },
    /// Computed from others by its equation.
    Algebraic,
}

/// A variable of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// `component.variable` where it is defined.
    pub name: String,
    /// Its units' name, as the file writes it.
    pub units: String,
    pub kind: Kind,
}

/// A cell model's equations.
#[derive(Debug, Clone, PartialEq)]
pub struct Equations {
    pub name: String,
    /// The free variable's name and units.
    pub time: (String, String),
    pub vars: Vec<Variable>,
    /// The state variables, in the order the file declares them, and their rates.
    pub states: Vec<usize>,
    pub rates: Vec<Expr>,
    /// The parameters, in the order the file declares them.
    pub params: Vec<usize>,
    /// Algebraic variables and their equations, each after all it reads.
    pub algebraic: Vec<(usize, Expr)>,
}

impl Equations {
    /// The variable called `name` (`component.variable`, or the bare variable name where that is unique).
    pub fn find(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.vars.iter().position(|v| v.name == name) {
            return Some(i);
        }
        let mut hits = self.vars.iter().enumerate().filter(|(_, v)| v.name.rsplit('.').next() == Some(name));
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// The states' initial values, in `states` order.
    pub fn initial_state(&self) -> Vec<f64> {
        self.values_of(&self.states)
    }

    /// The parameters' values, in `params` order.
    pub fn param_values(&self) -> Vec<f64> {
        self.values_of(&self.params)
    }

    /// The given values of the variables `ids` (states' initial values, parameters' values).
    fn values_of(&self, ids: &[usize]) -> Vec<f64> {
        ids.iter()
            .map(|&i| match self.vars[i].kind {
                Kind::State { initial: x } | Kind::Param { value: x } => x,
                Kind::Algebraic => unreachable!("states and parameters have values"),
            })
            .collect()
    }

    /// Every variable's value at time `t` for this state and these parameters (in `states` and `params` order).
    pub fn values(&self, t: f64, state: &[f64], params: &[f64]) -> Vec<f64> {
        let mut vals = vec![f64::NAN; self.vars.len()];
        for (&i, &v) in self.states.iter().zip(state) {
            vals[i] = v;
        }
        for (&i, &v) in self.params.iter().zip(params) {
            vals[i] = v;
        }
        for (i, e) in &self.algebraic {
            vals[*i] = e.eval(&vals, t);
        }
        vals
    }

    /// Whether the right-hand side reads time (a stimulus protocol does).
    pub fn reads_time(&self) -> bool {
        self.rates.iter().any(Expr::reads_time) || self.algebraic.iter().any(|(_, e)| e.reads_time())
    }

    /// The right-hand side: d state / dt.
    pub fn rates(&self, t: f64, state: &[f64], params: &[f64]) -> Vec<f64> {
        let vals = self.values(t, state, params);
        self.rates.iter().map(|e| e.eval(&vals, t)).collect()
    }
}

/// A gating variable's rate as `a + b·x`: Rush–Larsen advances it exactly
/// over a step with `a` and `b` held, `x ← x + (a + b·x)·(e^{b·dt} − 1)/b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub a: Expr,
    pub b: Expr,
}

impl Equations {
    /// For each state, its [`Gate`] form if it is a gating variable: a rate
    /// linear in the state itself (`α(1−x) − βx`, `(x∞−x)/τ`, …) whose
    /// coefficients read no state but `potential` (the membrane potential,
    /// as Rush and Larsen's scheme and Myokit take it); `None` for the others,
    /// which a Rush–Larsen step advances by forward Euler.
    pub fn gates(&self, potential: Option<usize>) -> Vec<Option<Gate>> {
        // which states each algebraic variable reads, through others
        let n = self.states.len();
        let mut reads: Vec<Vec<bool>> = vec![vec![false; n]; self.vars.len()];
        for (k, &s) in self.states.iter().enumerate() {
            reads[s][k] = true;
        }
        for (v, e) in &self.algebraic {
            let mut r = vec![false; n];
            e.visit_vars(&mut |u| {
                for (a, b) in r.iter_mut().zip(&reads[u]) {
                    *a |= *b;
                }
            });
            reads[*v] = r;
        }
        let defs: std::collections::HashMap<usize, &Expr> = self.algebraic.iter().map(|(v, e)| (*v, e)).collect();
        let reads_state = |e: &Expr, k: usize| {
            let mut hit = false;
            e.visit_vars(&mut |u| hit |= reads[u][k]);
            hit
        };
        self.states
            .iter()
            .enumerate()
            .map(|(k, &x)| {
                let (a, b) = Linear { x, k, reads: &reads, defs: &defs, calls: 0 }.split(&self.rates[k], 0)?;
                if b == Expr::Num(0.0) {
                    return None;
                }
                let others = (0..n).filter(|&j| j != k && Some(self.states[j]) != potential);
                for j in others {
                    if reads_state(&a, j) || reads_state(&b, j) {
                        return None;
                    }
                }
                Some(Gate { a, b })
            })
            .collect()
    }

    /// The membrane potential: the state named `V`, `Vm`, `V_m` or `v` (one of
    /// them) whose units are not dimensionless, if any (FitzHugh–Nagumo's
    /// dimensionless `v` is its recovery variable).
    pub fn potential(&self) -> Option<usize> {
        let mut hits = self
            .states
            .iter()
            .copied()
            .filter(|&s| matches!(self.vars[s].name.rsplit('.').next(), Some("V" | "Vm" | "V_m" | "v")) && self.vars[s].units != "dimensionless");
        match (hits.next(), hits.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        }
    }
}

/// Splits rates into `a + b·x` for the variable `x` (state number `k`),
/// with `a` and `b` free of `x`, inlining algebraic variables that read it.
/// The work is bounded (files are untrusted: a chain of variables each
/// reading the last twice would double at every link): past [`Linear::DEPTH`]
/// nested inlinings or [`Linear::CALLS`] steps the rate counts as not linear,
/// so the state is advanced by Euler.
struct Linear<'a> {
    x: usize,
    k: usize,
    reads: &'a [Vec<bool>],
    defs: &'a std::collections::HashMap<usize, &'a Expr>,
    calls: usize,
}

impl Linear<'_> {
    const DEPTH: usize = 256;
    const CALLS: usize = 100_000;

    fn depends(&self, e: &Expr) -> bool {
        let mut hit = false;
        e.visit_vars(&mut |u| hit |= u == self.x || self.reads[u][self.k]);
        hit
    }

    /// `e` as `(a, b)`; `None` where `e` is not linear in `x` (or the bound is reached).
    fn split(&mut self, e: &Expr, depth: usize) -> Option<(Expr, Expr)> {
        self.calls += 1;
        if depth > Self::DEPTH || self.calls > Self::CALLS {
            return None;
        }
        let zero = || Expr::Num(0.0);
        if !self.depends(e) {
            return Some((e.clone(), zero()));
        }
        let sum = |terms: Vec<Expr>| -> Expr {
            let terms: Vec<Expr> = terms.into_iter().filter(|t| *t != Expr::Num(0.0)).collect();
            match terms.len() {
                0 => Expr::Num(0.0),
                1 => terms.into_iter().next().unwrap(),
                _ => Expr::Call(Func::Add, terms),
            }
        };
        let d = depth + 1;
        match e {
            Expr::Var(v) if *v == self.x => Some((zero(), Expr::Num(1.0))),
            Expr::Var(v) => {
                let def = *self.defs.get(v)?;
                self.split(def, d)
            }
            Expr::Call(Func::Add, args) => {
                let parts: Vec<(Expr, Expr)> = args.iter().map(|a| self.split(a, d)).collect::<Option<_>>()?;
                let (a, b): (Vec<Expr>, Vec<Expr>) = parts.into_iter().unzip();
                Some((sum(a), sum(b)))
            }
            Expr::Call(f @ (Func::Sub | Func::Neg), args) => {
                let parts: Vec<(Expr, Expr)> = args.iter().map(|a| self.split(a, d)).collect::<Option<_>>()?;
                let neg = |e: Expr| if e == Expr::Num(0.0) { e } else { Expr::Call(Func::Neg, vec![e]) };
                if parts.len() == 1 || *f == Func::Neg {
                    let (a, b) = parts.into_iter().next()?;
                    return Some((neg(a), neg(b)));
                }
                let mut it = parts.into_iter();
                let ((a0, b0), (a1, b1)) = (it.next()?, it.next()?);
                Some((sum(vec![a0, neg(a1)]), sum(vec![b0, neg(b1)])))
            }
            Expr::Call(Func::Mul, args) => {
                // one factor may depend on x
                let mut dependent = args.iter().enumerate().filter(|(_, a)| self.depends(a));
                let (i, factor) = dependent.next()?;
                if dependent.next().is_some() {
                    return None;
                }
                let (a, b) = self.split(factor, d)?;
                let others: Vec<Expr> = args.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, a)| a.clone()).collect();
                let times = |e: Expr| if e == Expr::Num(0.0) { e } else { Expr::Call(Func::Mul, others.iter().cloned().chain([e]).collect()) };
                Some((times(a), times(b)))
            }
            Expr::Call(Func::Div, args) if !self.depends(&args[1]) => {
                let (a, b) = self.split(&args[0], d)?;
                let over = |e: Expr| if e == Expr::Num(0.0) { e } else { Expr::Call(Func::Div, vec![e, args[1].clone()]) };
                Some((over(a), over(b)))
            }
            Expr::Piecewise(pieces, otherwise) if pieces.iter().all(|(_, c)| !self.depends(c)) => {
                let mut pa = Vec::new();
                let mut pb = Vec::new();
                for (v, c) in pieces {
                    let (a, b) = self.split(v, d)?;
                    pa.push((a, c.clone()));
                    pb.push((b, c.clone()));
                }
                let (oa, ob) = self.split(otherwise, d)?;
                Some((Expr::Piecewise(pa, Box::new(oa)), Expr::Piecewise(pb, Box::new(ob))))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of variables each reading the last twice (a file from
    /// anyone can hold one): finding gates stays bounded, the rate counts as
    /// not linear (its state advanced by Euler), and the rate still evaluates.
    #[test]
    fn gate_search_is_bounded() {
        let links = 80;
        let mut vars = vec![Variable { name: "c.x".into(), units: "1".into(), kind: Kind::State { initial: 1.0 } }];
        let mut algebraic = Vec::new();
        for i in 1..=links {
            vars.push(Variable { name: format!("c.a{i}"), units: "1".into(), kind: Kind::Algebraic });
            let prev = if i == 1 { 0 } else { i - 1 };
            algebraic.push((i, Expr::Call(Func::Add, vec![Expr::Var(prev), Expr::Var(prev)])));
        }
        let eq = Equations { name: "chain".into(), time: ("c.t".into(), "1".into()), vars, states: vec![0], rates: vec![Expr::Var(links)], params: vec![], algebraic };
        // unbounded, this would take 2^80 steps
        assert_eq!(eq.gates(None), vec![None]);
        assert_eq!(eq.rates(0.0, &[1.0], &[]), vec![2f64.powi(links as i32)]);
        // a short chain is still found linear: 2^4·x
        let mut short = eq.clone();
        short.rates = vec![Expr::Var(4)];
        assert_eq!(short.gates(None).len(), 1);
        let g = short.gates(None)[0].clone().expect("linear in x");
        assert_eq!(g.b.eval(&short.values(0.0, &[3.0], &[]), 0.0), 16.0);
    }
}
