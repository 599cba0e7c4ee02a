//! The native CPU engine: excite's MLPs evaluated by a fused kernel that
//! keeps a tile of rows in an L1-sized buffer through every layer, instead of
//! a runtime's one operator (and one memory pass) per layer.
//!
//! It loads the ONNX files excite writes (Gemm and the seven activations,
//! SiLU and GELU as the patterns `excite export` emits); any other operator
//! is refused by name. Layers are `y = x·W + b` over blocks of 4 rows × 16
//! outputs held in registers (AVX-512 or AVX2/FMA chosen at run time, the same
//! code compiled portably otherwise); activations use vectorisable approximations with
//! stated errors against f64: tanh ≤ 5e-7 (Eigen's rational form), sigmoid
//! and SiLU through tanh, exp (ELU, GELU) ≤ 3 ulp, erf ≤ 5e-7. Rows are
//! independent and every tile, the last partial one too, runs the same code,
//! so results do not depend on the thread count. The scalar reference is
//! [`crate::engine::reference::Interpreter`].

use std::path::Path;

use rayon::prelude::*;

use crate::build::graph::{Model, Node};
use crate::engine::{Engine, EngineInfo};
use crate::Error;

/// Rows evaluated together through all layers.
const TILE: usize = 16;
/// Multiply-adds below which a batch is not worth spreading over threads
/// (about 25 µs on one core).
const SMALL_WORK: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Linear,
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Tanh,
    Sigmoid,
    Silu,
    Gelu,
}

#[derive(Debug, Clone)]
struct Layer {
    d_in: usize,
    d_out: usize,
    /// d_out padded to a multiple of COLS (weights and bias zero-padded).
    padded: usize,
    /// Row-major [d_in][padded].
    w: Vec<f32>,
    b: Vec<f32>,
    act: Act,
}

/// A dense layer as the GPU kernel generator takes it: unpadded weights
/// [d_in][d_out], bias, and the activation's name and parameter.
#[derive(Debug, Clone)]
pub struct Dense {
    pub d_in: usize,
    pub d_out: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// `linear`, `relu`, `leaky_relu`, `elu`, `tanh`, `sigmoid`, `silu` or `gelu`.
    pub act: &'static str,
    /// The slope of leaky_relu or the alpha of elu (0 otherwise).
    pub param: f32,
}

/// A loaded network ready to run.
pub struct NativeEngine {
    layers: Vec<Layer>,
    inputs: usize,
    outputs: usize,
    widest: usize,
    /// A pool of the requested size (`None`: rayon's global pool, all cores).
    pool: Option<rayon::ThreadPool>,
    /// One thread requested: run on the caller's thread.
    single: bool,
    macs_per_row: usize,
}

fn refuse(path: &Path, what: String) -> Error {
    Error::format(path, what, "the native engine runs the fp32 Gemm/activation graphs `excite export` writes; use `--target cpu` (ONNX Runtime) for other models")
}

impl NativeEngine {
    /// Loads an ONNX file; `threads = 0` uses all cores.
    pub fn load(path: &Path, threads: usize) -> Result<NativeEngine, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let m = Model::parse(&bytes).ok_or_else(|| Error::format(path, "not an ONNX model", "export one with `excite export`"))?;
        Self::from_model(&m, threads).map_err(|e| match e {
            Error::Format { problem, .. } => refuse(path, problem),
            other => other,
        })
    }

    pub fn from_model(m: &Model, threads: usize) -> Result<NativeEngine, Error> {
        let bad = |p: String| Error::format("<model>", p, "");
        let input = m.inputs.first().ok_or_else(|| bad("the model has no input".into()))?;
        let output = m.outputs.first().ok_or_else(|| bad("the model has no output".into()))?;
        let mut layers: Vec<Layer> = Vec::new();
        let mut cur = input.name.clone();
        let mut i = 0;
        let nodes = &m.nodes;
        while i < nodes.len() {
            let n = &nodes[i];
            if n.op != "Gemm" || n.inputs.first() != Some(&cur) {
                return Err(bad(format!("operator `{}` (node `{}`) is not supported by the native engine", n.op, n.name)));
            }
            if n.attr_i("transA", 0) != 0 || n.attr_i("transB", 0) != 0 {
                return Err(bad(format!("Gemm `{}` with transposed operands is not supported", n.name)));
            }
            let w = m.init(&n.inputs[1]).and_then(|t| t.floats().map(|v| (t.dims.clone(), v))).ok_or_else(|| bad(format!("Gemm `{}`: weight `{}` is not a float32 initializer", n.name, n.inputs[1])))?;
            let (dims, wv) = w;
            let (d_in, d_out) = (dims[0], dims[1]);
            let bias = match n.inputs.get(2) {
                Some(b) => m.init(b).and_then(|t| t.floats()).ok_or_else(|| bad(format!("Gemm `{}`: bias `{b}` is not a float32 initializer", n.name)))?,
                None => vec![0.0; d_out],
            };
            let z = n.outputs[0].clone();
            i += 1;
            let (act, out) = recognise(&nodes[i..], &z, m).map_err(bad)?;
            i += act.1;
            let padded = d_out.div_ceil(COLS) * COLS;
            let mut wp = vec![0.0f32; d_in * padded];
            for k in 0..d_in {
                wp[k * padded..k * padded + d_out].copy_from_slice(&wv[k * d_out..(k + 1) * d_out]);
            }
            let mut bp = vec![0.0f32; padded];
            bp[..d_out].copy_from_slice(&bias);
            if let Some(prev) = layers.last() {
                if prev.d_out != d_in {
                    return Err(bad(format!("Gemm `{}` takes {d_in} inputs after a layer of {}", n.name, prev.d_out)));
                }
            }
            layers.push(Layer { d_in, d_out, padded, w: wp, b: bp, act: act.0 });
            cur = out;
        }
        if cur != output.name || layers.is_empty() {
            return Err(bad(format!("the graph does not end in its output `{}`", output.name)));
        }
        let inputs = layers[0].d_in;
        let outputs = layers.last().expect("non-empty").d_out;
        let widest = layers.iter().map(|l| l.padded.max(l.d_in)).max().unwrap_or(COLS);
        let pool = (threads > 1).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()).flatten();
        let macs_per_row = layers.iter().map(|l| l.d_in * l.padded).sum();
        Ok(NativeEngine { layers, inputs, outputs, widest, pool, single: threads == 1, macs_per_row })
    }

    /// Evaluates `rows` rows of `x` into `y` with the chosen kernel.
    fn run_into(&self, x: &[f32], rows: usize, y: &mut [f32], isa: Isa) {
        let tiles = rows.div_ceil(TILE);
        let chunk = 16usize; // tiles per task
        let work = |(c, out): (usize, &mut [f32])| {
            let mut buf_a = vec![0.0f32; TILE * self.widest];
            let mut buf_b = vec![0.0f32; TILE * self.widest];
            let first_tile = c * chunk;
            for t in first_tile..(first_tile + chunk).min(tiles) {
                let r0 = t * TILE;
                let valid = TILE.min(rows - r0);
                // load the tile (a partial tile repeats its last row)
                for r in 0..TILE {
                    let src = r0 + r.min(valid - 1);
                    buf_a[r * self.widest..r * self.widest + self.inputs].copy_from_slice(&x[src * self.inputs..(src + 1) * self.inputs]);
                }
                let (mut a, mut b) = (&mut buf_a, &mut buf_b);
                for l in &self.layers {
                    // SAFETY: `isa` comes from `Isa::best` (or is portable).
                    unsafe { layer(l, a, b, self.widest, isa) };
                    std::mem::swap(&mut a, &mut b);
                }
                let base = (t - first_tile) * TILE;
                for r in 0..valid {
                    out[(base + r) * self.outputs..(base + r + 1) * self.outputs].copy_from_slice(&a[r * self.widest..r * self.widest + self.outputs]);
                }
            }
        };
        let per_task = chunk * TILE * self.outputs;
        // One task, one thread, or little work: stay on the caller's thread (a
        // hand-off to a pool costs two context switches, about 10 µs).
        if tiles <= chunk || self.single || rows * self.macs_per_row < SMALL_WORK {
            y.chunks_mut(per_task).enumerate().for_each(&work);
            return;
        }
        match &self.pool {
            Some(p) => p.install(|| y.par_chunks_mut(per_task).enumerate().for_each(&work)),
            None => y.par_chunks_mut(per_task).enumerate().for_each(&work),
        }
    }

    /// The layers without padding, for other backends (native-cuda).
    pub fn dense(&self) -> Vec<Dense> {
        self.layers
            .iter()
            .map(|l| {
                let w = (0..l.d_in).flat_map(|k| l.w[k * l.padded..k * l.padded + l.d_out].iter().copied()).collect();
                let (act, param) = match l.act {
                    Act::Linear => ("linear", 0.0),
                    Act::Relu => ("relu", 0.0),
                    Act::LeakyRelu(a) => ("leaky_relu", a),
                    Act::Elu(a) => ("elu", a),
                    Act::Tanh => ("tanh", 0.0),
                    Act::Sigmoid => ("sigmoid", 0.0),
                    Act::Silu => ("silu", 0.0),
                    Act::Gelu => ("gelu", 0.0),
                };
                Dense { d_in: l.d_in, d_out: l.d_out, w, b: l.b[..l.d_out].to_vec(), act, param }
            })
            .collect()
    }

    /// Runs the portable kernel even where AVX2 is available (for tests).
    pub fn run_portable(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; rows * self.outputs];
        self.run_into(x, rows, &mut y, Isa::Portable);
        y
    }
}

/// The activation nodes following a Gemm whose output is `z`: returns the
/// activation, how many nodes it spans, and the name of its output.
fn recognise(rest: &[Node], z: &str, m: &Model) -> Result<((Act, usize), String), String> {
    let is_const = |name: &str, v: f32| m.init(name).and_then(|t| t.floats()).is_some_and(|f| f.len() == 1 && (f[0] - v).abs() < 1e-6);
    let Some(n) = rest.first().filter(|n| n.inputs.first().map(String::as_str) == Some(z)) else {
        return Ok(((Act::Linear, 0), z.to_string()));
    };
    let one = |a: Act| Ok(((a, 1), n.outputs[0].clone()));
    match n.op.as_str() {
        "Relu" => one(Act::Relu),
        "Tanh" => one(Act::Tanh),
        "LeakyRelu" => one(Act::LeakyRelu(n.attr_f("alpha", 0.01))),
        "Elu" => one(Act::Elu(n.attr_f("alpha", 1.0))),
        "Sigmoid" => {
            // SiLU: Sigmoid(z) then Mul(z, s)
            if let Some(mul) = rest.get(1) {
                let s = &n.outputs[0];
                if mul.op == "Mul" && mul.inputs.contains(&z.to_string()) && mul.inputs.contains(s) {
                    return Ok(((Act::Silu, 2), mul.outputs[0].clone()));
                }
            }
            one(Act::Sigmoid)
        }
        "Mul" if rest.len() >= 5 => {
            // GELU: Mul(z, 1/√2) → Erf → Add(1) → Mul(z, ·) → Mul(0.5)
            let ops: Vec<&str> = rest[..5].iter().map(|n| n.op.as_str()).collect();
            let c = n.inputs.get(1).map(String::as_str).unwrap_or("");
            if ops == ["Mul", "Erf", "Add", "Mul", "Mul"] && is_const(c, std::f32::consts::FRAC_1_SQRT_2) {
                return Ok(((Act::Gelu, 5), rest[4].outputs[0].clone()));
            }
            Err(format!("operator `Mul` (node `{}`) is not supported by the native engine", n.name))
        }
        op => Err(format!("operator `{op}` (node `{}`) is not supported by the native engine", n.name)),
    }
}

/// Output columns computed together, and rows sharing each weight load: a
/// 4 × 16 block of accumulators (8 AVX2 registers, 4 AVX-512 ones) leaves
/// room for the weights and the broadcast input.
const COLS: usize = 16;
const ROWS: usize = 4;

/// One layer on a tile: `dst[r][j] = act(b[j] + Σ_k src[r][k]·w[k][j])`,
/// summed over k in order (so every path rounds the same way up to FMA).
#[inline(always)]
fn layer_body<const FMA: bool, const WIDE: usize>(l: &Layer, src: &[f32], dst: &mut [f32], stride: usize) {
    assert!(src.len() >= TILE * stride && dst.len() >= TILE * stride && l.w.len() >= l.d_in * l.padded && stride >= l.padded.max(l.d_in));
    // Column blocks of WIDE where they fit (fewer broadcast loads per FMA), COLS for the rest.
    let wide_end = if WIDE > COLS { l.padded / WIDE * WIDE } else { 0 };
    for r0 in (0..TILE).step_by(ROWS) {
        for j0 in (0..wide_end).step_by(WIDE.max(1)) {
            block::<FMA, WIDE>(l, src, dst, stride, r0, j0);
        }
        for j0 in (wide_end..l.padded).step_by(COLS) {
            block::<FMA, COLS>(l, src, dst, stride, r0, j0);
        }
    }
    for r in 0..TILE {
        activate::<FMA>(l.act, &mut dst[r * stride..r * stride + l.padded]);
    }
}

/// ROWS rows × C output columns starting at row r0, column j0.
#[inline(always)]
fn block<const FMA: bool, const C: usize>(l: &Layer, src: &[f32], dst: &mut [f32], stride: usize, r0: usize, j0: usize) {
    let mut acc = [[0.0f32; C]; ROWS];
    for row in acc.iter_mut() {
        row.copy_from_slice(&l.b[j0..j0 + C]);
    }
    for k in 0..l.d_in {
        // SAFETY: k < d_in and j0 + C ≤ padded (sizes asserted by the caller).
        let w: [f32; C] = unsafe { *(l.w.as_ptr().add(k * l.padded + j0) as *const [f32; C]) };
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: (r0 + r) < TILE and k < d_in ≤ stride.
            let a = unsafe { *src.get_unchecked((r0 + r) * stride + k) };
            for q in 0..C {
                row[q] = if FMA { a.mul_add(w[q], row[q]) } else { a * w[q] + row[q] };
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let at = (r0 + r) * stride + j0;
        dst[at..at + C].copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn layer_avx512(l: &Layer, src: &[f32], dst: &mut [f32], stride: usize) {
    layer_body::<true, 32>(l, src, dst, stride)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn layer_avx2(l: &Layer, src: &[f32], dst: &mut [f32], stride: usize) {
    layer_body::<true, COLS>(l, src, dst, stride)
}

/// The kernel variants, chosen once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    fn best() -> Isa {
        if crate::solve::cpu::has_avx512() {
            Isa::Avx512
        } else if crate::solve::cpu::has_avx2_fma() {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }
}

unsafe fn layer(l: &Layer, src: &[f32], dst: &mut [f32], stride: usize, isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => layer_avx512(l, src, dst, stride),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => layer_avx2(l, src, dst, stride),
        _ => layer_body::<false, COLS>(l, src, dst, stride),
    }
}

#[inline(always)]
fn activate<const FMA: bool>(act: Act, v: &mut [f32]) {
    match act {
        Act::Linear => {}
        Act::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        Act::LeakyRelu(a) => v.iter_mut().for_each(|x| *x = if *x >= 0.0 { *x } else { a * *x }),
        Act::Elu(a) => v.iter_mut().for_each(|x| *x = if *x > 0.0 { *x } else { a * (exp::<FMA>(*x) - 1.0) }),
        Act::Tanh => v.iter_mut().for_each(|x| *x = tanh::<FMA>(*x)),
        Act::Sigmoid => v.iter_mut().for_each(|x| *x = 0.5 * tanh::<FMA>(0.5 * *x) + 0.5),
        Act::Silu => v.iter_mut().for_each(|x| *x *= 0.5 * tanh::<FMA>(0.5 * *x) + 0.5),
        Act::Gelu => v.iter_mut().for_each(|x| *x = 0.5 * *x * (1.0 + erf::<FMA>(*x * std::f32::consts::FRAC_1_SQRT_2))),
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Eigen's rational tanh (max abs error ~3e-7).
#[inline(always)]
pub(crate) fn tanh<const FMA: bool>(x: f32) -> f32 {
    const A: [f32; 7] = [4.893_524_6e-3, 6.372_619_3e-4, 1.485_722_4e-5, 5.122_297e-8, -8.604_672e-11, 2.000_188e-13, -2.760_768_5e-16];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = A[6];
    for a in A[..6].iter().rev() {
        p = madd::<FMA>(p, x2, *a);
    }
    let q = madd::<FMA>(madd::<FMA>(madd::<FMA>(B[3], x2, B[2]), x2, B[1]), x2, B[0]);
    p * x / q
}

/// e^x by range reduction and a degree-6 polynomial (≤ 3 ulp for |x| < 87).
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = madd::<FMA>(n, -0.693_145_75, x);
    let r = madd::<FMA>(n, -1.428_606_8e-6, r);
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = madd::<FMA>(p, r, c);
    }
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erf by Abramowitz–Stegun 7.1.26 (1.5e-7 in exact arithmetic, ≤ 5e-7 in f32).
#[inline(always)]
fn erf<const FMA: bool>(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / madd::<FMA>(0.327_591_1, a, 1.0);
    let mut p = 1.061_405_4;
    for c in [-1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6] {
        p = madd::<FMA>(p, t, c);
    }
    let y = 1.0 - p * t * exp::<FMA>(-a * a);
    y.copysign(x)
}

impl Engine for NativeEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo { backend: "excite-native-cpu".into(), precision: "fp32".into(), inputs: self.inputs, outputs: self.outputs, runtime: format!("excite {} ({:?})", env!("CARGO_PKG_VERSION"), Isa::best()) }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        crate::engine::check_rows(x, rows, self.inputs)?;
        let mut y = vec![0.0f32; rows * self.outputs];
        if rows > 0 {
            self.run_into(x, rows, &mut y, Isa::best());
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_kernels_meet_their_stated_errors() {
        let (mut t, mut e, mut f) = (0.0f64, 0.0f64, 0.0f64);
        for i in -100_000..=100_000 {
            let x = i as f32 * 1e-4 * 8.0;
            t = t.max((tanh::<true>(x) as f64 - (x as f64).tanh()).abs());
            let ex = (x as f64).exp();
            if x < 20.0 {
                e = e.max(((exp::<true>(x) as f64 - ex) / ex).abs());
            }
            f = f.max((erf::<true>(x) as f64 - crate::train::arch::erf(x as f64)).abs());
        }
        assert!(t <= 5e-7, "tanh {t:.2e}");
        assert!(e <= 3.0 * f32::EPSILON as f64, "exp relative {e:.2e}");
        assert!(f <= 5e-7, "erf {f:.2e}");
    }
}
