//! The fast CPU path: blocks of cells advanced together in SIMD registers
//! for all the steps between two samples, blocks spread over threads.
//!
//! Every block, the last partial one too, runs the same lane code (a partial
//! block is padded by repeating its last cell), so a cell's result does not
//! depend on the thread count or on where the block boundaries fall. AVX2/FMA
//! is chosen at run time; elsewhere the same code is compiled portably.

use rayon::prelude::*;

use crate::isa::Isa;
use crate::cell::{CellModel, Lanes, WithModel, Real, MAX_PARAMS, MAX_STATE};
use crate::solve::{Cells, Column, TimeGrid, Trajectories};

/// Cells per block for `isa`: enough registers in flight to cover the FMA
/// latency of a step's dependency chain (AVX-512 has 32 registers, AVX2 16).
pub fn block_cells(isa: Isa) -> usize {
    match isa {
        Isa::Avx512(_) => AVX512_BLOCK,
        Isa::Avx2Fma(_) => AVX2_BLOCK,
        Isa::Portable => 32,
    }
}

/// Solves every cell in f32 with `kernel` (one of [`Isa::available`]) on
/// `threads` threads (0 = all cores).
pub fn solve_with(
    model: &dyn crate::cell::Model,
    grid: &TimeGrid,
    cells: &Cells,
    threads: usize,
    kernel: Isa,
) -> Result<Trajectories<f32>, crate::Error> {
    struct Cpu<'a>(&'a TimeGrid, &'a Cells, usize, Isa);
    impl WithModel for Cpu<'_> {
        type Out = Trajectories<f32>;
        fn call<M: CellModel>(self, m: &M) -> Trajectories<f32> {
            solve(m, self.0, self.1, self.2, self.3)
        }
    }
    crate::cell::with_model(model, Cpu(grid, cells, threads, kernel))
}

/// [`solve_with`] the fastest kernel this CPU runs.
pub fn solve_best(model: &dyn crate::cell::Model, grid: &TimeGrid, cells: &Cells, threads: usize) -> Result<Trajectories<f32>, crate::Error> {
    solve_with(model, grid, cells, threads, Isa::best())
}

pub(crate) fn solve<M: CellModel>(
    model: &M,
    grid: &TimeGrid,
    cells: &Cells,
    threads: usize,
    kernel: Isa,
) -> Trajectories<f32> {
    let mut out = Trajectories::filled(M::N_STATE, grid.n_samples, cells.n, 0.0f32);
    let n_blocks = cells.n.div_ceil(block_cells(kernel));
    let dest = OutPtr(out.data.as_mut_ptr());
    let run = || {
        (0..n_blocks).into_par_iter().with_min_len(4).for_each(|b| {
            // SAFETY: block `b` writes only its own cells of
            // `out`, which no other block touches, and `out` outlives the loop.
            unsafe { solve_block(model, grid, cells, b, dest, kernel) }
        })
    };
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    }
    out
}

/// The instruction set the CPU solver uses on this machine.
pub fn kernel_name() -> &'static str {
    Isa::best().name()
}

const AVX2_BLOCK: usize = 64;
const AVX512_BLOCK: usize = 128;

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: blocks write disjoint ranges (see `solve`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

unsafe fn solve_block<M: CellModel>(
    m: &M,
    g: &TimeGrid,
    c: &Cells,
    b: usize,
    out: OutPtr,
    kernel: Isa,
) {
    // the x86 variants exist only where the CPU runs them (`Isa`'s proof)
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(_) => block_avx512(m, g, c, b, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma(_) => block_avx2_fma(m, g, c, b, out),
        _ => block::<M, 32, false>(m, g, c, b, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512<M: CellModel>(m: &M, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    block::<M, AVX512_BLOCK, true>(m, g, c, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2_fma<M: CellModel>(m: &M, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    block::<M, AVX2_BLOCK, true>(m, g, c, b, out)
}

/// Loads one column into lanes, padding past the last cell with its value.
#[inline(always)]
fn load<const W: usize, const FMA: bool>(
    col: &Column,
    first: usize,
    valid: usize,
) -> Lanes<W, FMA> {
    match col {
        Column::Same(x) => Lanes::splat(*x),
        Column::PerCell(v) => {
            let mut l = [0.0f32; W];
            for (k, x) in l.iter_mut().enumerate() {
                *x = v[first + k.min(valid - 1)] as f32;
            }
            Lanes(l)
        }
    }
}

#[inline(always)]
unsafe fn block<M: CellModel, const W: usize, const FMA: bool>(
    m: &M,
    g: &TimeGrid,
    c: &Cells,
    b: usize,
    out: OutPtr,
) {
    let (n, np) = (M::N_STATE, c.params.len());
    let first = b * W;
    let valid = W.min(c.n - first);
    let zero = Lanes::<W, FMA>::splat(0.0);
    let mut p = [zero; MAX_PARAMS];
    let mut x = [zero; MAX_STATE];
    let mut dx = [zero; MAX_STATE];
    for (j, col) in c.params.iter().enumerate() {
        p[j] = load(col, first, valid);
    }
    for (i, col) in c.init.iter().enumerate() {
        x[i] = load(col, first, valid);
    }
    let dt = Lanes::<W, FMA>::splat(g.dt);
    for s in 0..g.n_samples {
        if s > 0 {
            for _ in 0..g.steps_per_sample {
                m.rhs(&p[..np], &x[..n], &mut dx[..n]);
                for i in 0..n {
                    x[i] = dt.mul_add(dx[i], x[i]);
                }
            }
        }
        for (i, xi) in x[..n].iter().enumerate() {
            let at = (i * g.n_samples + s) * c.n + first;
            std::ptr::copy_nonoverlapping(xi.0.as_ptr(), out.0.add(at), valid);
        }
    }
}
