//! `excite verify`: the exported artefact against the Euler reference.

use std::path::{Path, PathBuf};

use excite::engine::ort::OrtEngine;
use excite::report::Silent;
use excite::verify::{self, Budget, Settings};

use crate::util::{excite, scratch};

/// Simulates `preset` (edited), trains `body` on it and exports; returns the ONNX path.
fn onnx_for(dir: &Path, preset: &str, edit: &[(&str, &str)], body: &str) -> PathBuf {
    crate::util::train_and_export(dir, &crate::util::preset_data(dir, preset, edit), body)
}

const A: &str = "mode: ddnn\narchitecture:\n  hidden: [[tanh, 32], [tanh, 32], [tanh, 32]]\nsteps: 3000\nbatch: 128\nlr: 0.003\nschedule: {kind: cosine, min_lr: 0.00003}\nval_every: 500\n";

/// Adds `delta` to every float of the initializer `name` in an ONNX file.
fn perturb(onnx: &Path, name: &str, delta: f32) {
    let mut b = std::fs::read(onnx).unwrap();
    // the initializer's name is the occurrence followed by raw_data (field 9, length-delimited)
    let at = (0..b.len() - name.len())
        .find(|&i| &b[i..i + name.len()] == name.as_bytes() && b[i + name.len()] == 0x4a)
        .expect("initializer present")
        + name.len();
    let (mut len, mut shift, mut pos) = (0usize, 0, at + 1);
    loop {
        len |= ((b[pos] & 0x7f) as usize) << shift;
        shift += 7;
        pos += 1;
        if b[pos - 1] < 0x80 {
            break;
        }
    }
    for c in b[pos..pos + len].chunks_exact_mut(4) {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) + delta;
        c.copy_from_slice(&v.to_le_bytes());
    }
    std::fs::write(onnx, b).unwrap();
}

#[test]
fn problem_a_surrogate_passes_and_a_broken_one_fails() {
    let dir = scratch("verify-a");
    let onnx = onnx_for(&dir, "quick.yaml", &[], A);
    let out = dir.join("verify");
    let o = excite()
        .args([
            "verify",
            onnx.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-mae",
            "2e-2",
            "--seconds",
            "0.2",
            "--reference-cells",
            "2000",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["report.json", "report.md", "trajectories.svg", "error.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["passed"], true);
    for v in r["variables"].as_array().unwrap() {
        assert!(
            v["mae"].as_f64().unwrap() <= 2e-2
                && v["rmse"].as_f64().unwrap() >= v["mae"].as_f64().unwrap()
        );
        assert!(v["max_abs_error"].as_f64().unwrap() >= v["rmse"].as_f64().unwrap());
    }
    for k in ["engine_samples_per_s", "reference_samples_per_s", "speedup"] {
        assert!(r[k].as_f64().unwrap() > 0.0, "{k}");
    }
    let ratio = r["engine_samples_per_s"].as_f64().unwrap()
        / r["reference_samples_per_s"].as_f64().unwrap();
    assert!((r["speedup"].as_f64().unwrap() - ratio).abs() < 1e-9 * ratio);
    // one trajectory (problem A): compared at the 250 midpoints between the
    // dataset's samples every 0.1, where no training row is
    let t: Vec<f64> = r["error_vs_time"]["t"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert_eq!(t.len(), 250);
    for t in &t {
        let k = (t - 0.05) / 0.1;
        assert!((k - k.round()).abs() < 1e-9, "t = {t} is not a midpoint");
    }
    assert!(r["held_out"].as_str().unwrap().starts_with("held-out times"), "{}", r["held_out"]);
    assert!(std::fs::read_to_string(out.join("trajectories.svg"))
        .unwrap()
        .contains("<polyline"));

    // The same file with its first bias shifted: over budget, exit 1, the variable named.
    perturb(&onnx, "w0_b0", 0.5);
    let o = excite()
        .args([
            "verify",
            onnx.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-mae",
            "2e-2",
            "--seconds",
            "0.1",
            "--reference-cells",
            "1000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("verification failed") && err.contains("MAE") && err.contains("budget"),
        "{err}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["passed"], false);
}

#[test]
fn itnn_is_verified_by_rollout_on_fresh_cells() {
    let dir = scratch("verify-itnn");
    let onnx = onnx_for(
        &dir,
        "problem-c-itnn.yaml",
        &[("cells: 1000", "cells: 60"), ("t_end: 20", "t_end: 5")],
        "mode: itnn\narchitecture:\n  hidden: [[tanh, 32], [tanh, 32]]\nsteps: 1500\nbatch: 256\nlr: 0.003\nval_every: 500\n",
    );
    let mut engine = OrtEngine::load(&onnx, &Default::default()).unwrap();
    let s = Settings {
        cells: 16,
        seconds: 0.05,
        reference_cells: 500,
        budget: Budget {
            max_mae: Some(1.0),
            max_abs_error: None,
        },
        ..Settings::default()
    };
    let r = verify::verify(&onnx, &mut engine, &s, &Silent).unwrap();
    assert_eq!(r.cells, 16);
    let u = &r.error_vs_time.mae["u"];
    assert_eq!(u.len(), 51);
    assert_eq!(u[0], 0.0, "the rollout starts from the true state");
    assert!(u[50] > 0.0 && r.passed);
    // fresh cells: the verification seed is not the dataset's
    assert_ne!(r.seed, 4);
}
