//! The fast CPU path: blocks of cells advanced together in SIMD registers
//! for all the steps between two samples, blocks spread over threads.
//!
//! Every block, the last partial one too, runs the same lane code (a partial
//! block is padded by repeating its last cell), so a cell's result does not
//! depend on the thread count or on where the block boundaries fall. AVX2/FMA
//! is chosen at run time; elsewhere the same code is compiled portably.

use rayon::prelude::*;

use crate::cell::{CellModel, Lanes, Real, MAX_PARAMS, MAX_STATE};
use crate::solve::{Cells, Column, TimeGrid, Trajectories};

/// An instruction-set variant of the block kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 (F) with fused multiply-add.
    Avx512,
    /// AVX2 with fused multiply-add (x86-64 CPUs since about 2013).
    Avx2Fma,
    /// The same lane code compiled for the baseline target; bit-identical to the scalar f32 reference.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        Kernel::available()[0]
    }

    /// Every kernel this CPU runs, fastest first.
    pub fn available() -> Vec<Kernel> {
        let mut v = Vec::new();
        if has_avx512() {
            v.push(Kernel::Avx512);
        }
        if has_avx2_fma() {
            v.push(Kernel::Avx2Fma);
        }
        v.push(Kernel::Portable);
        v
    }

    /// Cells per block: enough registers in flight to cover the FMA latency
    /// of a step's dependency chain (AVX-512 has 32 registers, AVX2 16).
    pub fn block_cells(self) -> usize {
        match self {
            Kernel::Avx512 => AVX512_BLOCK,
            Kernel::Avx2Fma => AVX2_BLOCK,
            Kernel::Portable => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2Fma => "avx2+fma",
            Kernel::Portable => "portable",
        }
    }
}

/// Solves every cell in f32 with `kernel` on `threads` threads (0 = all
/// cores). `kernel` must be one of [`Kernel::available`].
pub fn solve_with(
    model: &dyn crate::cell::Model,
    grid: &TimeGrid,
    cells: &Cells,
    threads: usize,
    kernel: Kernel,
) -> Trajectories<f32> {
    model.solve_cpu_with(grid, cells, threads, kernel)
}

pub(crate) fn solve<M: CellModel>(
    model: &M,
    grid: &TimeGrid,
    cells: &Cells,
    threads: usize,
    kernel: Kernel,
) -> Trajectories<f32> {
    assert!(
        Kernel::available().contains(&kernel),
        "the {} kernel does not run on this CPU",
        kernel.name()
    );
    let mut out = Trajectories::filled(M::N_STATE, grid.n_samples, cells.n, 0.0f32);
    let n_blocks = cells.n.div_ceil(kernel.block_cells());
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

/// Whether the AVX2 + FMA kernel runs on this CPU.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX-512 kernel runs on this CPU.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The instruction set the CPU solver uses on this machine.
pub fn kernel_name() -> &'static str {
    Kernel::best().name()
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
    kernel: Kernel,
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => block_avx512(m, g, c, b, out),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => block_avx2_fma(m, g, c, b, out),
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
