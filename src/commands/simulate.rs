//! `excite simulate`: config → Euler reference → dataset folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use excite::data::{self, spec::QUICK_PRESET, DatasetSpec};
use excite::report::Reporter;
use excite::solve::Device;

use super::printer::Progress;

pub fn run(
    config: Option<&Path>,
    out: Option<PathBuf>,
    device: Option<Device>,
    threads: usize,
    seed: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let mut spec = match config {
        Some(path) => DatasetSpec::from_file(path)?,
        None => DatasetSpec::from_yaml(QUICK_PRESET)?,
    };
    if let Some(d) = device {
        spec.device = d;
    }
    if let Some(s) = seed {
        spec.seed = s;
    }
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&spec.name).join("simulate"));
    let progress = Progress::new();
    let dataset = data::generate(&spec, threads, &progress)?;
    progress.phase(&format!("writing {}", out.display()));
    let meta = dataset.write(&out)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&meta)?);
    } else {
        let rows: Vec<String> = data::SPLITS
            .iter()
            .map(|s| format!("{s} {}", meta.split.rows.get(*s).copied().unwrap_or(0)))
            .collect();
        let ins: Vec<&str> = meta.inputs.iter().map(|v| v.name.as_str()).collect();
        let outs: Vec<&str> = meta.outputs.iter().map(|v| v.name.as_str()).collect();
        println!("wrote {}", out.join(data::NPZ_FILE).display());
        println!(
            "  model    {} ({:?}), {} cells × {} samples",
            meta.model.name, meta.kind, meta.sampling.cells, meta.time.samples_per_cell
        );
        println!(
            "  inputs   ({}) → outputs ({})",
            ins.join(", "),
            outs.join(", ")
        );
        println!("  rows     {}", rows.join(", "));
        println!("  sha256   {}", meta.content_sha256);
    }
    Ok(ExitCode::SUCCESS)
}
