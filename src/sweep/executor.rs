//! Where the shards of a sweep run: worker processes here, a Slurm job
//! array, or MPI ranks. Every executor runs the same command per shard —
//! `excite sweep FILE --out DIR --shard i/n` — so a shard behaves the same
//! wherever it runs, and any of them resumes what another left.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::report::Reporter;
use crate::sweep::{unfinished_shards, Study};
use crate::Error;

/// How to start excite for one shard.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The excite binary.
    pub exe: PathBuf,
    /// The study file (absolute: workers may start elsewhere).
    pub study_file: PathBuf,
    /// The sweep folder (absolute).
    pub out: PathBuf,
}

impl Invocation {
    /// `sweep FILE --out DIR` and then `how` (`--shard i/n`, `--mpi`).
    fn sweep_args(&self, how: &[&str]) -> Vec<String> {
        let mut args = vec!["sweep".to_string(), self.study_file.display().to_string(), "--out".into(), self.out.display().to_string()];
        args.extend(how.iter().map(|s| s.to_string()));
        args
    }
}

/// A program the executor needs, or which package provides it.
fn require(program: &str, package: &str) -> Result<(), Error> {
    let found = std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(Error::unavailable(format!("--executor ({program})"), format!("`{program}` is not on PATH"), format!("install {package}, or use --executor local")))
    }
}

/// Runs the study on `workers` processes here, restarting a worker that
/// dies (killed, out of memory) up to `retries` times; its finished points
/// are kept, so a restart loses at most the point it was running.
pub fn local(inv: &Invocation, study: &Study, workers: usize, retries: usize, reporter: &dyn Reporter) -> Result<(), Error> {
    let workers = workers.clamp(1, study.points.len().max(1));
    let logs = inv.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    // share the cores: each worker's training and timing threads
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / workers).max(1);
    let start = |i: usize| -> Result<std::process::Child, Error> {
        let log = logs.join(format!("worker-{i}.log"));
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| Error::io(&log, e))?;
        let f2 = f.try_clone().map_err(|e| Error::io(&log, e))?;
        let mut cmd = Command::new(&inv.exe);
        cmd.args(inv.sweep_args(&["--shard", &format!("{i}/{workers}")])).env("RAYON_NUM_THREADS", threads.to_string()).stdin(Stdio::null()).stdout(f).stderr(f2);
        // a worker dies with the sweep that started it (killed or not):
        // what it finished is kept, and no orphan runs on beside a new sweep
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        cmd.spawn().map_err(|e| Error::io(&inv.exe, e))
    };
    let mut children: Vec<Option<std::process::Child>> = (0..workers).map(|i| start(i).map(Some)).collect::<Result<_, _>>()?;
    let mut restarts = vec![0usize; workers];
    reporter.phase(&format!("{workers} workers ({threads} thread{} each), logs in {}", if threads == 1 { "" } else { "s" }, logs.display()));
    loop {
        let mut running = 0;
        for i in 0..workers {
            let Some(child) = children[i].as_mut() else { continue };
            match child.try_wait().map_err(|e| Error::io(&inv.exe, e))? {
                None => running += 1,
                Some(status) => {
                    children[i] = None;
                    if status.success() {
                        reporter.note(&format!("worker {i} finished"));
                    } else if restarts[i] < retries {
                        restarts[i] += 1;
                        reporter.note(&format!("worker {i} stopped ({status}); restarting it ({} of {retries}), its finished points are kept", restarts[i]));
                        children[i] = Some(start(i)?);
                        running += 1;
                    } else {
                        reporter.note(&format!("worker {i} stopped ({status}) and was restarted {retries} times; see {}", logs.join(format!("worker-{i}.log")).display()));
                    }
                }
            }
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Slurm settings: the array job's extra `sbatch` options and how often to look.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Array tasks (shards).
    pub tasks: usize,
    /// Extra `sbatch` arguments (partition, account, time limit…).
    pub sbatch_args: Vec<String>,
    /// Rounds of resubmitting tasks whose shards are unfinished.
    pub retries: usize,
    pub poll: Duration,
}

/// The batch script of an array job: task i runs shard i of n. (Where each
/// task's log goes is given to sbatch as an argument, [`slurm_log_option`]:
/// an `#SBATCH` line's value ends at its first space.)
pub fn slurm_script(inv: &Invocation, study: &Study, tasks: usize) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    format!(
        "#!/bin/sh\n\
         # excite sweep {name}: array task i runs shard i/{tasks}; written by excite, submitted with sbatch {log}\n\
         #SBATCH --job-name=excite-{name}\n\
         exec {exe} sweep {file} --out {out} --shard \"$SLURM_ARRAY_TASK_ID/{tasks}\"\n",
        name = study.name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_"),
        log = q(&slurm_log_option(inv)),
        exe = q(&inv.exe.display().to_string()),
        file = q(&inv.study_file.display().to_string()),
        out = q(&inv.out.display().to_string()),
    )
}

/// sbatch's option that puts array task i's output in the study's `logs` folder.
fn slurm_log_option(inv: &Invocation) -> String {
    format!("--output={}", inv.out.join("logs").join("slurm-%A_%a.log").display())
}

/// Submits the study as a Slurm job array, follows it with `squeue`, and
/// resubmits the tasks whose shards are unfinished when the array ends
/// (a node failure, a time limit, a killed task), up to `retries` rounds.
/// Returns the job ids submitted.
pub fn slurm(inv: &Invocation, study: &Study, o: &SlurmOptions, reporter: &dyn Reporter) -> Result<Vec<String>, Error> {
    require("sbatch", "Slurm's client commands (Debian: slurm-client, or slurm-wlm for a whole cluster)")?;
    require("squeue", "Slurm's client commands (Debian: slurm-client)")?;
    let tasks = o.tasks.clamp(1, study.points.len().max(1));
    let dir = inv.out.join("slurm");
    std::fs::create_dir_all(inv.out.join("logs")).map_err(|e| Error::io(inv.out.join("logs"), e))?;
    let script = dir.join("sweep.sbatch");
    crate::fsio::write_atomic(&script, slurm_script(inv, study, tasks).as_bytes())?;
    let mut jobs = Vec::new();
    let mut todo: Vec<usize> = unfinished_shards(study, &inv.out, tasks);
    for round in 0..=o.retries {
        if todo.is_empty() {
            break;
        }
        let list: Vec<String> = todo.iter().map(|i| i.to_string()).collect();
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(format!("--array={}", list.join(",")))
            .arg(slurm_log_option(inv))
            .args(&o.sbatch_args)
            .arg(&script)
            .output()
            .map_err(|e| Error::io("sbatch", e))?;
        if !out.status.success() {
            return Err(Error::unavailable("--executor slurm", format!("sbatch refused the job: {}", String::from_utf8_lossy(&out.stderr).trim()), "check that slurmctld is up (`sinfo`) and the --sbatch-arg options"));
        }
        let job = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
        reporter.phase(&format!("submitted job {job}: array tasks {} of {tasks}{}", list.join(","), if round > 0 { format!(" (resubmission {round})") } else { String::new() }));
        jobs.push(job.clone());
        wait_for(&job, o.poll, reporter)?;
        if let Some(states) = accounting(&job) {
            reporter.note(&format!("job {job}: {states}"));
        }
        todo = unfinished_shards(study, &inv.out, tasks);
        if !todo.is_empty() && round < o.retries {
            reporter.note(&format!("shards {todo:?} are unfinished; resubmitting them"));
        }
    }
    Ok(jobs)
}

/// Waits until `squeue` no longer lists the job.
fn wait_for(job: &str, poll: Duration, reporter: &dyn Reporter) -> Result<(), Error> {
    let mut last = String::new();
    loop {
        let out = Command::new("squeue").args(["-h", "-j", job, "-o", "%i %T"]).output().map_err(|e| Error::io("squeue", e))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // a finished job drops out of squeue (or squeue says it is unknown)
        if text.is_empty() {
            return Ok(());
        }
        let summary = summarize_states(&text);
        if summary != last {
            reporter.note(&format!("job {job}: {summary}"));
            last = summary;
        }
        std::thread::sleep(poll);
    }
}

/// `3 RUNNING, 1 PENDING` from squeue's `%i %T` lines.
fn summarize_states(text: &str) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for line in text.lines() {
        if let Some(state) = line.split_whitespace().nth(1) {
            *counts.entry(state).or_default() += 1;
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    parts.join(", ")
}

/// Final task states from `sacct`, where accounting is kept.
fn accounting(job: &str) -> Option<String> {
    let out = Command::new("sacct").args(["-n", "-P", "-X", "-j", job, "-o", "JobID,State,ExitCode"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.replace('|', " ")).collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// Runs the study as `mpirun -np RANKS excite sweep FILE --out DIR --mpi`:
/// rank i runs shard i, rank 0 merges.
pub fn mpirun(inv: &Invocation, ranks: usize, mpirun_args: &[String], reporter: &dyn Reporter) -> Result<(), Error> {
    require("mpirun", "Open MPI (Debian: openmpi-bin; excite built with --features mpi against libopenmpi-dev)")?;
    reporter.phase(&format!("mpirun -np {ranks}"));
    let status = Command::new("mpirun")
        .arg("-np")
        .arg(ranks.to_string())
        .args(mpirun_args)
        .arg(&inv.exe)
        .args(inv.sweep_args(&["--mpi"]))
        // Open MPI refuses root unless told; harmless elsewhere
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .status()
        .map_err(|e| Error::io("mpirun", e))?;
    if !status.success() {
        return Err(Error::unavailable("--executor mpi", format!("mpirun ended with {status}"), "see the ranks' messages above; run the sweep again to resume it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_states_are_counted() {
        assert_eq!(summarize_states("12_0 RUNNING\n12_1 RUNNING\n12_[2-3] PENDING\n"), "1 PENDING, 2 RUNNING");
    }
}
