//! `excite pipeline`: skipping, re-running what changed, resuming after a
//! kill, and the accuracy gate.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{excite, root, scratch};

fn pipeline(file: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    excite().arg("pipeline").arg(file).arg("--out").arg(out).arg("--json").args(extra).output().unwrap()
}

fn statuses(o: &std::process::Output) -> Vec<String> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().unwrap().iter().map(|s| format!("{}:{}", s["stage"].as_str().unwrap(), s["status"].as_str().unwrap())).collect()
}

#[test]
fn second_run_skips_everything_and_a_training_change_reruns_from_train() {
    let dir = scratch("pipeline-skip");
    let quick = root().join("models/quick.yaml");
    let out = dir.join("run");
    let first = statuses(&pipeline(&quick, &out, &[]));
    assert!(first.iter().all(|s| s.ends_with(":ran")), "{first:?}");
    let t = Instant::now();
    let second = statuses(&pipeline(&quick, &out, &[]));
    assert!(second.iter().all(|s| s.ends_with(":skipped")), "{second:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "an all-skipped run took {:?}", t.elapsed());
    assert!(out.join("pipeline.lock").is_file() && out.join("package/quick.tar.gz").is_file());

    let changed = dir.join("changed.yaml");
    std::fs::write(&changed, std::fs::read_to_string(&quick).unwrap().replace("steps: 4000", "steps: 3000")).unwrap();
    let dry = statuses(&pipeline(&changed, &out, &["--dry-run"]));
    assert_eq!(dry, ["simulate:up to date", "train:would run", "export:would run", "build:would run", "verify:would run", "package:would run"]);
    let third = statuses(&pipeline(&changed, &out, &[]));
    assert_eq!(third[0], "simulate:skipped");
    assert!(third[1..].iter().all(|s| s.ends_with(":ran")), "{third:?}");

    let forced = statuses(&pipeline(&changed, &out, &["--force", "export", "--until", "export"]));
    assert_eq!(forced, ["simulate:skipped", "train:skipped", "export:ran", "build:up to date", "verify:up to date", "package:up to date"]);

    // without ONNX Runtime the build falls back to native-cpu; installing it
    // later changes the build stage's input, so the engine is rebuilt
    let target = || serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out.join("build/engine.json")).unwrap()).unwrap()["target"].as_str().unwrap().to_string();
    let no_ort = excite().arg("pipeline").arg(&changed).arg("--out").arg(&out).args(["--json", "--until", "build"]).env("ORT_DYLIB_PATH", dir.join("no-such-libonnxruntime.so")).output().unwrap();
    assert_eq!(statuses(&no_ort), ["simulate:skipped", "train:skipped", "export:skipped", "build:ran", "verify:not selected"]);
    assert_eq!(target(), "native-cpu");
    let with_ort = statuses(&pipeline(&changed, &out, &["--until", "build"]));
    assert_eq!(with_ort[3], "build:ran", "{with_ort:?}");
    assert_eq!(target(), "cpu");
}

#[test]
fn killed_during_training_the_rerun_completes_with_the_same_report() {
    let dir = scratch("pipeline-kill");
    let long = dir.join("long.yaml");
    std::fs::write(&long, std::fs::read_to_string(root().join("models/quick.yaml")).unwrap().replace("steps: 4000", "steps: 40000").replace("val_every: 200", "val_every: 500")).unwrap();
    let clean = dir.join("clean");
    statuses(&pipeline(&long, &clean, &[]));

    let out = dir.join("killed");
    let mut child = excite().arg("pipeline").arg(&long).arg("--out").arg(&out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let state = out.join(".train.partial/checkpoint-0/state.json");
    let start = Instant::now();
    loop {
        let step = std::fs::read_to_string(&state).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).and_then(|v| v["step"].as_u64()).unwrap_or(0);
        if step >= 5000 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the pipeline finished before it could be interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("train").exists(), "an interrupted training must not publish its run folder");
    assert!(out.join("simulate/dataset.npz").exists(), "the finished stage is kept");

    let resumed = statuses(&pipeline(&long, &out, &[]));
    assert_eq!(resumed[0], "simulate:skipped");
    let report = |d: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(d.join("verify/report.json")).unwrap()).unwrap() };
    let (a, b) = (report(&clean), report(&out));
    for (va, vb) in a["variables"].as_array().unwrap().iter().zip(b["variables"].as_array().unwrap()) {
        for k in ["mae", "rmse", "max_abs_error"] {
            assert_eq!(va[k], vb[k], "{} {k}: uninterrupted {} vs resumed {}", va["name"], va[k], vb[k]);
        }
    }
}

#[test]
fn a_failed_accuracy_gate_stops_the_pipeline_naming_stage_and_budget() {
    let dir = scratch("pipeline-gate");
    let strict = dir.join("strict.yaml");
    std::fs::write(&strict, std::fs::read_to_string(root().join("models/quick.yaml")).unwrap().replace("max_mae: 0.02", "max_mae: 0.000001").replace("steps: 4000", "steps: 300")).unwrap();
    let out = dir.join("run");
    let o = excite().arg("pipeline").arg(&strict).arg("--out").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("build") && err.contains("budget 1.000e-6") && err.contains("MAE"), "{err}");
    assert!(!out.join("package").exists());
    // what ran before the gate is kept and recorded
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("pipeline.lock")).unwrap()).unwrap();
    assert!(lock["stages"]["train"].is_object() && lock["stages"]["build"].is_null());
}

#[test]
fn the_main_command_of_the_readme_is_the_quick_pipeline() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block: Vec<&str> = readme.split("```sh\n").nth(1).unwrap().split("```").next().unwrap().lines().collect();
    assert_eq!(block.len(), 2, "README must open with exactly two commands");
    assert!(block[0].starts_with("cargo run --release -- pipeline models/quick.yaml"), "{}", block[0]);
    assert!(block[1].starts_with("scripts/test.sh"), "{}", block[1]);
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("README.md"), "CI must take its commands from README.md");
}

#[test]
fn every_pipeline_preset_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("models")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // the named presets, and every other file shaped as a pipeline (the CellML models' presets)
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let shaped = text.contains("\nsimulate:\n") && text.contains("\ntrain:\n") && text.contains("\nverify:");
        if name == "quick.yaml" || name.starts_with("pipeline-") || shaped {
            excite::pipeline::Pipeline::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 10, "{n} pipeline presets");
}
