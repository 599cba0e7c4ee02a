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

mod codegen;

use crate::engine::native::NativeEngine;
use crate::engine::{Engine, EngineInfo};
use crate::Error;
pub use codegen::{compile, compile_tc, kernel_source, kernel_source_tc, row_source, Form, TensorCore, LITERAL_LIMIT, MLP_SOURCE, MLP_TC_SOURCE, TC_WARPS};

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
