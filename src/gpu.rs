//! CUDA at run time: the driver and NVRTC are loaded dynamically, so excite
//! builds and runs on machines without them; this module probes for them
//! (naming what is missing and how to get it), opens GPU 0, compiles CUDA
//! C to PTX and finds the CUDA headers. NVRTC needs no GPU, so kernels are
//! compile-checked on any machine that has it. The Euler solver and the
//! native-cuda engine both go through here.

use std::path::PathBuf;
use std::sync::Arc;

use cudarc::driver::CudaContext;
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::Error;

const INSTALL_HINT: &str =
    "install NVRTC with `scripts/setup.sh` (PyPI nvidia-cuda-nvrtc-cu12 into .deps/), \
or point EXCITE_NVRTC_LIB at a libnvrtc.so from a CUDA toolkit";

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
        out.extend(crate::fsio::files_starting_with(&root.join(".deps/python/nvidia/cuda_nvrtc/lib"), "libnvrtc.so"));
    }
    out
}

/// Whether a CUDA driver library is installed (says nothing of a GPU).
pub fn driver_present() -> bool {
    // SAFETY: only probes for the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// GPU 0's context, or an error for `what` (`cuda`, `native-cuda`) saying
/// why there is none, with `hint`.
pub fn context(what: &str, hint: &str) -> Result<Arc<CudaContext>, Error> {
    // cudarc panics instead of erring without the library: probe first.
    if !driver_present() {
        return Err(Error::unavailable(what, "no CUDA driver (libcuda.so) on this machine", hint));
    }
    std::panic::catch_unwind(|| CudaContext::new(0))
        .map_err(|_| Error::unavailable(what, "the CUDA driver failed to initialise", hint))?
        .map_err(|e| Error::unavailable(what, format!("no usable GPU: {e:?}"), hint))
}

/// The GPU's name.
pub fn device_name(ctx: &CudaContext) -> String {
    ctx.name().unwrap_or_else(|_| "unknown GPU".into())
}

/// GPU 0's name, or `None` where there is no usable GPU.
pub fn gpu_name() -> Option<String> {
    context("cuda", "").ok().map(|c| device_name(&c))
}

/// Compiles CUDA C `src` to PTX with NVRTC; `what` names the kernel in the
/// error, `hint` says what a compile failure means.
pub fn compile(src: String, opts: CompileOptions, what: &str, hint: &str) -> Result<Ptx, Error> {
    ensure_nvrtc()?;
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| Error::unavailable("nvrtc", format!("{what} did not compile: {e:?}"), hint))
}

/// The CUDA header folders the tensor-core kernels need (mma.h with its
/// crt/mma.h, cuda_fp16.h, cuda_bf16.h): `EXCITE_CUDA_INCLUDE` (one folder or
/// several, `:`-separated), a CUDA toolkit's include folder, or the PyPI wheels
/// nvidia-cuda-runtime-cu12 and nvidia-cuda-nvcc-cu12 that scripts/setup.sh
/// installs into .deps/python.
pub fn cuda_include() -> Result<Vec<PathBuf>, Error> {
    let complete = |dirs: &[PathBuf]| ["mma.h", "crt/mma.h", "cuda_fp16.h", "cuda_bf16.h"].iter().all(|h| dirs.iter().any(|d| d.join(h).is_file()));
    let mut sets: Vec<Vec<PathBuf>> = Vec::new();
    if let Some(v) = std::env::var_os("EXCITE_CUDA_INCLUDE") {
        sets.push(std::env::split_paths(&v).collect());
    }
    sets.push(vec!["/usr/local/cuda/include".into()]);
    for root in crate::fsio::search_roots() {
        let py = root.join(".deps/python/nvidia");
        sets.push(vec![py.join("cuda_runtime/include"), py.join("cuda_nvcc/include")]);
    }
    sets.into_iter().find(|s| complete(s)).ok_or_else(|| {
        Error::unavailable("cuda headers", "mma.h, crt/mma.h, cuda_fp16.h and cuda_bf16.h were not found (EXCITE_CUDA_INCLUDE, /usr/local/cuda/include, .deps/python/nvidia/{cuda_runtime,cuda_nvcc}/include)", "run scripts/setup.sh (it installs the headers from the nvidia-cuda-runtime-cu12 and nvidia-cuda-nvcc-cu12 wheels), or set EXCITE_CUDA_INCLUDE to a CUDA include folder")
    })
}

