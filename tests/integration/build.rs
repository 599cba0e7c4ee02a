//! `excite build`: precision variants, calibration, batch tuning, GPU targets
//! without their libraries, and the TensorRT options.

use std::path::{Path, PathBuf};

use excite::onnx::Model;
use excite::engine::manifest::{Calibrator, Precision};
use excite::build::{self, BatchChoice, BuildSpec, PrecisionChoice};
use excite::engine::manifest::{BatchProfile, Manifest, Target};
use excite::engine::ort::{EpContext, OrtEngine, Phase, TargetOptions, TrtSettings};
use excite::onnx::Interpreter;
use excite::engine::Engine;
use excite::report::Silent;
use excite::verify::{Budget, Settings};

use crate::util::{excite, max_abs_diff, scratch};

/// A problem-A surrogate trained well enough for an error budget, exported.
fn trained_model(dir: &Path) -> (PathBuf, PathBuf) {
    let data = crate::util::quick_data(dir);
    let onnx = crate::util::train_and_export(dir, &data, "mode: ddnn\narchitecture:\n  hidden: [[tanh, 32], [tanh, 32], [tanh, 32]]\nsteps: 3000\nbatch: 128\nlr: 0.003\nschedule: {kind: cosine, min_lr: 0.00003}\nval_every: 500\n");
    (onnx, data)
}

fn spec(precision: PrecisionChoice, batch: BatchChoice, data: Option<&Path>) -> BuildSpec {
    BuildSpec {
        target: Target::Cpu,
        precision,
        batch,
        calibrator: Calibrator::Entropy,
        calibration_data: data.map(Path::to_path_buf),
        calibration_rows: 1024,
        verify: Some(Settings {
            cells: 1,
            seconds: 0.05,
            reference_cells: 2000,
            budget: Budget {
                max_mae: Some(2e-2),
                max_abs_error: None,
            },
            ..Settings::default()
        }),
        seconds: 0.02,
        problem: None,
    }
}

const PROFILE: BatchChoice = BatchChoice::Fixed(BatchProfile {
    min: 1,
    opt: 256,
    max: 4096,
});

#[test]
fn fp32_fp16_and_int8_cpu_engines_build_verify_and_run() {
    let dir = scratch("build-precisions");
    let (onnx, data) = trained_model(&dir);
    let x: Vec<f32> = (0..500).map(|i| i as f32 * 0.05).collect();
    let want = OrtEngine::load(&onnx, &Default::default())
        .unwrap()
        .run(&x, 500)
        .unwrap();
    for (p, tol) in [
        (Precision::Fp32, 1e-6),
        (Precision::Fp16, 2e-2),
        (Precision::Int8, 0.1),
    ] {
        let out = dir.join(format!("engine-{}", p.name()));
        let m = build::build(
            &onnx,
            &out,
            &spec(PrecisionChoice::Fixed(p), PROFILE, Some(&data)),
            &Silent,
        )
        .unwrap();
        assert_eq!((m.precision, m.target, m.batch.opt), (p, Target::Cpu, 256));
        let v = m.verify.as_ref().expect("verified");
        assert!(v.passed, "{}: {:?}", p.name(), v.failure);
        assert_eq!(Manifest::load(&out).unwrap().files, m.files);
        assert!(
            m.files.contains_key("model.onnx")
                && m.files.contains_key("model.optimized.onnx")
                && m.files.contains_key("verify/report.json")
        );
        assert_eq!(m.calibration.is_some(), p == Precision::Int8);
        let (manifest, mut engine) = excite::engine::open(&out).unwrap();
        assert_eq!(engine.info().precision, p.name());
        let got = engine.run(&x, 500).unwrap();
        let worst = max_abs_diff(&got, &want);
        assert!(
            worst <= tol,
            "{}: differs from fp32 by {worst:.2e}",
            p.name()
        );
        assert_eq!(manifest.input.shape, vec![-1, 1]);
        // the reference interpreter computes the same variant
        let interp = Interpreter::load(&out.join("model.onnx")).unwrap();
        let ref_out = interp.run(&x, 500).unwrap();
        let gap = max_abs_diff(&ref_out, &got);
        // fp32 to rounding; fp16 to a few float16 ulps at |y| ≈ 1 (the runtimes keep
        // different tensors in fp16); int8 to a few quantisation steps
        let tol = match p {
            Precision::Fp32 => 1e-5,
            Precision::Fp16 => 5e-3,
            Precision::Int8 => 2e-2,
            Precision::Fp32Fast | Precision::Bf16 => unreachable!("excite's own engines' precisions"),
        };
        assert!(
            gap <= tol,
            "{}: interpreter vs ONNX Runtime {gap:.2e}",
            p.name()
        );
        if p == Precision::Int8 {
            let cache = std::fs::read_to_string(out.join("calibration.cache")).unwrap();
            assert!(
                cache.starts_with("TRT-") && cache.contains("\nx: "),
                "{cache}"
            );
            // The QDQ file runs in Python onnxruntime too.
            let py = crate::util::python()
                .args(["-c", &format!("import onnxruntime as o, numpy as n; s = o.InferenceSession('{}'); print(s.run(None, {{'x': n.linspace(0, 25, 7, dtype=n.float32).reshape(-1, 1)}})[0].shape)", out.join("model.onnx").display())])
                .output()
                .unwrap();
            assert!(
                py.status.success() && String::from_utf8_lossy(&py.stdout).contains("(7, 2)"),
                "{}",
                String::from_utf8_lossy(&py.stderr)
            );
        }
    }
    // an engine whose model changed is refused
    let out = dir.join("engine-fp32");
    let mut b = std::fs::read(out.join("model.onnx")).unwrap();
    let n = b.len();
    b[n - 40] ^= 1;
    std::fs::write(out.join("model.onnx"), b).unwrap();
    let e = Manifest::load(&out).unwrap_err();
    assert!(
        e.to_string().contains("model.onnx") && e.to_string().contains("does not match"),
        "{e}"
    );
    // a listed file replaced by a link out of the folder is refused, not followed
    let linked = dir.join("engine-fp16");
    std::fs::remove_file(linked.join("model.onnx")).unwrap();
    std::os::unix::fs::symlink(dir.join("engine-fp32/model.onnx"), linked.join("model.onnx")).unwrap();
    let e = Manifest::load(&linked).unwrap_err().to_string();
    assert!(e.contains("model.onnx") && e.contains("link or special file"), "{e}");
}

#[test]
fn auto_precision_and_batch_record_their_choices() {
    let dir = scratch("build-auto");
    let (onnx, _) = trained_model(&dir);
    let out = dir.join("engine");
    let m = build::build(
        &onnx,
        &out,
        &spec(
            PrecisionChoice::Auto,
            BatchChoice::Auto {
                cap: 1024,
                max_latency_ms: None,
            },
            None,
        ),
        &Silent,
    )
    .unwrap();
    assert_eq!(m.candidates.len(), 3);
    let chosen: Vec<_> = m.candidates.iter().filter(|c| c.chosen).collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].precision, m.precision);
    let fastest = m
        .candidates
        .iter()
        .filter(|c| c.verified.passed)
        .map(|c| c.verified.engine_samples_per_s)
        .fold(0.0, f64::max);
    assert_eq!(chosen[0].verified.engine_samples_per_s, fastest);
    let csv = std::fs::read_to_string(out.join("batch.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 11, "batches 1 … 1024: {csv}");
    assert!(std::fs::read_to_string(out.join("batch.svg"))
        .unwrap()
        .contains("<polyline"));
    assert_eq!(
        std::fs::read_to_string(out.join("candidates.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    assert!(m.batch.opt.is_power_of_two() && m.batch.opt <= 1024);
    // without a budget, auto has nothing to choose by
    let mut s = spec(PrecisionChoice::Auto, PROFILE, None);
    s.verify.as_mut().unwrap().budget = Budget::default();
    let e = build::build(&onnx, &dir.join("e2"), &s, &Silent).unwrap_err();
    assert!(e.hint().unwrap().contains("--max-mae"), "{e}");

    // no precision within a budget: a failed gate (exit 1), the previous engine kept and
    // every candidate's report beside it, as for a fixed precision
    let before = std::fs::read(out.join("engine.json")).unwrap();
    let o = excite()
        .args(["build", onnx.to_str().unwrap(), "--precision", "auto", "--max-mae", "1e-9", "--cells", "1", "--seconds", "0.05", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no cpu precision met the budget") && err.contains("int8"), "{err}");
    assert_eq!(std::fs::read(out.join("engine.json")).unwrap(), before, "the previous engine changed");
    for p in ["fp32", "fp16", "int8"] {
        let report = out.with_extension("rejected").join(format!("candidate-{p}/verify/report.md"));
        assert!(std::fs::read_to_string(&report).unwrap().contains("FAILED"), "{}", report.display());
    }
}

#[test]
fn gpu_targets_without_their_libraries_fail_by_name() {
    let dir = scratch("build-gpu");
    let (onnx, _) = trained_model(&dir);
    for (target, lib) in [
        ("tensorrt", "libonnxruntime_providers_tensorrt.so"),
        ("cuda", "libonnxruntime_providers_cuda.so"),
    ] {
        let out = dir.join(target);
        let o = excite()
            .args([
                "build",
                onnx.to_str().unwrap(),
                "--target",
                target,
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(lib) && err.contains("onnxruntime-gpu") && err.contains("hint:"),
            "{err}"
        );
        assert!(!out.exists(), "a failed build left {}", out.display());
    }
}

#[test]
fn tensorrt_options_carry_profile_precision_and_caches() {
    let t = TrtSettings {
        device: 0,
        fp16: true,
        int8: true,
        calibration_table: Some("../calibration.cache".into()),
        cache_dir: "/e/trt".into(),
        input: "x".into(),
        features: 4,
        batch: BatchProfile {
            min: 1,
            opt: 1024,
            max: 65536,
        },
        ep_context: EpContext::Write("/e/trt/model_ctx.onnx".into()),
    };
    let d = format!("{:?}", t.provider());
    for kv in [
        ("trt_fp16_enable", "true"),
        ("trt_int8_enable", "true"),
        ("trt_int8_use_native_calibration_table", "true"),
        ("trt_profile_min_shapes", "x:1x4"),
        ("trt_profile_opt_shapes", "x:1024x4"),
        ("trt_profile_max_shapes", "x:65536x4"),
        ("trt_engine_cache_enable", "true"),
        ("trt_engine_cache_path", "/e/trt"),
        ("trt_timing_cache_enable", "true"),
        ("trt_int8_calibration_table_name", "../calibration.cache"),
        ("trt_dump_ep_context_model", "true"),
        ("trt_ep_context_file_path", "/e/trt/model_ctx.onnx"),
        ("trt_ep_context_embed_mode", "1"),
    ] {
        assert!(
            d.contains(&format!("{:?}: {:?}", kv.0, kv.1)),
            "{kv:?} missing in {d}"
        );
    }
}

#[test]
fn graphs_round_trip_and_the_interpreter_matches_onnx_runtime() {
    let dir = scratch("build-graph");
    let (onnx, _) = trained_model(&dir);
    let bytes = std::fs::read(&onnx).unwrap();
    let m = Model::parse(&bytes).unwrap();
    assert_eq!(m.to_bytes(), bytes, "parse → write is not the identity");
    assert_eq!(m.opset, 17);
    let x: Vec<f32> = (0..300).map(|i| i as f32 * 0.08).collect();
    let a = Interpreter::new(m).unwrap().run(&x, 300).unwrap();
    let b = OrtEngine::load(&onnx, &Default::default())
        .unwrap()
        .run(&x, 300)
        .unwrap();
    let worst = max_abs_diff(&a, &b);
    assert!(worst <= 1e-5, "{worst:.2e}");
}

#[test]
fn native_cpu_fast_precision_is_built_verified_and_reopened() {
    let dir = scratch("build-native-fast");
    let (onnx, _) = trained_model(&dir);
    let native = |p: PrecisionChoice| BuildSpec { target: Target::NativeCpu, ..spec(p, PROFILE, None) };
    let m = build::build(&onnx, &dir.join("fast"), &native(PrecisionChoice::Fixed(Precision::Fp32Fast)), &Silent).unwrap();
    assert_eq!((m.target, m.precision), (Target::NativeCpu, Precision::Fp32Fast));
    assert!(m.verify.as_ref().unwrap().passed);
    let json = std::fs::read_to_string(dir.join("fast/engine.json")).unwrap();
    assert!(json.contains("\"fp32-fast\""), "{json}");
    let (_, mut fast) = excite::engine::open(&dir.join("fast")).unwrap();
    assert_eq!(fast.info().precision, "fp32-fast");
    let exact_dir = dir.join("exact");
    build::build(&onnx, &exact_dir, &native(PrecisionChoice::Fixed(Precision::Fp32)), &Silent).unwrap();
    let (_, mut exact) = excite::engine::open(&exact_dir).unwrap();
    let x: Vec<f32> = (0..500).map(|i| i as f32 * 0.05).collect();
    let (a, b) = (fast.run(&x, 500).unwrap(), exact.run(&x, 500).unwrap());
    let d = max_abs_diff(&a, &b);
    assert!(d > 0.0 && d <= 1e-3, "fast vs exact {d:.2e}");
    // auto builds both and keeps the faster within budget
    let m = build::build(&onnx, &dir.join("auto"), &native(PrecisionChoice::Auto), &Silent).unwrap();
    assert_eq!(m.candidates.len(), 2);
    // the GPU engine has no fast mode
    let e = build::build(&onnx, &dir.join("cuda"), &BuildSpec { target: Target::NativeCuda, ..spec(PrecisionChoice::Fixed(Precision::Fp32Fast), PROFILE, None) }, &Silent).unwrap_err();
    assert!(e.to_string().contains("fp32-fast"), "{e}");
}

/// The provider options an engine is built with are the ones it is reopened
/// with, for every target and precision; reopening loads TensorRT's
/// EP-context model once the build wrote it, and int8 hands TensorRT the
/// folder's calibration cache.
#[test]
fn provider_options_agree_at_build_and_reopen() {
    use excite::engine::manifest::{Runtime, TensorSpec, FORMAT};
    let root = scratch("build-reopen-options");
    let targets = [Target::Cpu, Target::Cuda, Target::Tensorrt, Target::NativeCpu, Target::NativeCuda, Target::Reference];
    for target in targets {
        for &precision in build::supported(target) {
            let dir = root.join(format!("{}-{}", target.name(), precision.name()));
            std::fs::create_dir_all(&dir).unwrap();
            let batch = BatchProfile { min: 1, opt: 512, max: 4096 };
            let built_with = excite::engine::Spec { target, precision, batch, input: "x".into(), features: 4 };
            let at_build = excite::engine::ort_options(&built_with, &dir, Phase::Build);
            // what `excite build` records, read back as `engine::open` does
            let m = Manifest {
                format: FORMAT.into(),
                target,
                precision,
                batch,
                model: "model.onnx".into(),
                input: TensorSpec { name: "x".into(), shape: vec![-1, 4], dtype: "float32".into() },
                output: TensorSpec { name: "y".into(), shape: vec![-1, 2], dtype: "float32".into() },
                runtime: Runtime { name: "onnxruntime".into(), version: "1.31.1".into(), library: String::new() },
                device: None,
                source_model_sha256: String::new(),
                calibration: None,
                verify: None,
                candidates: vec![],
                excite_version: String::new(),
                files: Default::default(),
            };
            let reopened_with = excite::engine::Spec::of(&m);
            assert_eq!(reopened_with, built_with, "{target:?} {precision:?}");
            let before_ctx = excite::engine::ort_options(&reopened_with, &dir, Phase::Reopen);
            let ctx = dir.join("trt").join("model_ctx.onnx");
            std::fs::create_dir_all(ctx.parent().unwrap()).unwrap();
            std::fs::write(&ctx, b"ctx").unwrap();
            let at_reopen = excite::engine::ort_options(&reopened_with, &dir, Phase::Reopen);
            let model = dir.join("model.onnx");
            match (&at_build, &before_ctx, &at_reopen) {
                (TargetOptions::TensorRt(b), TargetOptions::TensorRt(r0), TargetOptions::TensorRt(r)) => {
                    assert_eq!(b.ep_context, EpContext::Write(ctx.clone()));
                    assert_eq!(r0.ep_context, EpContext::None);
                    assert_eq!(r.ep_context, EpContext::Load(ctx.clone()));
                    let same = |s: &TrtSettings| TrtSettings { ep_context: EpContext::None, ..s.clone() };
                    assert_eq!(same(b), same(r), "{precision:?}");
                    assert_eq!((b.fp16, b.int8), (precision == Precision::Fp16, precision == Precision::Int8));
                    assert_eq!(b.calibration_table.is_some(), precision == Precision::Int8);
                    if let Some(table) = &b.calibration_table {
                        // ONNX Runtime resolves the table inside the cache folder
                        assert_eq!(b.cache_dir.join(table), dir.join("trt/../calibration.cache"));
                    }
                    assert_eq!(at_reopen.model_to_load(&model), ctx.as_path());
                    assert_eq!(at_build.model_to_load(&model), model.as_path());
                }
                (b, r0, r) => {
                    assert_eq!(format!("{b:?}"), format!("{r:?}"), "{target:?} {precision:?}");
                    assert_eq!(format!("{r0:?}"), format!("{r:?}"));
                    assert_eq!(at_reopen.model_to_load(&model), model.as_path());
                    assert!(target != Target::Tensorrt);
                }
            }
        }
    }
}
