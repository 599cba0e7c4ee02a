//! The native-cuda engine: the network compiled into CUDA kernels
//! (`kernels/mlp.cu` plus a generated body with its dimensions, weights and
//! activations) by NVRTC at load time, launched through cudarc; one thread
//! per row. Small networks become straight-line code with literal weights,
//! larger ones loops over a weight buffer. Besides rows in → rows out, a
//! second kernel makes a trajectory's time grid itself, so the input is only
//! the per-cell values. Without a GPU it is a clear error; the kernel source
//! is compile-checked on any machine with NVRTC.

use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

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
    (MLP_SOURCE.replacen("// @network", &body, 1), params)
}

/// Compiles the kernels for `layers` to PTX for `arch` (NVRTC, no GPU needed).
pub fn compile(layers: &[Dense], form: Form, arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx, Error> {
    crate::solve::cuda::ensure_nvrtc()?;
    let (src, _) = kernel_source(layers, form);
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("mlp.cu".into()), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| Error::unavailable("nvrtc", format!("the MLP kernel did not compile: {e:?}"), "this is a bug in kernels/mlp.cu or its generated body"))
}

/// A network compiled for the GPU.
pub struct NativeCudaEngine {
    stream: Arc<CudaStream>,
    rows_fn: CudaFunction,
    grid_fn: CudaFunction,
    params: CudaSlice<f32>,
    inputs: usize,
    outputs: usize,
    device: String,
    form: Form,
}

const BLOCK: u32 = 128;

fn launch_cfg(threads: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (threads.div_ceil(BLOCK as usize) as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

fn driver_err(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::unavailable("native-cuda", format!("{what}: {e:?}"), "check the GPU with nvidia-smi")
}

impl NativeCudaEngine {
    pub fn load(path: &Path) -> Result<NativeCudaEngine, Error> {
        let cpu = NativeEngine::load(path, 1)?;
        let layers = cpu.dense();
        if let Some(l) = layers.iter().position(|l| l.w.iter().chain(&l.b).any(|v| !v.is_finite())) {
            return Err(Error::format(path, format!("layer {l} has a weight or bias that is NaN or infinite"), "re-train or re-export the surrogate"));
        }
        let hint = "run on a machine with an NVIDIA GPU and driver, or build with --target native-cpu";
        if !crate::solve::cuda::driver_present() {
            return Err(Error::unavailable("native-cuda", "no CUDA driver (libcuda.so) on this machine", hint));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(0))
            .map_err(|_| Error::unavailable("native-cuda", "the CUDA driver failed to initialise", hint))?
            .map_err(|e| Error::unavailable("native-cuda", format!("no usable GPU: {e:?}"), hint))?;
        let form = Form::for_layers(&layers);
        let ptx = compile(&layers, form, None)?;
        let module = ctx.load_module(ptx).map_err(driver_err("loading the kernel"))?;
        let rows_fn = module.load_function("mlp").map_err(driver_err("loading the kernel"))?;
        let grid_fn = module.load_function("mlp_grid").map_err(driver_err("loading the kernel"))?;
        let stream = ctx.default_stream();
        let (_, mut host) = kernel_source(&layers, form);
        if host.is_empty() {
            host.push(0.0); // literal weights: the buffer is unused but must exist
        }
        let params = stream.clone_htod(&host).map_err(driver_err("copying the weights"))?;
        let device = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok(NativeCudaEngine { stream, rows_fn, grid_fn, params, inputs: layers[0].d_in, outputs: layers.last().expect("layers").d_out, device, form })
    }

    /// How the weights were compiled in.
    pub fn form(&self) -> Form {
        self.form
    }

    fn launch_rows(&self, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>, rows: usize) -> Result<(), Error> {
        let n = i32::try_from(rows).map_err(|_| Error::invalid("batch", format!("{rows} rows is more than one launch takes"), "split the batch below 2^31 rows"))?;
        let mut launch = self.stream.launch_builder(&self.rows_fn);
        launch.arg(x).arg(y).arg(&self.params).arg(&n);
        // SAFETY: the arguments match `mlp`'s signature; x holds rows·N_IN and y rows·N_OUT floats.
        unsafe { launch.launch(launch_cfg(rows)) }.map(|_| ()).map_err(driver_err("launching the kernel"))
    }

    fn launch_grid(&self, cells: &CudaSlice<f32>, y: &mut CudaSlice<f32>, n_cells: usize, dt: f64, n_samples: usize) -> Result<(), Error> {
        let too_big = |what: &str| Error::invalid(what, "more than 2^31", "split the cells into several calls");
        let (nc, ns) = (i32::try_from(n_cells).map_err(|_| too_big("cells"))?, i32::try_from(n_samples).map_err(|_| too_big("samples"))?);
        let mut launch = self.stream.launch_builder(&self.grid_fn);
        launch.arg(cells).arg(y).arg(&self.params).arg(&nc).arg(&ns).arg(&dt);
        // SAFETY: the arguments match `mlp_grid`'s signature; cells holds
        // n_cells·(N_IN − 1) and y n_cells·n_samples·N_OUT floats.
        unsafe { launch.launch(launch_cfg(n_cells * n_samples)) }.map(|_| ()).map_err(driver_err("launching the kernel"))
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
        // time is the only input: the kernel reads no cell values, but the buffer must exist
        let cd = self.stream.clone_htod(if cells.is_empty() { &[0.0][..] } else { cells }).map_err(driver_err("copying inputs"))?;
        let mut yd = self.stream.alloc_zeros::<f32>(n_cells * n_samples * self.outputs).map_err(driver_err("allocating outputs"))?;
        self.launch_grid(&cd, &mut yd, n_cells, dt, n_samples)?;
        self.stream.clone_dtoh(&yd).map_err(driver_err("copying outputs"))
    }

    /// Seconds per launch of the rows kernel, inputs already on the GPU
    /// (the kernel alone, as the CUDA Euler solver is timed), over `repeat`
    /// launches after one warm-up.
    pub fn time_rows(&mut self, x: &[f32], rows: usize, repeat: usize) -> Result<f64, Error> {
        crate::engine::check_rows(x, rows, self.inputs)?;
        let xd = self.stream.clone_htod(x).map_err(driver_err("copying inputs"))?;
        let mut yd = self.stream.alloc_zeros::<f32>(rows * self.outputs).map_err(driver_err("allocating outputs"))?;
        self.timed(repeat, |e| e.launch_rows(&xd, &mut yd, rows))
    }

    /// [`NativeCudaEngine::time_rows`] for [`NativeCudaEngine::run_grid`].
    pub fn time_grid(&mut self, cells: &[f32], n_cells: usize, dt: f64, n_samples: usize, repeat: usize) -> Result<f64, Error> {
        self.check_grid(cells, n_cells, dt)?;
        // time is the only input: the kernel reads no cell values, but the buffer must exist
        let cd = self.stream.clone_htod(if cells.is_empty() { &[0.0][..] } else { cells }).map_err(driver_err("copying inputs"))?;
        let mut yd = self.stream.alloc_zeros::<f32>(n_cells * n_samples * self.outputs).map_err(driver_err("allocating outputs"))?;
        self.timed(repeat, |e| e.launch_grid(&cd, &mut yd, n_cells, dt, n_samples))
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
        EngineInfo { backend: "excite-native-cuda".into(), precision: "fp32".into(), inputs: self.inputs, outputs: self.outputs, runtime: format!("excite {} on {} ({:?} weights)", env!("CARGO_PKG_VERSION"), self.device, self.form) }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        crate::engine::check_rows(x, rows, self.inputs)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let xd = self.stream.clone_htod(x).map_err(driver_err("copying inputs"))?;
        let mut yd = self.stream.alloc_zeros::<f32>(rows * self.outputs).map_err(driver_err("allocating outputs"))?;
        self.launch_rows(&xd, &mut yd, rows)?;
        self.stream.clone_dtoh(&yd).map_err(driver_err("copying outputs"))
    }
}
