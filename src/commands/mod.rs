//! One file per command; each takes resolved arguments and returns an exit code.

pub mod bench;
pub mod bench_gpu;
pub mod build;
pub mod data_inspect;
pub mod export;
pub mod inspect;
pub mod pipeline;
pub mod models;
pub mod printer;
pub mod simulate;
pub mod train;
pub mod verify;

/// `runs/<model file stem>/<stage>`: where a command writes when not told.
pub fn default_out(model: &std::path::Path, stage: &str) -> std::path::PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    std::path::PathBuf::from("runs").join(stem).join(stage)
}
