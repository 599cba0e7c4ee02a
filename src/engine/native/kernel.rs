//! The fused kernel: a tile of rows through every layer, written once over
//! [`Simd`] and instantiated per instruction set.
//!
//! A tile is held feature-major (`buf[k][r]`: one vector holds feature k of
//! LANES rows), so a layer is `acc[j] += w[k][j] · x[k]` with the weight
//! broadcast: blocks of J outputs × NV vectors of rows stay in registers
//! while k runs (AVX-512: 4 × 4 = 16 zmm accumulators, 8 loads per 16 FMAs),
//! the activation is applied in registers before the one store, and no layer
//! is padded (a 2-wide output layer costs 2·H multiply-adds). Sums run over
//! k in order, so a row's result does not depend on its place in a tile.

use super::simd::Simd;
use super::{Act, Layer};
#[cfg(target_arch = "x86_64")]
use crate::isa::{Avx2FmaCpu, Avx512Cpu};

/// One tile's work: `valid` ≤ rows-per-tile rows of x (row-major) through
/// every layer into y, with two scratch buffers of a tile × the widest layer.
pub struct Tile<'a> {
    pub layers: &'a [Layer],
    /// The fast tanh family (see [`tanh_fast`]).
    pub fast: bool,
    pub x: &'a [f32],
    pub valid: usize,
    pub y: &'a mut [f32],
    pub a: &'a mut [f32],
    pub b: &'a mut [f32],
}

/// AVX-512: 64-row tiles (4 zmm per feature), 4 outputs per block.
#[cfg(target_arch = "x86_64")]
pub fn tile_avx512(cpu: Avx512Cpu, t: Tile) {
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn compiled(cpu: Avx512Cpu, t: Tile) {
        tile::<super::simd::Avx512, 4, 3>(cpu, t)
    }
    // SAFETY: `cpu` proves the CPU has AVX-512F, AVX2 and FMA.
    unsafe { compiled(cpu, t) }
}

/// AVX-512 for wide networks: 32-row tiles (2 zmm per feature), 4 outputs
/// per block, so a tile's activations stay in L1 up to H ≈ 256.
#[cfg(target_arch = "x86_64")]
pub fn tile_avx512_wide(cpu: Avx512Cpu, t: Tile) {
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn compiled(cpu: Avx512Cpu, t: Tile) {
        tile::<super::simd::Avx512, 2, 4>(cpu, t)
    }
    // SAFETY: `cpu` proves the CPU has AVX-512F, AVX2 and FMA.
    unsafe { compiled(cpu, t) }
}

/// AVX2: 32-row tiles (4 ymm per feature), 2 outputs per block (8 of the 16
/// registers as accumulators).
#[cfg(target_arch = "x86_64")]
pub fn tile_avx2(cpu: Avx2FmaCpu, t: Tile) {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn compiled(cpu: Avx2FmaCpu, t: Tile) {
        tile::<super::simd::Avx2, 4, 2>(cpu, t)
    }
    // SAFETY: `cpu` proves the CPU has AVX2 and FMA.
    unsafe { compiled(cpu, t) }
}

/// Any CPU: 16-row tiles of scalar lanes, no FMA.
pub fn tile_portable(t: Tile) {
    tile::<f32, 16, 2>((), t)
}

/// Rows per tile of each kernel (a divisor of the engine's task size).
pub const ROWS_AVX512: usize = 64;
pub const ROWS_AVX512_WIDE: usize = 32;
pub const ROWS_AVX2: usize = 32;
pub const ROWS_PORTABLE: usize = 16;

/// The network on one tile: transpose the rows into feature-major order (a
/// partial tile repeats its last row), run the layers ping-ponging between
/// the buffers, transpose the outputs back.
#[inline(always)]
fn tile<S: Activate, const NV: usize, const J: usize>(cpu: S::Cpu, t: Tile) {
    let Tile { layers, fast, x, valid, y, a, b } = t;
    let r_tile = NV * S::LANES;
    let (n_in, n_out) = (layers[0].d_in, layers[layers.len() - 1].d_out);
    assert!((1..=r_tile).contains(&valid) && x.len() == valid * n_in && y.len() == valid * n_out && a.len() >= r_tile * n_in && a.len() == b.len());
    if valid == r_tile {
        for k in 0..n_in {
            for v in 0..NV {
                // SAFETY: rows v·LANES.. of a full tile, feature k < n_in.
                unsafe { S::gather(cpu, x.as_ptr().add(v * S::LANES * n_in + k), n_in).store(a.as_mut_ptr().add(k * r_tile + v * S::LANES)) };
            }
        }
    } else {
        for k in 0..n_in {
            for r in 0..r_tile {
                // SAFETY: r.min(valid - 1) < valid and k < n_in (asserted sizes).
                unsafe { *a.get_unchecked_mut(k * r_tile + r) = *x.get_unchecked(r.min(valid - 1) * n_in + k) };
            }
        }
    }
    let (mut src, mut dst) = (a, b);
    for l in layers {
        assert!(src.len() >= l.d_in * r_tile && dst.len() >= l.d_out * r_tile && l.w.len() == l.d_in * l.d_out && l.b.len() == l.d_out);
        // one instantiation per activation, so each layer's loop holds only
        // its own constants
        match l.act {
            Act::Tanh if fast => layer::<S, NV, J, TanhFast>(cpu, l, src, dst, 0.0),
            Act::Sigmoid if fast => layer::<S, NV, J, SigmoidFast>(cpu, l, src, dst, 0.0),
            Act::Silu if fast => layer::<S, NV, J, SiluFast>(cpu, l, src, dst, 0.0),
            Act::Linear => layer::<S, NV, J, Linear>(cpu, l, src, dst, 0.0),
            Act::Relu => layer::<S, NV, J, Relu>(cpu, l, src, dst, 0.0),
            Act::LeakyRelu(a) => layer::<S, NV, J, LeakyRelu>(cpu, l, src, dst, a),
            Act::Elu(a) => layer::<S, NV, J, Elu>(cpu, l, src, dst, a),
            Act::Tanh => layer::<S, NV, J, Tanh>(cpu, l, src, dst, 0.0),
            Act::Sigmoid => layer::<S, NV, J, Sigmoid>(cpu, l, src, dst, 0.0),
            Act::Silu => layer::<S, NV, J, Silu>(cpu, l, src, dst, 0.0),
            Act::Gelu => layer::<S, NV, J, Gelu>(cpu, l, src, dst, 0.0),
            Act::GeluTanh => layer::<S, NV, J, GeluTanh>(cpu, l, src, dst, 0.0),
            Act::Softplus => layer::<S, NV, J, Softplus>(cpu, l, src, dst, 0.0),
        }
        std::mem::swap(&mut src, &mut dst);
    }
    if n_out == 2 && valid == r_tile {
        for v in 0..NV {
            // SAFETY: rows v·LANES.. of a full tile; y holds 2·r_tile floats.
            unsafe {
                let (u, w) = (S::load(cpu, src.as_ptr().add(v * S::LANES)), S::load(cpu, src.as_ptr().add(r_tile + v * S::LANES)));
                S::store_pairs(u, w, y.as_mut_ptr().add(2 * v * S::LANES));
            }
        }
    } else {
        for r in 0..valid {
            for j in 0..n_out {
                // SAFETY: r < valid and j < n_out (asserted sizes).
                unsafe { *y.get_unchecked_mut(r * n_out + j) = *src.get_unchecked(j * r_tile + r) };
            }
        }
    }
}

/// One layer in blocks of J outputs, then 2 and 1 for the remainder.
#[inline(always)]
fn layer<S: Activate, const NV: usize, const J: usize, A: Activation>(cpu: S::Cpu, l: &Layer, src: &[f32], dst: &mut [f32], param: f32) {
    // full blocks, but a remainder of one output joins the last block as 2 + 2
    // (a lone output has too few accumulators to hide the FMA latency)
    let mut full = l.d_out / J;
    if J > 2 && l.d_out % J == 1 && full > 0 {
        full -= 1;
    }
    let mut j0 = 0;
    for _ in 0..full {
        block::<S, NV, J, A>(cpu, l, src, dst, j0, param);
        j0 += J;
    }
    while J > 2 && j0 + 2 <= l.d_out {
        block::<S, NV, 2, A>(cpu, l, src, dst, j0, param);
        j0 += 2;
    }
    while j0 < l.d_out {
        block::<S, NV, 1, A>(cpu, l, src, dst, j0, param);
        j0 += 1;
    }
}

/// Outputs j0..j0 + C for the tile: `act(b[j] + Σ_k w[k][j]·src[k])`.
/// The caller asserted the buffer and weight sizes and j0 + C ≤ d_out.
#[inline(always)]
fn block<S: Activate, const NV: usize, const C: usize, A: Activation>(cpu: S::Cpu, l: &Layer, src: &[f32], dst: &mut [f32], j0: usize, param: f32) {
    let r_tile = NV * S::LANES;
    let (xs, ws) = (src.as_ptr(), l.w.as_ptr());
    let mut acc = [[S::splat(cpu, 0.0); NV]; C];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = [S::splat(cpu, l.b[j0 + j]); NV];
    }
    for k in 0..l.d_in {
        // SAFETY: k < d_in, so feature k of the tile and w[k][j0 + j] are in bounds.
        let mut x = [S::splat(cpu, 0.0); NV];
        for (v, xv) in x.iter_mut().enumerate() {
            *xv = unsafe { S::load(cpu, xs.add(k * r_tile + v * S::LANES)) };
        }
        for (j, a) in acc.iter_mut().enumerate() {
            let w = S::splat(cpu, unsafe { *ws.add(k * l.d_out + j0 + j) });
            for v in 0..NV {
                a[v] = w.mul_add(x[v], a[v]);
            }
        }
    }
    let out = &mut dst[j0 * r_tile..(j0 + C) * r_tile];
    for (j, a) in acc.iter().enumerate() {
        for (v, x) in a.iter().enumerate() {
            let y = if A::IN_REGISTERS { A::apply(*x, param) } else { *x };
            // SAFETY: j < C and v < NV, inside `out` of C tile rows.
            unsafe { y.store(out.as_mut_ptr().add((j * NV + v) * S::LANES)) };
        }
    }
    if !A::IN_REGISTERS {
        // SAFETY: `out` holds C·NV whole vectors.
        unsafe { S::activate::<A>(cpu, out, param) };
    }
}

/// The activation over a block just stored (still in L1), out of line: when
/// it was inlined, its constants were hoisted into registers across the FMA
/// loop and pushed accumulators onto the stack (2.3× slower at H = 64).
pub trait Activate: Simd {
    /// # Safety
    /// `v.len()` is a multiple of LANES.
    unsafe fn activate<A: Activation>(cpu: Self::Cpu, v: &mut [f32], p: f32);
}

#[inline(always)]
fn activate_slice<S: Simd, A: Activation>(cpu: S::Cpu, v: &mut [f32], p: f32) {
    for i in (0..v.len()).step_by(S::LANES) {
        // SAFETY: v.len() is a multiple of LANES.
        unsafe { A::apply(S::load(cpu, v.as_ptr().add(i)), p).store(v.as_mut_ptr().add(i)) };
    }
}

impl Activate for f32 {
    #[inline(never)]
    unsafe fn activate<A: Activation>(cpu: (), v: &mut [f32], p: f32) {
        activate_slice::<f32, A>(cpu, v, p)
    }
}

#[cfg(target_arch = "x86_64")]
impl Activate for super::simd::Avx512 {
    #[inline(never)]
    unsafe fn activate<A: Activation>(cpu: Avx512Cpu, v: &mut [f32], p: f32) {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn compiled<A: Activation>(cpu: Avx512Cpu, v: &mut [f32], p: f32) {
            activate_slice::<super::simd::Avx512, A>(cpu, v, p)
        }
        // SAFETY: `cpu` proves the CPU has AVX-512F, AVX2 and FMA.
        unsafe { compiled::<A>(cpu, v, p) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Activate for super::simd::Avx2 {
    #[inline(never)]
    unsafe fn activate<A: Activation>(cpu: Avx2FmaCpu, v: &mut [f32], p: f32) {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn compiled<A: Activation>(cpu: Avx2FmaCpu, v: &mut [f32], p: f32) {
            activate_slice::<super::simd::Avx2, A>(cpu, v, p)
        }
        // SAFETY: `cpu` proves the CPU has AVX2 and FMA.
        unsafe { compiled::<A>(cpu, v, p) }
    }
}

/// An activation as a type, so the kernel is instantiated per activation
/// (a closure would be compiled without the caller's target features, and
/// the intrinsics inside it would stay calls). `p` is the slope of
/// leaky_relu and the alpha of elu.
pub trait Activation {
    /// Applied to the accumulators before the store (few constants), or
    /// out of line after it.
    const IN_REGISTERS: bool;
    fn apply<S: Simd>(x: S, p: f32) -> S;
}

macro_rules! activation {
    ($name:ident, $inline:expr, |$x:ident, $p:ident| $body:expr) => {
        pub struct $name;
        impl Activation for $name {
            const IN_REGISTERS: bool = $inline;
            #[inline(always)]
            #[allow(unused_variables)]
            fn apply<S: Simd>($x: S, $p: f32) -> S {
                $body
            }
        }
    };
}

activation!(Linear, true, |x, p| x);
activation!(Relu, true, |x, p| x.max(x.splat_as(0.0)));
activation!(LeakyRelu, true, |x, p| leaky_relu(x, p));
activation!(Elu, false, |x, p| elu(x, p));
activation!(Tanh, true, |x, p| tanh(x));
activation!(Sigmoid, false, |x, p| sigmoid(x));
activation!(Silu, false, |x, p| x.mul(sigmoid(x)));
activation!(Gelu, false, |x, p| gelu(x));
activation!(GeluTanh, false, |x, p| gelu_tanh(x));
activation!(Softplus, false, |x, p| softplus(x));
activation!(TanhFast, true, |x, p| tanh_fast(x));
activation!(SigmoidFast, false, |x, p| sigmoid_fast(x));
activation!(SiluFast, false, |x, p| x.mul(sigmoid_fast(x)));

/// max(x, 0) + a·min(x, 0), i.e. x for x ≥ 0 and a·x below.
#[inline(always)]
fn leaky_relu<S: Simd>(x: S, a: f32) -> S {
    x.max(x.splat_as(0.0)).add(x.splat_as(a).mul(x.min(x.splat_as(0.0))))
}

/// x for x > 0, a·(eˣ − 1) below: the exponential of min(x, 0) is 1 exactly
/// for positive x, so no select is needed.
#[inline(always)]
fn elu<S: Simd>(x: S, a: f32) -> S {
    let neg = exp(x.min(x.splat_as(0.0))).sub(x.splat_as(1.0));
    x.max(x.splat_as(0.0)).add(x.splat_as(a).mul(neg))
}

/// Eigen's rational tanh: numerator (odd, in x²) and denominator
/// coefficients, lowest power first, and the clamp beyond which it is ±1 in f32.
const TANH_P: [f32; 7] = [4.893_524_6e-3, 6.372_619_3e-4, 1.485_722_4e-5, 5.122_297e-8, -8.604_672e-11, 2.000_188e-13, -2.760_768_5e-16];
const TANH_Q: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
const TANH_CLAMP: f32 = 7.905_311;

/// tanh, max abs error ~3e-7 (Eigen's rational form; the division is a
/// reciprocal, refined on x86, since a division costs ~5 FMAs).
#[inline(always)]
pub fn tanh<S: Simd>(x: S) -> S {
    let x = x.min(x.splat_as(TANH_CLAMP)).max(x.splat_as(-TANH_CLAMP));
    let x2 = x.mul(x);
    let mut p = x.splat_as(TANH_P[6]);
    for a in TANH_P[..6].iter().rev() {
        p = p.mul_add(x2, x.splat_as(*a));
    }
    let q = x.splat_as(TANH_Q[3]).mul_add(x2, x.splat_as(TANH_Q[2])).mul_add(x2, x.splat_as(TANH_Q[1])).mul_add(x2, x.splat_as(TANH_Q[0]));
    p.mul(x).mul(q.recip())
}

/// σ(x) = ½·tanh(x/2) + ½.
#[inline(always)]
fn sigmoid<S: Simd>(x: S) -> S {
    let h = x.splat_as(0.5);
    tanh(x.mul(h)).mul_add(h, h)
}

/// The fast mode's tanh: a [7/6] rational fitted on [0, 6] (6.9e-6 in f32)
/// past which it is ±1 (1.2e-5 short of tanh), divided by a bare reciprocal
/// estimate on AVX-512 (2⁻¹⁴): ≤ 1e-4 in all, for 12 operations instead of 17.
const FAST_P: [f32; 4] = [1.0, 1.257_635_4e-1, 2.535_913_4e-3, 5.322_880_5e-6];
const FAST_Q: [f32; 4] = [1.0, 4.590_967_3e-1, 2.223_511_6e-2, 1.721_184_7e-4];
const FAST_CLAMP: f32 = 6.0;

#[inline(always)]
pub fn tanh_fast<S: Simd>(x: S) -> S {
    let x = x.min(x.splat_as(FAST_CLAMP)).max(x.splat_as(-FAST_CLAMP));
    let y = x.mul(x);
    let p = x.splat_as(FAST_P[3]).mul_add(y, x.splat_as(FAST_P[2])).mul_add(y, x.splat_as(FAST_P[1])).mul_add(y, x.splat_as(FAST_P[0]));
    let q = x.splat_as(FAST_Q[3]).mul_add(y, x.splat_as(FAST_Q[2])).mul_add(y, x.splat_as(FAST_Q[1])).mul_add(y, x.splat_as(FAST_Q[0]));
    p.mul(x).mul(q.recip_fast())
}

#[inline(always)]
fn sigmoid_fast<S: Simd>(x: S) -> S {
    let h = x.splat_as(0.5);
    tanh_fast(x.mul(h)).mul_add(h, h)
}

/// eˣ by range reduction and a degree-6 polynomial (≤ 3 ulp for |x| < 87).
#[inline(always)]
pub fn exp<S: Simd>(x: S) -> S {
    let x = x.min(x.splat_as(88.0)).max(x.splat_as(-87.0));
    let n = x.mul(x.splat_as(std::f32::consts::LOG2_E)).round();
    let r = n.mul_add(x.splat_as(-0.693_145_75), x);
    let r = n.mul_add(x.splat_as(-1.428_606_8e-6), r);
    let mut p = x.splat_as(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, x.splat_as(c));
    }
    p.scale2(n)
}

/// erf by Abramowitz–Stegun 7.1.26 (1.5e-7 in exact arithmetic, ≤ 5e-7 in f32).
#[inline(always)]
pub fn erf<S: Simd>(x: S) -> S {
    let a = x.abs();
    let t = x.splat_as(0.327_591_1).mul_add(a, x.splat_as(1.0)).recip();
    let mut p = x.splat_as(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6] {
        p = p.mul_add(t, x.splat_as(c));
    }
    let e = exp(x.splat_as(0.0).sub(a.mul(a)));
    x.splat_as(1.0).sub(p.mul(t).mul(e)).copysign(x)
}

/// ½·x·(1 + erf(x/√2)), the exact GELU `excite export` writes.
#[inline(always)]
fn gelu<S: Simd>(x: S) -> S {
    let h = x.splat_as(0.5);
    let e = erf(x.mul(x.splat_as(std::f32::consts::FRAC_1_SQRT_2)));
    h.mul(x).mul_add(e, h.mul(x))
}

/// ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), GELU's tanh form.
#[inline(always)]
fn gelu_tanh<S: Simd>(x: S) -> S {
    let h = x.splat_as(0.5);
    let inner = x.mul(x).mul(x).mul_add(x.splat_as(0.044_715), x).mul(x.splat_as(0.797_884_56));
    h.mul(x).mul_add(tanh(inner), h.mul(x))
}

/// ln(1 + eˣ) = max(x, 0) + ln(1 + e) with e = exp(−|x|) ∈ (0, 1], and
/// ln(1 + e) = 2·atanh(s) = 2s·(1 + s²/3 + s⁴/5 + …), s = e/(2 + e) ≤ ⅓:
/// eight terms leave under 1e-9; no 1 + e is formed, so small e keeps its bits.
#[inline(always)]
pub fn softplus<S: Simd>(x: S) -> S {
    let e = exp(x.splat_as(0.0).sub(x.abs()));
    let s = e.mul(e.add(x.splat_as(2.0)).recip());
    let w = s.mul(s);
    let mut p = x.splat_as(1.0 / 15.0);
    for k in [13.0f32, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p.mul_add(w, x.splat_as(1.0 / k));
    }
    x.max(x.splat_as(0.0)).add(s.add(s).mul(p))
}

/// Each kernel's tanh, exp and erf over a slice, for the error tests.
#[cfg(test)]
pub mod probe {
    use super::*;

    #[inline(always)]
    fn all<S: Simd>(cpu: S::Cpu, v: &[f32]) -> [Vec<f32>; 5] {
        let (mut t, mut e, mut f, mut tf, mut sp) = (v.to_vec(), v.to_vec(), v.to_vec(), v.to_vec(), v.to_vec());
        for i in (0..v.len()).step_by(S::LANES) {
            // SAFETY: v.len() is a multiple of LANES.
            unsafe {
                let x = S::load(cpu, v.as_ptr().add(i));
                tanh(x).store(t.as_mut_ptr().add(i));
                exp(x).store(e.as_mut_ptr().add(i));
                erf(x).store(f.as_mut_ptr().add(i));
                tanh_fast(x).store(tf.as_mut_ptr().add(i));
                softplus(x).store(sp.as_mut_ptr().add(i));
            }
        }
        [t, e, f, tf, sp]
    }

    /// (kernel, [tanh, exp, erf, fast tanh, softplus] of `v`) for every kernel this CPU runs;
    /// `v.len()` must be a multiple of 16.
    pub fn functions(v: &[f32]) -> Vec<(&'static str, [Vec<f32>; 5])> {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn all512(cpu: Avx512Cpu, v: &[f32]) -> [Vec<f32>; 5] {
            all::<crate::engine::native::simd::Avx512>(cpu, v)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn all256(cpu: Avx2FmaCpu, v: &[f32]) -> [Vec<f32>; 5] {
            all::<crate::engine::native::simd::Avx2>(cpu, v)
        }
        let mut out = vec![("portable", all::<f32>((), v))];
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(cpu) = Avx512Cpu::detect() {
                // SAFETY: `cpu` proves the features.
                out.push(("avx512", unsafe { all512(cpu, v) }));
            }
            if let Some(cpu) = Avx2FmaCpu::detect() {
                // SAFETY: `cpu` proves the features.
                out.push(("avx2+fma", unsafe { all256(cpu, v) }));
            }
        }
        out
    }
}
