//! The vector operations the native kernel is written in, one implementation
//! per instruction set: AVX-512 (16 lanes), AVX2 + FMA (8 lanes) and plain
//! `f32` (one lane, left to the compiler), so the kernel and its activation
//! functions exist once. A new instruction set (NEON, SVE) is one more impl.
//!
//! The x86 vectors are made only from a proof that the CPU runs their
//! instructions ([`crate::isa::Avx512Cpu`], [`crate::isa::Avx2FmaCpu`], which
//! only detection makes) and carry it (a zero-sized field), so their safe
//! methods are sound wherever they are called. `kernel.rs` calls them inside
//! functions compiled with the matching `#[target_feature]`, where the
//! `#[inline(always)]` intrinsics become single instructions.

/// One vector of f32 lanes.
pub trait Simd: Copy {
    const LANES: usize;
    /// Proof that the CPU runs this instruction set: needed to make a vector.
    type Cpu: Copy;
    /// The proof this vector was made with.
    fn cpu(self) -> Self::Cpu;
    fn splat(cpu: Self::Cpu, x: f32) -> Self;
    /// `x` in every lane, on the instruction set of `self`.
    #[inline(always)]
    fn splat_as(self, x: f32) -> Self {
        Self::splat(self.cpu(), x)
    }
    /// # Safety
    /// `p` points at LANES readable floats.
    unsafe fn load(cpu: Self::Cpu, p: *const f32) -> Self;
    /// # Safety
    /// `p` points at LANES writable floats.
    unsafe fn store(self, p: *mut f32);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// self·b + c (fused where the instruction set has FMA).
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn min(self, o: Self) -> Self;
    fn max(self, o: Self) -> Self;
    /// 1/self, correctly rounded (a division: exact modes use no hardware
    /// estimates, so results do not depend on the CPU's vendor).
    fn recip(self) -> Self;
    /// 1/self to 2⁻¹⁴ relative where the hardware estimate is that good
    /// (AVX-512's rcp14; only the opt-in fp32-fast mode uses it); as
    /// [`Simd::recip`] elsewhere.
    fn recip_fast(self) -> Self {
        self.recip()
    }
    fn abs(self) -> Self;
    /// |self| with the sign of `sign`.
    fn copysign(self, sign: Self) -> Self;
    /// Round to the nearest integer.
    fn round(self) -> Self;
    /// self·2ⁿ for integral n.
    fn scale2(self, n: Self) -> Self;
    /// Lane i = p[i·stride].
    ///
    /// # Safety
    /// Every p[i·stride], i < LANES, is readable.
    unsafe fn gather(cpu: Self::Cpu, p: *const f32, stride: usize) -> Self;
    /// Writes a₀ b₀ a₁ b₁ … (2·LANES floats): two outputs back into rows.
    ///
    /// # Safety
    /// `p` points at 2·LANES writable floats.
    unsafe fn store_pairs(a: Self, b: Self, p: *mut f32);
}

/// Scalar lanes, without FMA, so the portable kernel rounds like the scalar
/// reference interpreter.
impl Simd for f32 {
    const LANES: usize = 1;
    type Cpu = ();
    #[inline(always)]
    fn cpu(self) {}
    #[inline(always)]
    fn splat(_: (), x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(_: (), p: *const f32) -> f32 {
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { *p = self }
    }
    #[inline(always)]
    fn add(self, o: f32) -> f32 {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: f32) -> f32 {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: f32) -> f32 {
        self * o
    }
    #[inline(always)]
    fn mul_add(self, b: f32, c: f32) -> f32 {
        self * b + c
    }
    #[inline(always)]
    fn min(self, o: f32) -> f32 {
        f32::min(self, o)
    }
    #[inline(always)]
    fn max(self, o: f32) -> f32 {
        f32::max(self, o)
    }
    #[inline(always)]
    fn recip(self) -> f32 {
        1.0 / self
    }
    #[inline(always)]
    fn abs(self) -> f32 {
        f32::abs(self)
    }
    #[inline(always)]
    fn copysign(self, sign: f32) -> f32 {
        f32::copysign(self, sign)
    }
    #[inline(always)]
    fn round(self) -> f32 {
        f32::round(self)
    }
    #[inline(always)]
    fn scale2(self, n: f32) -> f32 {
        self * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    unsafe fn gather(_: (), p: *const f32, _stride: usize) -> f32 {
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store_pairs(a: f32, b: f32, p: *mut f32) {
        unsafe {
            *p = a;
            *p.add(1) = b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;
    use crate::isa::{Avx2FmaCpu, Avx512Cpu};

    /// 16 lanes (AVX-512F), with the proof that the CPU runs them.
    #[derive(Clone, Copy)]
    pub struct Avx512(__m512, Avx512Cpu);

    /// 8 lanes (AVX2 + FMA), with the proof that the CPU runs them.
    #[derive(Clone, Copy)]
    pub struct Avx2(__m256, Avx2FmaCpu);

    impl Avx512 {
        #[inline(always)]
        fn wrap(self, v: __m512) -> Self {
            Avx512(v, self.1)
        }
    }

    impl Avx2 {
        #[inline(always)]
        fn wrap(self, v: __m256) -> Self {
            Avx2(v, self.1)
        }
    }

    // SAFETY (every `unsafe` block below): the intrinsics need AVX-512F
    // resp. AVX2 + FMA, which the CPU has: every vector carries the proof
    // (its second field), and the constructors take it.
    impl Simd for Avx512 {
        const LANES: usize = 16;
        type Cpu = Avx512Cpu;
        #[inline(always)]
        fn cpu(self) -> Avx512Cpu {
            self.1
        }
        #[inline(always)]
        fn splat(cpu: Avx512Cpu, x: f32) -> Self {
            Avx512(unsafe { _mm512_set1_ps(x) }, cpu)
        }
        #[inline(always)]
        unsafe fn load(cpu: Avx512Cpu, p: *const f32) -> Self {
            Avx512(unsafe { _mm512_loadu_ps(p) }, cpu)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            self.wrap(unsafe { _mm512_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            self.wrap(unsafe { _mm512_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            self.wrap(unsafe { _mm512_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            self.wrap(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            self.wrap(unsafe { _mm512_min_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            self.wrap(unsafe { _mm512_max_ps(self.0, o.0) })
        }
        /// A true division: IEEE-exact, the same on every CPU (the hardware
        /// estimate `rcp14` is not specified to the bit and differs between vendors).
        #[inline(always)]
        fn recip(self) -> Self {
            self.wrap(unsafe { _mm512_div_ps(_mm512_set1_ps(1.0), self.0) })
        }
        #[inline(always)]
        fn recip_fast(self) -> Self {
            self.wrap(unsafe { _mm512_rcp14_ps(self.0) })
        }
        #[inline(always)]
        fn abs(self) -> Self {
            self.wrap(unsafe { _mm512_abs_ps(self.0) })
        }
        #[inline(always)]
        fn copysign(self, sign: Self) -> Self {
            unsafe {
                let mag = _mm512_castps_si512(_mm512_abs_ps(self.0));
                let s = _mm512_and_si512(_mm512_castps_si512(sign.0), _mm512_set1_epi32(i32::MIN));
                self.wrap(_mm512_castsi512_ps(_mm512_or_si512(mag, s)))
            }
        }
        #[inline(always)]
        fn round(self) -> Self {
            self.wrap(unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
        }
        #[inline(always)]
        fn scale2(self, n: Self) -> Self {
            self.wrap(unsafe { _mm512_scalef_ps(self.0, n.0) })
        }
        #[inline(always)]
        unsafe fn gather(cpu: Avx512Cpu, p: *const f32, stride: usize) -> Self {
            unsafe {
                let s = stride as i32;
                let idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(s));
                Avx512(_mm512_i32gather_ps::<4>(idx, p), cpu)
            }
        }
        #[inline(always)]
        unsafe fn store_pairs(a: Self, b: Self, p: *mut f32) {
            unsafe {
                let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                _mm512_storeu_ps(p, _mm512_permutex2var_ps(a.0, lo, b.0));
                _mm512_storeu_ps(p.add(16), _mm512_permutex2var_ps(a.0, hi, b.0));
            }
        }
    }

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type Cpu = Avx2FmaCpu;
        #[inline(always)]
        fn cpu(self) -> Avx2FmaCpu {
            self.1
        }
        #[inline(always)]
        fn splat(cpu: Avx2FmaCpu, x: f32) -> Self {
            Avx2(unsafe { _mm256_set1_ps(x) }, cpu)
        }
        #[inline(always)]
        unsafe fn load(cpu: Avx2FmaCpu, p: *const f32) -> Self {
            Avx2(unsafe { _mm256_loadu_ps(p) }, cpu)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            self.wrap(unsafe { _mm256_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            self.wrap(unsafe { _mm256_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            self.wrap(unsafe { _mm256_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            self.wrap(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            self.wrap(unsafe { _mm256_min_ps(self.0, o.0) })
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            self.wrap(unsafe { _mm256_max_ps(self.0, o.0) })
        }
        /// A true division: IEEE-exact, the same on every CPU (`rcp` differs
        /// between vendors, and an Intel CPU's put erf over its stated error).
        #[inline(always)]
        fn recip(self) -> Self {
            self.wrap(unsafe { _mm256_div_ps(_mm256_set1_ps(1.0), self.0) })
        }
        #[inline(always)]
        fn abs(self) -> Self {
            self.wrap(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
        }
        #[inline(always)]
        fn copysign(self, sign: Self) -> Self {
            unsafe {
                let m = _mm256_set1_ps(-0.0);
                self.wrap(_mm256_or_ps(_mm256_andnot_ps(m, self.0), _mm256_and_ps(m, sign.0)))
            }
        }
        #[inline(always)]
        fn round(self) -> Self {
            self.wrap(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
        }
        #[inline(always)]
        fn scale2(self, n: Self) -> Self {
            unsafe {
                let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n.0), _mm256_set1_epi32(127)));
                self.wrap(_mm256_mul_ps(self.0, _mm256_castsi256_ps(e)))
            }
        }
        #[inline(always)]
        unsafe fn gather(cpu: Avx2FmaCpu, p: *const f32, stride: usize) -> Self {
            unsafe {
                let idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride as i32));
                Avx2(_mm256_i32gather_ps::<4>(p, idx), cpu)
            }
        }
        #[inline(always)]
        unsafe fn store_pairs(a: Self, b: Self, p: *mut f32) {
            unsafe {
                // per 128-bit half: a0 b0 a1 b1 | a4 b4 a5 b5 and a2 b2 a3 b3 | a6 b6 a7 b7
                let lo = _mm256_unpacklo_ps(a.0, b.0);
                let hi = _mm256_unpackhi_ps(a.0, b.0);
                _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(lo, hi));
                _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
            }
        }
    }
}
