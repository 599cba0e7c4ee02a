//! `excite export`: training run folder → ONNX file.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

pub fn run(run_dir: &Path, out: &Path) -> Result<ExitCode> {
    let sha = excite::export::write(run_dir, out)?;
    println!(
        "wrote {} (opset {}, input `{}`, output `{}`, sha256 {sha})",
        out.display(),
        excite::export::OPSET,
        excite::export::INPUT,
        excite::export::OUTPUT
    );
    Ok(ExitCode::SUCCESS)
}
