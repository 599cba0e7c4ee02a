//! ONNX Runtime through the `ort` crate, loading `libonnxruntime` at run time
//! (no download at build time). The library is found through
//! `ORT_DYLIB_PATH`, the project's `.deps/` (installed by `scripts/setup.sh`
//! from the PyPI `onnxruntime` wheel), or the `onnxruntime` Python package.
//!
//! Targets are ONNX Runtime execution providers: CPU, CUDA and TensorRT. The
//! GPU providers are registered so that failure is an error and CPU fallback
//! is disabled: a GPU result is never silently computed on the CPU. Before
//! that, the provider libraries are looked for, so their absence is named.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::engine::manifest::{BatchProfile, Precision, Target, CALIBRATION_FILE};
use crate::engine::{Engine, EngineInfo};
use crate::Error;

const HINT: &str = "run scripts/setup.sh (installs the PyPI onnxruntime wheel into .deps/), \
or `pip install onnxruntime==1.31.1`, or set ORT_DYLIB_PATH to a libonnxruntime.so";

/// The loaded runtime: its environment, library path and version.
pub struct Runtime {
    pub env: Environment,
    pub library: PathBuf,
    pub version: String,
}

/// Loads ONNX Runtime once per process.
pub fn runtime() -> Result<&'static Runtime, Error> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let r = RT.get_or_init(|| {
        let library = find_library().ok_or_else(|| {
            "libonnxruntime.so was not found (ORT_DYLIB_PATH, .deps/, python onnxruntime)"
                .to_string()
        })?;
        let env = ort::init_from(&library)
            .map_err(|e| format!("{} could not be loaded: {e}", library.display()))?
            .with_name("excite")
            .build()
            .map_err(|e| format!("{} could not be initialised: {e}", library.display()))?;
        // libonnxruntime.so.1.31.1 → 1.31.1
        let name = library
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let version = name
            .split(".so.")
            .nth(1)
            .unwrap_or("unknown version")
            .to_string();
        Ok(Runtime {
            env,
            library,
            version,
        })
    });
    r.as_ref()
        .map_err(|problem| Error::unavailable("onnxruntime", problem.clone(), HINT))
}

fn find_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let roots = crate::fsio::search_roots();
    dirs.extend(
        roots
            .iter()
            .map(|r| r.join(".deps/python/onnxruntime/capi")),
    );
    // a host application's PATH decides which python3 would run: not from a library
    if crate::fsio::embedded() {
        return dirs.into_iter().find_map(|d| crate::fsio::files_starting_with(&d, "libonnxruntime.so").pop());
    }
    if let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
    {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi"));
        }
    }
    dirs.into_iter().find_map(|d| crate::fsio::files_starting_with(&d, "libonnxruntime.so").pop())
}

/// How to build the session.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Intra-op threads (0 = ONNX Runtime's default).
    pub threads: usize,
    /// Write the graph after ONNX Runtime's optimisations here.
    pub optimized_model: Option<PathBuf>,
    pub target: TargetOptions,
    /// Load these bytes (excite's form of the model at the path) instead of the file.
    pub model_bytes: Option<Vec<u8>>,
}

/// The execution provider and its settings.
#[derive(Debug, Clone, Default)]
pub enum TargetOptions {
    #[default]
    Cpu,
    Cuda {
        device: i32,
    },
    TensorRt(TrtSettings),
}

/// When provider options are made: while `excite build` makes an engine
/// folder, or when a built one is reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Build,
    Reopen,
}

/// The TensorRT cache folder inside an engine folder.
pub const TRT_DIR: &str = "trt";
/// The EP-context model inside [`TRT_DIR`]: the ONNX wrapper embedding the built TensorRT engine.
pub const EP_CONTEXT_FILE: &str = "model_ctx.onnx";

impl TargetOptions {
    /// The execution provider and its settings for the engine in folder `dir`:
    /// the one place they are made, when `excite build` makes the engine and
    /// when it is reopened. `input` and `features` name and size the input
    /// tensor. At build time TensorRT writes its EP-context model; on reopening
    /// that model is loaded when present (no TensorRT build at load time).
    /// TensorRT int8 is implicit quantisation of the fp32 graph with the
    /// folder's `calibration.cache` (TensorRT refuses a calibration table for a
    /// graph with Q/DQ nodes).
    pub fn for_engine(target: Target, precision: Precision, batch: BatchProfile, input: &str, features: usize, dir: &Path, phase: Phase) -> TargetOptions {
        match target {
            Target::Cpu | Target::Reference | Target::NativeCpu | Target::NativeCuda => TargetOptions::Cpu,
            Target::Cuda => TargetOptions::Cuda { device: 0 },
            Target::Tensorrt => {
                let cache_dir = dir.join(TRT_DIR);
                let ctx = cache_dir.join(EP_CONTEXT_FILE);
                let int8 = precision == Precision::Int8;
                TargetOptions::TensorRt(TrtSettings {
                    device: 0,
                    fp16: precision == Precision::Fp16,
                    int8,
                    // ONNX Runtime reads the table from the engine cache folder
                    calibration_table: int8.then(|| format!("../{CALIBRATION_FILE}")),
                    cache_dir,
                    input: input.into(),
                    features,
                    batch,
                    ep_context: match phase {
                        Phase::Build => EpContext::Write(ctx),
                        Phase::Reopen if ctx.is_file() => EpContext::Load(ctx),
                        Phase::Reopen => EpContext::None,
                    },
                })
            }
        }
    }

    /// The ONNX file a session for `model` loads: the EP-context model where there is one to load.
    pub fn model_to_load<'a>(&'a self, model: &'a Path) -> &'a Path {
        match self {
            TargetOptions::TensorRt(TrtSettings { ep_context: EpContext::Load(ctx), .. }) => ctx,
            _ => model,
        }
    }
}

/// What a TensorRT session does with the EP-context model.
#[derive(Debug, Clone, PartialEq)]
pub enum EpContext {
    None,
    /// Write it to this path (building).
    Write(PathBuf),
    /// Load this one instead of the plain ONNX file (reopening).
    Load(PathBuf),
}

/// TensorRT execution provider settings, as excite builds engines with them.
#[derive(Debug, Clone, PartialEq)]
pub struct TrtSettings {
    pub device: i32,
    pub fp16: bool,
    /// Implicit int8 quantisation with `calibration_table`.
    pub int8: bool,
    /// The calibration cache (TensorRT's own text format), relative to `cache_dir`.
    pub calibration_table: Option<String>,
    /// Engine cache, timing cache and the EP-context model live here.
    pub cache_dir: PathBuf,
    pub input: String,
    pub features: usize,
    pub batch: BatchProfile,
    pub ep_context: EpContext,
}

impl TrtSettings {
    /// The provider with every option set.
    pub fn provider(&self) -> ort::ep::TensorRT {
        let dir = self.cache_dir.display().to_string();
        let shape = |b: usize| format!("{}:{b}x{}", self.input, self.features);
        let mut p = ort::ep::TensorRT::default()
            .with_device_id(self.device)
            .with_fp16(self.fp16)
            .with_int8(self.int8)
            .with_engine_cache(true)
            .with_engine_cache_path(&dir)
            .with_timing_cache(true)
            .with_timing_cache_path(&dir)
            .with_profile_min_shapes(shape(self.batch.min))
            .with_profile_opt_shapes(shape(self.batch.opt))
            .with_profile_max_shapes(shape(self.batch.max))
            .with_builder_optimization_level(5)
            .with_max_workspace_size(1 << 30);
        if let Some(table) = &self.calibration_table {
            // excite writes TensorRT's own calibration cache format
            p = p
                .with_int8_calibration_table_name(table)
                .with_int8_use_native_calibration_table(true);
        }
        if let EpContext::Write(ctx) = &self.ep_context {
            p = p
                .with_dump_ep_context_model(true)
                .with_ep_context_file_path(ctx.display().to_string())
                .with_ep_context_embed_mode(1);
        }
        p
    }
}

/// The pip packages that provide the GPU providers, for hints.
pub const GPU_RECIPE: &str = "install the CUDA 13 build of ONNX Runtime with TensorRT 10: \
`pip install onnxruntime-gpu==1.31.1 tensorrt-cu13-libs==10.16.1.11 nvidia-cudnn-cu13 'nvidia-cuda-runtime==13.*' 'nvidia-cublas==13.*' nvidia-curand`, \
then set ORT_DYLIB_PATH to onnxruntime-gpu's capi/libonnxruntime.so.1.31.1 and LD_LIBRARY_PATH to the nvidia/*/lib folders \
(README, 'GPU and TensorRT')";

/// Checks that the provider libraries for `target` can be loaded next to the runtime.
pub fn check_provider(rt: &Runtime, target: &TargetOptions) -> Result<(), Error> {
    let (provider, extra): (&str, &[&str]) = match target {
        TargetOptions::Cpu => return Ok(()),
        TargetOptions::Cuda { .. } => (
            "libonnxruntime_providers_cuda.so",
            &["libcudart.so.13", "libcublas.so.13"],
        ),
        TargetOptions::TensorRt(_) => (
            "libonnxruntime_providers_tensorrt.so",
            &["libnvinfer.so.10", "libcudart.so.13"],
        ),
    };
    let dir = rt.library.parent().unwrap_or(Path::new("."));
    let what = match target {
        TargetOptions::TensorRt(_) => "tensorrt",
        _ => "cuda",
    };
    for lib in ["libonnxruntime_providers_shared.so", provider] {
        if !dir.join(lib).exists() {
            return Err(Error::unavailable(
                what,
                format!(
                    "{lib} is not next to {} (a CPU-only ONNX Runtime)",
                    rt.library.display()
                ),
                GPU_RECIPE,
            ));
        }
    }
    if !crate::gpu::driver_present() {
        return Err(Error::unavailable(
            what,
            "no CUDA driver (libcuda.so) on this machine",
            "run on a machine with an NVIDIA GPU and driver",
        ));
    }
    for lib in extra {
        // SAFETY: loads a system library by name to see whether it exists.
        if unsafe { libloading::Library::new(*lib) }.is_err() {
            return Err(Error::unavailable(
                what,
                format!("{lib} cannot be loaded"),
                GPU_RECIPE,
            ));
        }
    }
    Ok(())
}

/// An ONNX model in an ONNX Runtime CPU session.
pub struct OrtEngine {
    session: Session,
    inputs: usize,
    outputs: usize,
    version: String,
    backend: &'static str,
    precision: String,
}

impl OrtEngine {
    pub fn load(model: &Path, opts: &Options) -> Result<Self, Error> {
        let rt = runtime()?;
        if !model.exists() {
            return Err(Error::io(
                model,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let fail = |what: &str, e: ort::Error| {
            Error::format(
                model,
                format!("{what}: {e}"),
                "export the model again with `excite export`",
            )
        };
        let mut builder = Session::builder(&rt.env)
            .map_err(|e| fail("creating a session", e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| fail("setting optimisations", e.into()))?;
        if opts.threads > 0 {
            builder = builder
                .with_intra_threads(opts.threads)
                .map_err(|e| fail("setting threads", e.into()))?;
        }
        if let Some(p) = &opts.optimized_model {
            builder = builder
                .with_optimized_model_path(p)
                .map_err(|e| fail("setting the optimised model path", e.into()))?;
        }
        check_provider(rt, &opts.target)?;
        let gpu_fail = |e: ort::Error| {
            Error::unavailable(
                "onnxruntime",
                format!("the GPU execution provider failed to register: {e}"),
                GPU_RECIPE,
            )
        };
        let provider = match &opts.target {
            TargetOptions::Cpu => None,
            TargetOptions::Cuda { device } => Some(
                ort::ep::CUDA::default()
                    .with_device_id(*device)
                    .build()
                    .error_on_failure(),
            ),
            TargetOptions::TensorRt(t) => {
                std::fs::create_dir_all(&t.cache_dir).map_err(|e| Error::io(&t.cache_dir, e))?;
                Some(t.provider().build().error_on_failure())
            }
        };
        if let Some(p) = provider {
            builder = builder
                .with_execution_providers([p])
                .map_err(|e| gpu_fail(e.into()))?;
            builder = builder
                .with_disable_cpu_fallback()
                .map_err(|e| gpu_fail(e.into()))?;
        }
        let session = match &opts.model_bytes {
            Some(bytes) => builder.commit_from_memory(bytes),
            None => builder.commit_from_file(opts.target.model_to_load(model)),
        }
        .map_err(|e| fail("not a model ONNX Runtime can load", e))?;
        let dims = |outlets: &[ort::value::Outlet], what: &str| -> Result<usize, Error> {
            let o = outlets.first().ok_or_else(|| {
                Error::format(
                    model,
                    format!("the model has no {what}"),
                    "export it with `excite export`",
                )
            })?;
            match o.dtype().tensor_shape() {
                Some(shape) if shape.len() == 2 && shape[1] > 0 => Ok(shape[1] as usize),
                other => Err(Error::format(model, format!("{what} `{}` has shape {other:?}; excite engines take [N, features] float32", o.name()), "export it with `excite export`")),
            }
        };
        let inputs = dims(session.inputs(), "input")?;
        let outputs = dims(session.outputs(), "output")?;
        let backend = match opts.target {
            TargetOptions::Cpu => "onnxruntime-cpu",
            TargetOptions::Cuda { .. } => "onnxruntime-cuda",
            TargetOptions::TensorRt(_) => "onnxruntime-tensorrt",
        };
        // `excite build` marks its fp16 and int8 variants in the metadata
        let precision = session.metadata().ok().and_then(|m| m.custom("excite.precision")).unwrap_or_else(|| "fp32".into());
        Ok(OrtEngine {
            session,
            inputs,
            outputs,
            version: format!("onnxruntime {}", rt.version),
            backend,
            precision,
        })
    }
}

impl Engine for OrtEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            backend: self.backend.into(),
            precision: self.precision.clone(),
            inputs: self.inputs,
            outputs: self.outputs,
            runtime: self.version.clone(),
        }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        crate::onnx::check_rows(x, rows, self.inputs)?;
        let fail = |e: ort::Error| {
            Error::unavailable(
                "onnxruntime",
                format!("inference failed: {e}"),
                "check the model with `excite verify`",
            )
        };
        let tensor = Tensor::from_array(([rows, self.inputs], x.to_vec())).map_err(fail)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(fail)?;
        let (_, y) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        Ok(y.to_vec())
    }
}
