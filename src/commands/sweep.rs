//! `excite sweep`, `excite sweep merge` and `excite report`: studies.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use excite::sweep::{self, executor, report, results, Shard, Study};

use super::printer::Progress;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// Study file (YAML: name, pipeline, axes; see models/study-smoke.yaml).
    file: Option<PathBuf>,
    /// Sweep folder [default: runs/<study name>].
    #[arg(long, short)]
    out: Option<PathBuf>,
    #[command(flatten)]
    run: Execution,
    /// Run only shard I of N (0-based): every N-th point, from the I-th. What
    /// each executor's workers run; run it by hand to spread a study yourself.
    #[arg(long, value_name = "I/N", conflicts_with = "mpi")]
    shard: Option<String>,
    /// Run as one rank of `mpirun -np N excite sweep FILE --mpi`: rank i runs
    /// shard i/N and rank 0 merges (needs an excite built with --features mpi).
    #[arg(long)]
    mpi: bool,
    /// List the points (and which are finished) and stop.
    #[arg(long)]
    dry_run: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Join every finished point's record into DIR/results.csv and results.json.
    ///
    /// What executors do when their shards end; run it after shards run by
    /// hand (--shard), or to see how far a sweep got.
    Merge {
        /// Sweep folder.
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// `--workers` processes on this machine.
    Local,
    /// A Slurm job array (`sbatch --array`), followed with squeue.
    Slurm,
    /// `mpirun -np WORKERS excite sweep FILE --mpi`.
    Mpi,
}

pub fn run(a: &SweepArgs) -> Result<ExitCode> {
    if let Some(SweepAction::Merge { dir, json }) = &a.action {
        return merge(dir, *json);
    }
    let Some(file) = &a.file else { bail!("give a study file: excite sweep STUDY.yaml (see models/study-smoke.yaml), or excite sweep merge DIR") };
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let study = Study::from_file(file)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&study.name));
    if a.dry_run {
        for p in &study.points {
            let done = results::finished(&out, p).map_or("", |_| "  (finished)");
            let s = &p.settings;
            let set: Vec<String> = s.set.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            println!("{:>4} {} {:<28} {:<5} data {:<5} seed {:<3} windows {} adaptive {:<5} {} {}{}{done}", p.index, p.id, s.architecture, s.mode, s.data.map_or("all".into(), |d| d.to_string()), s.seed, s.windows, s.adaptive, s.target, s.precision, set.concat());
        }
        println!("{} points", study.points.len());
        return Ok(ExitCode::SUCCESS);
    }
    sweep::prepare(&study, &out)?;
    let progress = Progress::new();
    if a.mpi {
        return mpi_rank(&study, &out, a.json, &progress);
    }
    if let Some(shard) = shard {
        let sum = sweep::run_shard(&study, &out, shard, &progress)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&sum)?);
        } else {
            println!("shard {shard}: {} points, {} run, {} already finished, {} run by another process ({} diverged, {} over budget, {} failed)", sum.points, sum.ran, sum.cached, sum.busy, sum.diverged, sum.over_budget, sum.failed);
        }
        return Ok(if sum.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }
    a.run.run(file, &study, &out, &progress)?;
    merge(&out, a.json)
}

/// How a whole study runs (`excite sweep` without --shard, `excite reproduce`).
#[derive(Args, Clone)]
pub struct Execution {
    /// Where the shards run: worker processes here, a Slurm job array, or MPI ranks.
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Worker processes (local), array tasks (slurm) or ranks (mpi).
    #[arg(long, short = 'j', default_value_t = 1)]
    pub workers: usize,
    /// Times a stopped worker is restarted (local), or unfinished array
    /// tasks resubmitted (slurm).
    #[arg(long, default_value_t = 2)]
    pub retries: usize,
    /// An extra sbatch option for the array job (repeat for more), e.g.
    /// --sbatch-arg=--partition=short --sbatch-arg=--time=2:00:00.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// An extra mpirun option (repeat for more), e.g. --mpirun-arg=--oversubscribe.
    #[arg(long = "mpirun-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub mpirun_args: Vec<String>,
}

impl Execution {
    /// Runs every unfinished point of `study` (read from `file`) into `out`.
    pub fn run(&self, file: &std::path::Path, study: &Study, out: &std::path::Path, progress: &Progress) -> Result<()> {
        let inv = executor::Invocation { exe: std::env::current_exe()?, study_file: excite::fsio::absolute(file)?, out: excite::fsio::absolute(out)? };
        match (self.executor, self.workers) {
            (Executor::Local, 1) => {
                sweep::run_shard(study, out, Shard::ALL, progress)?;
            }
            (Executor::Local, n) => executor::local(&inv, study, n, self.retries, progress)?,
            (Executor::Slurm, n) => {
                let o = executor::SlurmOptions { tasks: n, sbatch_args: self.sbatch_args.clone(), retries: self.retries, poll: Duration::from_secs(2) };
                executor::slurm(&inv, study, &o, progress)?;
            }
            (Executor::Mpi, n) => executor::mpirun(&inv, n, &self.mpirun_args, progress)?,
        }
        Ok(())
    }
}

fn merge(dir: &std::path::Path, json: bool) -> Result<ExitCode> {
    let m = sweep::merge(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!("sweep {}: {} of {} points finished ({} diverged, {} failed)", dir.display(), m.finished, m.points, m.diverged, m.failed);
        if !m.missing.is_empty() {
            let shown: Vec<String> = m.missing.iter().take(20).map(|i| i.to_string()).collect();
            println!("unfinished: {}{} — run the sweep again to resume", shown.join(", "), if m.missing.len() > 20 { ", …" } else { "" });
        }
        println!("results {}", dir.join(results::CSV_FILE).display());
    }
    Ok(if m.missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(feature = "mpi")]
fn mpi_rank(study: &Study, out: &std::path::Path, json: bool, progress: &Progress) -> Result<ExitCode> {
    use mpi::traits::{Communicator, CommunicatorCollectives};
    let universe = mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was already initialised in this process"))?;
    let world = universe.world();
    let shard = Shard { index: world.rank() as usize, count: world.size() as usize };
    let ran = sweep::run_shard(study, out, shard, progress);
    // every rank reaches the barrier, whatever its shard did
    world.barrier();
    let sum = ran?;
    // one write: the ranks' lines arrive through mpirun interleaved otherwise
    let line = format!("rank {}: shard {shard}: {} run, {} already finished, {} failed\n", shard.index, sum.ran, sum.cached, sum.failed);
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    if shard.index == 0 {
        return merge(out, json);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "mpi"))]
fn mpi_rank(_: &Study, _: &std::path::Path, _: bool, _: &Progress) -> Result<ExitCode> {
    Err(excite::Error::unavailable("--mpi", "this excite was built without MPI", "rebuild with `cargo build --release --features mpi` (needs Open MPI's libopenmpi-dev and libclang-dev), or use --executor local or slurm").into())
}

#[derive(Args)]
pub struct ReportArgs {
    /// Sweep folder (the --out of `excite sweep`).
    dir: PathBuf,
    /// Report folder [default: DIR/report].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The paper's problem (A, B or C) whose published results go beside
    /// this study's [default: the study's `compare:`].
    #[arg(long)]
    authors: Option<String>,
    /// The authors' results folder (problem-X-results.csv).
    #[arg(long, default_value = report::DEFAULT_AUTHORS_DIR)]
    authors_dir: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn report(a: &ReportArgs) -> Result<ExitCode> {
    let study = results::read_study(&a.dir)?;
    let authors = match a.authors.clone().or(study.compare.clone()) {
        Some(p) => Some(report::Authors::read(&a.authors_dir, &p)?),
        None => None,
    };
    let out = a.out.clone().unwrap_or_else(|| report::default_out(&a.dir));
    let s = report::write(&a.dir, &out, authors.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let e = excite::verify::sci;
    let t = &s.tally;
    println!("study {}: {} of {} points finished ({} diverged, {} failed)", study.name, t.finished, t.points, t.diverged, t.failed);
    println!("validation MAE  best {}  median {}", e(s.best_val_mae), e(s.median_val_mae));
    if let Some(a) = &authors {
        println!("the authors (problem {}, {} models)  best {}  median {}", a.problem, a.rows.len(), e(s.authors_best_val_mae), e(s.authors_median_val_mae));
    }
    for c in &s.pinn_vs_ddnn {
        if let Some(w) = c.welch {
            println!("PINN vs DDNN at {} rows: t {:.2}, p {}", c.data.map_or("all".into(), |d| d.to_string()), w.t, excite::sweep::stats::p_value(w.p));
        }
    }
    println!("report {}", out.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}
