//! The native CPU engine: excite's MLPs evaluated by a fused kernel that
//! keeps a tile of rows in an L1-sized buffer through every layer, instead of
//! a runtime's one operator (and one memory pass) per layer.
//!
//! This file loads any MLP-shaped ONNX model ([`crate::onnx::mlp`] reads
//! excite's exports and other exporters' into dense layers; anything else is
//! refused by name) and shares a batch among threads;
//! `kernel.rs` is the fused kernel, written once over the vector operations
//! of `simd.rs` (AVX-512, AVX2 + FMA, portable; chosen at run time).
//! Activations use vectorisable approximations with stated errors against
//! f64: tanh ≤ 5e-7 (Eigen's rational form), sigmoid and SiLU through tanh,
//! exp (ELU, GELU) ≤ 3 ulp, erf ≤ 7e-7 (≤ 5e-7 with FMA), softplus ≤ 5e-7
//! (ln(1 + e) as a short atanh series), GELU's tanh form through tanh. Rows are
//! independent and every tile, the last partial one too, computes a row the
//! same way, so results do not depend on the thread count. The scalar
//! reference is [`crate::onnx::Interpreter`].

use std::path::Path;

use crate::onnx::graph::Model;
use crate::onnx::mlp::{Act, Mlp};
use crate::engine::{Engine, EngineInfo};
use crate::isa::Isa;
use crate::Error;

mod helpers;
mod kernel;
mod simd;

use kernel::Tile;

/// Rows per thread task (a multiple of every kernel's tile).
const TASK_ROWS: usize = 256;
/// Multiply-adds below which a batch is not worth spreading over threads
/// (about 2 µs on one AVX-512 core, a few times the cost of sharing it).
const SMALL_WORK: usize = 100_000;
/// Layer width above which AVX-512 uses half-height tiles (see `kernel.rs`).
const WIDE: usize = 128;


#[derive(Debug, Clone)]
struct Layer {
    d_in: usize,
    d_out: usize,
    /// Row-major [d_in][d_out].
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
    /// `linear`, `relu`, `leaky_relu`, `elu`, `tanh`, `sigmoid`, `silu`, `gelu`,
    /// `gelu_tanh` or `softplus`.
    pub act: &'static str,
    /// The slope of leaky_relu or the alpha of elu (0 otherwise).
    pub param: f32,
}

/// A loaded network ready to run.
pub struct NativeEngine {
    layers: Vec<Layer>,
    inputs: usize,
    outputs: usize,
    /// The widest layer input or output (the tile buffers' feature count).
    widest: usize,
    /// Helper threads (the requested count less one: the caller works too);
    /// `None` for one thread.
    pool: Option<helpers::Helpers>,
    /// The kernel `run` uses: the fastest, or `EXCITE_NATIVE_KERNEL`.
    isa: Isa,
    /// The fast tanh family (≤ 1e-4; the `fp32-fast` precision).
    fast: bool,
    macs_per_row: usize,
}

fn refuse(path: &Path, what: String) -> Error {
    Error::format(path, what, "the native engine runs the fp32 Gemm/activation graphs `excite export` writes; use `--target cpu` (ONNX Runtime) for other models")
}

impl NativeEngine {
    /// Loads an ONNX file; `threads = 0` uses all cores.
    pub fn load(path: &Path, threads: usize) -> Result<NativeEngine, Error> {
        let m = crate::onnx::read(path)?;
        Self::from_model(&m, threads).map_err(|e| match e {
            Error::Format { problem, .. } => refuse(path, problem),
            other => other,
        })
    }

    /// The network of any MLP-shaped model ([`crate::onnx::mlp`]: excite's
    /// exports and other exporters' alike).
    pub fn from_model(m: &Model, threads: usize) -> Result<NativeEngine, Error> {
        let bad = |p: String| Error::format("<model>", p, "");
        let mlp = Mlp::from_model(m).map_err(bad)?;
        let mut layers = Vec::with_capacity(mlp.layers.len());
        for d in mlp.layers {
            layers.push(Layer { d_in: d.d_in, d_out: d.d_out, w: d.w, b: d.b, act: d.act });
        }
        let inputs = layers[0].d_in;
        let outputs = layers.last().expect("non-empty").d_out;
        let widest = layers.iter().map(|l| l.d_out.max(l.d_in)).max().unwrap_or(1);
        let macs_per_row = layers.iter().map(|l| l.d_in * l.d_out).sum();
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let pool = match threads {
            1 => None,
            n => Some(helpers::Helpers::new(n - 1).map_err(|e| Error::Unavailable { what: "native engine threads".into(), problem: e.to_string(), hint: "run with --threads 1".into() })?),
        };
        let isa = Isa::from_env("EXCITE_NATIVE_KERNEL")?;
        Ok(NativeEngine { layers, inputs, outputs, widest, pool, isa, fast: false, macs_per_row })
    }

    /// Evaluates `rows` rows of `x` into `y` with the chosen kernel.
    fn run_into(&self, x: &[f32], rows: usize, y: &mut [f32], isa: Isa) -> Result<(), Error> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(cpu) if self.widest > WIDE => self.tiles::<{ kernel::ROWS_AVX512_WIDE }>(x, rows, y, |t| kernel::tile_avx512_wide(cpu, t)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(cpu) => self.tiles::<{ kernel::ROWS_AVX512 }>(x, rows, y, |t| kernel::tile_avx512(cpu, t)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma(cpu) => self.tiles::<{ kernel::ROWS_AVX2 }>(x, rows, y, |t| kernel::tile_avx2(cpu, t)),
            _ => self.tiles::<{ kernel::ROWS_PORTABLE }>(x, rows, y, kernel::tile_portable),
        }
    }

    /// Splits the rows into tasks of TASK_ROWS and those into tiles of R,
    /// and runs `kernel` on each tile. Small batches stay on the caller's
    /// thread; larger ones are shared by the caller and the helper threads,
    /// each taking the next task from a counter with its own tile buffers.
    fn tiles<const R: usize>(&self, x: &[f32], rows: usize, y: &mut [f32], kernel: impl Fn(Tile) + Sync) -> Result<(), Error> {
        let (n_in, n_out) = (self.inputs, self.outputs);
        let buffers = || (vec![0.0f32; R * self.widest], vec![0.0f32; R * self.widest]);
        let run_task = |(a, b): &mut (Vec<f32>, Vec<f32>), task: usize, out: &mut [f32]| {
            let first = task * TASK_ROWS;
            for r0 in (first..(first + TASK_ROWS).min(rows)).step_by(R) {
                let valid = R.min(rows - r0);
                let y = &mut out[(r0 - first) * n_out..][..valid * n_out];
                kernel(Tile { layers: &self.layers, fast: self.fast, x: &x[r0 * n_in..][..valid * n_in], valid, y, a, b });
            }
        };
        let per_task = TASK_ROWS * n_out;
        let pool = match &self.pool {
            Some(p) if rows > TASK_ROWS && rows * self.macs_per_row >= SMALL_WORK => p,
            _ => {
                let mut bufs = buffers();
                y.chunks_mut(per_task).enumerate().for_each(|(t, out)| run_task(&mut bufs, t, out));
                return Ok(());
            }
        };
        // Each task's output slice, taken once by whichever thread claims it.
        let slots: Vec<std::sync::Mutex<Option<&mut [f32]>>> = y.chunks_mut(per_task).map(|c| std::sync::Mutex::new(Some(c))).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let worker = || {
            let mut bufs = buffers();
            loop {
                let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = slots.get(t) else { break };
                let out = slot.lock().unwrap_or_else(|e| e.into_inner()).take().expect("each task is claimed once");
                run_task(&mut bufs, t, out);
            }
        };
        pool.run(&worker).map_err(|_| Error::Unavailable {
            what: "native-cpu".into(),
            problem: "a worker thread panicked while running the batch (the output is discarded)".into(),
            hint: "report this as a bug with the model; the engine stays usable".into(),
        })
    }

    /// The layers as plain dense layers, for other backends (native-cuda, the
    /// PyTorch peer's files).
    pub fn dense(&self) -> Vec<Dense> {
        self.layers
            .iter()
            .map(|l| {
                let param = match l.act {
                    Act::LeakyRelu(a) | Act::Elu(a) => a,
                    _ => 0.0,
                };
                Dense { d_in: l.d_in, d_out: l.d_out, w: l.w.clone(), b: l.b.clone(), act: l.act.name(), param }
            })
            .collect()
    }

    /// With `fast`, tanh, sigmoid and SiLU use a cheaper approximation
    /// (≤ 1e-4 against f64 instead of 5e-7; about 10% faster at H = 64): the
    /// `fp32-fast` precision of `excite build --target native-cpu`.
    pub fn with_fast_activations(mut self, fast: bool) -> Self {
        self.fast = fast;
        self
    }

    /// The kernels this CPU can run, fastest first (`avx512`, `avx2`, `portable`).
    pub fn kernels() -> Vec<&'static str> {
        Isa::available().iter().map(|i| i.name()).collect()
    }

    /// Runs one named kernel from [`NativeEngine::kernels`] (for tests and
    /// benchmarks; `run` picks the fastest).
    pub fn run_kernel(&self, kernel: &str, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        self.run_with(Isa::named(kernel, "native kernel")?, x, rows)
    }

    fn run_with(&self, isa: Isa, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        crate::onnx::check_rows(x, rows, self.inputs)?;
        let mut y = vec![0.0f32; rows * self.outputs];
        if rows > 0 {
            self.run_into(x, rows, &mut y, isa)?;
        }
        Ok(y)
    }
}

impl Engine for NativeEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo { backend: "excite-native-cpu".into(), precision: if self.fast { "fp32-fast" } else { "fp32" }.into(), inputs: self.inputs, outputs: self.outputs, runtime: format!("excite {} ({})", env!("CARGO_PKG_VERSION"), self.isa.name()) }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        self.run_with(self.isa, x, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::kernel::probe;

    #[test]
    fn activation_kernels_meet_their_stated_errors() {
        let xs: Vec<f32> = (-100_000..100_000).map(|i| i as f32 * 8e-5).collect();
        for (kernel, [t, e, f, tf, sp]) in probe::functions(&xs) {
            let (mut te, mut ee, mut fe, mut tfe, mut spe) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for (i, x) in xs.iter().map(|x| *x as f64).enumerate() {
                spe = spe.max((sp[i] as f64 - (x.max(0.0) + (-x.abs()).exp().ln_1p())).abs() / (1.0 + x.abs()));
                te = te.max((t[i] as f64 - x.tanh()).abs());
                tfe = tfe.max((tf[i] as f64 - x.tanh()).abs());
                ee = ee.max(((e[i] as f64 - x.exp()) / x.exp()).abs());
                fe = fe.max((f[i] as f64 - crate::special::erf(x)).abs());
            }
            assert!(te <= 5e-7, "{kernel} tanh {te:.2e}");
            assert!(ee <= 3.0 * f32::EPSILON as f64, "{kernel} exp relative {ee:.2e}");
            assert!(fe <= 7e-7, "{kernel} erf {fe:.2e}");
            assert!(tfe <= 1e-4, "{kernel} fast tanh {tfe:.2e}");
            // relative to 1 + |x|: above |x| ≈ 1 softplus(x) ≈ max(x, 0) rounds like x itself
            assert!(spe <= 5e-7, "{kernel} softplus {spe:.2e}");
        }
    }

    /// The exact activations use only IEEE-exact instructions (FMA, division,
    /// rounding, scaling), so the AVX-512 and AVX2 kernels agree to the bit,
    /// as they do on any vendor's CPU; a hardware estimate (rcp, rcp14) would
    /// differ between the two here as it does between Intel and AMD. Needs a
    /// CPU with both (CI's has); elsewhere there is only one kernel to compare.
    #[test]
    fn exact_activations_agree_to_the_bit_across_instruction_sets() {
        let xs: Vec<f32> = (-50_000..50_000).map(|i| i as f32 * 1.7e-4).collect();
        let all = probe::functions(&xs);
        let find = |k: &str| all.iter().find(|(name, _)| *name == k).map(|(_, f)| f);
        if let (Some(a), Some(b)) = (find("avx512"), find("avx2+fma")) {
            for (what, i) in [("tanh", 0), ("exp", 1), ("erf", 2), ("softplus", 4)] {
                let differ = a[i].iter().zip(&b[i]).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                assert_eq!(differ, 0, "{what}: {differ} of {} values differ between avx512 and avx2+fma", xs.len());
            }
        }
    }
}
