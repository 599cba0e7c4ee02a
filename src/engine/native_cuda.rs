//! The native-cuda engine: the network compiled into one CUDA kernel
//! (`kernels/mlp.cu` plus a generated body with its dimensions and
//! activations) by NVRTC at load time, launched through cudarc; one thread
//! per row, weights in one device buffer. Without a GPU it is a clear error;
//! the kernel source is compile-checked on any machine with NVRTC.

use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::engine::native::{Dense, NativeEngine};
use crate::engine::{Engine, EngineInfo};
use crate::Error;

pub const MLP_SOURCE: &str = include_str!("../../kernels/mlp.cu");

/// The CUDA source of the kernel for `layers`, and the flat parameter buffer it reads.
pub fn kernel_source(layers: &[Dense]) -> (String, Vec<f32>) {
    let mut params = Vec::new();
    let n_in = layers[0].d_in;
    let n_out = layers.last().expect("layers").d_out;
    let mut body = format!(
        "extern \"C\" __global__ void mlp(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ p, int rows) {{\n\
         \x20   const int r = blockIdx.x * blockDim.x + threadIdx.x;\n    if (r >= rows) return;\n\
         \x20   float a0[{n_in}];\n    for (int i = 0; i < {n_in}; ++i) a0[i] = x[(size_t)r * {n_in} + i];\n"
    );
    for (i, l) in layers.iter().enumerate() {
        let (w, b) = (params.len(), params.len() + l.w.len());
        params.extend_from_slice(&l.w);
        params.extend_from_slice(&l.b);
        body += &format!("    float a{}[{}];\n    DENSE({}, {}, a{i}, a{}, (p + {w}), (p + {b}), act_{}, {:?}f)\n", i + 1, l.d_out, l.d_in, l.d_out, i + 1, l.act, l.param);
    }
    body += &format!("    for (int i = 0; i < {n_out}; ++i) y[(size_t)r * {n_out} + i] = a{}[i];\n}}\n", layers.len());
    (format!("{MLP_SOURCE}\n{body}"), params)
}

/// Compiles the kernel for `layers` to PTX for `arch` (NVRTC, no GPU needed).
pub fn compile(layers: &[Dense], arch: Option<&'static str>) -> Result<cudarc::nvrtc::Ptx, Error> {
    crate::solve::cuda::ensure_nvrtc()?;
    let (src, _) = kernel_source(layers);
    let opts = cudarc::nvrtc::CompileOptions { arch, name: Some("mlp.cu".into()), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| Error::unavailable("nvrtc", format!("the MLP kernel did not compile: {e:?}"), "this is a bug in kernels/mlp.cu or its generated body"))
}

/// A network compiled for the GPU.
pub struct NativeCudaEngine {
    stream: Arc<CudaStream>,
    func: CudaFunction,
    params: CudaSlice<f32>,
    inputs: usize,
    outputs: usize,
    device: String,
}

impl NativeCudaEngine {
    pub fn load(path: &Path) -> Result<NativeCudaEngine, Error> {
        let cpu = NativeEngine::load(path, 1)?;
        let layers = cpu.dense();
        let hint = "run on a machine with an NVIDIA GPU and driver, or build with --target native-cpu";
        if !crate::solve::cuda::driver_present() {
            return Err(Error::unavailable("native-cuda", "no CUDA driver (libcuda.so) on this machine", hint));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(0))
            .map_err(|_| Error::unavailable("native-cuda", "the CUDA driver failed to initialise", hint))?
            .map_err(|e| Error::unavailable("native-cuda", format!("no usable GPU: {e:?}"), hint))?;
        let ptx = compile(&layers, None)?;
        let err = |what: &'static str| move |e: cudarc::driver::DriverError| Error::unavailable("native-cuda", format!("{what}: {e:?}"), "check the GPU with nvidia-smi");
        let module = ctx.load_module(ptx).map_err(err("loading the kernel"))?;
        let func = module.load_function("mlp").map_err(err("loading the kernel"))?;
        let stream = ctx.default_stream();
        let (_, host) = kernel_source(&layers);
        let params = stream.clone_htod(&host).map_err(err("copying the weights"))?;
        let device = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok(NativeCudaEngine { stream, func, params, inputs: layers[0].d_in, outputs: layers.last().expect("layers").d_out, device })
    }
}

impl Engine for NativeCudaEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo { backend: "excite-native-cuda".into(), precision: "fp32".into(), inputs: self.inputs, outputs: self.outputs, runtime: format!("excite {} on {}", env!("CARGO_PKG_VERSION"), self.device) }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        crate::engine::check_rows(x, rows, self.inputs)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let err = |what: &'static str| move |e: cudarc::driver::DriverError| Error::unavailable("native-cuda", format!("{what}: {e:?}"), "check the GPU with nvidia-smi");
        let xd = self.stream.clone_htod(x).map_err(err("copying inputs"))?;
        let mut yd = self.stream.alloc_zeros::<f32>(rows * self.outputs).map_err(err("allocating outputs"))?;
        let n = rows as i32;
        let mut launch = self.stream.launch_builder(&self.func);
        launch.arg(&xd).arg(&mut yd).arg(&self.params).arg(&n);
        let cfg = LaunchConfig { grid_dim: (rows.div_ceil(128) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the arguments match the generated kernel's signature and sizes.
        unsafe { launch.launch(cfg) }.map_err(err("launching the kernel"))?;
        self.stream.clone_dtoh(&yd).map_err(err("copying outputs"))
    }
}
