//! The native-cuda engine: the network compiled into CUDA kernels
//! (`kernels/mlp.cu` plus a generated body with its dimensions, weights and
//! activations) by NVRTC at load time, launched through cudarc; one thread
//! per row. Small networks become straight-line code with literal weights,
//! larger ones loops over a weight buffer. Besides rows in → rows out, a
//! second kernel makes a trajectory's time grid itself, so the input is only
//! the per-cell values. The fp16 and bf16 precisions run `kernels/mlp_tc.cu`
//! instead: a warp per 16 rows through every layer on tensor cores (WMMA),
//! weights in shared memory, sums in fp32. Without a GPU it is a clear error;
//! every kernel is compiled by NVRTC and assembled by ptxas in the tests.

use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::engine::native::{Dense, NativeEngine};
use crate::engine::{Engine, EngineInfo};
use crate::Error;

pub const MLP_SOURCE: &str = include_str!("../../kernels/mlp.cu");

/// Networks with at most this many weights and biases are generated as
/// straight-line code with literal weights; larger ones as loops over a
/// weight buffer (the code would grow past the instruction cache).
pub const LITERAL_LIMIT: usize = 8_192;

/// How the network's weights reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Straight-line code, weights as literals (the parameter buffer unused).
    Literal,
    /// DENSE loops over the parameter buffer.
    Looped,
}

impl Form {
    pub fn for_layers(layers: &[Dense]) -> Form {
        if layers.iter().map(|l| l.w.len() + l.b.len()).sum::<usize>() <= LITERAL_LIMIT {
            Form::Literal
        } else {
            Form::Looped
        }
    }
}

/// A float as a CUDA literal that reads back to the same f32.
fn lit(x: f32) -> String {
    format!("{x:.9e}f")
}

/// The CUDA source of the kernels for `layers` in `form`, and the flat
/// parameter buffer they read (empty for [`Form::Literal`]).
pub fn kernel_source(layers: &[Dense], form: Form) -> (String, Vec<f32>) {
    let (row, params) = row_source(layers, form);
    let entries = MLP_SOURCE.split_once("// @network").map_or("", |(_, tail)| tail);
    (row + entries, params)
}

/// The device part of [`kernel_source`] alone: the activation functions and
/// `mlp_row`, with no CUDA-only construct but `__device__`,
/// `__forceinline__` and `__ldg`, so a host C compiler can check the
/// generated arithmetic against the CPU engine (the tests do).
pub fn row_source(layers: &[Dense], form: Form) -> (String, Vec<f32>) {
    let n_in = layers[0].d_in;
    let n_out = layers.last().expect("layers").d_out;
    let mut params = Vec::new();
    let mut body = format!("#define N_IN {n_in}\n#define N_OUT {n_out}\n__device__ __forceinline__ void mlp_row(const float* __restrict__ p, const float* a0, float* out) {{\n");
    match form {
        Form::Literal => {
            // h{l}_{j}: output j of layer l (h0_k are the inputs)
            for k in 0..n_in {
                body += &format!("    const float h0_{k} = a0[{k}];\n");
            }
            for (l, d) in layers.iter().enumerate() {
                let (prev, cur) = (l, l + 1);
                for j in 0..d.d_out {
                    body += &format!("    float s{cur}_{j} = {};\n", lit(d.b[j]));
                    for k in 0..d.d_in {
                        body += &format!("    s{cur}_{j} = fmaf(h{prev}_{k}, {}, s{cur}_{j});\n", lit(d.w[k * d.d_out + j]));
                    }
                    body += &format!("    const float h{cur}_{j} = act_{}(s{cur}_{j}, {});\n", d.act, lit(d.param));
                }
            }
            for j in 0..n_out {
                body += &format!("    out[{j}] = h{}_{j};\n", layers.len());
            }
        }
        Form::Looped => {
            body += "    const float* h0 = a0;\n";
            for (i, l) in layers.iter().enumerate() {
                let (w, b) = (params.len(), params.len() + l.w.len());
                params.extend_from_slice(&l.w);
                params.extend_from_slice(&l.b);
                body += &format!("    float h{}[{}];\n    DENSE({}, {}, h{i}, h{}, (p + {w}), (p + {b}), act_{}, {})\n", i + 1, l.d_out, l.d_in, l.d_out, i + 1, l.act, lit(l.param));
            }
            body += &format!("    for (int i = 0; i < N_OUT; ++i) out[i] = h{}[i];\n", layers.len());
        }
    }
    body += "}\n";
    let head = MLP_SOURCE.split_once("// @network").map_or(MLP_SOURCE, |(head, _)| head);
    (format!("{head}{body}"), params)
}

pub const MLP_TC_SOURCE: &str = include_str!("../../kernels/mlp_tc.cu");

/// Warps per block of the tensor-core kernel (16 rows each).
pub const TC_WARPS: usize = 4;
/// Static shared memory a kernel may declare.
const SHARED_LIMIT: usize = 48 * 1024;

/// The tensor-core kernels' operand type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorCore {
    Fp16,
    Bf16,
}

impl TensorCore {
    fn bits(self, x: f32) -> u16 {
        match self {
            TensorCore::Fp16 => half::f16::from_f32(x).to_bits(),
            TensorCore::Bf16 => half::bf16::from_f32(x).to_bits(),
        }
    }
}

/// The tensor-core kernels for `layers` (`mlp_tc`, `mlp_tc_grid`), their
/// padded weights (as fp16/bf16 bits) and biases; every width padded to a
/// multiple of 16 with zeros. Refused when the weights and the warps'
/// scratch tiles do not fit in 48 KB of shared memory.
pub fn kernel_source_tc(layers: &[Dense], tc: TensorCore) -> Result<(String, Vec<u16>, Vec<f32>), String> {
    let pad = |n: usize| n.div_ceil(16) * 16;
    let maxw = layers.iter().map(|l| pad(l.d_in).max(pad(l.d_out))).max().unwrap_or(16);
    let (mut w, mut b) = (Vec::new(), Vec::new());
    let mut steps = String::new();
    for (i, l) in layers.iter().enumerate() {
        let (k, n) = (pad(l.d_in), pad(l.d_out));
        let (wo, bo) = (w.len(), b.len());
        for r in 0..k {
            for c in 0..n {
                w.push(tc.bits(if r < l.d_in && c < l.d_out { l.w[r * l.d_out + c] } else { 0.0 }));
            }
        }
        b.extend((0..n).map(|c| if c < l.d_out { l.b[c] } else { 0.0 }));
        let last = i + 1 == layers.len();
        steps += &format!("    LAYER({k}, {n}, {}, {wo}, {bo}, act_{}, {}, {last})\n", l.d_out, l.act, lit(l.param));
    }
    let elem = 2;
    let shared = w.len() * elem + b.len() * 4 + TC_WARPS * 16 * maxw * (elem + 4);
    if shared > SHARED_LIMIT {
        return Err(format!("the tensor-core kernel needs {} KB of shared memory for this network (limit {} KB)", shared.div_ceil(1024), SHARED_LIMIT / 1024));
    }
    let (ty, header, to) = match tc {
        TensorCore::Fp16 => ("__half", "cuda_fp16.h", "__float2half_rn"),
        TensorCore::Bf16 => ("__nv_bfloat16", "cuda_bf16.h", "__float2bfloat16_rn"),
    };
    let n_in = layers[0].d_in;
    let n_out = layers.last().expect("layers").d_out;
    let defs = format!(
        "#include <{header}>\n#define T {ty}\n#define TO_T {to}\n#define WARPS {TC_WARPS}\n#define MAXW {maxw}\n#define W_HALVES {}\n#define B_FLOATS {}\n#define N_IN {n_in}\n#define N_OUT {n_out}\n",
        w.len(),
        b.len()
    );
    // the activation functions of the fp32 kernel, without its entry points
    let acts = MLP_SOURCE.split("// @network").next().unwrap_or("");
    let network = format!("__device__ __forceinline__ void network(T* act, float* acc, const T* sw, const float* sb, float* __restrict__ y, long long row0, long long rows, int lane) {{\n{steps}}}\n");
    Ok((format!("{defs}{acts}\n{}", MLP_TC_SOURCE.replacen("// @network", &network, 1)), w, b))
}

/// Compiles the tensor-core kernels to PTX for `arch` (bf16 needs sm_80 or later).
pub fn compile_tc(layers: &[Dense], tc: TensorCore, arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx, Error> {
    let (src, _, _) = kernel_source_tc(layers, tc).map_err(|e| Error::invalid("precision", e, "build this network with --precision fp32"))?;
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("mlp_tc.cu".into()), include_paths: crate::gpu::cuda_include()?.iter().map(|p| p.display().to_string()).collect(), ..Default::default() };
    crate::gpu::compile(src, opts, "the tensor-core MLP kernel", "this is a bug in kernels/mlp_tc.cu or its generated body")
}

/// Compiles the kernels for `layers` to PTX for `arch` (NVRTC, no GPU needed).
pub fn compile(layers: &[Dense], form: Form, arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx, Error> {
    let (src, _) = kernel_source(layers, form);
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("mlp.cu".into()), ..Default::default() };
    crate::gpu::compile(src, opts, "the MLP kernel", "this is a bug in kernels/mlp.cu or its generated body")
}

/// A network compiled for the GPU.
pub struct NativeCudaEngine {
    stream: Arc<CudaStream>,
    rows_fn: CudaFunction,
    grid_fn: CudaFunction,
    /// fp32: the looped form's weights (one unused float for the literal
    /// form); tensor cores: the padded biases.
    params: CudaSlice<f32>,
    /// Tensor cores: the padded weights as fp16/bf16 bits.
    weights16: Option<CudaSlice<u16>>,
    inputs: usize,
    outputs: usize,
    device: String,
    kernel: Kernel,
}

/// Which kernel an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// One thread per row in fp32.
    Fp32(Form),
    /// A warp per 16 rows on tensor cores, fp16 or bf16 operands, fp32 sums.
    TensorCore(TensorCore),
}

const BLOCK: u32 = 128;

fn launch_cfg(threads: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (threads.div_ceil(BLOCK as usize) as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

fn driver_err(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::unavailable("native-cuda", format!("{what}: {e:?}"), "check the GPU with nvidia-smi")
}

impl NativeCudaEngine {
    /// The fp32 engine for an exported model.
    pub fn load(path: &Path) -> Result<NativeCudaEngine, Error> {
        Self::load_with(path, None)
    }

    /// The engine on tensor cores with `tc` operands, or fp32 for `None`.
    pub fn load_with(path: &Path, tc: Option<TensorCore>) -> Result<NativeCudaEngine, Error> {
        let cpu = NativeEngine::load(path, 1)?;
        let layers = cpu.dense();
        if let Some(l) = layers.iter().position(|l| l.w.iter().chain(&l.b).any(|v| !v.is_finite())) {
            return Err(Error::format(path, format!("layer {l} has a weight or bias that is NaN or infinite"), "re-train or re-export the surrogate"));
        }
        let ctx = crate::gpu::context("native-cuda", "run on a machine with an NVIDIA GPU and driver, or build with --target native-cpu")?;
        let stream = ctx.default_stream();
        let (kernel, ptx, mut host, weights16, names) = match tc {
            None => {
                let form = Form::for_layers(&layers);
                let (_, host) = kernel_source(&layers, form);
                (Kernel::Fp32(form), compile(&layers, form, None)?, host, None, ["mlp", "mlp_grid"])
            }
            Some(tc) => {
                let (_, w, b) = kernel_source_tc(&layers, tc).map_err(|e| Error::invalid("precision", e, "build this network with --precision fp32"))?;
                let w = stream.clone_htod(&w).map_err(driver_err("copying the weights"))?;
                (Kernel::TensorCore(tc), compile_tc(&layers, tc, None)?, b, Some(w), ["mlp_tc", "mlp_tc_grid"])
            }
        };
        let module = ctx.load_module(ptx).map_err(driver_err("loading the kernel"))?;
        let rows_fn = module.load_function(names[0]).map_err(driver_err("loading the kernel"))?;
        let grid_fn = module.load_function(names[1]).map_err(driver_err("loading the kernel"))?;
        if host.is_empty() {
            host.push(0.0); // literal weights: the buffer is unused but must exist
        }
        let params = stream.clone_htod(&host).map_err(driver_err("copying the weights"))?;
        let device = crate::gpu::device_name(&ctx);
        Ok(NativeCudaEngine { stream, rows_fn, grid_fn, params, weights16, inputs: layers[0].d_in, outputs: layers.last().expect("layers").d_out, device, kernel })
    }

    /// The kernel this engine runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The launch shape for `rows` rows.
    fn config(&self, rows: usize) -> LaunchConfig {
        match self.kernel {
            Kernel::Fp32(_) => launch_cfg(rows),
            Kernel::TensorCore(_) => {
                let per_block = 16 * TC_WARPS;
                LaunchConfig { grid_dim: (rows.div_ceil(per_block) as u32, 1, 1), block_dim: (32 * TC_WARPS as u32, 1, 1), shared_mem_bytes: 0 }
            }
        }
    }

    fn launch_rows(&self, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>, rows: usize) -> Result<(), Error> {
        let n = i32::try_from(rows).map_err(|_| Error::invalid("batch", format!("{rows} rows is more than one launch takes"), "split the batch below 2^31 rows"))?;
        let mut launch = self.stream.launch_builder(&self.rows_fn);
        launch.arg(x).arg(y);
        if let Some(w) = &self.weights16 {
            launch.arg(w);
        }
        launch.arg(&self.params).arg(&n);
        // SAFETY: the arguments match `mlp`'s (or `mlp_tc`'s) signature; x
        // holds rows·N_IN and y rows·N_OUT floats.
        unsafe { launch.launch(self.config(rows)) }.map(|_| ()).map_err(driver_err("launching the kernel"))
    }

    fn launch_grid(&self, cells: &CudaSlice<f32>, y: &mut CudaSlice<f32>, n_cells: usize, dt: f64, n_samples: usize) -> Result<(), Error> {
        let too_big = |what: &str| Error::invalid(what, "more than 2^31", "split the cells into several calls");
        let (nc, ns) = (i32::try_from(n_cells).map_err(|_| too_big("cells"))?, i32::try_from(n_samples).map_err(|_| too_big("samples"))?);
        let mut launch = self.stream.launch_builder(&self.grid_fn);
        launch.arg(cells).arg(y);
        if let Some(w) = &self.weights16 {
            launch.arg(w);
        }
        launch.arg(&self.params).arg(&nc).arg(&ns).arg(&dt);
        // SAFETY: the arguments match `mlp_grid`'s (or `mlp_tc_grid`'s)
        // signature; cells holds n_cells·(N_IN − 1) and y
        // n_cells·n_samples·N_OUT floats.
        unsafe { launch.launch(self.config(n_cells * n_samples)) }.map(|_| ()).map_err(driver_err("launching the kernel"))
    }

    fn check_grid(&self, cells: &[f32], n_cells: usize, dt: f64) -> Result<(), Error> {
        if self.inputs < 1 || cells.len() != n_cells * (self.inputs - 1) {
            return Err(Error::invalid("cells", format!("{} values for {n_cells} cells of {} inputs besides time", cells.len(), self.inputs.saturating_sub(1)), "pass one row of the non-time inputs per cell"));
        }
        if !(dt.is_finite() && dt > 0.0) {
            return Err(Error::invalid("dt", format!("{dt} is not a positive time step"), "pass the sample interval of the trajectory"));
        }
        Ok(())
    }

    /// Whole trajectories with the time grid made on the GPU: `cells` holds,
    /// per cell, the inputs after time (input 0); row (c, s) has t = s·dt.
    /// Returns [cells][n_samples][outputs].
    pub fn run_grid(&mut self, cells: &[f32], n_cells: usize, dt: f64, n_samples: usize) -> Result<Vec<f32>, Error> {
        self.check_grid(cells, n_cells, dt)?;
        if n_cells * n_samples == 0 {
            return Ok(Vec::new());
        }
        let (cd, mut yd) = self.buffers(cells, n_cells * n_samples)?;
        self.launch_grid(&cd, &mut yd, n_cells, dt, n_samples)?;
        self.stream.clone_dtoh(&yd).map_err(driver_err("copying outputs"))
    }

    /// Seconds per launch of the rows kernel, inputs already on the GPU
    /// (the kernel alone, as the CUDA Euler solver is timed), over `repeat`
    /// launches after one warm-up.
    pub fn time_rows(&mut self, x: &[f32], rows: usize, repeat: usize) -> Result<f64, Error> {
        crate::onnx::check_rows(x, rows, self.inputs)?;
        let (xd, mut yd) = self.buffers(x, rows)?;
        self.timed(repeat, |e| e.launch_rows(&xd, &mut yd, rows))
    }

    /// [`NativeCudaEngine::time_rows`] for [`NativeCudaEngine::run_grid`].
    pub fn time_grid(&mut self, cells: &[f32], n_cells: usize, dt: f64, n_samples: usize, repeat: usize) -> Result<f64, Error> {
        self.check_grid(cells, n_cells, dt)?;
        let (cd, mut yd) = self.buffers(cells, n_cells * n_samples)?;
        self.timed(repeat, |e| e.launch_grid(&cd, &mut yd, n_cells, dt, n_samples))
    }

    /// The inputs copied to the GPU and room for `rows` rows of outputs.
    fn buffers(&self, input: &[f32], rows: usize) -> Result<(CudaSlice<f32>, CudaSlice<f32>), Error> {
        // with time the only input, the grid kernel reads no cell values, but the buffer must exist
        let x = self.stream.clone_htod(if input.is_empty() { &[0.0][..] } else { input }).map_err(driver_err("copying inputs"))?;
        let y = self.stream.alloc_zeros::<f32>(rows * self.outputs).map_err(driver_err("allocating outputs"))?;
        Ok((x, y))
    }

    fn timed(&mut self, repeat: usize, mut launch: impl FnMut(&Self) -> Result<(), Error>) -> Result<f64, Error> {
        launch(self)?;
        self.stream.synchronize().map_err(driver_err("running the kernel"))?;
        let start = std::time::Instant::now();
        for _ in 0..repeat.max(1) {
            launch(self)?;
        }
        self.stream.synchronize().map_err(driver_err("running the kernel"))?;
        Ok(start.elapsed().as_secs_f64() / repeat.max(1) as f64)
    }
}

impl Engine for NativeCudaEngine {
    fn info(&self) -> EngineInfo {
        let (precision, how) = match self.kernel {
            Kernel::Fp32(form) => ("fp32", format!("{form:?} weights")),
            Kernel::TensorCore(TensorCore::Fp16) => ("fp16", "tensor cores".to_string()),
            Kernel::TensorCore(TensorCore::Bf16) => ("bf16", "tensor cores".to_string()),
        };
        EngineInfo { backend: "excite-native-cuda".into(), precision: precision.into(), inputs: self.inputs, outputs: self.outputs, runtime: format!("excite {} on {} ({how})", env!("CARGO_PKG_VERSION"), self.device) }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        crate::onnx::check_rows(x, rows, self.inputs)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let (xd, mut yd) = self.buffers(x, rows)?;
        self.launch_rows(&xd, &mut yd, rows)?;
        self.stream.clone_dtoh(&yd).map_err(driver_err("copying outputs"))
    }
}
