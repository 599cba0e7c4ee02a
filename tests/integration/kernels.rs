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

#[test]
fn mlp_kernel_compiles_for_every_activation_and_target() {
    use excite::engine::native::Dense;
    use excite::engine::native_cuda;
    let layer = |d_in: usize, d_out: usize, act: &'static str| Dense { d_in, d_out, w: vec![0.1; d_in * d_out], b: vec![0.0; d_out], act, param: 0.01 };
    for act in ["relu", "leaky_relu", "elu", "silu", "gelu", "tanh", "sigmoid"] {
        let layers = [layer(4, 32, act), layer(32, 32, act), layer(32, 2, "linear")];
        let (src, params) = native_cuda::kernel_source(&layers);
        assert_eq!(params.len(), 4 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2);
        assert!(src.contains(&format!("act_{act}")));
        for arch in ["compute_90", "compute_70"] {
            let ptx = native_cuda::compile(&layers, Some(arch)).unwrap_or_else(|e| panic!("{act} for {arch}: {e}"));
            assert!(ptx.to_src().contains(".entry mlp"), "{act}: no mlp entry");
        }
    }
}

#[test]
fn native_cuda_without_a_gpu_is_a_clear_error() {
    if cuda::driver_present() {
        return; // a GPU machine: scripts/gpu-check.sh runs the engine
    }
    let dir = crate::util::scratch("native-cuda");
    let spec = excite::data::DatasetSpec::from_yaml(excite::data::spec::QUICK_PRESET).unwrap();
    excite::data::generate(&spec, 0, &excite::report::Silent).unwrap().write(&dir.join("data")).unwrap();
    let t = excite::train::TrainSpec::from_yaml(&format!("name: g\ndataset: {}\nmode: ddnn\narchitecture:\n  hidden: [[tanh, 8]]\nsteps: 5\nval_every: 5\n", dir.join("data").display())).unwrap();
    excite::train::train(&t, &dir.join("run"), false, &excite::report::Silent).unwrap();
    excite::export::write(&dir.join("run"), &dir.join("m.onnx")).unwrap();
    let e = excite::engine::native_cuda::NativeCudaEngine::load(&dir.join("m.onnx")).err().expect("no GPU here");
    assert!(e.to_string().contains("libcuda") && e.hint().unwrap().contains("native-cpu"), "{e}");
}
