//! ONNX export: the file passes onnx.checker, runs unchanged in ONNX Runtime
//! (Rust and Python), and matches the burn surrogate.

use std::path::Path;

use excite::engine::{ort::OrtEngine, Engine};
use excite::train::{Activation, TrainedSurrogate};

use crate::util::{quick_data, scratch};

/// Trains `hidden` briefly on the quick dataset in `dir` and exports it.
fn exported(
    dir: &Path,
    data: &Path,
    hidden: &str,
    extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let onnx = crate::util::train_and_export(dir, data, &format!("mode: ddnn\narchitecture:\n  hidden: {hidden}\nsteps: 60\nbatch: 64\nval_every: 30\n{extra}"));
    (dir.join("run"), onnx)
}

#[test]
fn onnx_matches_burn_for_every_activation_and_windows() {
    let dir = scratch("export-acts");
    let data = quick_data(&dir);
    let x: Vec<f32> = (0..1000).map(|i| i as f32 * 0.025).collect(); // t over [0, 25)
    let mut cases: Vec<(String, String)> = Activation::ALL
        .iter()
        .map(|a| (format!("[[{0}, 16], [{0}, 8]]", a.name()), String::new()))
        .collect();
    cases.push(("[[tanh, 16], [silu, 16]]".into(), "windows: 3\n".into()));
    for (i, (hidden, extra)) in cases.iter().enumerate() {
        let case = dir.join(format!("c{i}"));
        let (run, onnx) = exported(&case, &data, hidden, extra);
        let want = TrainedSurrogate::load(&run).unwrap().predict(&x);
        let mut engine = OrtEngine::load(&onnx, &Default::default()).unwrap();
        assert_eq!((engine.info().inputs, engine.info().outputs), (1, 2));
        let got = engine.run(&x, x.len()).unwrap();
        let worst = crate::util::max_abs_diff(&got, &want);
        assert!(
            worst <= 1e-5,
            "{hidden} {extra}: ONNX Runtime differs from burn by {worst:.2e}"
        );
    }
}

#[test]
fn python_onnx_checker_and_runtime_accept_the_file() {
    let dir = scratch("export-python");
    let data = quick_data(&dir);
    let (_, onnx) = exported(&dir, &data, "[[gelu, 16], [elu, 16]]", "windows: 2\n");
    let x: Vec<f32> = vec![0.0, 3.3, 12.5, 24.9];
    let mut engine = OrtEngine::load(&onnx, &Default::default()).unwrap();
    let rust = engine.run(&x, 4).unwrap();
    let script = format!(
        "import json, onnx, onnxruntime as ort, numpy as np\n\
         m = onnx.load('{0}')\n\
         onnx.checker.check_model(m, full_check=True)\n\
         props = {{p.key: p.value for p in m.metadata_props}}\n\
         s = ort.InferenceSession('{0}', providers=['CPUExecutionProvider'])\n\
         y = s.run(['y'], {{'x': np.array({1:?}, dtype=np.float32).reshape(-1, 1)}})[0]\n\
         print(json.dumps({{'y': y.ravel().tolist(), 'opset': m.opset_import[0].version, 'in': s.get_inputs()[0].shape, 'props': props}}))",
        onnx.display(),
        x
    );
    let py = crate::util::python()
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "onnx.checker or onnxruntime rejected the file (run scripts/setup.sh): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(v["opset"], 17);
    assert_eq!(v["in"][0], "N", "batch dimension is not dynamic");
    let y: Vec<f32> = v["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    for (a, b) in y.iter().zip(&rust) {
        assert!((a - b).abs() <= 1e-6, "python {a} vs rust {b}");
    }
    let props = &v["props"];
    assert_eq!(props["excite.kind"], "ddnn");
    assert!(props["excite.model"]
        .as_str()
        .unwrap()
        .contains("fhn-cardiac"));
    assert!(props["excite.inputs"].as_str().unwrap().contains("\"t\""));
    assert_eq!(
        props["excite.windows"]
            .as_str()
            .unwrap()
            .matches('[')
            .count(),
        3,
        "two windows"
    );
    assert_eq!(props["excite.run_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn missing_or_wrong_models_are_clear_errors() {
    let dir = scratch("export-bad");
    let e = OrtEngine::load(&dir.join("nope.onnx"), &Default::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("nope.onnx"), "{e}");
    std::fs::write(dir.join("junk.onnx"), b"not a model").unwrap();
    let e = OrtEngine::load(&dir.join("junk.onnx"), &Default::default())
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("junk.onnx") && e.hint().unwrap().contains("excite export"),
        "{e}"
    );
    let e = excite::export::write(&dir.join("no-run"), &dir.join("m.onnx"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("surrogate.json"), "{e}");
}

#[test]
fn a_missing_onnx_runtime_is_named_with_the_fix() {
    let dir = scratch("export-no-ort");
    let data = quick_data(&dir);
    let (_, onnx) = exported(&dir, &data, "[[tanh, 8]]", "");
    let o = crate::util::excite()
        .args([
            "verify",
            onnx.to_str().unwrap(),
            "--out",
            dir.join("v").to_str().unwrap(),
        ])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("onnxruntime")
            && err.contains("/nonexistent/libonnxruntime.so")
            && err.contains("hint:")
            && err.contains("scripts/setup.sh"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
