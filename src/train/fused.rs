//! The fused CPU training step for data-driven MLPs (DDNN and ITNN):
//! forward, MSE, backward and Adam over buffers allocated once, the matrix
//! products through the gemm crate burn-flex itself calls. The mathematics
//! is the burn path's — the same activation kernels and slopes
//! ([`fastmath::value_and_slope`]), burn's Adam to the formula — without
//! burn's per-op allocations, host round trips and autodiff bookkeeping,
//! which cost as much as the products themselves at these sizes. burn's
//! `Net` stays the weights of record: it is written from here before every
//! validation, hard-row search and checkpoint.

use std::path::Path;

use burn::tensor::{Tensor, TensorData};

use crate::fsio::write_atomic;
use crate::train::arch::Activation;
use crate::train::physics::{HostResidual, InitialRows, ResidualScratch};
use crate::train::spec::LossWeights;
use crate::train::{fastmath, Net};
use crate::Error;

/// burn's AdamConfig defaults, which the burn path trains with.
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-5;
/// The Adam state beside a checkpoint's model.bpk.
const MOMENTS_FILE: &str = "fused-adam.json";

/// One layer's weights `[inputs][outputs]` (burn's Linear layout), bias, and their Adam moments.
#[derive(Debug, Clone)]
struct Layer {
    inputs: usize,
    outputs: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    m_w: Vec<f32>,
    v_w: Vec<f32>,
    m_b: Vec<f32>,
    v_b: Vec<f32>,
}

/// Adam's state as a checkpoint keeps it: the step count and each layer's
/// moments (the weights are the checkpoint's model.bpk; files written with
/// them too by an earlier excite still read, the extra fields ignored).
#[derive(serde::Serialize, serde::Deserialize)]
struct Moments {
    time: i32,
    layers: Vec<LayerMoments>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LayerMoments {
    m_w: Vec<f32>,
    v_w: Vec<f32>,
    m_b: Vec<f32>,
    v_b: Vec<f32>,
}

/// An MLP being trained by the fused step.
pub struct Fused {
    layers: Vec<Layer>,
    acts: Vec<Activation>,
    /// Adam's step count.
    time: i32,
    /// Buffers of the two halves of a batch (one, for small batches).
    work: [Work; 2],
}

/// One thread's buffers for a batch's forward and backward pass.
#[derive(Default)]
struct Work {
    /// Per layer: its input activations `[rows][inputs]` (layer 0: the batch).
    a: Vec<Vec<f32>>,
    /// Per hidden layer: the activation's slope at its pre-activation.
    slope: Vec<Vec<f32>>,
    /// The last layer's outputs.
    z: Vec<f32>,
    /// The gradient of the loss at the current layer's outputs, and below it.
    grad: Vec<f32>,
    grad_prev: Vec<f32>,
    /// Per layer: the gradients of the weights and the bias.
    g_w: Vec<Vec<f32>>,
    g_b: Vec<Vec<f32>>,
    /// With a time tangent (PINN): per layer the inputs' derivative in
    /// time (layer 0's is implicit: a scaled unit vector), per hidden
    /// layer σ''(z)·dz/dt, the outputs' derivative, and the gradient of the
    /// loss at the outputs' derivative and below it.
    da: Vec<Vec<f32>>,
    curve: Vec<Vec<f32>>,
    dz: Vec<f32>,
    gd: Vec<f32>,
    gd_prev: Vec<f32>,
    residual: ResidualScratch,
}

/// The physics terms of one fused PINN step beside its data rows.
pub(super) struct PinnTerms<'a> {
    pub residual: &'a HostResidual<'a>,
    /// The collocation points `[n][inputs]` and their count; `None`: the
    /// residual at the data rows themselves.
    pub collocation: Option<(&'a [f32], usize)>,
    pub initial: &'a InitialRows,
    pub weights: LossWeights,
}

/// Batches at least this large are split over two threads (when rayon has
/// two): the halves' gradients are summed, which is the whole batch's.
const SPLIT_ROWS: usize = 256;

impl Fused {
    /// The weights of `net` (Adam starting fresh).
    pub fn from_net(net: &Net) -> Fused {
        let layers: Vec<Layer> = net
            .host_layers()
            .into_iter()
            .map(|l| Layer { inputs: l.inputs, outputs: l.outputs, m_w: vec![0.0; l.w.len()], v_w: vec![0.0; l.w.len()], m_b: vec![0.0; l.outputs], v_b: vec![0.0; l.outputs], w: l.w, b: l.b })
            .collect();
        Fused { layers, acts: net.activations.clone(), time: 0, work: Default::default() }
    }

    /// `net` with these weights (its parameters keep their ids and settings).
    pub fn write_into(&self, mut net: Net) -> Net {
        for (l, f) in net.layers.iter_mut().zip(&self.layers) {
            let (inputs, outputs) = (f.inputs, f.outputs);
            let w = f.w.clone();
            l.weight = l.weight.clone().map(move |t| Tensor::from_data(TensorData::new(w, [inputs, outputs]), &t.device()));
            if let Some(bias) = l.bias.take() {
                let b = f.b.clone();
                l.bias = Some(bias.map(move |t| Tensor::from_data(TensorData::new(b, [outputs]), &t.device())));
            }
        }
        net
    }

    /// Writes Adam's state into a checkpoint folder (before its state.json).
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let layers = self.layers.iter().map(|l| LayerMoments { m_w: l.m_w.clone(), v_w: l.v_w.clone(), m_b: l.m_b.clone(), v_b: l.v_b.clone() }).collect();
        let m = Moments { time: self.time, layers };
        write_atomic(&dir.join(MOMENTS_FILE), &serde_json::to_vec(&m).expect("serialises"))
    }

    /// Adam's state from a checkpoint folder written by [`Fused::save`], if
    /// there is one that fits these layers; the weights stay those of the net.
    pub fn resume(&mut self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(MOMENTS_FILE);
        let Ok(bytes) = std::fs::read(&path) else { return Ok(()) };
        let m: Moments = serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, format!("damaged optimizer state: {e}"), "start again without --resume"))?;
        let fits = m.layers.len() == self.layers.len() && m.layers.iter().zip(&self.layers).all(|(a, b)| a.m_w.len() == b.w.len() && a.v_w.len() == b.w.len() && a.m_b.len() == b.b.len() && a.v_b.len() == b.b.len());
        if !fits {
            return Err(Error::format(&path, "optimizer state of another architecture", "start again without --resume"));
        }
        self.time = m.time;
        for (l, saved) in self.layers.iter_mut().zip(m.layers) {
            (l.m_w, l.v_w, l.m_b, l.v_b) = (saved.m_w, saved.v_w, saved.m_b, saved.v_b);
        }
        Ok(())
    }

    /// One Adam step on `rows` rows of `x` (`[rows][inputs]`, unit scale) and
    /// targets `y`; returns the batch's MSE before the update.
    pub fn step(&mut self, x: &[f32], y: &[f32], rows: usize, lr: f64) -> f64 {
        let count = (rows * self.n_out()) as f32;
        let loss = self.split(rows, 0, 0, |layers, acts, w, part| {
            let (x, y, rows) = part.data(x, y, layers);
            forward(layers, acts, w, x, rows, None);
            let sum = mse_gradient(w, y, 1.0, count);
            backward(layers, w, rows, None, false);
            sum
        });
        self.adam_step(lr);
        loss / count as f64
    }

    /// One Adam step of a PINN: λ_D times the MSE on the data rows, λ_P
    /// times the mean squared residual at the collocation points (the
    /// outputs' time derivative by a forward tangent, the backward pass
    /// through it by hand), λ_B times the initial condition's MSE. Returns
    /// that loss before the update, as burn's step would.
    pub(super) fn step_pinn(&mut self, x: &[f32], y: &[f32], rows: usize, p: &PinnTerms, lr: f64) -> f64 {
        let n_out = self.n_out();
        let n_in = self.layers[0].inputs;
        let points = p.collocation.map_or(rows, |(_, n)| n);
        let (c_data, c_phys, c_init) = ((rows * n_out) as f64, (points * n_out) as f64, (p.initial.rows * n_out).max(1) as f64);
        let (wd, wp, wb) = (p.weights.data, p.weights.physics, p.weights.initial);
        let tangent = Some((0, p.residual.time_scale()));
        let loss = self.split(rows, points, p.initial.rows, |layers, acts, w, part| {
            let (xd, yd, rd) = part.data(x, y, layers);
            let mut loss = 0.0;
            match p.collocation {
                // the residual at the data rows: one pass with a tangent carries both
                None => {
                    forward(layers, acts, w, xd, rd, tangent);
                    loss += wd * mse_gradient(w, yd, wd as f32, c_data as f32) / c_data;
                    loss += wp * residual_gradient(w, p.residual, xd, rd, wp / c_phys) / c_phys;
                    backward(layers, w, rd, tangent, false);
                }
                Some((xc, _)) => {
                    forward(layers, acts, w, xd, rd, None);
                    loss += wd * mse_gradient(w, yd, wd as f32, c_data as f32) / c_data;
                    backward(layers, w, rd, None, false);
                    let (xc, rc) = part.slice(xc, n_in, 1);
                    if rc > 0 {
                        forward(layers, acts, w, xc, rc, tangent);
                        w.grad.clear();
                        w.grad.resize(w.z.len(), 0.0);
                        loss += wp * residual_gradient(w, p.residual, xc, rc, wp / c_phys) / c_phys;
                        backward(layers, w, rc, tangent, true);
                    }
                }
            }
            let (x0, r0) = part.slice(&p.initial.x, n_in, 2);
            if r0 > 0 {
                let (y0, _) = part.slice(&p.initial.y, n_out, 2);
                forward(layers, acts, w, x0, r0, None);
                loss += wb * mse_gradient(w, y0, wb as f32, c_init as f32) / c_init;
                backward(layers, w, r0, None, true);
            }
            loss
        });
        self.adam_step(lr);
        loss
    }

    fn n_out(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// Runs `pass` on the whole batch, or on its two halves on two threads
    /// (every kind of row halved) and sums their gradients, which is the
    /// whole batch's; returns the sum of what `pass` returned.
    fn split(&mut self, rows: usize, points: usize, initial: usize, pass: impl Fn(&[Layer], &[Activation], &mut Work, Part) -> f64 + Sync) -> f64 {
        let (layers, acts) = (&self.layers, &self.acts);
        let [w0, w1] = &mut self.work;
        if rows < SPLIT_ROWS || rayon::current_num_threads() < 2 {
            return pass(layers, acts, w0, Part::whole([rows, points, initial]));
        }
        let (first, second) = Part::halves([rows, points, initial]);
        let (s0, s1) = rayon::join(|| pass(layers, acts, w0, first), || pass(layers, acts, w1, second));
        for (a, b) in w0.g_w.iter_mut().zip(&w1.g_w).chain(w0.g_b.iter_mut().zip(&w1.g_b)) {
            for (a, b) in a.iter_mut().zip(b) {
                *a += b;
            }
        }
        s0 + s1
    }

    /// Adam on the gradients in the first work buffers.
    fn adam_step(&mut self, lr: f64) {
        self.time += 1;
        let bc2 = (1.0 - BETA2.powi(self.time)).sqrt();
        let cf = bc2 / (1.0 - BETA1.powi(self.time));
        let lr = lr as f32;
        let w0 = &self.work[0];
        for (l, layer) in self.layers.iter_mut().enumerate() {
            adam(&mut layer.w, &mut layer.m_w, &mut layer.v_w, &w0.g_w[l], self.time, bc2, cf, lr);
            adam(&mut layer.b, &mut layer.m_b, &mut layer.v_b, &w0.g_b[l], self.time, bc2, cf, lr);
        }
    }
}

/// Which rows of each kind (data, collocation, initial) one pass takes.
#[derive(Clone, Copy)]
struct Part {
    ranges: [(usize, usize); 3],
}

impl Part {
    fn whole(counts: [usize; 3]) -> Part {
        Part { ranges: counts.map(|n| (0, n)) }
    }

    fn halves(counts: [usize; 3]) -> (Part, Part) {
        // the second half takes the odd row: a single initial row goes to it
        (Part { ranges: counts.map(|n| (0, n / 2)) }, Part { ranges: counts.map(|n| (n / 2, n)) })
    }

    /// This part's rows of `v` (`cols` wide) among the rows of kind `kind`, and their count.
    fn slice<'v>(&self, v: &'v [f32], cols: usize, kind: usize) -> (&'v [f32], usize) {
        let (a, b) = self.ranges[kind];
        (&v[a * cols..b * cols], b - a)
    }

    /// This part's data rows of `x` and `y`.
    fn data<'v>(&self, x: &'v [f32], y: &'v [f32], layers: &[Layer]) -> (&'v [f32], &'v [f32], usize) {
        let (xs, rows) = self.slice(x, layers[0].inputs, 0);
        (xs, self.slice(y, layers[layers.len() - 1].outputs, 0).0, rows)
    }
}

/// The forward pass over `rows` rows of `x`: every layer's inputs and
/// slopes kept for the backward pass, the outputs in `w.z`. With a
/// `tangent` (input column, scale) also the outputs' derivative along that
/// input, in `w.dz`.
fn forward(layers: &[Layer], acts: &[Activation], w: &mut Work, x: &[f32], rows: usize, tangent: Option<(usize, f32)>) {
    let n = layers.len();
    w.a.resize_with(n, Vec::new);
    w.slope.resize_with(n - 1, Vec::new);
    w.g_w.resize_with(n, Vec::new);
    w.g_b.resize_with(n, Vec::new);
    w.a[0].clear();
    w.a[0].extend_from_slice(x);
    if tangent.is_some() {
        w.da.resize_with(n, Vec::new);
        w.curve.resize_with(n - 1, Vec::new);
    }
    for (l, layer) in layers.iter().enumerate() {
        // z = a·W + b
        w.z.resize(rows * layer.outputs, 0.0);
        matmul(&mut w.z, &w.a[l], &layer.w, rows, layer.inputs, layer.outputs);
        for r in 0..rows {
            for (zv, bv) in w.z[r * layer.outputs..(r + 1) * layer.outputs].iter_mut().zip(&layer.b) {
                *zv += bv;
            }
        }
        // dz = da·W; at the inputs da is the unit vector of `col`, scaled: dz is that row of W
        if let Some((col, scale)) = tangent {
            w.dz.resize(rows * layer.outputs, 0.0);
            if l == 0 {
                let row = &layer.w[col * layer.outputs..(col + 1) * layer.outputs];
                for chunk in w.dz.chunks_exact_mut(layer.outputs) {
                    for (d, v) in chunk.iter_mut().zip(row) {
                        *d = scale * v;
                    }
                }
            } else {
                matmul(&mut w.dz, &w.da[l], &layer.w, rows, layer.inputs, layer.outputs);
            }
        }
        if l + 1 < n {
            // a' = σ(z), slope σ'(z); with the tangent da' = σ'(z)·dz and σ''(z)·dz
            w.a[l + 1].resize(w.z.len(), 0.0);
            w.slope[l].resize(w.z.len(), 0.0);
            fastmath::value_and_slope(acts[l], &w.z, &mut w.a[l + 1], &mut w.slope[l]);
            if tangent.is_some() {
                let curve = &mut w.curve[l];
                curve.resize(w.z.len(), 0.0);
                fastmath::curvature(acts[l], &w.z, &w.a[l + 1], &w.slope[l], curve);
                let da = &mut w.da[l + 1];
                da.resize(w.z.len(), 0.0);
                for (((da, c), s), dz) in da.iter_mut().zip(curve.iter_mut()).zip(&w.slope[l]).zip(&w.dz) {
                    *da = s * dz;
                    *c *= dz;
                }
            }
        }
    }
}

/// The gradient of `weight`·Σ(out − y)²/`count` at the outputs of the last
/// forward pass, into `w.grad`; returns Σ(out − y)².
fn mse_gradient(w: &mut Work, y: &[f32], weight: f32, count: f32) -> f64 {
    let mut sum = 0.0f64;
    w.grad.resize(w.z.len(), 0.0);
    let k = 2.0 * weight / count;
    for ((g, o), t) in w.grad.iter_mut().zip(&w.z).zip(y) {
        let d = o - t;
        sum += (d * d) as f64;
        *g = k * d;
    }
    sum
}

/// The gradient of `coef`·Σr² of the physics residuals at the last
/// (tangent) forward pass over the points `x`: added to `w.grad`, written
/// to `w.gd`; returns Σr².
fn residual_gradient(w: &mut Work, residual: &HostResidual, x: &[f32], rows: usize, coef: f64) -> f64 {
    w.gd.clear();
    w.gd.resize(w.dz.len(), 0.0);
    residual.add_gradients(&mut w.residual, x, &w.z, &w.dz, rows, coef, &mut w.grad, &mut w.gd)
}

/// The backward pass of the last forward pass from the outputs' gradient
/// in `w.grad` (and with a `tangent`, the outputs' derivative's in `w.gd`):
/// the weights' and biases' gradients written to `w.g_w`, `w.g_b`, or added
/// to them with `accumulate`.
fn backward(layers: &[Layer], w: &mut Work, rows: usize, tangent: Option<(usize, f32)>, accumulate: bool) {
    for l in (0..layers.len()).rev() {
        let (inputs, outputs) = (layers[l].inputs, layers[l].outputs);
        // dW = aᵀ·g (+ daᵀ·gd), db = Σ rows of g
        w.g_w[l].resize(inputs * outputs, 0.0);
        matmul_at_b(&mut w.g_w[l], &w.a[l], &w.grad, rows, inputs, outputs, accumulate);
        if let Some((col, scale)) = tangent {
            if l == 0 {
                let g_row = &mut w.g_w[0][col * outputs..(col + 1) * outputs];
                for chunk in w.gd.chunks_exact(outputs) {
                    for (g, d) in g_row.iter_mut().zip(chunk) {
                        *g += scale * d;
                    }
                }
            } else {
                matmul_at_b(&mut w.g_w[l], &w.da[l], &w.gd, rows, inputs, outputs, true);
            }
        }
        let g_b = &mut w.g_b[l];
        if !accumulate {
            g_b.clear();
        }
        g_b.resize(outputs, 0.0);
        for r in 0..rows {
            for (gb, g) in g_b.iter_mut().zip(&w.grad[r * outputs..(r + 1) * outputs]) {
                *gb += g;
            }
        }
        if l == 0 {
            break;
        }
        // through the layer: g·Wᵀ, then the activation
        w.grad_prev.resize(rows * inputs, 0.0);
        matmul_a_bt(&mut w.grad_prev, &w.grad, &layers[l].w, rows, outputs, inputs);
        let slope = &w.slope[l - 1];
        if tangent.is_some() {
            // a = σ(z), da = σ'(z)·dz: ∂/∂z = g·σ' + gd·σ''·dz, ∂/∂dz = gd·σ'
            w.gd_prev.resize(rows * inputs, 0.0);
            matmul_a_bt(&mut w.gd_prev, &w.gd, &layers[l].w, rows, outputs, inputs);
            for (((g, gd), s), c) in w.grad_prev.iter_mut().zip(w.gd_prev.iter_mut()).zip(slope).zip(&w.curve[l - 1]) {
                *g = *g * s + *gd * c;
                *gd *= s;
            }
            std::mem::swap(&mut w.gd, &mut w.gd_prev);
        } else {
            for (g, s) in w.grad_prev.iter_mut().zip(slope) {
                *g *= s;
            }
        }
        std::mem::swap(&mut w.grad, &mut w.grad_prev);
    }
}

/// burn's Adam update of `p` by gradient `g` at step `time`.
#[allow(clippy::too_many_arguments)]
fn adam(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], time: i32, bc2: f32, cf: f32, lr: f32) {
    let first = time == 1;
    for i in 0..p.len() {
        let gi = g[i];
        let (mi, vi) = if first { ((1.0 - BETA1) * gi, (1.0 - BETA2) * gi * gi) } else { (m[i] * BETA1 + gi * (1.0 - BETA1), v[i] * BETA2 + gi * gi * (1.0 - BETA2)) };
        m[i] = mi;
        v[i] = vi;
        p[i] -= (mi * cf) / (vi.sqrt() + EPSILON * bc2) * lr;
    }
}

/// `c[m×n] = a[m×k] · b[k×n]`, row-major.
fn matmul(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    gemm(c, m, n, k, (a.as_ptr(), k as isize, 1), (b.as_ptr(), n as isize, 1), false);
}

/// `c[k×n] = aᵀ · b` (or `c += aᵀ · b` with `accumulate`) for `a[m×k]`, `b[m×n]`.
fn matmul_at_b(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, accumulate: bool) {
    gemm(c, k, n, m, (a.as_ptr(), 1, k as isize), (b.as_ptr(), n as isize, 1), accumulate);
}

/// `c[m×k] = a · bᵀ` for `a[m×n]`, `b[k×n]`.
fn matmul_a_bt(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
    gemm(c, m, k, n, (a.as_ptr(), n as isize, 1), (b.as_ptr(), 1, n as isize), false);
}

/// `dst[m×n] = lhs[m×depth] · rhs[depth×n]` (`dst +=` with `accumulate`),
/// operands given as (pointer, row stride, column stride).
fn gemm(dst: &mut [f32], m: usize, n: usize, depth: usize, lhs: (*const f32, isize, isize), rhs: (*const f32, isize, isize), accumulate: bool) {
    assert_eq!(dst.len(), m * n);
    // SAFETY: the callers' slices hold m×depth, depth×n and m×n elements at
    // these strides (dst's length is checked; the operands' by construction)
    unsafe {
        gemm::gemm(m, n, depth, dst.as_mut_ptr(), 1, n as isize, accumulate, lhs.0, lhs.2, lhs.1, rhs.0, rhs.2, rhs.1, 1.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sampling::Rng;
    use crate::train::arch::{Architecture, Layer as Hidden};
    use burn::optim::AdamConfig;
    use burn::tensor::Device;

    /// A checkpoint keeps Adam's moments and not the weights again; one
    /// written by an earlier excite, weights and all, still resumes.
    #[test]
    fn moments_are_saved_without_the_weights_and_old_files_resume() {
        let layer = |n: usize| Layer { inputs: 1, outputs: n, w: vec![9.0; n], b: vec![9.0; n], m_w: vec![1.0; n], v_w: vec![2.0; n], m_b: vec![3.0; n], v_b: vec![4.0; n] };
        let fused = Fused { layers: vec![layer(2)], acts: vec![], time: 7, work: Default::default() };
        let dir = std::env::temp_dir().join(format!("excite-moments-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        fused.save(&dir).unwrap();
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(MOMENTS_FILE)).unwrap()).unwrap();
        assert!(saved["layers"][0].get("w").is_none() && saved["layers"][0].get("b").is_none(), "{saved}");
        let old = r#"{"time": 5, "layers": [{"inputs": 1, "outputs": 2, "w": [0.5, 0.5], "b": [0.1, 0.1], "m_w": [1.5, 1.5], "v_w": [2.5, 2.5], "m_b": [3.5, 3.5], "v_b": [4.5, 4.5]}]}"#;
        std::fs::write(dir.join(MOMENTS_FILE), old).unwrap();
        let mut resumed = Fused { layers: vec![layer(2)], acts: vec![], time: 0, work: Default::default() };
        resumed.resume(&dir).unwrap();
        let l = &resumed.layers[0];
        assert_eq!((resumed.time, l.m_w[0], l.v_w[1], l.m_b[0], l.v_b[1], l.w[0]), (5, 1.5, 2.5, 3.5, 4.5, 9.0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The fused step and burn's autodiff step take the same network to the
    /// same weights (to f32 rounding), for every activation, over steps
    /// where Adam's bias correction matters.
    #[test]
    fn the_fused_step_is_burns_step() {
        for act in Activation::ALL {
            let arch = Architecture { inputs: 3, hidden: vec![Hidden(act, 16), Hidden(act, 8)], outputs: 2 };
            let device = Device::flex().autodiff();
            let mut net = Net::seeded(&arch, &device, true, 7);
            let mut fused = Fused::from_net(&net);
            let mut optim = AdamConfig::new().init();
            let mut rng = Rng::new(3);
            for step in 0..5 {
                // small batches in one piece, large ones split over two threads
                let rows = if step % 2 == 0 { 64 } else { 2 * SPLIT_ROWS + 3 };
                let x: Vec<f32> = (0..rows * 3).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
                let y: Vec<f32> = (0..rows * 2).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
                let lr = 1e-2 / (step + 1) as f64;
                let loss = fused.step(&x, &y, rows, lr);
                let burn_loss;
                (net, burn_loss) = crate::train::trainer::step(net, &mut optim, lr, (&x, &y, rows), None, &mut rng, &device, true);
                let burn_loss = burn_loss.unwrap();
                assert!((loss - burn_loss).abs() <= 1e-5 * burn_loss.max(1e-3), "{act:?} step {step}: loss {loss} vs burn {burn_loss}");
            }
            let theirs = Fused::from_net(&net);
            for (a, b) in fused.layers.iter().zip(&theirs.layers) {
                for (x, y) in a.w.iter().chain(&a.b).zip(b.w.iter().chain(&b.b)) {
                    assert!((x - y).abs() <= 2e-5 * (1.0 + y.abs()), "{act:?}: weight {x} vs burn {y}");
                }
            }
            // and written back, burn's net carries the fused weights
            let written = Fused::from_net(&fused.write_into(net));
            assert_eq!(written.layers[0].w, fused.layers[0].w);
            assert_eq!(written.layers[2].b, fused.layers[2].b);
        }
    }

    /// The fused PINN step and burn's autodiff PINN step (forward tangent,
    /// residual of the model's taped equations, initial condition) take the
    /// same network to the same weights, for every activation: a varying
    /// parameter and a sampled initial value among the inputs, split and
    /// unsplit batches, a first window (with the initial condition) and a later one.
    #[test]
    fn the_fused_pinn_step_is_burns_step() {
        use crate::cell::symbolic;
        use crate::data::VarRange;
        use crate::train::physics::PhysicsCtx;
        use crate::train::spec::{Collocation, LossWeights};
        use crate::train::trainer::Physics;
        use crate::train::Normalization;

        let model = crate::cell::by_name("fhn-cardiac").unwrap();
        let info = model.info();
        let mut fixed: Vec<Option<f64>> = info.params.iter().map(|p| Some(p.default)).collect();
        let k = info.params.iter().position(|p| p.name == "k").unwrap();
        fixed[k] = None;
        let mut param_cols = vec![None; fixed.len()];
        param_cols[k] = Some(1);
        let builtin = PhysicsCtx { tape: symbolic::trace(model, &fixed), param_cols, initial: vec![Ok(2), Err(0.1)], clamp: None };
        // an imported model's operations (time, a piecewise stimulus, pow, ln, abs) on burn's tensors and the host's tape;
        // and with the states clamped to ranges the untrained outputs often leave
        let imported = |clamp: Option<Vec<(f64, f64)>>| {
            use crate::cell::equations::{Equations, Expr, Func, Kind, Variable};
            let var = |name: &str, kind: Kind| Variable { name: name.into(), units: "1".into(), kind };
            let call = |f: Func, args: Vec<Expr>| Expr::Call(f, args);
            let (u, v, k) = (Expr::Var(0), Expr::Var(1), Expr::Var(2));
            let pulse = Expr::Piecewise(vec![(Expr::Num(0.1), call(Func::Lt, vec![Expr::Time, Expr::Num(10.0)]))], Box::new(Expr::Num(0.0)));
            let du = call(Func::Add, vec![
                call(Func::Mul, vec![k, u.clone(), call(Func::Sub, vec![Expr::Num(1.0), u.clone()])]),
                call(Func::Sub, vec![v.clone()]),
                pulse,
                call(Func::Mul, vec![Expr::Num(0.05), call(Func::Ln, vec![call(Func::Add, vec![Expr::Num(2.0), u.clone()])])]),
            ]);
            let dv = call(Func::Add, vec![
                call(Func::Mul, vec![Expr::Num(0.1), call(Func::Pow, vec![call(Func::Add, vec![Expr::Num(1.5), u.clone()]), Expr::Num(2.5)])]),
                call(Func::Mul, vec![Expr::Num(-0.2), v]),
                call(Func::Mul, vec![Expr::Num(0.01), call(Func::Abs, vec![u])]),
            ]);
            let eq = Equations {
                name: "stimulated".into(),
                time: ("t".into(), "1".into()),
                vars: vec![var("c.u", Kind::State { initial: 0.0 }), var("c.v", Kind::State { initial: 0.1 }), var("c.k", Kind::Param { value: 1.0 })],
                states: vec![0, 1],
                rates: vec![du, dv],
                params: vec![2],
                algebraic: vec![],
            };
            let tape = symbolic::trace_equations(&eq, &[None]);
            assert!(tape.ops.iter().any(|o| matches!(o, symbolic::Op::Time)) && tape.ops.iter().any(|o| matches!(o, symbolic::Op::Select(..))));
            PhysicsCtx { tape, param_cols: vec![Some(1)], initial: vec![Ok(2), Err(0.1)], clamp }
        };
        for ctx in [builtin, imported(None), imported(Some(vec![(0.1, 0.7), (0.5, 1.8)]))] {
            let range = |name: &str, min: f64, max: f64| VarRange { name: name.into(), min, max };
            let norm = Normalization { inputs: vec![range("t", 0.0, 50.0), range("k", 0.0, 2.0), range("u0", 0.0, 0.6)], outputs: vec![range("u", -0.2, 1.1), range("v", 0.0, 2.5)] };
            let weights = LossWeights { data: 3.0, physics: 0.7, initial: 1.3 };
            let residual = HostResidual::new(&ctx, &norm);
            // fresh points with the initial condition at all of them, and the
            // residual at the batch's rows with the initial condition at five
            let forms = [(Collocation::Points(96), None), (Collocation::Batch, Some(5))];
            for (act, (collocation, initial_points)) in Activation::ALL.into_iter().flat_map(|a| forms.map(|f| (a, f))) {
                let arch = Architecture { inputs: 3, hidden: vec![Hidden(act, 16), Hidden(act, 8)], outputs: 2 };
                let device = Device::flex().autodiff();
                let mut net = Net::seeded(&arch, &device, true, 11);
                let mut fused = Fused::from_net(&net);
                let mut optim = AdamConfig::new().init();
                let (mut data, mut burn_rng, mut fused_rng) = (Rng::new(5), Rng::new(9), Rng::new(9));
                for step in 0..5 {
                    let rows = if step % 2 == 0 { 64 } else { 2 * SPLIT_ROWS + 3 };
                    let t_range = if step == 3 { (25.0, 50.0) } else { (0.0, 50.0) };
                    let physics = Physics { ctx: &ctx, norm: &norm, t_range, collocation, initial_points, weights };
                    let x: Vec<f32> = (0..rows * 3).map(|_| (data.uniform() * 2.0 - 1.0) as f32).collect();
                    let y: Vec<f32> = (0..rows * 2).map(|_| (data.uniform() * 2.0 - 1.0) as f32).collect();
                    let lr = 1e-2 / (step + 1) as f64;
                    let points = physics.draw(&x, rows, &mut fused_rng);
                    let terms = PinnTerms { residual: &residual, collocation: points.fresh.as_deref().map(|x| (x, points.count)), initial: &points.initial, weights };
                    let loss = fused.step_pinn(&x, &y, rows, &terms, lr);
                    let burn_loss;
                    (net, burn_loss) = crate::train::trainer::step(net, &mut optim, lr, (&x, &y, rows), Some(&physics), &mut burn_rng, &device, true);
                    let burn_loss = burn_loss.unwrap();
                    assert!((loss - burn_loss).abs() <= 2e-5 * burn_loss.max(1e-3), "{act:?} {collocation:?} step {step}: loss {loss} vs burn {burn_loss}");
                }
                let theirs = Fused::from_net(&net);
                for (a, b) in fused.layers.iter().zip(&theirs.layers) {
                    for (x, y) in a.w.iter().chain(&a.b).zip(b.w.iter().chain(&b.b)) {
                        assert!((x - y).abs() <= 5e-5 * (1.0 + y.abs()), "{act:?} {collocation:?}: weight {x} vs burn {y}");
                    }
                }
            }
        }
    }
}
