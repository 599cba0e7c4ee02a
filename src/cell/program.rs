//! The executable form of an imported model's equations: a straight-line
//! program over registers, each register a block of cells, compiled once
//! from the [`Equations`] IR. Evaluating an instruction is one loop over the
//! block, which the compiler turns into vector instructions, so the cost of
//! interpreting is paid once per block rather than once per cell. The
//! exponential, which dominates gating kinetics, has a branch-free form
//! ([`exp_block`]) that vectorises too; the other functions call libm lane by lane.

use std::collections::HashMap;

use crate::cell::equations::{Equations, Expr, Func, Gate};

/// One instruction: `dst = op(args)`; the destination is never one of its operands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ins {
    Call(Func, u32, [u32; 2]),
    /// `dst = f(a, k)`, or `f(k, a)` when the flag is set: a constant operand, broadcast.
    CallK(Func, u32, u32, f64, bool),
    /// `dst = if cond ≠ 0 { a } else { b }`
    Select(u32, u32, u32, u32),
    /// `dst = exp(a · b)`: a product only an exponential reads, in one pass.
    MulExp(u32, [u32; 2]),
    /// `dst = exp(k · a)`
    MulKExp(u32, u32, f64),
}

impl Ins {
    /// Its destination and the registers it reads.
    fn operands(&self) -> (u32, Vec<u32>) {
        match *self {
            Ins::Call(_, d, [a, b]) | Ins::MulExp(d, [a, b]) => (d, vec![a, b]),
            Ins::CallK(_, d, a, _, _) | Ins::MulKExp(d, a, _) => (d, vec![a]),
            Ins::Select(d, c, a, b) => (d, vec![c, a, b]),
        }
    }
}

/// A compiled model: its registers, code, and where states, parameters,
/// time, rates and gate coefficients live.
#[derive(Debug, Clone)]
pub struct Program {
    pub n_regs: usize,
    /// Registers holding constants, with their values.
    pub consts: Vec<(u32, f64)>,
    pub states: Vec<u32>,
    pub params: Vec<u32>,
    pub time: u32,
    /// Instructions that read only constants and parameters, run once per block.
    pub setup: Vec<Ins>,
    /// The rest, run every step.
    pub code: Vec<Ins>,
    /// Each state's rate.
    pub rates: Vec<u32>,
    /// Each state's Rush–Larsen coefficients `(a, b)` (rate = a + b·x), if it is a gate.
    /// Neither these nor the rates share a register with a state, so the
    /// states may be advanced in place one after another.
    pub gates: Vec<Option<(u32, u32)>>,
}

struct Builder {
    n: u32,
    consts: HashMap<u64, u32>,
    const_list: Vec<(u32, f64)>,
    setup: Vec<Ins>,
    code: Vec<Ins>,
    vars: HashMap<usize, u32>,
    time: u32,
    /// Per register: whether it changes from step to step (reads time or a state).
    varying: Vec<bool>,
    /// Instructions emitted so far, by what they compute: the same computation
    /// twice (a rate and a gate's coefficient often share a term) is done once.
    done: HashMap<InsKey, u32>,
}

/// What an instruction computes, without its destination.
#[derive(PartialEq, Eq, Hash)]
enum InsKey {
    Call(Func, u32, u32),
    Select(u32, u32, u32),
}

impl Builder {
    fn reg(&mut self) -> u32 {
        self.n += 1;
        self.varying.push(false);
        self.n - 1
    }

    /// Appends `ins` writing `d` from `args`: to the per-step code if any argument varies, else to the setup.
    fn emit(&mut self, ins: Ins, d: u32, args: &[u32]) {
        let varies = args.iter().any(|&a| self.varying[a as usize]);
        self.varying[d as usize] = varies;
        if varies {
            self.code.push(ins);
        } else {
            self.setup.push(ins);
        }
    }

    fn constant(&mut self, v: f64) -> u32 {
        if let Some(&r) = self.consts.get(&v.to_bits()) {
            return r;
        }
        let r = self.reg();
        self.consts.insert(v.to_bits(), r);
        self.const_list.push((r, v));
        r
    }

    fn call(&mut self, f: Func, a: u32, b: u32) -> u32 {
        let key = InsKey::Call(f, a, b);
        if let Some(&d) = self.done.get(&key) {
            return d;
        }
        let d = self.reg();
        self.done.insert(key, d);
        // a varying operand beside a constant: the constant as an immediate
        let konst = |r: u32| self.const_list.iter().find(|c| c.0 == r).map(|c| c.1);
        let binary = !matches!(f, Func::Neg | Func::Exp | Func::Ln | Func::Log10 | Func::Floor | Func::Ceil | Func::Abs | Func::Sqrt | Func::Sin | Func::Cos | Func::Tan | Func::Asin | Func::Acos | Func::Atan | Func::Sinh | Func::Cosh | Func::Tanh | Func::Not);
        let ins = match (binary, konst(a), konst(b)) {
            (true, None, Some(k)) if self.varying[a as usize] => Some(Ins::CallK(f, d, a, k, false)),
            (true, Some(k), None) if self.varying[b as usize] => Some(Ins::CallK(f, d, b, k, true)),
            _ => None,
        };
        match ins {
            Some(ins @ Ins::CallK(_, _, x, _, _)) => self.emit(ins, d, &[x]),
            _ => self.emit(Ins::Call(f, d, [a, b]), d, &[a, b]),
        }
        d
    }

    /// Emits `e`, in the order [`Expr::eval`] computes it (so the results
    /// agree to the last bit but for `exp`, `ln` and the small powers).
    fn expr(&mut self, e: &Expr) -> u32 {
        match e {
            Expr::Num(v) => self.constant(*v),
            Expr::Var(i) => self.vars[i],
            Expr::Time => self.time,
            Expr::Piecewise(pieces, otherwise) => {
                let mut acc = self.expr(otherwise);
                for (v, c) in pieces.iter().rev() {
                    let (v, c) = (self.expr(v), self.expr(c));
                    let key = InsKey::Select(c, v, acc);
                    acc = match self.done.get(&key) {
                        Some(&d) => d,
                        None => {
                            let d = self.reg();
                            self.done.insert(key, d);
                            self.emit(Ins::Select(d, c, v, acc), d, &[c, v, acc]);
                            d
                        }
                    };
                }
                acc
            }
            // a sum's negated terms taken away instead (a + (−b) is a − b
            // to the bit in IEEE arithmetic): one operation fewer each
            Expr::Call(Func::Add, args) => {
                let first = self.expr(&args[0]);
                args[1..].iter().fold(first, |acc, a| match a {
                    Expr::Call(Func::Neg, neg) | Expr::Call(Func::Sub, neg) if neg.len() == 1 => {
                        let b = self.expr(&neg[0]);
                        self.call(Func::Sub, acc, b)
                    }
                    _ => {
                        let b = self.expr(a);
                        self.call(Func::Add, acc, b)
                    }
                })
            }
            Expr::Call(f, args) => {
                let regs: Vec<u32> = args.iter().map(|a| self.expr(a)).collect();
                match (f, regs.len()) {
                    // sums and products left to right from the first term, as eval folds them
                    (Func::Mul, _) => regs[1..].iter().fold(regs[0], |acc, &r| self.call(*f, acc, r)),
                    (Func::And | Func::Or | Func::Xor, _) => {
                        let mut acc = regs[0];
                        // `x ≠ 0` as 0/1 first, so the chain sees truth values
                        let zero = self.constant(0.0);
                        acc = self.call(Func::Ne, acc, zero);
                        for &r in &regs[1..] {
                            let t = self.call(Func::Ne, r, zero);
                            acc = self.call(*f, acc, t);
                        }
                        acc
                    }
                    (Func::Sub, 1) => self.call(Func::Neg, regs[0], regs[0]),
                    // small whole and half powers by products and square roots
                    (Func::Pow, 2) => match args[1] {
                        Expr::Num(e) if e == 2.0 || e == 3.0 || e == 4.0 => {
                            let x = regs[0];
                            let sq = self.call(Func::Mul, x, x);
                            match e as u32 {
                                2 => sq,
                                3 => self.call(Func::Mul, sq, x),
                                _ => self.call(Func::Mul, sq, sq),
                            }
                        }
                        Expr::Num(0.5) => self.call(Func::Sqrt, regs[0], regs[0]),
                        Expr::Num(1.0) => regs[0],
                        _ => self.call(Func::Pow, regs[0], regs[1]),
                    },
                    (_, 1) => self.call(*f, regs[0], regs[0]),
                    (_, _) => self.call(*f, regs[0], regs[1]),
                }
            }
        }
    }
}

impl Program {
    /// Compiles `eq`; with `gates` (from [`Equations::gates`]) also each gate's coefficients.
    pub fn compile(eq: &Equations, gates: &[Option<Gate>]) -> Program {
        let mut b = Builder { n: 0, consts: HashMap::new(), const_list: Vec::new(), setup: Vec::new(), code: Vec::new(), vars: HashMap::new(), time: 0, varying: Vec::new(), done: HashMap::new() };
        b.time = b.reg();
        b.varying[b.time as usize] = true;
        let states: Vec<u32> = eq.states.iter().map(|&s| {
            let r = b.reg();
            b.varying[r as usize] = true;
            b.vars.insert(s, r);
            r
        }).collect();
        let params: Vec<u32> = eq.params.iter().map(|&p| {
            let r = b.reg();
            b.vars.insert(p, r);
            r
        }).collect();
        for (v, e) in &eq.algebraic {
            let r = b.expr(e);
            b.vars.insert(*v, r);
        }
        let rates: Vec<u32> = eq.rates.iter().map(|e| b.expr(e)).collect();
        let gates: Vec<Option<(u32, u32)>> = gates.iter().map(|g| g.as_ref().map(|g| (b.expr(&g.a), b.expr(&g.b)))).collect();
        // an output that is a state itself (dx/dt = y) gets a copy (y·1, exact):
        // the steps overwrite states in place, and no update may see another's new value
        let own = |b: &mut Builder, r: u32| {
            if states.contains(&r) {
                let one = b.constant(1.0);
                b.call(Func::Mul, r, one)
            } else {
                r
            }
        };
        let rates = rates.into_iter().map(|r| own(&mut b, r)).collect();
        let gates = gates.into_iter().map(|g| g.map(|(x, y)| (own(&mut b, x), own(&mut b, y)))).collect();
        let mut p = Program { n_regs: b.n as usize, consts: b.const_list, states, params, time: b.time, setup: b.setup, code: b.code, rates, gates };
        p.fuse();
        p.allocate();
        p
    }

    /// Folds each product that only an exponential reads into it
    /// ([`Ins::MulExp`]): gating rates are full of `exp(k·(V − V½))`, and the
    /// product's own pass over the block (a store and a load of every lane)
    /// goes. The same operations in the same order, so the same results.
    fn fuse(&mut self) {
        let mut uses = vec![0usize; self.n_regs];
        for ins in self.setup.iter().chain(&self.code) {
            for a in ins.operands().1 {
                uses[a as usize] += 1;
            }
        }
        for &r in self.rates.iter().chain(self.gates.iter().flatten().flat_map(|(a, b)| [a, b])) {
            uses[r as usize] += 1;
        }
        // where each register is made in the per-step code
        let mut made: Vec<Option<usize>> = vec![None; self.n_regs];
        for (i, ins) in self.code.iter().enumerate() {
            made[ins.operands().0 as usize] = Some(i);
        }
        let mut dead = vec![false; self.code.len()];
        for i in 0..self.code.len() {
            let Ins::Call(Func::Exp, d, [x, _]) = self.code[i] else { continue };
            let Some(j) = made[x as usize].filter(|_| uses[x as usize] == 2) else { continue };
            // the exponential reads x twice (as both operands), nothing else reads it
            let fused = match self.code[j] {
                Ins::Call(Func::Mul, _, ab) => Ins::MulExp(d, ab),
                Ins::CallK(Func::Mul, _, a, k, _) => Ins::MulKExp(d, a, k),
                _ => continue,
            };
            self.code[i] = fused;
            dead[j] = true;
        }
        let mut k = 0;
        self.code.retain(|_| {
            k += 1;
            !dead[k - 1]
        });
    }

    /// Renames registers so that one whose value is no longer needed is
    /// reused: the register file shrinks from one register per value to the
    /// most values alive at once, and a block's registers stay in the L1
    /// cache. Time, states, parameters, constants, the setup's results the
    /// steps read, and the rates and gate coefficients keep their own.
    fn allocate(&mut self) {
        const FOREVER: usize = usize::MAX;
        let n = self.n_regs;
        let operands = Ins::operands;
        // last use of each register, in the order setup then code; anything
        // the steps read that the setup made, and the outputs, live forever
        let mut last = vec![0usize; n];
        let mut read = vec![false; n];
        let mut made_in_setup = vec![false; n];
        for ins in &self.setup {
            made_in_setup[operands(ins).0 as usize] = true;
        }
        let order: Vec<&Ins> = self.setup.iter().chain(&self.code).collect();
        for (i, ins) in order.iter().enumerate() {
            for a in operands(ins).1 {
                let a = a as usize;
                read[a] = true;
                last[a] = if i >= self.setup.len() && made_in_setup[a] { FOREVER } else { last[a].max(i) };
            }
        }
        // constants only immediates read need no register (unless they are outputs)
        let outputs: Vec<u32> = self.rates.iter().copied().chain(self.gates.iter().flatten().flat_map(|&(a, b)| [a, b])).collect();
        self.consts.retain(|c| read[c.0 as usize] || outputs.contains(&c.0));
        let pinned: Vec<u32> = [self.time]
            .into_iter()
            .chain(self.states.iter().copied())
            .chain(self.params.iter().copied())
            .chain(self.consts.iter().map(|c| c.0))
            .chain(self.rates.iter().copied())
            .chain(self.gates.iter().flatten().flat_map(|&(a, b)| [a, b]))
            .collect();
        for &r in &pinned {
            last[r as usize] = FOREVER;
            read[r as usize] = true;
        }
        let mut map: Vec<Option<u32>> = vec![None; n];
        let mut next = 0u32;
        for &r in &pinned {
            // an output may be an input itself (a rate that is a parameter)
            if map[r as usize].is_none() {
                map[r as usize] = Some(next);
                next += 1;
            }
        }
        let mut free: Vec<u32> = Vec::new();
        let mut renamed: Vec<Ins> = Vec::with_capacity(order.len());
        for (i, ins) in order.iter().enumerate() {
            let (d, args) = operands(ins);
            let get = |map: &[Option<u32>], r: u32| map[r as usize].expect("read after written");
            let args_now: Vec<u32> = args.iter().map(|&a| get(&map, a)).collect();
            // the destination is taken before operands are freed: never one of them
            let dst = match map[d as usize] {
                Some(p) => p,
                None => {
                    let p = free.pop().unwrap_or_else(|| {
                        next += 1;
                        next - 1
                    });
                    map[d as usize] = Some(p);
                    p
                }
            };
            for &a in &args {
                if last[a as usize] == i {
                    free.push(get(&map, a));
                    last[a as usize] = FOREVER - 1; // freed once
                }
            }
            if !read[d as usize] {
                // written and never read: its register is free at once
                free.push(dst);
            }
            renamed.push(match **ins {
                Ins::Call(f, _, _) => Ins::Call(f, dst, [args_now[0], args_now[1]]),
                Ins::CallK(f, _, _, k, first) => Ins::CallK(f, dst, args_now[0], k, first),
                Ins::Select(..) => Ins::Select(dst, args_now[0], args_now[1], args_now[2]),
                Ins::MulExp(..) => Ins::MulExp(dst, [args_now[0], args_now[1]]),
                Ins::MulKExp(_, _, k) => Ins::MulKExp(dst, args_now[0], k),
            });
        }
        let code = renamed.split_off(self.setup.len());
        self.setup = renamed;
        self.code = code;
        let at = |r: u32| map[r as usize].expect("pinned registers are mapped");
        self.time = at(self.time);
        self.states = self.states.iter().map(|&r| at(r)).collect();
        self.params = self.params.iter().map(|&r| at(r)).collect();
        self.consts = self.consts.iter().map(|&(r, v)| (at(r), v)).collect();
        self.rates = self.rates.iter().map(|&r| at(r)).collect();
        self.gates = self.gates.iter().map(|g| g.map(|(a, b)| (at(a), at(b)))).collect();
        self.n_regs = next as usize;
    }

    /// Runs the setup (once per block, after constants and parameters are set).
    #[inline(always)]
    pub fn run_setup<const W: usize>(&self, regs: &mut [f64]) {
        run::<W>(&self.setup, self.n_regs, regs)
    }

    /// Runs one step's code on a register file of `W` lanes per register
    /// (`regs` holds `n_regs × W` values, register-major), whose constants,
    /// parameters, setup, time and states are already set.
    #[inline(always)]
    pub fn run<const W: usize>(&self, regs: &mut [f64]) {
        run::<W>(&self.code, self.n_regs, regs)
    }
}

#[inline(always)]
fn run<const W: usize>(code: &[Ins], n_regs: usize, regs: &mut [f64]) {
    assert!(regs.len() >= n_regs * W);
    let base = regs.as_mut_ptr();
    for ins in code {
        // SAFETY: registers are in bounds (checked above: every index the
        // compiler made is < n_regs) and an instruction's destination is
        // never one of its operands (`allocate` takes it before freeing them)
        unsafe {
            match *ins {
                Ins::Call(f, d, [a, b]) => {
                    let d = std::slice::from_raw_parts_mut(base.add(d as usize * W), W);
                    let a = std::slice::from_raw_parts(base.add(a as usize * W), W);
                    let b = std::slice::from_raw_parts(base.add(b as usize * W), W);
                    call::<W, _, _>(f, d, a, b);
                }
                Ins::CallK(f, d, a, k, first) => {
                    let d = std::slice::from_raw_parts_mut(base.add(d as usize * W), W);
                    let a = std::slice::from_raw_parts(base.add(a as usize * W), W);
                    if first {
                        call::<W, _, _>(f, d, Splat(k), a);
                    } else {
                        call::<W, _, _>(f, d, a, Splat(k));
                    }
                }
                Ins::Select(d, c, a, b) => {
                    let d = std::slice::from_raw_parts_mut(base.add(d as usize * W), W);
                    let c = std::slice::from_raw_parts(base.add(c as usize * W), W);
                    let a = std::slice::from_raw_parts(base.add(a as usize * W), W);
                    let b = std::slice::from_raw_parts(base.add(b as usize * W), W);
                    for i in 0..W {
                        d[i] = if c[i] != 0.0 { a[i] } else { b[i] };
                    }
                }
                Ins::MulExp(d, [a, b]) => {
                    let d = std::slice::from_raw_parts_mut(base.add(d as usize * W), W);
                    let a = std::slice::from_raw_parts(base.add(a as usize * W), W);
                    let b = std::slice::from_raw_parts(base.add(b as usize * W), W);
                    for i in 0..W {
                        d[i] = a[i] * b[i];
                    }
                    exp_block(d);
                }
                Ins::MulKExp(d, a, k) => {
                    let d = std::slice::from_raw_parts_mut(base.add(d as usize * W), W);
                    let a = std::slice::from_raw_parts(base.add(a as usize * W), W);
                    for i in 0..W {
                        d[i] = a[i] * k;
                    }
                    exp_block(d);
                }
            }
        }
    }
}

/// The CUDA C source of a kernel that solves cells with the compiled program,
/// one thread per cell, every register a local of the thread:
/// `imported(const double *regs0, double *out, long long W, int n_samples,
/// int steps_per_sample, double dt)`, where `regs0` is the register file of
/// all `W` cells after the setup (`n_regs × W`, register-major) and `out`
/// receives each state at each sample (`[state][sample][cell]`). The
/// arithmetic is the program's; `exp` and `log` are CUDA's (within an ulp
/// or two), compiled without contraction into FMA.
pub fn cuda_source(p: &Program) -> String {
    use std::fmt::Write;
    let r = |x: u32| format!("r{x}");
    let mut head = String::new();
    for x in 0..p.n_regs as u32 {
        if x == p.time {
            let _ = writeln!(head, "    double r{x};");
        } else {
            let _ = writeln!(head, "    double r{x} = regs0[{x}LL * W + i];");
        }
    }
    let cuda = CDialect { call: c_call, literal: c_literal, select: |op, x, y, a, b| format!("({x} {} {y}) ? {a} : {b}", c_comparison(op)), exp: "exp", dt: "dt" };
    let mut step = String::new();
    let _ = writeln!(step, "            r{} = (double)n * dt;", p.time);
    for ins in &p.code {
        let (d, e) = cuda.instruction(ins, &r);
        let _ = writeln!(step, "            r{d} = {e};");
    }
    // states advanced in place (no rate or coefficient is a state's register)
    for (k, &x) in p.states.iter().enumerate() {
        let _ = writeln!(step, "            r{x} = {};", cuda.update(p, k, &r));
    }
    let mut store = String::new();
    for (k, &x) in p.states.iter().enumerate() {
        let _ = writeln!(store, "        out[({k}LL * n_samples + s) * W + i] = r{x};");
    }
    format!(
        r#"// generated by excite from a compiled cell model: do not edit
extern "C" __global__ void imported(const double *__restrict__ regs0, double *__restrict__ out, const long long W, const int n_samples, const int steps_per_sample, const double dt) {{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= W) return;
{head}    long long n = 0;
    for (int s = 0; s < n_samples; s++) {{
        if (s > 0) for (int k = 0; k < steps_per_sample; k++, n++) {{
{step}        }}
{store}    }}
}}
"#
    )
}

/// C's operator of a comparison.
fn c_comparison(f: Func) -> &'static str {
    match f {
        Func::Lt => "<",
        Func::Le => "<=",
        Func::Gt => ">",
        Func::Ge => ">=",
        Func::Eq => "==",
        Func::Ne => "!=",
        _ => unreachable!("{f:?} is not a comparison"),
    }
}

/// One instruction as a C expression (CUDA's math functions by their C names).
fn c_call(f: Func, a: &str, b: &str) -> String {
    let truth = |op: &str| format!("(({a}) {op} ({b}) ? 1.0 : 0.0)");
    match f {
        Func::Add => format!("{a} + {b}"),
        Func::Sub => format!("{a} - {b}"),
        Func::Mul => format!("{a} * {b}"),
        Func::Div => format!("{a} / {b}"),
        Func::Neg => format!("-{a}"),
        Func::Pow => format!("pow({a}, {b})"),
        Func::Exp => format!("exp({a})"),
        Func::Ln => format!("log({a})"),
        Func::Lt | Func::Le | Func::Gt | Func::Ge | Func::Eq | Func::Ne => truth(c_comparison(f)),
        // operands are 0/1 here (the compiler compares with 0 first)
        Func::And => format!("{a} * {b}"),
        Func::Or => format!("(({a}) + ({b}) > 0.0 ? 1.0 : 0.0)"),
        Func::Xor => truth("!="),
        Func::Not => format!("(({a}) == 0.0 ? 1.0 : 0.0)"),
        _ => format!("{}({a})", libm_name(f).expect("the rest are libm's functions of one argument")),
    }
}

/// A double as a C (and CUDA C) literal that reads back to the same value:
/// 17 significant digits, and the non-finite ones as quotients.
pub fn c_literal(v: f64) -> String {
    if v.is_nan() {
        "(0.0 / 0.0)".into()
    } else if v.is_infinite() {
        if v > 0.0 { "(1.0 / 0.0)".into() } else { "(-1.0 / 0.0)".into() }
    } else {
        format!("({v:.17e})")
    }
}

/// How a C generator writes the program: the host's vector step
/// ([`crate::cell::c_source`]) and CUDA's scalar kernel ([`cuda_source`])
/// differ only in these, so one copy of each instruction's and each
/// scheme's form serves both.
pub struct CDialect {
    /// One instruction of a function on two operands (the second unused by
    /// functions of one).
    pub call: fn(Func, &str, &str) -> String,
    pub literal: fn(f64) -> String,
    /// `(x op y) ? a : b` for a comparison `op` ([`Func::Eq`], [`Func::Ne`], …): `(op, x, y, a, b)`.
    pub select: fn(Func, &str, &str, &str, &str) -> String,
    /// The exponential's name.
    pub exp: &'static str,
    /// The step size's name.
    pub dt: &'static str,
}

impl CDialect {
    /// Instruction `ins` as its destination register and the expression
    /// it is set to, registers named by `r`.
    pub fn instruction(&self, ins: &Ins, r: &dyn Fn(u32) -> String) -> (u32, String) {
        let (lit, exp) = (self.literal, self.exp);
        match *ins {
            Ins::Call(f, d, [a, b]) => (d, (self.call)(f, &r(a), &r(b))),
            Ins::CallK(f, d, a, k, first) => (d, if first { (self.call)(f, &lit(k), &r(a)) } else { (self.call)(f, &r(a), &lit(k)) }),
            Ins::Select(d, c, a, b) => (d, (self.select)(Func::Ne, &r(c), &lit(0.0), &r(a), &r(b))),
            Ins::MulExp(d, [a, b]) => (d, format!("{exp}({} * {})", r(a), r(b))),
            Ins::MulKExp(d, a, k) => (d, format!("{exp}({} * {})", r(a), lit(k))),
        }
    }

    /// State `k`'s value after a step, from the old states and the step's
    /// rates: forward Euler, or for a gate under Rush–Larsen x + (a +
    /// b·x)·(e^{b·dt} − 1)/b where b ≠ 0 (the interpreter's form).
    pub fn update(&self, p: &Program, k: usize, r: &dyn Fn(u32) -> String) -> String {
        let (x, dt, exp) = (r(p.states[k]), self.dt, self.exp);
        match p.gates[k] {
            Some((a, b)) => {
                let (a, b) = (r(a), r(b));
                (self.select)(Func::Eq, &b, &(self.literal)(0.0), &format!("{x} + {dt} * {a}"), &format!("{x} + ({a} + {b} * {x}) * ({exp}({b} * {dt}) - 1.0) / {b}"))
            }
            None => format!("{x} + {dt} * {}", r(p.rates[k])),
        }
    }
}

/// The C math library's name of a function of one argument that generated
/// code calls as it is (CUDA's device functions have the same names); the
/// interpreter calls Rust's, which are libm's too.
pub fn libm_name(f: Func) -> Option<&'static str> {
    Some(match f {
        Func::Log10 => "log10",
        Func::Floor => "floor",
        Func::Ceil => "ceil",
        Func::Abs => "fabs",
        Func::Sqrt => "sqrt",
        Func::Sin => "sin",
        Func::Cos => "cos",
        Func::Tan => "tan",
        Func::Asin => "asin",
        Func::Acos => "acos",
        Func::Atan => "atan",
        Func::Sinh => "sinh",
        Func::Cosh => "cosh",
        Func::Tanh => "tanh",
        _ => return None,
    })
}

/// An operand of an instruction: a register's lanes, or one constant for all.
trait Operand: Copy {
    fn at(self, i: usize) -> f64;
}

impl Operand for &[f64] {
    #[inline(always)]
    fn at(self, i: usize) -> f64 {
        self[i]
    }
}

#[derive(Clone, Copy)]
struct Splat(f64);

impl Operand for Splat {
    #[inline(always)]
    fn at(self, _: usize) -> f64 {
        self.0
    }
}

#[inline(always)]
fn call<const W: usize, A: Operand, B: Operand>(f: Func, d: &mut [f64], a: A, b: B) {
    let truth = |x: bool| if x { 1.0 } else { 0.0 };
    let d = &mut d[..W];
    macro_rules! each {
        (|$x:ident, $y:ident| $e:expr) => {
            for i in 0..W {
                let ($x, $y) = (a.at(i), b.at(i));
                d[i] = $e;
            }
        };
    }
    match f {
        Func::Add => each!(|x, y| x + y),
        Func::Sub => each!(|x, y| x - y),
        Func::Mul => each!(|x, y| x * y),
        Func::Div => each!(|x, y| x / y),
        Func::Neg => each!(|x, _y| -x),
        Func::Exp => {
            each!(|x, _y| x);
            exp_block(d);
        }
        Func::Pow => each!(|x, y| x.powf(y)),
        Func::Ln => {
            each!(|x, _y| x);
            ln_block(d);
        }
        Func::Log10 => each!(|x, _y| x.log10()),
        Func::Floor => each!(|x, _y| x.floor()),
        Func::Ceil => each!(|x, _y| x.ceil()),
        Func::Abs => each!(|x, _y| x.abs()),
        Func::Sqrt => each!(|x, _y| x.sqrt()),
        Func::Sin => each!(|x, _y| x.sin()),
        Func::Cos => each!(|x, _y| x.cos()),
        Func::Tan => each!(|x, _y| x.tan()),
        Func::Asin => each!(|x, _y| x.asin()),
        Func::Acos => each!(|x, _y| x.acos()),
        Func::Atan => each!(|x, _y| x.atan()),
        Func::Sinh => each!(|x, _y| x.sinh()),
        Func::Cosh => each!(|x, _y| x.cosh()),
        Func::Tanh => each!(|x, _y| x.tanh()),
        Func::Lt => each!(|x, y| truth(x < y)),
        Func::Le => each!(|x, y| truth(x <= y)),
        Func::Gt => each!(|x, y| truth(x > y)),
        Func::Ge => each!(|x, y| truth(x >= y)),
        Func::Eq => each!(|x, y| truth(x == y)),
        Func::Ne => each!(|x, y| truth(x != y)),
        // operands are 0/1 here (the compiler compares with 0 first)
        Func::And => each!(|x, y| x * y),
        Func::Or => each!(|x, y| truth(x + y > 0.0)),
        Func::Xor => each!(|x, y| truth(x != y)),
        Func::Not => each!(|x, _y| truth(x == 0.0)),
    }
}

/// e^x of every element, branch-free so that it vectorises: x = k·ln 2 + r
/// with |r| ≤ ln 2 / 2 (k rounded by adding and taking away 1.5·2^52, ln 2
/// in two parts by fused multiply-adds), e^r by a polynomial of degree 11
/// (Horner's scheme in fused multiply-adds: the fewest operations, which is
/// what bounds a step full of exponentials), times 2^k with one rounding,
/// built in two halves from the exponent bits so that the subnormal range
/// works too (the generated C does it in one instruction where AVX-512 has
/// it: the same value). Within 1 ulp of libm's exp; NaN stays NaN, large
/// arguments give ∞ and 0 as exp does.
#[inline(always)]
pub fn exp_block(v: &mut [f64]) {
    // stage by stage over chunks of LANES values: each stage is several
    // independent vector operations, so the polynomial's dependency chain
    // does not leave the FMA units waiting
    let mut chunks = v.chunks_exact_mut(LANES);
    for c in &mut chunks {
        exp_lanes(c.try_into().expect("LANES long"));
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut pad = [0.0; LANES];
        pad[..rest.len()].copy_from_slice(rest);
        exp_lanes(&mut pad);
        rest.copy_from_slice(&pad[..rest.len()]);
    }
}

/// Values per stage of [`exp_block`] and [`ln_block`]: four AVX-512 vectors.
const LANES: usize = 32;

/// The coefficients of e^r on |r| ≤ ln 2 / 2 from the 11th power down to
/// the 0th: 1 + r + r²·q(r) with q the Chebyshev fit of degree 9 to
/// (e^r − 1 − r)/r² (`scripts/exp_poly.py`: mpmath's `chebyfit` at 50 digits; relative error
/// 1.6e-17 with the coefficients rounded to double, against 7e-15 for the
/// Taylor series of the same degree). The generated C is written from this list.
pub const EXP_POLY: [f64; 12] = [
    2.510038549551032e-08,
    2.7620088445409746e-07,
    2.7557268459997064e-06,
    2.4801521295954376e-05,
    0.00019841269863053618,
    0.0013888888917213717,
    0.008333333333330062,
    0.04166666666662413,
    0.16666666666666669,
    0.5000000000000001,
    1.0,
    1.0,
];

#[inline(always)]
fn exp_lanes(v: &mut [f64; LANES]) {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const SHIFT: f64 = 4_503_599_627_370_496.0 + 1023.0; // 2^52 + the exponent bias
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5·2^52
    let mut k = [0.0; LANES];
    let mut r = [0.0; LANES];
    for i in 0..LANES {
        let c = v[i].clamp(-746.0, 710.0);
        // to the nearest integer, ties to even, by adding and taking away
        // 1.5·2^52 (exact for |x| < 2^51): in any vector width and in
        // generated C alike, where `round` is a call per lane
        k[i] = c.mul_add(LOG2E, ROUND) - ROUND;
        r[i] = k[i].mul_add(-LN2_LO, k[i].mul_add(-LN2_HI, c));
    }
    for i in 0..LANES {
        // each step a fused multiply-add (one rounding: the same on every
        // CPU with FMA, which every dispatched path has)
        let r = r[i];
        let mut p = EXP_POLY[0];
        for &c in &EXP_POLY[1..] {
            p = p.mul_add(r, c);
        }
        // 2^k = 2^k1 · 2^k2 with both halves normal: p·2^k1 is exact, so
        // the product is p·2^k rounded once
        let k1 = (k[i] * 0.5).floor();
        let k2 = k[i] - k1;
        let s1 = f64::from_bits((k1 + SHIFT).to_bits() << 52);
        let s2 = f64::from_bits((k2 + SHIFT).to_bits() << 52);
        let y = p * s1 * s2;
        let xi = v[i];
        v[i] = if xi.is_nan() { xi } else { y };
    }
}

/// ln x of every element, branch-free so that it vectorises: x = 2^e·m
/// with m in [√½, √2), ln m = 2·atanh(s) with s = (m − 1)/(m + 1), |s| <
/// 0.172, by its series to s²³ (truncation below 1e-19), plus e·ln 2 in two
/// parts. Within 2 ulp of libm's ln; ln 0 = −∞, ln of a negative or NaN is
/// NaN, ln ∞ = ∞, subnormals are scaled up first.
#[inline(always)]
pub fn ln_block(v: &mut [f64]) {
    const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const TWO54: f64 = 18_014_398_509_481_984.0;
    // 1/(2k+1) for k = 11 … 1
    const C: [f64; 11] = [1.0 / 23.0, 1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0];
    for x in v.iter_mut() {
        let xi = *x;
        let sub = xi < f64::MIN_POSITIVE;
        let y = if sub { xi * TWO54 } else { xi };
        let bits = y.to_bits();
        // exponent and mantissa in [1, 2), then moved to [√½, √2)
        // the biased exponent as a float without an integer conversion: 2^52 + n − 2^52
        let e = f64::from_bits(((bits >> 52) & 0x7ff) | 0x4330_0000_0000_0000) - (4_503_599_627_370_496.0 + 1023.0);
        let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
        let big = m > std::f64::consts::SQRT_2;
        let m = if big { m * 0.5 } else { m };
        let e = e + if big { 1.0 } else { 0.0 } - if sub { 54.0 } else { 0.0 };
        let s = (m - 1.0) / (m + 1.0);
        let s2 = s * s;
        let mut p = C[0];
        for &c in &C[1..] {
            p = p.mul_add(s2, c);
        }
        let lnm = 2.0 * s + 2.0 * s * s2 * p;
        let r = (e * LN2_LO + lnm) + e * LN2_HI;
        *x = if xi.is_nan() || xi < 0.0 {
            f64::NAN
        } else if xi == 0.0 {
            f64::NEG_INFINITY
        } else if xi == f64::INFINITY {
            f64::INFINITY
        } else {
            r
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_block_is_ln() {
        let mut xs: Vec<f64> = (1..2_000_000).map(|i| (i as f64 * 1.37e-4).powf(7.0) * 1e-9).collect();
        xs.extend([1.0, 2.0, 0.5, std::f64::consts::SQRT_2, 1.0 - 1e-16, 1.0 + 2e-16, 5e-324, 1e-310, 2.2e-308, f64::MAX, 1e300]);
        let mut got = xs.clone();
        ln_block(&mut got);
        for (x, y) in xs.iter().zip(&got) {
            let want = x.ln();
            let ulp = (want.to_bits() as i64 - y.to_bits() as i64).abs();
            assert!(ulp <= 2 || (want - y).abs() < 1e-300, "ln({x}) = {y}, libm {want} ({ulp} ulp)");
        }
        let mut special = [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
        ln_block(&mut special);
        assert_eq!(special[0], f64::NEG_INFINITY);
        assert_eq!(special[1], f64::NEG_INFINITY);
        assert!(special[2].is_nan() && special[3].is_nan() && special[5].is_nan());
        assert_eq!(special[4], f64::INFINITY);
    }

    #[test]
    fn exp_block_is_exp() {
        let mut xs: Vec<f64> = (-7_460_000..=7_100_000).step_by(37).map(|i| i as f64 * 1e-4).collect();
        xs.extend([0.0, -0.0, 1e-300, -1e-300, 709.78, -708.4, -744.0, -745.2, 800.0, -900.0, f64::INFINITY, f64::NEG_INFINITY]);
        let mut got = xs.clone();
        exp_block(&mut got);
        for (x, y) in xs.iter().zip(&got) {
            let want = x.exp();
            let ulp = if want == 0.0 || !want.is_finite() { 0.0 } else { (want.to_bits() as i64 - y.to_bits() as i64).abs() as f64 };
            if want < f64::MIN_POSITIVE {
                assert!((y - want).abs() <= 2.0 * 4.9e-324 * 2f64.powi(1), "exp({x}) = {y}, libm {want}");
            } else {
                assert!(ulp <= 1.0 || (want.is_infinite() && y.is_infinite()), "exp({x}) = {y}, libm {want} ({ulp} ulp)");
            }
        }
        let mut nan = [f64::NAN];
        exp_block(&mut nan);
        assert!(nan[0].is_nan());
    }

    /// The rates `p` computes at time `t` from `states` (a model without
    /// parameters), in four lanes alike.
    fn program_rates(p: &Program, t: f64, states: &[f64]) -> Vec<f64> {
        const W: usize = 4;
        let mut regs = vec![0.0; p.n_regs * W];
        let mut set = |r: u32, v: f64| regs[r as usize * W..(r as usize + 1) * W].fill(v);
        for &(r, c) in &p.consts {
            set(r, c);
        }
        set(p.time, t);
        for (&r, &v) in p.states.iter().zip(states) {
            set(r, v);
        }
        p.run_setup::<W>(&mut regs);
        p.run::<W>(&mut regs);
        p.rates.iter().map(|&r| regs[r as usize * W]).collect()
    }

    /// A sum's negated term (unary minus as CellML writes it, and Neg as
    /// the IR's own rewriting does) is taken away, not negated and added:
    /// one instruction fewer, the rate eval's to the bit.
    #[test]
    fn negated_terms_of_a_sum_are_subtracted() {
        use crate::cell::equations::{Kind, Variable};
        let var = |name: &str| Variable { name: name.into(), units: "1".into(), kind: Kind::State { initial: 0.0 } };
        let call = |f: Func, args: Vec<Expr>| Expr::Call(f, args);
        let eq = Equations {
            name: "sums".into(),
            time: ("t".into(), "1".into()),
            vars: vec![var("c.x"), var("c.y")],
            states: vec![0, 1],
            rates: vec![
                call(Func::Add, vec![call(Func::Mul, vec![Expr::Var(0), Expr::Var(1)]), call(Func::Sub, vec![Expr::Var(1)]), Expr::Time]),
                call(Func::Add, vec![Expr::Var(0), call(Func::Neg, vec![call(Func::Mul, vec![Expr::Var(1), Expr::Var(1)])])]),
            ],
            params: vec![],
            algebraic: vec![],
        };
        let p = Program::compile(&eq, &[None, None]);
        let count = |f: Func| p.code.iter().filter(|i| matches!(i, Ins::Call(g, ..) | Ins::CallK(g, ..) if *g == f)).count();
        assert_eq!((count(Func::Neg), count(Func::Sub), count(Func::Add)), (0, 2, 1), "{:?}", p.code);
        for (t, x, y) in [(0.5, 0.3, 0.7), (1.5, -2.0, 4.0), (0.0, 0.0, 0.0), (0.0, -0.0, 0.0)] {
            let (got, want) = (program_rates(&p, t, &[x, y]), eq.rates(t, &[x, y], &[]));
            for k in 0..2 {
                assert_eq!(got[k].to_bits(), want[k].to_bits(), "rate {k} at t {t}, x {x}, y {y}");
            }
        }
    }

    /// A computation written twice (here e^(0.1·V) in two rates and a
    /// piecewise twice) is compiled once, the product folded into its
    /// exponential, and the program still gives the IR's rates.
    #[test]
    fn repeated_computations_are_compiled_once() {
        use crate::cell::equations::{Kind, Variable};
        let var = |name: &str, kind: Kind| Variable { name: name.into(), units: "1".into(), kind };
        let call = |f: Func, args: Vec<Expr>| Expr::Call(f, args);
        let ev = || call(Func::Exp, vec![call(Func::Mul, vec![Expr::Num(0.1), Expr::Var(0)])]);
        let pulse = || Expr::Piecewise(vec![(Expr::Num(2.0), call(Func::Lt, vec![Expr::Time, Expr::Num(1.0)]))], Box::new(Expr::Num(0.0)));
        let eq = Equations {
            name: "twice".into(),
            time: ("t".into(), "1".into()),
            vars: vec![var("c.v", Kind::State { initial: 0.3 }), var("c.w", Kind::State { initial: 0.5 })],
            states: vec![0, 1],
            rates: vec![call(Func::Add, vec![call(Func::Mul, vec![Expr::Num(2.0), ev()]), pulse()]), call(Func::Sub, vec![ev(), call(Func::Mul, vec![pulse(), Expr::Var(1)])])],
            params: vec![],
            algebraic: vec![],
        };
        let p = Program::compile(&eq, &[None, None]);
        let count = |f: Func| p.code.iter().filter(|i| matches!(i, Ins::Call(g, ..) | Ins::CallK(g, ..) if *g == f)).count();
        // one exponential, with the product only it reads folded into it
        assert_eq!(count(Func::Exp), 0);
        assert_eq!(p.code.iter().filter(|i| matches!(i, Ins::MulKExp(_, _, k) if *k == 0.1)).count(), 1);
        assert_eq!(count(Func::Mul), 2, "2·e^v and the piecewise times w; 0.1·v went into the exponential");
        assert_eq!(p.code.iter().filter(|i| matches!(i, Ins::Select(..))).count(), 1);
        for (t, v, w) in [(0.5, 0.3, 0.5), (1.5, -2.0, 4.0)] {
            let (rates, want) = (program_rates(&p, t, &[v, w]), eq.rates(t, &[v, w], &[]));
            for k in 0..2 {
                let got = rates[k];
                assert!((got - want[k]).abs() <= 4.0 * f64::EPSILON * want[k].abs().max(1.0), "rate {k} at t {t}: {got} vs {}", want[k]);
            }
        }
    }
}
