//! The number types a cell model's right-hand side is written against.
//!
//! A model writes its equations once, generic over [`Real`]; the solvers then
//! instantiate them with `f64` (checking), `f32` (the scalar reference) and
//! [`Lanes`] (many cells per instruction on the SIMD path). The lane type is a
//! plain array with per-lane loops: inlined into a function compiled for
//! AVX2/FMA, LLVM turns each loop into a few vector instructions.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// A scalar or a vector of scalars that a right-hand side can be evaluated on.
pub trait Real:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// The constant `x`, rounded to this type (in every lane).
    fn splat(x: f64) -> Self;
    /// `self * a + b`; fused (one rounding) only where the type says so.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The exponential, for models with gating variables.
    fn exp(self) -> Self;
}

impl Real for f64 {
    #[inline(always)]
    fn splat(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
}

impl Real for f32 {
    #[inline(always)]
    fn splat(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }
}

/// `W` cells' worth of one variable. `FMA` selects fused multiply-add,
/// which is only fast (and only used) inside code compiled for the `fma`
/// target feature. `W` is several registers wide on purpose: one Euler step
/// is a chain of dependent operations, and only many independent registers in
/// flight keep the FMA units busy through that latency.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(align(64))]
pub struct Lanes<const W: usize, const FMA: bool>(pub [f32; W]);

macro_rules! lanewise {
    ($tr:ident, $f:ident, $op:tt) => {
        impl<const W: usize, const FMA: bool> $tr for Lanes<W, FMA> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                let mut r = self.0;
                for i in 0..W {
                    r[i] = self.0[i] $op o.0[i];
                }
                Lanes(r)
            }
        }
    };
}
lanewise!(Add, add, +);
lanewise!(Sub, sub, -);
lanewise!(Mul, mul, *);
lanewise!(Div, div, /);

impl<const W: usize, const FMA: bool> Neg for Lanes<W, FMA> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        let mut r = self.0;
        for x in r.iter_mut() {
            *x = -*x;
        }
        Lanes(r)
    }
}

impl<const W: usize, const FMA: bool> Real for Lanes<W, FMA> {
    #[inline(always)]
    fn splat(x: f64) -> Self {
        Lanes([x as f32; W])
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        let mut r = self.0;
        for i in 0..W {
            r[i] = if FMA {
                self.0[i].mul_add(a.0[i], b.0[i])
            } else {
                self.0[i] * a.0[i] + b.0[i]
            };
        }
        Lanes(r)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        let mut r = self.0;
        for x in r.iter_mut() {
            *x = x.exp();
        }
        Lanes(r)
    }
}
