//! Every CUDA kernel compiles through NVRTC (no GPU needed), and asking for
//! the GPU where there is none is a clear error, never a crash.

use excite::cell;
use excite::solve::{cuda, Device, TimeGrid};

use crate::util::cells;
use std::path::PathBuf;
use std::process::Command;

/// Assembles PTX to machine code with ptxas (from the nvidia-cuda-nvcc-cu12
/// wheel scripts/setup.sh installs): NVRTC checks the CUDA source, ptxas the
/// PTX it made (inline assembly, registers, shared memory). Returns ptxas's
/// resource report.
fn assemble(ptx: &str, sm: &str, name: &str) -> String {
    let ptxas = crate::util::root().join(".deps/python/nvidia/cuda_nvcc/bin/ptxas");
    assert!(ptxas.is_file(), "{} missing: run scripts/setup.sh", ptxas.display());
    let dir = crate::util::scratch(&format!("ptxas-{name}-{sm}"));
    std::fs::write(dir.join("k.ptx"), ptx).unwrap();
    let out = std::process::Command::new(&ptxas).args([&format!("-arch={sm}"), "-v", "-o"]).arg(dir.join("k.cubin")).arg(dir.join("k.ptx")).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ptxas {sm} {name}: {log}");
    log
}

#[test]
fn euler_kernel_compiles_for_every_model_and_target() {
    excite::gpu::ensure_nvrtc().unwrap_or_else(|e| panic!("{e}\nhint: {}", e.hint().unwrap_or("")));
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
            assemble(&text, &format!("sm_{}", &arch[8..]), &format!("euler-{}", model.info().name));
        }
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    if excite::gpu::driver_present() {
        return; // a GPU machine: covered by scripts/gpu-check.sh
    }
    let model = cell::by_name("fhn").unwrap();
    let c = cells(model, vec![vec![0.0], vec![0.0]], &[]);
    let e = excite::solve::solve(
        model,
        &TimeGrid::new(1.0, 0.1, 0.1).unwrap(),
        &c,
        excite::solve::Scheme::Euler,
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
    use native_cuda::Form;
    for act in ["relu", "leaky_relu", "elu", "silu", "gelu", "gelu_tanh", "softplus", "tanh", "sigmoid"] {
        let layers = [layer(4, 32, act), layer(32, 32, act), layer(32, 2, "linear")];
        assert_eq!(Form::for_layers(&layers), Form::Literal);
        for form in [Form::Literal, Form::Looped] {
            let (src, params) = native_cuda::kernel_source(&layers, form);
            let n = 4 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2;
            assert_eq!(params.len(), if form == Form::Literal { 0 } else { n }, "{form:?}");
            assert!(src.contains(&format!("act_{act}(")) && !src.contains("// @network"), "{form:?}");
            if form == Form::Literal {
                // every weight a literal that reads back exactly: 0.1f32 prints as 1.000000015e-1
                assert_eq!(src.matches(&format!("{:.9e}f", 0.1f32)).count(), 4 * 32 + 32 * 32 + 32 * 2);
            }
            for arch in ["compute_90", "compute_70"] {
                let ptx = native_cuda::compile(&layers, form, Some(arch)).unwrap_or_else(|e| panic!("{act} {form:?} for {arch}: {e}"));
                let text = ptx.to_src();
                assert!(text.contains(".entry mlp(") && text.contains(".entry mlp_grid("), "{act} {form:?}: entries missing");
                // literal weights are immediate operands of the FMAs (0.1f = 0f3DCCCCCD)
                assert_eq!(text.contains("0f3DCCCCCD"), form == Form::Literal, "{act} {form:?}");
                let log = assemble(&text, &format!("sm_{}", &arch[8..]), &format!("mlp-{act}-{form:?}"));
                assert!(!log.contains("bytes spill") || log.contains(" 0 bytes spill stores"), "{act} {form:?} {arch}: registers spilled: {log}");
            }
        }
    }
    // a network past the literal limit is looped
    let wide = [layer(4, 128, "tanh"), layer(128, 128, "tanh"), layer(128, 2, "linear")];
    assert_eq!(Form::for_layers(&wide), Form::Looped);
}

#[test]
fn native_cuda_without_a_gpu_is_a_clear_error() {
    if excite::gpu::driver_present() {
        return; // a GPU machine: scripts/gpu-check.sh runs the engine
    }
    let dir = crate::util::scratch("native-cuda");
    let onnx = crate::util::train_and_export(&dir, &crate::util::quick_data(&dir), "mode: ddnn\narchitecture:\n  hidden: [[tanh, 8]]\nsteps: 5\nval_every: 5\n");
    let e = excite::engine::native_cuda::NativeCudaEngine::load(&onnx).err().expect("no GPU here");
    assert!(e.to_string().contains("libcuda") && e.hint().unwrap().contains("native-cpu"), "{e}");
}

#[test]
fn gpu_bench_peer_files_reproduce_native_cpu() {
    // `bench gpu --out` writes the PyTorch peer's inputs before it needs the
    // GPU; the peer's numpy pass must reproduce native-cpu from them.
    let dir = crate::util::scratch("gpu-peer");
    let onnx = crate::util::train_and_export(&dir, &crate::util::quick_data(&dir), "mode: ddnn\narchitecture:\n  hidden: [[gelu, 16], [elu, 16]]\nsteps: 5\nval_every: 5\n");
    let out = crate::util::excite().args(["bench", "gpu"]).arg(&onnx).args(["--cells", "50", "--out"]).arg(dir.join("peer")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if excite::gpu::driver_present() {
        assert!(out.status.success(), "{stderr}"); // a GPU machine runs the whole comparison
    } else {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("peer's inputs were written"), "{stderr}");
    }
    let py = crate::util::python().arg(crate::util::root().join("scripts/torch_peer.py")).arg(dir.join("peer")).arg("--numpy-only").output().unwrap();
    let text = String::from_utf8_lossy(&py.stdout);
    assert!(py.status.success() && text.contains("max |diff|"), "{text}{}", String::from_utf8_lossy(&py.stderr));
}

#[test]
fn tensor_core_mlp_kernel_compiles_for_fp16_and_bf16() {
    use excite::engine::native::Dense;
    use excite::engine::native_cuda::{self, TensorCore};
    let layer = |d_in: usize, d_out: usize, act: &'static str| Dense { d_in, d_out, w: vec![0.1; d_in * d_out], b: vec![0.5; d_out], act, param: 0.01 };
    for act in ["relu", "leaky_relu", "elu", "silu", "gelu", "gelu_tanh", "softplus", "tanh", "sigmoid"] {
        let layers = [layer(4, 64, act), layer(64, 64, act), layer(64, 2, "linear")];
        let (src, w, b) = native_cuda::kernel_source_tc(&layers, TensorCore::Fp16).unwrap();
        // widths padded to 16: 4 → 16 inputs, 2 → 16 outputs, zeros outside the layer
        assert_eq!(w.len(), 16 * 64 + 64 * 64 + 64 * 16);
        assert_eq!(b.len(), 64 + 64 + 16);
        assert_eq!((w[0], w[4 * 64]), (half::f16::from_f32(0.1).to_bits(), 0), "row 4 of the first layer is padding");
        assert_eq!((b[64 + 64 + 1], b[64 + 64 + 2]), (0.5, 0.0));
        assert!(src.contains("LAYER(16, 64, 64,") && src.contains(&format!("act_{act},")));
        for (tc, arch) in [(TensorCore::Fp16, "compute_70"), (TensorCore::Fp16, "compute_90"), (TensorCore::Bf16, "compute_80"), (TensorCore::Bf16, "compute_90")] {
            let ptx = native_cuda::compile_tc(&layers, tc, Some(arch)).unwrap_or_else(|e| panic!("{act} {tc:?} {arch}: {e}"));
            let text = ptx.to_src();
            assert!(text.contains(".entry mlp_tc(") && text.contains(".entry mlp_tc_grid("), "{act} {tc:?}");
            assert!(text.contains("wmma.mma.sync"), "{act} {tc:?} {arch}: no tensor-core instruction");
            let log = assemble(&text, &format!("sm_{}", &arch[8..]), &format!("tc-{act}-{tc:?}"));
            assert!(log.contains("smem"), "{log}");
        }
    }
    // too wide for 48 KB of shared memory: refused by name
    let wide = [layer(4, 256, "tanh"), layer(256, 256, "tanh"), layer(256, 2, "linear")];
    let e = native_cuda::kernel_source_tc(&wide, TensorCore::Fp16).unwrap_err();
    assert!(e.contains("shared memory"), "{e}");
}

#[test]
fn a_problem_c_sized_literal_kernel_assembles_without_spills() {
    // 4-64-64-2 tanh with distinct weights (uniform ones let the compiler fold
    // whole layers): straight-line code must stay in registers
    use excite::engine::native::Dense;
    use excite::engine::native_cuda::{self, Form};
    let mut seed = 1u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.5
    };
    let mut layer = |d_in: usize, d_out: usize, act: &'static str| Dense { d_in, d_out, w: (0..d_in * d_out).map(|_| rnd()).collect(), b: (0..d_out).map(|_| rnd()).collect(), act, param: 0.0 };
    let layers = [layer(4, 64, "tanh"), layer(64, 64, "tanh"), layer(64, 2, "linear")];
    assert_eq!(native_cuda::Form::for_layers(&layers), Form::Literal);
    let t = std::time::Instant::now();
    let ptx = native_cuda::compile(&layers, Form::Literal, Some("compute_90")).unwrap();
    let log = assemble(&ptx.to_src(), "sm_90", "literal-c64");
    assert!(log.contains(" 0 bytes spill stores"), "{log}");
    eprintln!("NVRTC + ptxas for a 4-64-64-2 literal kernel: {:.1} s\n{log}", t.elapsed().as_secs_f64());
}

#[test]
fn generated_cuda_arithmetic_matches_native_cpu_compiled_on_the_host() {
    // The GPU is rare here; the generator need not wait for one: its device
    // code (activations + mlp_row) is plain C once three CUDA keywords are
    // defined away, so the host C compiler runs it against native-cpu.
    use excite::engine::native::NativeEngine;
    use excite::engine::native_cuda::{self, Form};
    use excite::engine::Engine;
    let dir = crate::util::scratch("cuda-on-host");
    let data = crate::util::preset_data(&dir, "problem-c.yaml", &[("cells: 1000", "cells: 20"), ("t_end: 20", "t_end: 2")]);
    let rows = 257;
    let x: Vec<f32> = (0..rows).flat_map(|r| [(r % 21) as f32 * 0.1, (r % 7) as f32 * 0.13, (r % 5) as f32 * 0.03, (r % 11) as f32 * 0.09]).collect();
    // trained networks for the training activations; for the two that come only
    // from other exporters, a network written directly in the one MLP form
    let mut engines: Vec<(String, NativeEngine)> = Vec::new();
    for act in ["relu", "leaky_relu", "elu", "silu", "gelu", "tanh", "sigmoid"] {
        let sub = dir.join(act);
        std::fs::create_dir_all(&sub).unwrap();
        let onnx = crate::util::train_and_export(&sub, &data, &format!("mode: ddnn\narchitecture:\n  hidden: [[{act}, 16], [{act}, 16]]\nsteps: 20\nbatch: 64\nval_every: 20\n"));
        engines.push((act.to_string(), NativeEngine::load(&onnx, 1).unwrap()));
    }
    for act in [excite::onnx::mlp::Act::Softplus, excite::onnx::mlp::Act::GeluTanh] {
        use excite::onnx::mlp::{Dense, Mlp};
        let w = |r: usize, c: usize| (0..r * c).map(|i| ((i * 37 % 19) as f32 - 9.0) / 6.0).collect::<Vec<f32>>();
        let net = Mlp { input: "x".into(), output: "y".into(), layers: vec![Dense { d_in: 4, d_out: 16, w: w(4, 16), b: vec![0.2; 16], act }, Dense { d_in: 16, d_out: 16, w: w(16, 16), b: vec![-0.1; 16], act }, Dense { d_in: 16, d_out: 2, w: w(16, 2), b: vec![0.0; 2], act: excite::onnx::mlp::Act::Linear }] };
        let like = excite::onnx::Model::parse(&net.to_model(&excite::onnx::Model { opset: 17, producer_version: String::new(), name: "t".into(), nodes: vec![], inits: vec![], inputs: vec![], outputs: vec![], metadata: vec![], domains: vec![] }).to_bytes()).unwrap();
        std::fs::create_dir_all(dir.join(act.name())).unwrap();
        engines.push((act.name().to_string(), NativeEngine::from_model(&like, 1).unwrap()));
    }
    for (act, mut cpu) in engines {
        let sub = dir.join(&act);
        let want = cpu.run(&x, rows).unwrap();
        for form in [Form::Literal, Form::Looped] {
            let (src, params) = native_cuda::row_source(&cpu.dense(), form);
            let c = format!("#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n#define __device__\n#define __forceinline__ static inline\n#define __ldg(p) (*(p))\n{src}\n{HARNESS}");
            let (file, prog, input, output) = (sub.join(format!("{form:?}.c")), sub.join(format!("{form:?}")), sub.join("x.bin"), sub.join("y.bin"));
            std::fs::write(&file, c).unwrap();
            let cc = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into())).args(["-O1", "-std=gnu11", "-o"]).arg(&prog).arg(&file).arg("-lm").output().unwrap();
            assert!(cc.status.success(), "{act} {form:?}: {}", String::from_utf8_lossy(&cc.stderr));
            let mut bytes = Vec::new();
            bytes.extend((rows as i32).to_le_bytes());
            bytes.extend((params.len() as i32).to_le_bytes());
            bytes.extend(params.iter().chain(&x).flat_map(|v| v.to_le_bytes()));
            std::fs::write(&input, bytes).unwrap();
            assert!(std::process::Command::new(&prog).arg(&input).arg(&output).status().unwrap().success());
            let got: Vec<f32> = std::fs::read(&output).unwrap().chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            assert_eq!(got.len(), want.len());
            let d = crate::util::max_abs_diff(&got, &want);
            assert!(d <= 1e-5, "{act} {form:?}: generated CUDA arithmetic vs native-cpu {d:.2e}");
        }
    }
}

/// Reads rows, the parameter buffer and x; runs mlp_row on every row; writes y.
const HARNESS: &str = r#"
int main(int argc, char** argv) {
    FILE* f = fopen(argv[1], "rb");
    int rows, np;
    if (fread(&rows, 4, 1, f) != 1 || fread(&np, 4, 1, f) != 1) return 1;
    float* p = malloc(4 * (size_t)(np + 1));
    float* x = malloc(4 * (size_t)rows * N_IN);
    float* y = malloc(4 * (size_t)rows * N_OUT);
    if (fread(p, 4, np, f) != (size_t)np || fread(x, 4, (size_t)rows * N_IN, f) != (size_t)rows * N_IN) return 1;
    fclose(f);
    for (int r = 0; r < rows; ++r) mlp_row(p, x + (size_t)r * N_IN, y + (size_t)r * N_OUT);
    f = fopen(argv[2], "wb");
    fwrite(y, 4, (size_t)rows * N_OUT, f);
    fclose(f);
    return 0;
}
"#;

/// The CUDA kernels generated for imported models compile through NVRTC and
/// assemble with ptxas, for both schemes: Luo–Rudy 1991 and the 48-state
/// Decker 2009 (made by Myokit at test time), and FHN as CellML.
#[test]
fn imported_models_kernels_compile() {
    use excite::solve::imported::{compile_cuda, Scheme};
    excite::gpu::ensure_nvrtc().unwrap_or_else(|e| panic!("{e}\nhint: {}", e.hint().unwrap_or("")));
    let dir = crate::util::scratch("imported-kernels");
    let out = crate::cellml::models(&dir);
    for file in [out.join("lr1991-2.0.cellml"), out.join("decker2009-2.0.cellml"), crate::util::root().join("models/fhn-cardiac.cellml")] {
        let eq = excite::cell::cellml::load(&file).unwrap();
        for scheme in [Scheme::Euler, Scheme::RushLarsen] {
            for arch in ["compute_90", "compute_70"] {
                let ptx = compile_cuda(&eq, scheme, Some(arch)).unwrap_or_else(|e| panic!("{} {scheme:?} {arch}: {e}", eq.name));
                let text = ptx.to_src();
                assert!(text.contains(".entry imported"), "{}: no kernel entry", eq.name);
                let log = assemble(&text, &format!("sm_{}", &arch[8..]), &format!("imported-{}-{scheme:?}", eq.name));
                // f64 registers, no local-memory spills of a hot loop's values beyond what ptxas reports
                assert!(log.contains("registers"), "{log}");
            }
        }
    }
}

/// The generated CUDA kernel's logic, run where no GPU is: its source
/// compiled as C by the host's compiler (CUDA's qualifiers taken out, one
/// "thread" per cell in a loop), fed the register file `solve_cuda` sends,
/// against the CPU solver, both schemes, on every model of the import tests
/// and the FHN as CellML: within 1e-9 relative to each value's size (the
/// GPU run is held to 1e-5; here the only difference is the host's libm exp
/// and log standing in for CUDA's against the CPU solver's own, ulps apart:
/// measured ≤ 1.4e-14 over 4000 steps).
#[test]
fn imported_models_kernels_run_as_c_are_the_cpu_solver() {
    use excite::solve::imported::{cuda_registers, program, solve_cells_by, Exec, Scheme};
    use excite::solve::{Cells, Column};
    let dir = crate::util::scratch("imported-kernels-host");
    let out = crate::cellml::models(&dir);
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("reference.json")).unwrap()).unwrap();
    let mut files: Vec<PathBuf> = reference.as_object().unwrap().keys().filter(|f| f.contains("-2.0.")).map(|f| out.join(f)).collect();
    files.push(crate::util::root().join("models/fhn-cardiac.cellml"));
    assert!(files.len() >= 6, "{files:?}");
    type Kernel = unsafe extern "C" fn(*const f64, *mut f64, i64, i32, i32, f64);
    let n = 37;
    for file in &files {
        let eq = excite::cell::cellml::load(file).unwrap();
        let x = eq.initial_state();
        let k = (0..x.len()).max_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs())).unwrap();
        let mut init: Vec<Column> = x.iter().map(|&v| Column::Same(v)).collect();
        init[k] = Column::PerCell((0..n).map(|i| x[k] * (1.0 + 0.002 * i as f64)).collect());
        let cells = Cells { n, init, params: eq.param_values().into_iter().map(Column::Same).collect() };
        let grid = TimeGrid::new(20.0, 0.005, 1.0).unwrap();
        for scheme in [Scheme::Euler, Scheme::RushLarsen] {
            let p = program(&eq, scheme);
            let source = excite::cell::program::cuda_source(&p).replace("extern \"C\" __global__ ", "").replace("__restrict__", "restrict");
            let c = format!(
                "#include <math.h>\ntypedef struct {{ long long x; }} dim;\nstatic dim blockIdx, blockDim, threadIdx;\n{source}\n\
                 void run_all(const double *regs0, double *out, long long W, int n_samples, int steps, double dt) {{\n\
                 blockDim.x = 1; threadIdx.x = 0;\n\
                 for (long long i = 0; i < W; i++) {{ blockIdx.x = i; imported(regs0, out, W, n_samples, steps, dt); }}\n}}\n"
            );
            let name = format!("{}-{scheme:?}", file.file_stem().unwrap().to_string_lossy());
            let (src, lib) = (dir.join(format!("{name}.c")), dir.join(format!("{name}.so")));
            std::fs::write(&src, c).unwrap();
            let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into())).args(["-O1", "-ffp-contract=off", "-fPIC", "-shared", "-o"]).arg(&lib).arg(&src).arg("-lm").output().unwrap();
            assert!(cc.status.success(), "{name}: {}", String::from_utf8_lossy(&cc.stderr));
            let regs0 = cuda_registers(&eq, &p, &cells).unwrap();
            let mut got = vec![0.0f64; eq.states.len() * grid.n_samples * n];
            // SAFETY: run_all has this signature; regs0 holds n_regs·n and got states·samples·n doubles
            unsafe {
                let lib = libloading::Library::new(&lib).unwrap();
                let run: libloading::Symbol<Kernel> = lib.get(b"run_all\0").unwrap();
                run(regs0.as_ptr(), got.as_mut_ptr(), n as i64, grid.n_samples as i32, grid.steps_per_sample as i32, grid.dt);
            }
            let cpu = solve_cells_by(Exec::Interpreted, &eq, scheme, &grid, &cells, 1).unwrap();
            let mut worst = 0.0f64;
            for st in 0..eq.states.len() {
                for s in 0..grid.n_samples {
                    for i in 0..n {
                        let (c, g) = (cpu.get(st, s, i), got[(st * grid.n_samples + s) * n + i]);
                        let d = if (c - g).is_nan() { f64::INFINITY } else { (c - g).abs() / (1.0 + c.abs()) };
                        worst = worst.max(d);
                    }
                }
            }
            assert!(worst <= 1e-9, "{name}: largest relative difference {worst:e}");
            // the cells moved
            assert!((0..eq.states.len()).any(|st| got[(st * grid.n_samples + grid.n_samples - 1) * n] != got[st * grid.n_samples * n]), "{name}: nothing moved");
        }
    }
}
