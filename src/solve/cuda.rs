//! The CUDA path: `kernels/euler.cu` specialised with the model's CUDA
//! right-hand side, compiled at run time by NVRTC and launched through cudarc.
//!
//! Both libraries are loaded dynamically, so excite builds and runs on
//! machines without CUDA; asking for the GPU there is a clear error. NVRTC
//! needs no GPU, so kernels are compile-checked on any machine that has it
//! (`scripts/setup.sh` installs it from PyPI into `.deps/`).

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::cell::{Form, Model};
use crate::solve::{Cells, TimeGrid, Trajectories};
use crate::Error;

/// The Euler kernel template.
pub const EULER_SOURCE: &str = include_str!("../../kernels/euler.cu");

/// The full CUDA source of the Euler kernel for the built-in `model` (an
/// imported one has its own generated kernel, [`super::imported::compile_cuda`]).
pub fn euler_source(model: &dyn Model) -> Result<String, Error> {
    let info = model.info();
    let Form::Builtin(rhs) = model.form() else {
        return Err(Error::invalid("model", format!("`{}` is imported: its CUDA kernel is generated from its equations, not this template", info.name), "solve it through solve::solve, which picks the imported model's kernel"));
    };
    Ok(format!(
        "#define N_STATE {}\n#define N_PARAM {}\n{}\n{}",
        info.states.len(),
        info.params.len(),
        rhs.cuda_rhs(),
        EULER_SOURCE
    ))
}

/// Compiles the Euler kernel for `model` to PTX for `arch` (e.g. `compute_90`;
/// `None` for NVRTC's default). Needs NVRTC, not a GPU.
pub fn compile(model: &dyn Model, arch: Option<&'static str>) -> Result<Ptx, Error> {
    // No implicit contraction: the kernel does exactly the operations the
    // model wrote (explicit fmaf included), as the CPU path does.
    let opts = CompileOptions {
        arch,
        fmad: Some(false),
        name: Some(format!("euler_{}.cu", model.info().name)),
        ..Default::default()
    };
    crate::gpu::compile(euler_source(model)?, opts, &format!("the Euler kernel for `{}`", model.info().name), "this is a bug in the model's CUDA right-hand side")
}

/// A CUDA context on GPU 0.
pub struct CudaSolver {
    ctx: Arc<CudaContext>,
}

/// A CUDA solution and the time the kernel itself took.
pub struct Timed {
    pub trajectories: Trajectories<f32>,
    pub kernel_seconds: f64,
}

impl CudaSolver {
    /// Opens GPU 0, or says why there is none.
    pub fn new() -> Result<Self, Error> {
        let ctx = crate::gpu::context("cuda", "run on a machine with an NVIDIA GPU and driver, or use --device cpu")?;
        Ok(CudaSolver { ctx })
    }

    /// The GPU's name.
    pub fn device_name(&self) -> String {
        crate::gpu::device_name(&self.ctx)
    }

    pub fn solve(
        &self,
        model: &dyn Model,
        grid: &TimeGrid,
        cells: &Cells,
    ) -> Result<Trajectories<f32>, Error> {
        Ok(self.solve_timed(model, grid, cells)?.trajectories)
    }

    /// Solves on the GPU; the timing covers the kernel, not the transfers.
    pub fn solve_timed(
        &self,
        model: &dyn Model,
        grid: &TimeGrid,
        cells: &Cells,
    ) -> Result<Timed, Error> {
        cells.check(model)?;
        let ptx = compile(model, None)?;
        let err = |what: &str| {
            let what = what.to_string();
            move |e: cudarc::driver::DriverError| {
                Error::unavailable(
                    "cuda",
                    format!("{what}: {e:?}"),
                    "check the GPU with nvidia-smi",
                )
            }
        };
        let n = cells.n;
        let flat = |cols: &[crate::solve::Column]| -> Vec<f32> {
            cols.iter()
                .flat_map(|c| (0..n).map(move |i| c.get(i) as f32))
                .collect()
        };
        let stream = self.ctx.default_stream();
        let module = self
            .ctx
            .load_module(ptx)
            .map_err(err("loading the kernel"))?;
        let f = module
            .load_function("euler")
            .map_err(err("loading the kernel"))?;
        let init = stream
            .clone_htod(&flat(&cells.init))
            .map_err(err("copying cells to the GPU"))?;
        let params = stream
            .clone_htod(&flat(&cells.params))
            .map_err(err("copying cells to the GPU"))?;
        let len = model.info().states.len() * grid.n_samples * n;
        let mut out = stream
            .alloc_zeros::<f32>(len)
            .map_err(err("allocating the output"))?;
        let (n_i, samples_i, steps_i, dt) = (
            n as i32,
            grid.n_samples as i32,
            grid.steps_per_sample as i32,
            grid.dt as f32,
        );
        stream.synchronize().map_err(err("synchronising"))?;
        let start = Instant::now();
        let mut launch = stream.launch_builder(&f);
        launch
            .arg(&init)
            .arg(&params)
            .arg(&mut out)
            .arg(&n_i)
            .arg(&samples_i)
            .arg(&steps_i)
            .arg(&dt);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's signature and buffer sizes.
        unsafe { launch.launch(cfg) }.map_err(err("launching the kernel"))?;
        stream.synchronize().map_err(err("running the kernel"))?;
        let kernel_seconds = start.elapsed().as_secs_f64();
        let data = stream
            .clone_dtoh(&out)
            .map_err(err("copying results back"))?;
        Ok(Timed {
            trajectories: Trajectories {
                n_state: model.info().states.len(),
                n_samples: grid.n_samples,
                n_cells: n,
                data,
            },
            kernel_seconds,
        })
    }
}
