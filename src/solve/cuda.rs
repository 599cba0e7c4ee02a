//! The CUDA path: `kernels/euler.cu` specialised with the model's CUDA
//! right-hand side, compiled at run time by NVRTC and launched through cudarc.
//!
//! Both libraries are loaded dynamically, so excite builds and runs on
//! machines without CUDA; asking for the GPU there is a clear error. NVRTC
//! needs no GPU, so kernels are compile-checked on any machine that has it
//! (`scripts/setup.sh` installs it from PyPI into `.deps/`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::cell::Model;
use crate::solve::{Cells, TimeGrid, Trajectories};
use crate::Error;

/// The Euler kernel template.
pub const EULER_SOURCE: &str = include_str!("../../kernels/euler.cu");

const INSTALL_HINT: &str =
    "install NVRTC with `scripts/setup.sh` (PyPI nvidia-cuda-nvrtc-cu12 into .deps/), \
or point EXCITE_NVRTC_LIB at a libnvrtc.so from a CUDA toolkit";

/// The full CUDA source of the Euler kernel for `model`.
pub fn euler_source(model: &dyn Model) -> String {
    let info = model.info();
    format!(
        "#define N_STATE {}\n#define N_PARAM {}\n{}\n{}",
        info.states.len(),
        info.params.len(),
        model.cuda_rhs(),
        EULER_SOURCE
    )
}

/// Makes NVRTC loadable: a library named by `EXCITE_NVRTC_LIB`, or the one
/// `scripts/setup.sh` put under `.deps/`, is loaded first (so cudarc's lookup
/// by name finds it), else the system's is used.
pub fn ensure_nvrtc() -> Result<(), Error> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let r = LOADED.get_or_init(|| {
        for path in nvrtc_candidates() {
            // SAFETY: loading NVRTC runs only its (trusted) initialisers.
            if let Ok(lib) = unsafe { libloading::Library::new(&path) } {
                std::mem::forget(lib); // stays loaded for cudarc's dlopen by soname
                break;
            }
        }
        // SAFETY: only probes for the library.
        if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            Ok(())
        } else {
            Err("the NVRTC library (libnvrtc.so) was not found".into())
        }
    });
    r.clone()
        .map_err(|p| Error::unavailable("nvrtc", p, INSTALL_HINT))
}

fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("EXCITE_NVRTC_LIB") {
        out.push(PathBuf::from(p));
    }
    let roots = crate::fsio::search_roots();
    for root in roots {
        let lib = root.join(".deps/python/nvidia/cuda_nvrtc/lib");
        if let Ok(entries) = std::fs::read_dir(&lib) {
            let mut libs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("libnvrtc.so"))
                })
                .collect();
            libs.sort();
            out.extend(libs);
        }
    }
    out
}

/// Compiles the Euler kernel for `model` to PTX for `arch` (e.g. `compute_90`;
/// `None` for NVRTC's default). Needs NVRTC, not a GPU.
pub fn compile(model: &dyn Model, arch: Option<&'static str>) -> Result<Ptx, Error> {
    ensure_nvrtc()?;
    // No implicit contraction: the kernel does exactly the operations the
    // model wrote (explicit fmaf included), as the CPU path does.
    let opts = CompileOptions {
        arch,
        fmad: Some(false),
        name: Some(format!("euler_{}.cu", model.info().name)),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(euler_source(model), opts).map_err(|e| {
        Error::unavailable(
            "nvrtc",
            format!(
                "the Euler kernel for `{}` did not compile: {e:?}",
                model.info().name
            ),
            "this is a bug in the model's CUDA right-hand side",
        )
    })
}

/// Whether a CUDA driver library is installed (says nothing of a GPU).
pub fn driver_present() -> bool {
    // SAFETY: only probes for the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
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
        let hint = "run on a machine with an NVIDIA GPU and driver, or use --device cpu";
        // cudarc panics instead of erring without the library: probe first.
        if !driver_present() {
            return Err(Error::unavailable(
                "cuda",
                "no CUDA driver (libcuda.so) on this machine",
                hint,
            ));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(0))
            .map_err(|_| Error::unavailable("cuda", "the CUDA driver failed to initialise", hint))?
            .map_err(|e| Error::unavailable("cuda", format!("no usable GPU: {e:?}"), hint))?;
        Ok(CudaSolver { ctx })
    }

    /// The GPU's name.
    pub fn device_name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "unknown GPU".into())
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
