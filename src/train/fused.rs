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
use crate::train::{fastmath, Net};
use crate::Error;

/// burn's AdamConfig defaults, which the burn path trains with.
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-5;
/// The Adam state beside a checkpoint's model.bpk.
const MOMENTS_FILE: &str = "fused-adam.json";

/// One layer's weights `[inputs][outputs]` (burn's Linear layout), bias, and their Adam moments.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

#[derive(serde::Serialize, serde::Deserialize)]
struct Moments {
    time: i32,
    layers: Vec<Layer>,
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
    z: Vec<f32>,
    grad: Vec<f32>,
    grad_prev: Vec<f32>,
    /// Per layer: the gradients of the weights and the bias.
    g_w: Vec<Vec<f32>>,
    g_b: Vec<Vec<f32>>,
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
        let m = Moments { time: self.time, layers: self.layers.clone() };
        write_atomic(&dir.join(MOMENTS_FILE), &serde_json::to_vec(&m).expect("serialises"))
    }

    /// Adam's state from a checkpoint folder written by [`Fused::save`], if
    /// there is one that fits these layers; the weights stay those of the net.
    pub fn resume(&mut self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(MOMENTS_FILE);
        let Ok(bytes) = std::fs::read(&path) else { return Ok(()) };
        let m: Moments = serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, format!("damaged optimizer state: {e}"), "start again without --resume"))?;
        let fits = m.layers.len() == self.layers.len() && m.layers.iter().zip(&self.layers).all(|(a, b)| a.w.len() == b.w.len() && a.b.len() == b.b.len());
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
        let n_in = self.layers[0].inputs;
        let n_out = self.layers[self.layers.len() - 1].outputs;
        let count = (rows * n_out) as f32;
        let (layers, acts) = (&self.layers, &self.acts);
        let [w0, w1] = &mut self.work;
        let sum = if rows >= SPLIT_ROWS && rayon::current_num_threads() > 1 {
            let half = rows / 2;
            let (x0, x1) = x.split_at(half * n_in);
            let (y0, y1) = y.split_at(half * n_out);
            let (s0, s1) = rayon::join(|| gradients(layers, acts, w0, x0, y0, half, count), || gradients(layers, acts, w1, x1, y1, rows - half, count));
            for (a, b) in w0.g_w.iter_mut().zip(&w1.g_w).chain(w0.g_b.iter_mut().zip(&w1.g_b)) {
                for (a, b) in a.iter_mut().zip(b) {
                    *a += b;
                }
            }
            s0 + s1
        } else {
            gradients(layers, acts, w0, x, y, rows, count)
        };
        self.time += 1;
        let bc2 = (1.0 - BETA2.powi(self.time)).sqrt();
        let cf = bc2 / (1.0 - BETA1.powi(self.time));
        let lr = lr as f32;
        for (l, layer) in self.layers.iter_mut().enumerate() {
            adam(&mut layer.w, &mut layer.m_w, &mut layer.v_w, &w0.g_w[l], self.time, bc2, cf, lr);
            adam(&mut layer.b, &mut layer.m_b, &mut layer.v_b, &w0.g_b[l], self.time, bc2, cf, lr);
        }
        sum / count as f64
    }
}

/// Forward and backward over `rows` rows: the gradients of the MSE over
/// `count` outputs in all (of the whole batch) into `w.g_w`, `w.g_b`;
/// returns this part's sum of squared errors.
fn gradients(layers: &[Layer], acts: &[Activation], w: &mut Work, x: &[f32], y: &[f32], rows: usize, count: f32) -> f64 {
    let n = layers.len();
    w.a.resize_with(n, Vec::new);
    w.slope.resize_with(n - 1, Vec::new);
    w.g_w.resize_with(n, Vec::new);
    w.g_b.resize_with(n, Vec::new);
    w.a[0].clear();
    w.a[0].extend_from_slice(x);
    // forward: z = a·W + b; a' = σ(z), slope σ'(z)
    for (l, layer) in layers.iter().enumerate() {
        w.z.resize(rows * layer.outputs, 0.0);
        matmul(&mut w.z, &w.a[l], &layer.w, rows, layer.inputs, layer.outputs);
        for r in 0..rows {
            for (zv, bv) in w.z[r * layer.outputs..(r + 1) * layer.outputs].iter_mut().zip(&layer.b) {
                *zv += bv;
            }
        }
        if l + 1 < n {
            w.a[l + 1].resize(w.z.len(), 0.0);
            w.slope[l].resize(w.z.len(), 0.0);
            fastmath::value_and_slope(acts[l], &w.z, &mut w.a[l + 1], &mut w.slope[l]);
        }
    }
    // the MSE's gradient at the outputs (in w.z)
    let mut sum = 0.0f64;
    w.grad.resize(w.z.len(), 0.0);
    for ((g, o), t) in w.grad.iter_mut().zip(&w.z).zip(y) {
        let d = o - t;
        sum += (d * d) as f64;
        *g = 2.0 * d / count;
    }
    // backward, last layer first
    for l in (0..n).rev() {
        let (inputs, outputs) = (layers[l].inputs, layers[l].outputs);
        // dW = aᵀ·g, db = Σ rows of g
        w.g_w[l].resize(inputs * outputs, 0.0);
        matmul_at_b(&mut w.g_w[l], &w.a[l], &w.grad, rows, inputs, outputs);
        let g_b = &mut w.g_b[l];
        g_b.clear();
        g_b.resize(outputs, 0.0);
        for r in 0..rows {
            for (gb, g) in g_b.iter_mut().zip(&w.grad[r * outputs..(r + 1) * outputs]) {
                *gb += g;
            }
        }
        if l > 0 {
            w.grad_prev.resize(rows * inputs, 0.0);
            matmul_a_bt(&mut w.grad_prev, &w.grad, &layers[l].w, rows, outputs, inputs);
            for (g, s) in w.grad_prev.iter_mut().zip(&w.slope[l - 1]) {
                *g *= s;
            }
            std::mem::swap(&mut w.grad, &mut w.grad_prev);
        }
    }
    sum
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
    gemm(c, m, n, k, (a.as_ptr(), k as isize, 1), (b.as_ptr(), n as isize, 1));
}

/// `c[k×n] = aᵀ · b` for `a[m×k]`, `b[m×n]`.
fn matmul_at_b(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    gemm(c, k, n, m, (a.as_ptr(), 1, k as isize), (b.as_ptr(), n as isize, 1));
}

/// `c[m×k] = a · bᵀ` for `a[m×n]`, `b[k×n]`.
fn matmul_a_bt(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
    gemm(c, m, k, n, (a.as_ptr(), n as isize, 1), (b.as_ptr(), 1, n as isize));
}

/// `dst[m×n] = lhs[m×depth] · rhs[depth×n]`, operands given as (pointer, row stride, column stride).
fn gemm(dst: &mut [f32], m: usize, n: usize, depth: usize, lhs: (*const f32, isize, isize), rhs: (*const f32, isize, isize)) {
    assert_eq!(dst.len(), m * n);
    // SAFETY: the callers' slices hold m×depth, depth×n and m×n elements at
    // these strides (dst's length is checked; the operands' by construction)
    unsafe {
        gemm::gemm(m, n, depth, dst.as_mut_ptr(), 1, n as isize, false, lhs.0, lhs.2, lhs.1, rhs.0, rhs.2, rhs.1, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sampling::Rng;
    use crate::train::arch::{Architecture, Layer as Hidden};
    use burn::optim::AdamConfig;
    use burn::tensor::Device;

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
                let (xb, yb) = (Tensor::<2>::from_data(TensorData::new(x, [rows, 3]), &device), Tensor::<2>::from_data(TensorData::new(y, [rows, 2]), &device));
                let burn_loss;
                (net, burn_loss) = crate::train::trainer::step(net, &mut optim, lr, xb, yb, None, &mut rng, &device, true);
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
}
