//! One file per command; each takes resolved arguments and returns an exit code.

pub mod annotate;
pub mod bench;
pub mod bench_gpu;
pub mod build;
pub mod data_inspect;
pub mod export;
pub mod inspect;
pub mod keygen;
pub mod pipeline;
pub mod models;
pub mod printer;
pub mod reproduce;
pub mod sign;
pub mod simulate;
pub mod sweep;
pub mod train;
pub mod verify;

/// `runs/<model file stem>/<stage>`: where a command writes when not told.
pub fn default_out(model: &std::path::Path, stage: &str) -> std::path::PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    std::path::PathBuf::from("runs").join(stem).join(stage)
}

/// A secret key's password: EXCITE_KEY_PASSWORD, else asked on the terminal
/// (twice when `confirm`); None where neither is possible.
pub fn key_password(confirm: bool) -> anyhow::Result<Option<String>> {
    use std::io::IsTerminal;
    if let Ok(p) = std::env::var("EXCITE_KEY_PASSWORD") {
        return Ok(Some(p));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = rpassword::prompt_password("password for the secret key: ")?;
    if confirm && rpassword::prompt_password("the same password again: ")? != first {
        anyhow::bail!("the two passwords differ; nothing was written");
    }
    Ok(Some(first))
}
