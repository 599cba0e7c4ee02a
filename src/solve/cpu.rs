//! The fast CPU path: blocks of [`LANES`] cells advanced together in SIMD
//! registers for all the steps between two samples, blocks spread over threads.
//!
//! Every block, the last partial one too, runs the same lane code (a partial
//! block is padded by repeating its last cell), so a cell's result does not
//! depend on the thread count or on where the block boundaries fall. AVX2/FMA
//! is chosen at run time; elsewhere the same code is compiled portably.

use rayon::prelude::*;

use crate::cell::{CellModel, Lanes, Real, LANES, MAX_PARAMS, MAX_STATE};
use crate::solve::{Cells, Column, TimeGrid, Trajectories};

/// Solves every cell in f32 on `threads` threads (0 = all cores).
pub fn solve<M: CellModel>(model: &M, grid: &TimeGrid, cells: &Cells, threads: usize) -> Trajectories<f32> {
    let mut out = Trajectories::filled(M::N_STATE, grid.n_samples, cells.n, 0.0f32);
    let n_blocks = cells.n.div_ceil(LANES);
    let dest = OutPtr(out.data.as_mut_ptr());
    let fma = has_avx2_fma();
    let run = || {
        (0..n_blocks).into_par_iter().with_min_len(4).for_each(|b| {
            // SAFETY: block `b` writes only the cells [b·LANES, (b+1)·LANES) of
            // `out`, which no other block touches, and `out` outlives the loop.
            unsafe { solve_block(model, grid, cells, b, dest, fma) }
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

/// The instruction set the CPU solver uses on this machine.
pub fn kernel_name() -> &'static str {
    if has_avx2_fma() { "avx2+fma" } else { "portable" }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: blocks write disjoint ranges (see `solve`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

unsafe fn solve_block<M: CellModel>(m: &M, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr, fma: bool) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        return block_avx2_fma(m, g, c, b, out);
    }
    let _ = fma;
    block::<M, false>(m, g, c, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2_fma<M: CellModel>(m: &M, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    block::<M, true>(m, g, c, b, out)
}

/// Loads one column into lanes, padding past the last cell with its value.
#[inline(always)]
fn load<const FMA: bool>(col: &Column, first: usize, valid: usize) -> Lanes<FMA> {
    match col {
        Column::Same(x) => Lanes::splat(*x),
        Column::PerCell(v) => {
            let mut l = [0.0f32; LANES];
            for (k, x) in l.iter_mut().enumerate() {
                *x = v[first + k.min(valid - 1)] as f32;
            }
            Lanes(l)
        }
    }
}

#[inline(always)]
unsafe fn block<M: CellModel, const FMA: bool>(m: &M, g: &TimeGrid, c: &Cells, b: usize, out: OutPtr) {
    let (n, np) = (M::N_STATE, c.params.len());
    let first = b * LANES;
    let valid = LANES.min(c.n - first);
    let zero = Lanes::<FMA>::splat(0.0);
    let mut p = [zero; MAX_PARAMS];
    let mut x = [zero; MAX_STATE];
    let mut dx = [zero; MAX_STATE];
    for (j, col) in c.params.iter().enumerate() {
        p[j] = load(col, first, valid);
    }
    for (i, col) in c.init.iter().enumerate() {
        x[i] = load(col, first, valid);
    }
    let dt = Lanes::<FMA>::splat(g.dt);
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
