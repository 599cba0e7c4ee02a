//! Solvers of imported models, forward Euler or Rush–Larsen in f64: the
//! scalar reference ([`solve`]: the equation IR evaluated one cell at a
//! time) and the fast path ([`solve_cells`]: the compiled [`Program`] over
//! blocks of cells in SIMD lanes, blocks over threads, interpreted or as
//! generated native code ([`Exec`]), bit for bit the same), tested against it.
//! On the GPU ([`solve_cuda`]) the same program runs as generated CUDA C,
//! one thread per cell. The time of step `n` is `n·dt` (not a running sum)
//! in all of them, so a stimulus edge falls on the same step however long the run.

use cudarc::nvrtc::{CompileOptions, Ptx};
use rayon::prelude::*;

use crate::cell::equations::{Equations, Gate};
use crate::cell::program::{cuda_source, exp_block, Program};
use crate::isa::Isa;
use crate::solve::native::Native;
pub use crate::solve::Scheme;
use crate::solve::{Cells, TimeGrid, Trajectories};
use crate::Error;

/// Each state's Rush–Larsen form under `scheme` (none under Euler).
fn gates(eq: &Equations, scheme: Scheme) -> Vec<Option<Gate>> {
    match scheme {
        Scheme::Euler => vec![None; eq.states.len()],
        Scheme::RushLarsen => eq.gates(eq.potential()),
    }
}

/// The scheme's per-state update rules for a model, on the IR.
struct Stepper<'a> {
    eq: &'a Equations,
    gates: Vec<Option<Gate>>,
}

impl<'a> Stepper<'a> {
    fn new(eq: &'a Equations, scheme: Scheme) -> Self {
        Stepper { eq, gates: gates(eq, scheme) }
    }

    /// One step from time `t`.
    fn step(&self, t: f64, dt: f64, x: &mut [f64], params: &[f64]) {
        let vals = self.eq.values(t, x, params);
        let rates: Vec<f64> = self.eq.rates.iter().map(|e| e.eval(&vals, t)).collect();
        for (k, xk) in x.iter_mut().enumerate() {
            *xk = match &self.gates[k] {
                Some(g) => {
                    let (a, b) = (g.a.eval(&vals, t), g.b.eval(&vals, t));
                    if b == 0.0 {
                        *xk + dt * a
                    } else {
                        *xk + (a + b * *xk) * (b * dt).exp_m1() / b
                    }
                }
                None => *xk + dt * rates[k],
            };
        }
    }
}

/// The states at every sample of `grid` (`[sample][state]`), from `initial`
/// with `params` (in the order of `eq.states` and `eq.params`).
pub fn solve(eq: &Equations, scheme: Scheme, grid: &TimeGrid, initial: &[f64], params: &[f64]) -> Result<Vec<Vec<f64>>, Error> {
    if initial.len() != eq.states.len() || params.len() != eq.params.len() {
        return Err(Error::invalid("cells", format!("{} initial values and {} parameters for a model of {} states and {} parameters", initial.len(), params.len(), eq.states.len(), eq.params.len()), "give one value for each"));
    }
    let stepper = Stepper::new(eq, scheme);
    let mut x = initial.to_vec();
    let mut out = Vec::with_capacity(grid.n_samples);
    let mut n = 0usize;
    for s in 0..grid.n_samples {
        if s > 0 {
            for _ in 0..grid.steps_per_sample {
                stepper.step(n as f64 * grid.dt, grid.dt, &mut x, params);
                n += 1;
            }
        }
        out.push(x.clone());
    }
    Ok(out)
}

/// Cells per block: registers of this many lanes. Wide blocks spread the
/// cost of dispatching an instruction over more cells (measured on Luo–Rudy
/// 1991, one Zen 4 core: 32 cells 7.9e6 cell-steps/s, 64 9.5e6, 128 1.15e7,
/// 256 1.21e7); fewer than that many cells take narrow blocks, so a run of
/// a few cells does not pay for 128. Lanes never mix, so a cell's result is
/// the same at either width. Both are multiples of the native step's cells
/// ([`crate::cell::c_source::groups`] · 8, at most 64).
const BLOCK: usize = 128;
const NARROW: usize = 64;

/// How the compiled program runs on the CPU. The results are the same bit
/// for bit; only the speed differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exec {
    /// Generated C built with the host's compiler ([`Native`]): values in
    /// registers through a step, states through many (Luo–Rudy 1991 about
    /// 1.3× the interpreter, FHN 7×), after a build of a second or two.
    Native,
    /// excite's interpreter: one vectorised loop over a block per instruction.
    Interpreted,
}

/// Cell-steps from which a solve builds the native step when no earlier
/// build of the same program is at hand: the build (about 1.7 s for
/// Luo–Rudy 1991 with gcc) costs what the interpreter does in ~1e8.
const BUILD_NATIVE_FROM: f64 = 1e8;

/// Every cell of `cells` on `threads` threads (0: all cores) with the
/// compiled program: `Trajectories` of every state at every sample. Runs
/// the native step where one is built already (this process or the disk
/// cache) or the work repays building it, else the interpreter.
pub fn solve_cells(eq: &Equations, scheme: Scheme, grid: &TimeGrid, cells: &Cells, threads: usize) -> Result<Trajectories<f64>, Error> {
    cells.check_shape(&eq.name, eq.states.len(), eq.params.len())?;
    let program = program(eq, scheme);
    let work = cells.n as f64 * grid.total_steps() as f64;
    let native = Native::find(&program, work >= BUILD_NATIVE_FROM).and_then(Result::ok);
    run_cells(&program, eq, grid, cells, threads, native.as_deref())
}

/// [`solve_cells`] run as `exec` says: an error where the native step
/// cannot be built (naming why: no compiler, say).
pub fn solve_cells_by(exec: Exec, eq: &Equations, scheme: Scheme, grid: &TimeGrid, cells: &Cells, threads: usize) -> Result<Trajectories<f64>, Error> {
    cells.check_shape(&eq.name, eq.states.len(), eq.params.len())?;
    let program = program(eq, scheme);
    let native = match exec {
        Exec::Native => Some(Native::get(&program)?),
        Exec::Interpreted => None,
    };
    run_cells(&program, eq, grid, cells, threads, native.as_deref())
}

fn run_cells(program: &Program, eq: &Equations, grid: &TimeGrid, cells: &Cells, threads: usize, native: Option<&Native>) -> Result<Trajectories<f64>, Error> {
    let mut out = output(eq, grid, cells.n)?;
    let wide = cells.n >= BLOCK;
    let n_blocks = cells.n.div_ceil(if wide { BLOCK } else { NARROW });
    let dest = OutPtr(out.data.as_mut_ptr());
    let isa = Isa::best();
    let run = || {
        (0..n_blocks).into_par_iter().for_each(|b| {
            // SAFETY: block `b` writes only its own cells of `out`, which
            // no other block touches and which outlives the loop
            unsafe {
                match (native, wide) {
                    (Some(native), true) => block_native::<BLOCK>(native, program, grid, cells, b, dest),
                    (Some(native), false) => block_native::<NARROW>(native, program, grid, cells, b, dest),
                    (None, true) => block_for::<BLOCK>(isa, program, grid, cells, b, dest),
                    (None, false) => block_for::<NARROW>(isa, program, grid, cells, b, dest),
                }
            }
        })
    };
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    }
    Ok(out)
}

/// Room for every state of `n` cells at every sample, or an error naming the
/// size where the memory cannot be had (rather than an abort).
fn output(eq: &Equations, grid: &TimeGrid, n: usize) -> Result<Trajectories<f64>, Error> {
    let data = zeros(eq.states.len(), grid.n_samples, n).ok_or_else(|| {
        let gb = eq.states.len() as f64 * grid.n_samples as f64 * n as f64 * 8.0 / 1e9;
        Error::invalid("cells", format!("{n} cells × {} samples × {} states of `{}` need {gb:.3e} GB for the solution", grid.n_samples, eq.states.len(), eq.name), "solve fewer cells or store fewer samples at a time")
    })?;
    Ok(Trajectories { n_state: eq.states.len(), n_samples: grid.n_samples, n_cells: n, data })
}

/// `a·b·c` zeros, or `None` where that overflows or cannot be allocated.
fn zeros(a: usize, b: usize, c: usize) -> Option<Vec<f64>> {
    let len = a.checked_mul(b)?.checked_mul(c)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0.0);
    Some(v)
}

/// Block `b`'s register file (`W` lanes) with constants, initial states and
/// parameters set and the setup run, and how many of its lanes are cells (a
/// partial last block is padded with its last cell).
fn block_registers<const W: usize>(p: &Program, c: &Cells, b: usize) -> (Vec<f64>, usize) {
    let first = b * W;
    let valid = W.min(c.n - first);
    let mut regs = vec![0.0f64; p.n_regs * W];
    for &(r, v) in &p.consts {
        regs[r as usize * W..(r as usize + 1) * W].fill(v);
    }
    for (cols, regs_of) in [(&c.init, &p.states), (&c.params, &p.params)] {
        for (col, &r) in cols.iter().zip(regs_of) {
            for k in 0..W {
                regs[r as usize * W + k] = col.get(first + k.min(valid - 1));
            }
        }
    }
    p.run_setup::<W>(&mut regs);
    (regs, valid)
}

/// The program of `eq` under `scheme`: what every path runs.
pub fn program(eq: &Equations, scheme: Scheme) -> Program {
    Program::compile(eq, &gates(eq, scheme))
}

/// The register file of every cell of `cells` after `p`'s setup (`n_regs ×
/// n`, register-major): what the CUDA kernel ([`cuda_source`]) takes as
/// `regs0`, the setup done on the CPU block by block.
pub fn cuda_registers(eq: &Equations, p: &Program, cells: &Cells) -> Result<Vec<f64>, Error> {
    cells.check_shape(&eq.name, eq.states.len(), eq.params.len())?;
    let n = cells.n;
    let mut regs0 = zeros(p.n_regs, n, 1).ok_or_else(|| Error::invalid("cells", format!("{n} cells of `{}` do not fit in this machine's memory", eq.name), "solve fewer cells at a time"))?;
    for b in 0..n.div_ceil(NARROW) {
        let (regs, valid) = block_registers::<NARROW>(p, cells, b);
        for r in 0..p.n_regs {
            regs0[r * n + b * NARROW..r * n + b * NARROW + valid].copy_from_slice(&regs[r * NARROW..r * NARROW + valid]);
        }
    }
    Ok(regs0)
}

/// The CUDA kernel of `eq` under `scheme` ([`cuda_source`]) compiled to PTX
/// for `arch` (`compute_90`; `None`: NVRTC's default). Needs NVRTC, not a GPU.
pub fn compile_cuda(eq: &Equations, scheme: Scheme, arch: Option<&'static str>) -> Result<Ptx, Error> {
    // no contraction into FMA: the operations the program does, as on the CPU
    let opts = CompileOptions { arch, fmad: Some(false), name: Some(format!("{}.cu", eq.name)), ..Default::default() };
    crate::gpu::compile(cuda_source(&program(eq, scheme)), opts, &format!("the CUDA kernel of imported model `{}`", eq.name), "this is a bug in excite's CUDA generator; solve on the CPU meanwhile")
}

/// Every cell on GPU 0, one thread per cell, in f64 ([`compile_cuda`]'s kernel).
pub fn solve_cuda(eq: &Equations, scheme: Scheme, grid: &TimeGrid, cells: &Cells) -> Result<Trajectories<f64>, Error> {
    use cudarc::driver::{LaunchConfig, PushKernelArg};
    let n = cells.n;
    // the cells checked and set up, and the solution's room in host memory
    // known to fit, before the GPU works
    let regs0 = cuda_registers(eq, &program(eq, scheme), cells)?;
    let mut solution = output(eq, grid, n)?;
    let ptx = compile_cuda(eq, scheme, None)?;
    let ctx = crate::gpu::context("cuda", "run on a machine with an NVIDIA GPU and driver, or solve on the CPU")?;
    let err = |what: &'static str| move |e: cudarc::driver::DriverError| Error::unavailable("cuda", format!("{what}: {e:?}"), "check the GPU with nvidia-smi");
    let stream = ctx.default_stream();
    let module = ctx.load_module(ptx).map_err(err("loading the kernel"))?;
    let f = module.load_function("imported").map_err(err("loading the kernel"))?;
    let regs_dev = stream.clone_htod(&regs0).map_err(err("copying cells to the GPU"))?;
    let mut out = stream.alloc_zeros::<f64>(solution.data.len()).map_err(err("allocating the output"))?;
    let (w, samples, steps, dt) = (n as i64, grid.n_samples as i32, grid.steps_per_sample as i32, grid.dt);
    let mut launch = stream.launch_builder(&f);
    launch.arg(&regs_dev).arg(&mut out).arg(&w).arg(&samples).arg(&steps).arg(&dt);
    let threads = 128u32;
    let cfg = LaunchConfig { grid_dim: ((n as u32).div_ceil(threads), 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: the kernel's parameters are exactly these, in this order, and
    // its buffers hold n_regs·n and states·samples·n doubles
    unsafe { launch.launch(cfg) }.map_err(err("running the kernel"))?;
    stream.memcpy_dtoh(&out, &mut solution.data).map_err(err("copying the result back"))?;
    stream.synchronize().map_err(err("copying the result back"))?;
    Ok(solution)
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f64);
// SAFETY: blocks write disjoint ranges (see `solve_cells`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

unsafe fn block_for<const W: usize>(isa: Isa, p: &Program, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    // the x86 variants exist only where the CPU runs them (`Isa`'s proof)
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(_) => block_avx512::<W>(p, g, c, b, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma(_) => block_avx2::<W>(p, g, c, b, out),
        _ => block::<W>(p, g, c, b, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512<const W: usize>(p: &Program, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    block::<W>(p, g, c, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<const W: usize>(p: &Program, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    block::<W>(p, g, c, b, out)
}

/// One block of `W` cells through the whole grid with the native step.
unsafe fn block_native<const W: usize>(native: &Native, p: &Program, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    let first = b * W;
    let (mut regs, valid) = block_registers::<W>(p, c, b);
    let mut n = 0usize;
    for s in 0..g.n_samples {
        if s > 0 {
            native.run(p, &mut regs, W, n, g.steps_per_sample, g.dt);
            n += g.steps_per_sample;
        }
        store_sample::<W>(p, &regs, g, c, s, first, valid, out);
    }
}

/// A block's states (registers of `W` lanes, `valid` of them cells from
/// cell `first` on) copied to sample `s` of the output.
///
/// # Safety
/// `out` holds every state at every sample of `c.n` cells, and these cells are the caller's alone.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_sample<const W: usize>(p: &Program, regs: &[f64], g: &TimeGrid, c: &Cells, s: usize, first: usize, valid: usize, out: OutPtr) {
    for (k, &x) in p.states.iter().enumerate() {
        let at = (k * g.n_samples + s) * c.n + first;
        std::ptr::copy_nonoverlapping(regs[x as usize * W..].as_ptr(), out.0.add(at), valid);
    }
}

/// One block of `W` cells through the whole grid (a partial last block
/// padded with its last cell, so no cell's result depends on where blocks fall).
#[inline(always)]
unsafe fn block<const W: usize>(p: &Program, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    let first = b * W;
    let (mut regs, valid) = block_registers::<W>(p, c, b);
    let lanes = |regs: &mut [f64], r: u32| -> *mut f64 { regs[r as usize * W..].as_mut_ptr() };
    let dt = g.dt;
    let mut factor = [0.0f64; W];
    let mut n = 0usize;
    for s in 0..g.n_samples {
        if s > 0 {
            for _ in 0..g.steps_per_sample {
                regs[p.time as usize * W..(p.time as usize + 1) * W].fill(n as f64 * dt);
                p.run::<W>(&mut regs);
                for (k, &x) in p.states.iter().enumerate() {
                    let xs = std::slice::from_raw_parts_mut(lanes(&mut regs, x), W);
                    match p.gates[k] {
                        // x + (a + b·x)·(e^{b·dt} − 1)/b, e^{b·dt} − 1 as exp − 1 (Myokit's form, x∞ + (x − x∞)·e^{−dt/τ}, rounds the same way)
                        Some((ra, rb)) => {
                            let a = std::slice::from_raw_parts(lanes(&mut regs, ra), W);
                            let bb = std::slice::from_raw_parts(lanes(&mut regs, rb), W);
                            for i in 0..W {
                                factor[i] = bb[i] * dt;
                            }
                            exp_block(&mut factor);
                            for i in 0..W {
                                let rate = a[i] + bb[i] * xs[i];
                                xs[i] = if bb[i] == 0.0 { xs[i] + dt * a[i] } else { xs[i] + rate * (factor[i] - 1.0) / bb[i] };
                            }
                        }
                        None => {
                            let rate = std::slice::from_raw_parts(lanes(&mut regs, p.rates[k]), W);
                            for i in 0..W {
                                xs[i] += dt * rate[i];
                            }
                        }
                    }
                }
                n += 1;
            }
        }
        store_sample::<W>(p, &regs, g, c, s, first, valid, out);
    }
}
