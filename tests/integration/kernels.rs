//! Every CUDA kernel compiles through NVRTC (no GPU needed), and asking for
//! the GPU where there is none is a clear error, never a crash.

use excite::cell;
use excite::solve::{cuda, Device, TimeGrid};

use crate::util::cells;

#[test]
fn euler_kernel_compiles_for_every_model_and_target() {
    cuda::ensure_nvrtc().unwrap_or_else(|e| panic!("{e}\nhint: {}", e.hint().unwrap_or("")));
    for model in cell::all() {
        for arch in ["compute_90", "compute_70"] {
            let ptx = cuda::compile(*model, Some(arch))
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}", model.info().name));
            let text = ptx.to_src();
            assert!(
                text.contains(".entry euler"),
                "{}: no euler entry in the PTX",
                model.info().name
            );
            assert!(
                text.contains(&format!(".target sm_{}", &arch[8..])),
                "{arch} not targeted"
            );
        }
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    if cuda::driver_present() {
        return; // a GPU machine: covered by scripts/gpu-check.sh
    }
    let model = cell::by_name("fhn").unwrap();
    let c = cells(model, vec![vec![0.0], vec![0.0]], &[]);
    let e = excite::solve::solve(
        model,
        &TimeGrid::new(1.0, 0.1, 0.1).unwrap(),
        &c,
        Device::Cuda,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("libcuda"), "{e}");
    assert!(e.hint().unwrap().contains("--device cpu"));
}
