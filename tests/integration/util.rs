//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use excite::solve::{Cells, Column};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The authors' reference data (`../shared/reference`, or `$EXCITE_SHARED/reference`).
/// Missing data fails the test: it is a fixture, never optional.
pub fn reference_dir() -> PathBuf {
    let shared = std::env::var_os("EXCITE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    let dir = shared.join("reference");
    assert!(
        dir.is_dir(),
        "reference data not found at {}; set EXCITE_SHARED to the shared/ folder",
        dir.display()
    );
    dir
}

/// Reads a headerless CSV of numbers.
pub fn read_csv(path: &std::path::Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .collect()
}

/// Cells with per-cell initial states and default parameters, some overridden.
pub fn cells(
    model: &dyn excite::cell::Model,
    init: Vec<Vec<f64>>,
    overrides: &[(&str, Column)],
) -> Cells {
    let info = model.info();
    let n = init[0].len();
    let mut params: Vec<Column> = info.defaults().into_iter().map(Column::Same).collect();
    for (name, col) in overrides {
        params[info.param_index(name).unwrap()] = col.clone();
    }
    Cells {
        n,
        init: init.into_iter().map(Column::PerCell).collect(),
        params,
    }
}

/// The `excite` binary built for these tests.
pub fn excite() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_excite"));
    c.current_dir(root());
    c
}

/// A fresh scratch folder.
pub fn scratch(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_stale_scratch);
    let d = std::env::temp_dir().join(format!("excite-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The dataset of `models/<preset>`, each (from, to) replaced in its text
/// first, generated into `dir/data`.
pub fn preset_data(dir: &Path, preset: &str, edit: &[(&str, &str)]) -> PathBuf {
    let mut yaml = std::fs::read_to_string(root().join("models").join(preset)).unwrap();
    for (from, to) in edit {
        yaml = yaml.replace(from, to);
    }
    let out = dir.join("data");
    excite::data::generate(&excite::data::DatasetSpec::from_yaml(&yaml).unwrap(), 0, &excite::report::Silent).unwrap().write(&out).unwrap();
    out
}

/// The quick preset's dataset (problem A: one trajectory), generated into `dir/data`.
pub fn quick_data(dir: &Path) -> PathBuf {
    preset_data(dir, "quick.yaml", &[])
}

/// The largest |a − b| of two equally long outputs.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `python3` with the project-local packages of scripts/setup.sh on its path.
pub fn python() -> std::process::Command {
    let mut c = std::process::Command::new("python3");
    c.env("PYTHONPATH", root().join(".deps/python"));
    c
}

/// Trains `body` (a training config after its name and dataset) on `data`
/// into `dir/run` and exports it to `dir/model.onnx`, which it returns.
pub fn train_and_export(dir: &Path, data: &Path, body: &str) -> PathBuf {
    let spec = excite::train::TrainSpec::from_yaml(&format!("name: t\ndataset: {}\n{body}", data.display())).unwrap();
    excite::train::train(&spec, &dir.join("run"), false, &excite::report::Silent).unwrap();
    let onnx = dir.join("model.onnx");
    excite::export::write(&dir.join("run"), &onnx).unwrap();
    onnx
}

/// Removes the scratch folders of earlier test processes that have exited
/// (a test leaves its folder for inspection while its process lives).
fn remove_stale_scratch() {
    if !Path::new("/proc/self").exists() {
        return; // no way to tell which processes live
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("excite-test-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
