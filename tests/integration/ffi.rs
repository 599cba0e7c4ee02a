//! Loading bundles from other applications: the Rust API, the C ABI with
//! its generated header, and the C example compiled with the system compiler.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{root, scratch};

/// build.rs generates the header from the source; a stale committed copy fails.
#[test]
fn c_header_is_generated_from_the_source() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/excite.h")).unwrap();
    let committed = std::fs::read_to_string(root().join("include/excite.h")).unwrap_or_default();
    if committed != generated {
        if std::env::var_os("EXCITE_BLESS").is_some() {
            std::fs::write(root().join("include/excite.h"), &generated).unwrap();
        }
        panic!("include/excite.h is out of date; refresh it with EXCITE_BLESS=1 cargo test --release c_header");
    }
}

/// The directory holding the test binaries' artefacts (target/release).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn quick_bundle(dir: &Path) -> PathBuf {
    let p = excite::pipeline::Pipeline::from_file(&root().join("models/quick.yaml")).unwrap();
    excite::pipeline::run(&p, dir, &Default::default(), &excite::report::Silent).unwrap();
    dir.join("package/quick")
}

#[test]
fn c_and_rust_examples_load_the_quick_bundle_and_agree() {
    let dir = scratch("ffi");
    let bundle = quick_bundle(&dir.join("run"));
    let tarball = bundle.with_extension("tar.gz");
    let mut s = excite::Surrogate::load(&tarball).unwrap();
    assert!(s.engine().starts_with("onnxruntime-cpu fp32"), "{}", s.engine());
    let x: Vec<f32> = (0..6).map(|i| i as f32 * 5.0).collect();
    let want = s.predict(&x).unwrap();
    assert_eq!(want.len(), 12);

    // C: compile examples/c/predict.c against libexcite.so and run it
    let lib = target_dir();
    assert!(lib.join("libexcite.so").exists(), "libexcite.so not built in {}", lib.display());
    let exe = dir.join("predict");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(root().join("examples/c/predict.c"))
        .arg(format!("-I{}", root().join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .args(["-lexcite", "-lm"])
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc failed: {}", String::from_utf8_lossy(&cc.stderr));
    let run = Command::new(&exe).arg(&bundle).env("LD_LIBRARY_PATH", &lib).current_dir(root()).output().unwrap();
    assert!(run.status.success(), "C example failed: {}", String::from_utf8_lossy(&run.stderr));
    let text = String::from_utf8_lossy(&run.stdout);
    let rows: Vec<Vec<f32>> = text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 6, "{text}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], x[i]);
        for j in 0..2 {
            assert!((r[1 + j] - want[i * 2 + j]).abs() <= 1e-6, "row {i}: C {} vs Rust {}", r[1 + j], want[i * 2 + j]);
        }
    }
    // C errors come back as messages, not crashes
    let bad = Command::new(&exe).arg(dir.join("no-such-bundle")).env("LD_LIBRARY_PATH", &lib).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-bundle"));

    // Rust: the example binary `cargo test` builds with the tests
    let example = lib.join("examples/predict");
    assert!(example.exists(), "{} missing: run the whole suite (scripts/test.sh), which builds the examples", example.display());
    let rust = Command::new(example).arg(&tarball).output().unwrap();
    assert!(rust.status.success(), "{}", String::from_utf8_lossy(&rust.stderr));
    let first: Vec<f32> = String::from_utf8_lossy(&rust.stdout).lines().find(|l| !l.starts_with('#')).unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert!((first[1] - want[0]).abs() <= 1e-6);
}

#[test]
fn a_bundle_with_one_flipped_byte_is_refused() {
    let dir = scratch("ffi-flip");
    let bundle = quick_bundle(&dir.join("run"));
    let copy = dir.join("copy");
    Command::new("cp").arg("-r").arg(&bundle).arg(&copy).status().unwrap();
    let target = copy.join("engines/cpu-fp32/model.onnx");
    let mut b = std::fs::read(&target).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x01;
    std::fs::write(&target, b).unwrap();
    let e = excite::Surrogate::load(&copy).err().expect("refused");
    assert!(e.to_string().contains("engines/cpu-fp32/model.onnx") && e.to_string().contains("does not match"), "{e}");
    let o = crate::util::excite().arg("inspect").arg(&copy).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("engines/cpu-fp32/model.onnx"));

    // bundle.json itself is covered: a better validated MAE written in is refused
    let edited = dir.join("edited");
    Command::new("cp").arg("-r").arg(&bundle).arg(&edited).status().unwrap();
    let manifest = edited.join("bundle.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["validated"]["mae"]["u"] = serde_json::json!(1e-9);
    std::fs::write(&manifest, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let e = excite::Surrogate::load(&edited).err().expect("refused");
    assert!(e.to_string().contains("bundle.json") && e.to_string().contains("SHA256SUMS"), "{e}");
    // and removing the checksums does not get around them
    std::fs::remove_file(edited.join("SHA256SUMS")).unwrap();
    let e = excite::Surrogate::load(&edited).err().expect("refused");
    assert!(e.to_string().contains("SHA256SUMS") && e.to_string().contains("missing"), "{e}");
}

/// C callers that get things wrong: NULLs, short or long buffers, row counts
/// whose products overflow. Each call returns -1 with a message, never
/// crashes or writes past a buffer; one handle shared by threads gives every
/// thread the same answers.
#[test]
fn the_c_abi_checks_every_argument_and_serves_several_threads() {
    use excite::bundle::ffi::*;
    use std::ffi::{CStr, CString};
    let dir = scratch("ffi-hostile");
    let bundle = quick_bundle(&dir.join("run"));
    let last = || unsafe { CStr::from_ptr(excite_last_error()) }.to_string_lossy().into_owned();
    unsafe {
        assert!(excite_surrogate_load(std::ptr::null()).is_null());
        assert!(last().contains("path is NULL"));
        let path = CString::new(bundle.to_str().unwrap()).unwrap();
        let s = excite_surrogate_load(path.as_ptr());
        assert!(!s.is_null(), "{}", last());
        let (n_in, n_out) = (excite_surrogate_inputs(s), excite_surrogate_outputs(s));
        assert_eq!((n_in, n_out), (1, 2));
        let x = [0.0f32, 5.0, 10.0];
        // a guard word after y shows nothing is written past its length
        let mut y = [7.0f32; 7];
        assert_eq!(excite_surrogate_predict(std::ptr::null(), x.as_ptr(), 3, 3, y.as_mut_ptr(), 6), -1);
        assert!(last().contains("surrogate is NULL"));
        assert_eq!(excite_surrogate_predict(s, std::ptr::null(), 3, 3, y.as_mut_ptr(), 6), -1);
        assert!(last().contains("NULL"));
        assert_eq!(excite_surrogate_predict(s, x.as_ptr(), 2, 3, y.as_mut_ptr(), 6), -1);
        assert!(last().contains("x_len 2 is not rows 3"), "{}", last());
        assert_eq!(excite_surrogate_predict(s, x.as_ptr(), 3, 3, y.as_mut_ptr(), 5), -1);
        assert!(last().contains("y_len 5 is less than"), "{}", last());
        // rows × inputs and rows × outputs past usize: refused, not wrapped
        assert_eq!(excite_surrogate_predict(s, x.as_ptr(), 3, usize::MAX / 2 + 1, y.as_mut_ptr(), 6), -1);
        assert_eq!(y, [7.0; 7], "a refused call wrote into y");
        assert_eq!(excite_surrogate_predict(s, x.as_ptr(), 3, 3, y.as_mut_ptr(), 6), 0, "{}", last());
        assert_eq!(y[6], 7.0, "written past y_len");
        let want = y[..6].to_vec();
        // zero rows: nothing to do, NULL buffers allowed
        assert_eq!(excite_surrogate_predict(s, std::ptr::null(), 0, 0, std::ptr::null_mut(), 0), 0);
        // one handle, four threads
        let handle = s as usize;
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let want = &want;
                scope.spawn(move || {
                    for _ in 0..50 {
                        let mut out = [0.0f32; 6];
                        let rc = excite_surrogate_predict(handle as *const ExciteSurrogate, x.as_ptr(), 3, 3, out.as_mut_ptr(), 6);
                        assert_eq!(rc, 0);
                        assert_eq!(&out[..], &want[..]);
                    }
                });
            }
        });
        excite_surrogate_free(s);
        excite_surrogate_free(std::ptr::null_mut());
        assert!(excite_surrogate_engine(std::ptr::null()).is_null());
        assert_eq!(excite_surrogate_inputs(std::ptr::null()), 0);
    }

    // an engine that panics: the call returns -1 with a message, the handle
    // refuses every later call (its state is unknown), other handles go on
    struct Panicking;
    impl excite::engine::Engine for Panicking {
        fn info(&self) -> excite::engine::EngineInfo {
            excite::engine::EngineInfo { backend: "panicking".into(), precision: "fp32".into(), inputs: 1, outputs: 2, runtime: "none".into() }
        }
        fn run(&mut self, x: &[f32], _rows: usize) -> Result<Vec<f32>, excite::Error> {
            if x[0] > 1.0 {
                panic!("engine bug");
            }
            Ok(vec![0.5; 2 * x.len()])
        }
    }
    let manifest = excite::bundle::open(&bundle, None).unwrap().manifest;
    let bad = into_handle(excite::Surrogate::with_engine(manifest, Box::new(Panicking), "panicking test engine"));
    let cpath = CString::new(bundle.to_str().unwrap()).unwrap();
    let good = unsafe { excite_surrogate_load(cpath.as_ptr()) };
    unsafe {
        assert_eq!(CStr::from_ptr(excite_surrogate_engine(bad)).to_str().unwrap(), "panicking test engine");
        let mut y = [0f32; 2];
        assert_eq!(excite_surrogate_predict(bad, [0.5f32].as_ptr(), 1, 1, y.as_mut_ptr(), 2), 0, "{}", last());
        assert_eq!(y, [0.5, 0.5]);
        let mut y = [9f32; 2];
        assert_eq!(excite_surrogate_predict(bad, [5.0f32].as_ptr(), 1, 1, y.as_mut_ptr(), 2), -1);
        assert!(last().contains("panic") && last().contains("load the bundle again"), "{}", last());
        assert_eq!(y, [9.0, 9.0], "a failed call wrote into y");
        assert_eq!(excite_surrogate_predict(bad, [0.5f32].as_ptr(), 1, 1, y.as_mut_ptr(), 2), -1);
        assert!(last().contains("earlier call on this handle failed"), "{}", last());
        assert_eq!(excite_surrogate_inputs(bad), 1, "getters still answer");
        assert_eq!(excite_surrogate_predict(good, [0.5f32].as_ptr(), 1, 1, y.as_mut_ptr(), 2), 0, "{}", last());
        excite_surrogate_free(bad);
        excite_surrogate_free(good);
    }
}
