//! `excite reproduce`: the paper's studies, run and reported together.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use excite::sweep::{self, report, results, Study};

use super::printer::Progress;
use super::sweep::Execution;

/// The paper's set: its architecture search on problem A, PINN against DDNN
/// with scarce and abundant data, time windows and adaptive points.
pub const STUDIES: [&str; 3] = ["models/study-zoo-a.yaml", "models/study-pinn-ddnn.yaml", "models/study-windows.yaml"];

#[derive(Args)]
pub struct ReproduceArgs {
    /// Folder of the studies and the joint report.
    #[arg(long, short, default_value = "runs/reproduce")]
    out: PathBuf,
    /// Run these study files instead of the paper's set (repeat for more).
    #[arg(long = "study", value_name = "FILE")]
    studies: Vec<PathBuf>,
    /// The authors' results folder (problem-X-results.csv).
    #[arg(long, default_value = report::DEFAULT_AUTHORS_DIR)]
    authors_dir: PathBuf,
    #[command(flatten)]
    run: Execution,
}

pub fn run(a: &ReproduceArgs) -> Result<ExitCode> {
    let files: Vec<PathBuf> = if a.studies.is_empty() { STUDIES.iter().map(PathBuf::from).collect() } else { a.studies.clone() };
    // every study checked before any runs
    let studies: Vec<Study> = files.iter().map(|f| Study::from_file(f)).collect::<Result<_, _>>()?;
    let progress = Progress::new();
    let mut md = String::from("# The paper's studies, reproduced\n\n| study | points | finished | diverged | best validation MAE | median | the authors' best | their median | report |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let mut complete = true;
    for (file, study) in files.iter().zip(&studies) {
        let out = a.out.join(&study.name);
        sweep::prepare(study, &out)?;
        excite::report::Reporter::phase(&progress, &format!("study {} ({} points) → {}", study.name, study.points.len(), out.display()));
        a.run.run(file, study, &out, &progress)?;
        let merged = sweep::merge(&out)?;
        complete &= merged.missing.is_empty();
        let authors = study.compare.as_deref().map(|p| report::Authors::read(&a.authors_dir, p)).transpose()?;
        let s = report::write(&out, &report::default_out(&out), authors.as_ref())?;
        let e = excite::verify::sci;
        let _ = writeln!(md, "| {} | {} | {} | {} | {} | {} | {} | {} | [{0}/report/report.md]({0}/report/report.md) |", study.name, s.tally.points, s.tally.finished, s.tally.diverged, e(s.best_val_mae), e(s.median_val_mae), e(s.authors_best_val_mae), e(s.authors_median_val_mae));
        println!("{}: {} of {} points, best validation MAE {}", study.name, s.tally.finished, s.tally.points, e(s.best_val_mae));
    }
    excite::fsio::write_atomic(&a.out.join("report.md"), md.as_bytes())?;
    println!("report {}", a.out.join("report.md").display());
    if !complete {
        println!("some points are unfinished ({}); run again to resume", results::CSV_FILE);
    }
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
