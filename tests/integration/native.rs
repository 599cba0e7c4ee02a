//! The native CPU engine against the scalar reference and ONNX Runtime.

use std::path::{Path, PathBuf};

use excite::engine::native::NativeEngine;
use excite::engine::ort::OrtEngine;
use excite::onnx::Interpreter;
use excite::engine::Engine;
use excite::report::Silent;
use excite::train::{self, TrainSpec};

use crate::util::{max_abs_diff, preset_data, scratch};

/// A problem-C-shaped dataset (4 inputs), shared by the models below.
fn data(dir: &Path) -> PathBuf {
    preset_data(dir, "problem-c.yaml", &[("cells: 1000", "cells: 20"), ("t_end: 20", "t_end: 2")])
}

/// A briefly trained 4-H-H-2 network with `act`, exported.
fn model(dir: &Path, data: &Path, act: &str, h: usize) -> PathBuf {
    let run = dir.join(format!("{act}-{h}"));
    let spec = TrainSpec::from_yaml(&format!("name: n\ndataset: {}\nmode: ddnn\narchitecture:\n  hidden: [[{act}, {h}], [{act}, {h}]]\nsteps: 20\nbatch: 64\nval_every: 20\n", data.display())).unwrap();
    train::train(&spec, &run, false, &Silent).unwrap();
    let onnx = run.with_extension("onnx");
    excite::export::write(&run, &onnx).unwrap();
    onnx
}

fn inputs(rows: usize) -> Vec<f32> {
    (0..rows).flat_map(|r| [(r % 21) as f32 * 0.1, (r % 7) as f32 * 0.13, (r % 5) as f32 * 0.03, (r % 11) as f32 * 0.09]).collect()
}

#[test]
fn native_matches_the_reference_and_onnx_runtime() {
    let dir = scratch("native");
    let d = data(&dir);
    for act in ["relu", "leaky_relu", "elu", "silu", "gelu", "tanh", "sigmoid"] {
        for h in [16, 32, 64, 128, 192] {
            if (h == 128 && !matches!(act, "tanh" | "gelu")) || (h == 192 && act != "tanh") {
                continue; // the wide nets for few activations keep the test short
            }
            let onnx = model(&dir, &d, act, h);
            let reference = Interpreter::load(&onnx).unwrap();
            let mut ort = OrtEngine::load(&onnx, &Default::default()).unwrap();
            for rows in [1, 17, 1000] {
                let x = inputs(rows);
                let want = reference.run(&x, rows).unwrap();
                let from_ort = ort.run(&x, rows).unwrap();
                let one = NativeEngine::load(&onnx, 1).unwrap().run(&x, rows).unwrap();
                for threads in [2, 3] {
                    let more = NativeEngine::load(&onnx, threads).unwrap().run(&x, rows).unwrap();
                    assert_eq!(one, more, "{act} H={h} rows={rows}: {threads} threads differ from one");
                }
                assert!(max_abs_diff(&one, &want) <= 1e-5, "{act} H={h} rows={rows}: native vs reference {:.2e}", max_abs_diff(&one, &want));
                assert!(max_abs_diff(&one, &from_ort) <= 1e-5, "{act} H={h} rows={rows}: native vs ONNX Runtime {:.2e}", max_abs_diff(&one, &from_ort));
                if matches!(act, "tanh" | "sigmoid" | "silu") {
                    // the fast mode: ≤ 1e-4 per activation, so about that at the output
                    let fast = NativeEngine::load(&onnx, 2).unwrap().with_fast_activations(true).run(&x, rows).unwrap();
                    let d = max_abs_diff(&fast, &want);
                    assert!(d <= 1e-3 && (rows < 1000 || d > 1e-7), "{act} H={h} rows={rows}: fast mode {d:.2e}");
                }
                let engine = NativeEngine::load(&onnx, 1).unwrap();
                for kernel in NativeEngine::kernels() {
                    let y = engine.run_kernel(kernel, &x, rows).unwrap();
                    assert!(max_abs_diff(&y, &want) <= 1e-5, "{act} H={h} rows={rows}: {kernel} kernel {:.2e}", max_abs_diff(&y, &want));
                }
            }
        }
    }
}

#[test]
fn unsupported_graphs_are_refused_by_operator_name() {
    let dir = scratch("native-refuse");
    let d = data(&dir);
    let onnx = model(&dir, &d, "tanh", 16);
    let m = excite::onnx::read(&onnx).unwrap();
    for (variant, op) in [(excite::build::precision::to_fp16(&m), "Cast")] {
        let path = dir.join(format!("{op}.onnx"));
        std::fs::write(&path, variant.to_bytes()).unwrap();
        let e = NativeEngine::load(&path, 1).err().expect("refused");
        assert!(e.to_string().contains(&format!("`{op}`")) && e.to_string().contains(&format!("{op}.onnx")), "{e}");
        assert!(e.hint().unwrap().contains("--target cpu"));
    }
}
