//! `excite pipeline`: the whole chain, re-running only what changed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use excite::pipeline::{self, Options, Pipeline, Stage};

use super::printer::Progress;

#[derive(Args)]
pub struct PipelineArgs {
    /// Pipeline file (YAML with sections simulate, train, build, verify, package).
    file: PathBuf,
    /// Run directory [default: runs/<name>].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Re-run STAGE even if up to date (all stages without a value).
    #[arg(long, num_args = 0..=1, default_missing_value = "all", value_name = "STAGE")]
    force: Option<String>,
    /// Start at this stage (earlier ones must be up to date).
    #[arg(long, value_enum)]
    from: Option<Stage>,
    /// Stop after this stage.
    #[arg(long, value_enum)]
    until: Option<Stage>,
    /// Print what would run and stop.
    #[arg(long)]
    dry_run: bool,
    /// Print the stage outcomes as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &PipelineArgs) -> Result<ExitCode> {
    let p = Pipeline::from_file(&a.file)?;
    let force = match a.force.as_deref() {
        None => None,
        Some("all") => Some(None),
        Some(s) => Some(Some(<Stage as clap::ValueEnum>::from_str(s, true).map_err(|_| anyhow::anyhow!("--force {s}: not a stage (simulate, train, export, build, verify, package)"))?)),
    };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&p.name));
    let opts = Options { force, from: a.from, until: a.until, dry_run: a.dry_run };
    let outcomes = pipeline::run(&p, &out, &opts, &Progress::new())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("pipeline {} → {}", p.name, out.display());
    for o in &outcomes {
        let t = if o.seconds > 0.0 { format!("{:.1}s", o.seconds) } else { String::new() };
        println!("  {:<9} {:<13} {t}", o.stage.name(), o.status);
    }
    let bundle = out.join("package").join(&p.name);
    if !a.dry_run && bundle.join(excite::bundle::BUNDLE_FILE).exists() {
        let m = excite::bundle::open(&bundle, None)?.manifest;
        let mae: Vec<String> = m.validated.mae.iter().map(|(k, v)| format!("{k} {v:.2e}")).collect();
        println!("bundle {} (and {}.tar.gz): validated MAE {}, {:.2e} samples/s", bundle.display(), bundle.display(), mae.join(", "), m.validated.engine_samples_per_s);
    }
    Ok(ExitCode::SUCCESS)
}
