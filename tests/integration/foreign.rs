//! Models trained elsewhere: MLPs as torch.onnx (TorchScript and dynamo),
//! tf2onnx/keras and opset 20 write them, and real skl2onnx exports, read
//! into excite's form and checked against ONNX Runtime running the original
//! file; a scikit-learn model of an excite dataset built, verified, bundled.

use std::path::{Path, PathBuf};

use excite::engine::native::NativeEngine;
use excite::onnx::Interpreter;

use crate::util::{excite, max_abs_diff, python, quick_data, root, scratch};

/// The models of foreign_models.py, written into `dir`.
fn models(dir: &Path) -> PathBuf {
    let out = dir.join("models");
    let o = python().arg(root().join("tests/integration/foreign_models.py")).arg(&out).output().unwrap();
    assert!(o.status.success(), "foreign_models.py: {}", String::from_utf8_lossy(&o.stderr));
    out
}

/// A float32 .npy array's values.
fn npy(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY");
    let header = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert!(std::str::from_utf8(&b[10..10 + header]).unwrap().contains("'<f4'"));
    b[10 + header..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

const READ: [&str; 7] = ["torch_script", "torch_dynamo", "keras", "opset20_gelu", "gelu_tanh", "sklearn_mlp", "sklearn_pipeline"];

#[test]
fn every_exporters_mlp_computes_what_onnx_runtime_computes_from_the_original() {
    let dir = scratch("foreign");
    let m = models(&dir);
    let x = npy(&m.join("x.npy"));
    let rows = x.len() / 3;
    for name in READ {
        let path = m.join(format!("{name}.onnx"));
        let want = npy(&m.join(format!("{name}.ort.npy")));
        let tol = 2e-5 * (1.0 + want.iter().fold(0f32, |a, v| a.max(v.abs())));
        // the scalar reference on excite's form of the graph
        let y = Interpreter::load(&path).unwrap_or_else(|e| panic!("{name}: {e}")).run(&x, rows).unwrap();
        assert!(max_abs_diff(&y, &want) <= tol, "{name}: interpreter vs ONNX Runtime {:.2e}", max_abs_diff(&y, &want));
        // the native engine, every kernel
        let native = NativeEngine::load(&path, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        for kernel in NativeEngine::kernels() {
            let y = native.run_kernel(kernel, &x, rows).unwrap();
            assert!(max_abs_diff(&y, &want) <= tol, "{name} {kernel}: native vs ONNX Runtime {:.2e}", max_abs_diff(&y, &want));
        }
        // `excite build` without metadata: ONNX Runtime on excite's form
        let engine = dir.join(format!("{name}-cpu"));
        let o = excite().args(["build".as_ref(), path.as_os_str(), "--target".as_ref(), "cpu".as_ref(), "--no-verify".as_ref(), "--batch".as_ref(), "64".as_ref(), "-o".as_ref(), engine.as_os_str()]).output().unwrap();
        assert!(o.status.success(), "{name}: build: {}", String::from_utf8_lossy(&o.stderr));
        let (_, mut e) = excite::engine::open(&engine).unwrap();
        let y = e.run(&x, rows).unwrap();
        assert!(max_abs_diff(&y, &want) <= tol, "{name}: built cpu engine vs ONNX Runtime on the original {:.2e}", max_abs_diff(&y, &want));
        // and `bench engine` takes the file without metadata (no reference line)
        let o = excite().args(["bench".as_ref(), "engine".as_ref(), path.as_os_str(), "--batches".as_ref(), "64".as_ref(), "--seconds".as_ref(), "0.02".as_ref(), "--repeat".as_ref(), "1".as_ref(), "--reference-cells".as_ref(), "0".as_ref(), "--json".as_ref()]).output().unwrap();
        assert!(o.status.success(), "{name}: bench: {}", String::from_utf8_lossy(&o.stderr));
    }
    // the precision passes take excite's form of any of them: fp16 within fp16's rounding
    let fp16 = dir.join("torch_script-fp16");
    let o = excite().args(["build".as_ref(), m.join("torch_script.onnx").as_os_str(), "--precision".as_ref(), "fp16".as_ref(), "--no-verify".as_ref(), "--batch".as_ref(), "64".as_ref(), "-o".as_ref(), fp16.as_os_str()]).output().unwrap();
    assert!(o.status.success(), "fp16 build: {}", String::from_utf8_lossy(&o.stderr));
    let y = excite::engine::open(&fp16).unwrap().1.run(&x, rows).unwrap();
    let want = npy(&m.join("torch_script.ort.npy"));
    assert!(max_abs_diff(&y, &want) <= 2e-2 && max_abs_diff(&y, &want) > 0.0, "fp16 {:.2e}", max_abs_diff(&y, &want));
    // scikit-learn's own predictions, where it wrote them
    for name in ["sklearn_mlp", "sklearn_pipeline"] {
        let y = Interpreter::load(&m.join(format!("{name}.onnx"))).unwrap().run(&x, rows).unwrap();
        let want = npy(&m.join(format!("{name}.sklearn.npy")));
        assert!(max_abs_diff(&y, &want) <= 1e-4, "{name}: excite vs sklearn.predict {:.2e}", max_abs_diff(&y, &want));
    }
    // what is not an MLP: each refused, naming the node and its operator
    let e = Interpreter::load(&m.join("conv.onnx")).err().unwrap().to_string();
    assert!(e.contains("`Conv` (node `conv0`)") && e.contains("conv.onnx"), "{e}");
    let e = Interpreter::load(&m.join("square.onnx")).err().unwrap().to_string();
    assert!(e.contains("compute no activation") && e.contains("square0"), "{e}");
    let o = excite().args(["build".as_ref(), m.join("conv.onnx").as_os_str(), "--no-verify".as_ref(), "--batch".as_ref(), "64".as_ref(), "-o".as_ref(), dir.join("conv-engine").as_os_str()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`Conv`"));
    assert!(!dir.join("conv-engine").exists(), "a refused build wrote its output");
}

/// A scikit-learn MLP trained on an excite dataset: verified with
/// `--problem`, annotated, built with verification and packaged like
/// excite's own; without the problem each command says what it lacks.
#[test]
fn a_scikit_learn_surrogate_is_verified_annotated_and_built() {
    let dir = scratch("foreign-sklearn");
    let data = quick_data(&dir);
    let model = dir.join("sk.onnx");
    let script = format!(
        r#"
import warnings, numpy as np, onnx
warnings.filterwarnings("ignore")
from sklearn.neural_network import MLPRegressor
from skl2onnx import to_onnx
d = np.load("{data}/dataset.npz")
m = MLPRegressor(hidden_layer_sizes=(32, 32), activation="tanh", solver="lbfgs", max_iter=3000, random_state=0)
m.fit(d["x_train"], d["y_train"])
onnx.save(to_onnx(m, d["x_train"][:1].astype(np.float32)), "{model}")
"#,
        data = data.display(),
        model = model.display()
    );
    let o = python().arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "scikit-learn: {}", String::from_utf8_lossy(&o.stderr));
    let run = |args: &[&std::ffi::OsStr]| excite().args(args).output().unwrap();
    // no problem recorded: named, with the fix
    let o = run(&["verify".as_ref(), model.as_os_str(), "--cells".as_ref(), "1".as_ref()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("excite.model") && err.contains("--problem"), "{err}");
    let o = run(&["build".as_ref(), model.as_os_str(), "-o".as_ref(), dir.join("nope").as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--problem"));
    // verified against the Euler reference on the dataset's problem
    let report = dir.join("verify");
    let o = run(&["verify".as_ref(), model.as_os_str(), "--problem".as_ref(), data.as_os_str(), "--cells".as_ref(), "1".as_ref(), "--seconds".as_ref(), "0.05".as_ref(), "--reference-cells".as_ref(), "2000".as_ref(), "--max-mae".as_ref(), "0.2".as_ref(), "-o".as_ref(), report.as_os_str(), "--json".as_ref()]);
    assert!(o.status.success(), "verify: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let maes: Vec<f64> = r["variables"].as_array().unwrap().iter().map(|v| v["mae"].as_f64().unwrap()).collect();
    assert_eq!(maes.len(), 2);
    assert!(maes.iter().all(|&m| m > 0.0 && m < 0.2), "{maes:?}");
    // annotated once, every later command needs nothing more
    let annotated = dir.join("annotated.onnx");
    let o = run(&["annotate".as_ref(), model.as_os_str(), "--problem".as_ref(), data.as_os_str(), "-o".as_ref(), annotated.as_os_str()]);
    assert!(o.status.success(), "annotate: {}", String::from_utf8_lossy(&o.stderr));
    let engine = dir.join("engine");
    let o = run(&["build".as_ref(), annotated.as_os_str(), "--target".as_ref(), "native-cpu".as_ref(), "--cells".as_ref(), "1".as_ref(), "--max-mae".as_ref(), "0.2".as_ref(), "--seconds".as_ref(), "0.05".as_ref(), "-o".as_ref(), engine.as_os_str()]);
    assert!(o.status.success(), "build: {}", String::from_utf8_lossy(&o.stderr));
    let built: serde_json::Value = serde_json::from_slice(&std::fs::read(engine.join("engine.json")).unwrap()).unwrap();
    assert_eq!(built["verify"]["passed"], true, "{built}");
    // the same numbers whether the problem came from the flag or the file
    let again = excite::verify::Problem::from_onnx(&annotated).unwrap();
    assert_eq!(again.inputs.len(), 1);
    assert_eq!(again.model_meta.name, "fhn-cardiac");
    // a pipeline that starts from the model: `import:` in place of `train:`
    let quick = std::fs::read_to_string(root().join("models/quick.yaml")).unwrap();
    let (head, rest) = quick.split_once("\ntrain:").unwrap();
    let tail = &rest[rest.find("build:").unwrap()..];
    let yaml = format!("{}\nimport:\n  model: sk.onnx\n\n{tail}", head.replace("name: quick", "name: imported"));
    std::fs::write(dir.join("imported.yaml"), yaml).unwrap();
    let p = excite::pipeline::Pipeline::from_file(&dir.join("imported.yaml")).unwrap();
    let run_dir = dir.join("imported");
    let stages = excite::pipeline::run(&p, &run_dir, &Default::default(), &excite::report::Silent).unwrap();
    assert!(stages.iter().all(|s| s.status == "ran"), "{stages:?}");
    let bundle = excite::bundle::open(&run_dir.join("package/imported"), None).unwrap().manifest;
    assert_eq!((bundle.inputs.len(), bundle.outputs.len(), bundle.validated.passed), (1, 2, true));
    let again = excite::pipeline::run(&p, &run_dir, &Default::default(), &excite::report::Silent).unwrap();
    assert!(again.iter().all(|s| s.status == "skipped"), "{again:?}");
    // another model under the same name: the stages from train on run again
    std::fs::copy(&annotated, &model).unwrap();
    let third = excite::pipeline::run(&p, &run_dir, &Default::default(), &excite::report::Silent).unwrap();
    assert_eq!(third.iter().map(|s| s.status.as_str()).collect::<Vec<_>>()[..3], ["skipped", "ran", "ran"], "{third:?}");

    // a problem whose columns do not fit is refused
    let c = crate::util::preset_data(&dir.join("c"), "problem-c.yaml", &[("cells: 1000", "cells: 4"), ("t_end: 20,", "t_end: 1,")]);
    let o = run(&["annotate".as_ref(), model.as_os_str(), "--problem".as_ref(), c.as_os_str(), "-o".as_ref(), dir.join("bad.onnx").as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the model takes 1 inputs"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!dir.join("bad.onnx").exists());
}
