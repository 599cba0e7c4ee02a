//! Vectorised tanh on host slices, and the activations built on it (tanh,
//! sigmoid, SiLU) as burn tensors.
//!
//! burn-flex evaluates element-wise functions with a scalar libm call per
//! element (`tanhf` → `expm1f`), which took two thirds of a tanh network's
//! training step. Here tanh is a rational approximation (Eigen's fast float
//! tanh: odd degree-13 numerator, degree-6 denominator in x²) that compiles
//! to a few FMAs per element, with AVX2/FMA chosen at run time. The tensor
//! returned carries burn's gradient through a constant slope, so autodiff,
//! the PINN tangent and second use of the value all work as with burn's tanh.

use burn::tensor::{Tensor, TensorData};

use crate::train::arch::Activation;

/// Largest |x| before tanh(x) rounds to ±1 in f32.
const CLAMP: f32 = 7.905_311;
const ALPHA: [f32; 7] = [
    4.893_524_6e-3,
    6.372_619_3e-4,
    1.485_722_4e-5,
    5.122_297e-8,
    -8.604_672e-11,
    2.000_188e-13,
    -2.760_768_5e-16,
];
const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];

#[inline(always)]
fn tanh_one(x: f32) -> f32 {
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = ALPHA[6];
    for a in ALPHA[..6].iter().rev() {
        p = p * x2 + a;
    }
    let p = p * x;
    let q = ((BETA[3] * x2 + BETA[2]) * x2 + BETA[1]) * x2 + BETA[0];
    p / q
}

#[inline(always)]
fn tanh_loop(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = tanh_one(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_avx2(v: &mut [f32]) {
    tanh_loop(v)
}

/// tanh of every element in place (max abs error about 3e-7 against f64).
pub fn tanh_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { tanh_avx2(v) };
    }
    tanh_loop(v)
}

/// `act` of every `x`, and its slope σ'(x): the one host form of each
/// activation and its derivative, which the burn path's tensors
/// ([`tanh`], [`sigmoid`], [`silu`]) and the fused trainer both use.
pub fn value_and_slope(act: Activation, x: &[f32], y: &mut [f32], slope: &mut [f32]) {
    match act {
        Activation::Tanh => {
            y.copy_from_slice(x);
            tanh_in_place(y);
            for (s, t) in slope.iter_mut().zip(y.iter()) {
                *s = 1.0 - t * t;
            }
        }
        // σ(x) = (1 + tanh(x/2)) / 2, σ' = σ(1 − σ)
        Activation::Sigmoid => {
            for (y, x) in y.iter_mut().zip(x) {
                *y = 0.5 * x;
            }
            tanh_in_place(y);
            for (y, s) in y.iter_mut().zip(slope.iter_mut()) {
                *y = 0.5 * *y + 0.5;
                *s = *y * (1.0 - *y);
            }
        }
        // x·σ(x), slope σ + x·σ(1 − σ)
        Activation::Silu => {
            for (y, x) in y.iter_mut().zip(x) {
                *y = 0.5 * x;
            }
            tanh_in_place(y);
            for ((y, s), x) in y.iter_mut().zip(slope.iter_mut()).zip(x) {
                let sig = 0.5 * *y + 0.5;
                *y = x * sig;
                *s = sig + x * sig * (1.0 - sig);
            }
        }
        Activation::Relu => {
            for ((y, s), &x) in y.iter_mut().zip(slope.iter_mut()).zip(x) {
                (*y, *s) = if x > 0.0 { (x, 1.0) } else { (0.0, 0.0) };
            }
        }
        Activation::LeakyRelu => {
            let k = Activation::LEAKY_SLOPE as f32;
            for ((y, s), &x) in y.iter_mut().zip(slope.iter_mut()).zip(x) {
                (*y, *s) = if x >= 0.0 { (x, 1.0) } else { (k * x, k) };
            }
        }
        Activation::Elu => {
            for ((y, s), &x) in y.iter_mut().zip(slope.iter_mut()).zip(x) {
                (*y, *s) = if x > 0.0 { (x, 1.0) } else { (x.exp_m1(), x.exp()) };
            }
        }
        // x·Φ(x), slope Φ(x) + x·φ(x)
        Activation::Gelu => {
            for ((y, s), &x) in y.iter_mut().zip(slope.iter_mut()).zip(x) {
                let z = x as f64;
                let cdf = 0.5 * (1.0 + crate::special::erf(z / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (*y, *s) = ((z * cdf) as f32, (cdf + z * pdf) as f32);
            }
        }
    }
}

/// σ''(x) of every `x`, from the value `y` and slope `slope` that
/// [`value_and_slope`] gave for it: the curvature the PINN step's
/// backward pass through the time derivative needs (the derivative of the
/// slopes the burn path's tensors form, zero where the slope is piecewise constant).
pub fn curvature(act: Activation, x: &[f32], y: &[f32], slope: &[f32], out: &mut [f32]) {
    match act {
        // (1 − t²)' = −2t(1 − t²)
        Activation::Tanh => {
            for ((c, y), s) in out.iter_mut().zip(y).zip(slope) {
                *c = -2.0 * y * s;
            }
        }
        // (σ(1 − σ))' = σ(1 − σ)(1 − 2σ)
        Activation::Sigmoid => {
            for ((c, y), s) in out.iter_mut().zip(y).zip(slope) {
                *c = s * (1.0 - 2.0 * y);
            }
        }
        // (σ + xσ(1 − σ))' = σ(1 − σ)(2 + x(1 − 2σ))
        Activation::Silu => {
            for (c, x) in out.iter_mut().zip(x) {
                *c = 0.5 * x;
            }
            tanh_in_place(out);
            for (c, x) in out.iter_mut().zip(x) {
                let sig = 0.5 * *c + 0.5;
                *c = sig * (1.0 - sig) * (2.0 + x * (1.0 - 2.0 * sig));
            }
        }
        Activation::Relu | Activation::LeakyRelu => out.fill(0.0),
        // e^x below zero, which is the slope there
        Activation::Elu => {
            for ((c, &x), s) in out.iter_mut().zip(x).zip(slope) {
                *c = if x > 0.0 { 0.0 } else { *s };
            }
        }
        // (Φ + xφ)' = φ(2 − x²)
        Activation::Gelu => {
            for (c, &x) in out.iter_mut().zip(x) {
                let z = x as f64;
                let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                *c = (pdf * (2.0 - z * z)) as f32;
            }
        }
    }
}

/// tanh of a tensor, with gradient 1 − tanh².
pub fn tanh(z: Tensor<2>) -> Tensor<2> {
    pointwise(z, |x, y, slope| value_and_slope(Activation::Tanh, x, y, slope))
}

/// The logistic sigmoid, through σ(x) = (1 + tanh(x/2)) / 2; gradient σ(1 − σ).
pub fn sigmoid(z: Tensor<2>) -> Tensor<2> {
    pointwise(z, |x, y, slope| value_and_slope(Activation::Sigmoid, x, y, slope))
}

/// SiLU x·σ(x); gradient σ + x·σ(1 − σ).
pub fn silu(z: Tensor<2>) -> Tensor<2> {
    pointwise(z, |x, y, slope| value_and_slope(Activation::Silu, x, y, slope))
}

/// An element-wise function computed on the host by `f(x, value, slope)`,
/// returned as a tensor whose value is `value` exactly and whose gradient
/// is `slope` (the slope itself is a constant to autodiff).
fn pointwise(z: Tensor<2>, f: impl Fn(&[f32], &mut [f32], &mut [f32])) -> Tensor<2> {
    let shape = z.dims();
    let device = z.device();
    let plain = z.clone().detach();
    let x = plain
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 activations");
    let (mut y, mut slope) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    f(&x, &mut y, &mut slope);
    let y = Tensor::<2>::from_data(TensorData::new(y, shape), &device);
    let slope = Tensor::<2>::from_data(TensorData::new(slope, shape), &device);
    // (z − z) is exactly 0 in value and has gradient 1
    y + (z - plain) * slope
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_is_accurate_everywhere() {
        let mut worst = 0.0f64;
        let xs: Vec<f32> = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain([1e-30, -1e-8, 50.0, -1e4])
            .collect();
        let mut v = xs.clone();
        tanh_in_place(&mut v);
        for (x, y) in xs.iter().zip(&v) {
            worst = worst.max((*y as f64 - (*x as f64).tanh()).abs());
        }
        assert!(worst <= 5e-7, "max abs error {worst:.2e}");
        let mut odd = vec![0.3f32, -0.3];
        tanh_in_place(&mut odd);
        assert_eq!(odd[0], -odd[1]);
    }

    /// σ'' is the slope's derivative, for every activation (central
    /// differences of the slopes, away from the kinks).
    #[test]
    fn curvature_is_the_slopes_derivative() {
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.1 + 0.05).collect();
        let h = 1e-2f32;
        for act in Activation::ALL {
            let n = xs.len();
            let slope_at = |xs: &[f32]| {
                let (mut y, mut s) = (vec![0.0; n], vec![0.0; n]);
                value_and_slope(act, xs, &mut y, &mut s);
                (y, s)
            };
            let (y, s) = slope_at(&xs);
            let mut c = vec![0.0; n];
            curvature(act, &xs, &y, &s, &mut c);
            let up: Vec<f32> = xs.iter().map(|x| x + h).collect();
            let down: Vec<f32> = xs.iter().map(|x| x - h).collect();
            let (su, sd) = (slope_at(&up).1, slope_at(&down).1);
            for i in 0..n {
                let want = (su[i] - sd[i]) / (2.0 * h);
                assert!((c[i] - want).abs() < 2e-3, "{act:?} at {}: {} vs {want}", xs[i], c[i]);
            }
        }
    }
}
