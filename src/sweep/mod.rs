//! `excite sweep`: a study — a base pipeline and axes — run point by point.
//!
//! A sweep folder holds `study.json` (the expanded study), one folder per
//! point under `points/<id>/` (its pipeline file, its pipeline run, and
//! `result.json` once finished), and the tables `results.csv` and
//! `results.json`. A point is the pipeline's train → export → build →
//! verify, with the pipeline's own caching: a finished point is never run
//! again, an interrupted one resumes from its last finished stage (training
//! from its checkpoint). Shards (`i/n`) split the points for workers, MPI
//! ranks or Slurm array tasks, which share nothing but the folder.

pub mod executor;
pub mod report;
pub mod results;
pub mod stats;
pub mod study;

use std::path::Path;
use std::time::Instant;

use crate::fsio::write_atomic;
use crate::pipeline::{self, Options, Pipeline, Stage};
use crate::report::Reporter;
use crate::Error;
pub use results::{Row, Status};
pub use study::{Point, Shard, Study};

/// What a shard's run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Points this shard holds.
    pub points: usize,
    /// Run now, by status.
    pub ran: usize,
    /// Found finished and left alone.
    pub cached: usize,
    pub diverged: usize,
    pub over_budget: usize,
    pub failed: usize,
    /// Left alone: another process holds their lock.
    pub busy: usize,
}

/// An exclusive lock on a point's folder (`flock` on `points/<id>/lock`),
/// released when dropped or when its process dies, however it dies.
struct PointLock {
    _file: std::fs::File,
}

impl PointLock {
    fn try_take(dir: &Path) -> Result<Option<PointLock>, Error> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("lock");
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a descriptor this function owns
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            Ok(Some(PointLock { _file: f }))
        } else {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) => Ok(None),
                _ => Err(Error::io(&path, e)),
            }
        }
    }
}

/// Writes the study into `dir` (or checks that the one there is the same).
pub fn prepare(study: &Study, dir: &Path) -> Result<(), Error> {
    let path = dir.join(results::STUDY_FILE);
    let json = serde_json::to_vec_pretty(study).expect("serialises");
    if std::fs::read(&path).is_ok_and(|old| old == json) {
        return Ok(());
    }
    // A changed study keeps every finished point whose pipeline is unchanged
    // (points are found by content hash); only the listing is replaced.
    write_atomic(&path, &json)
}

/// Runs shard `shard` of the study in `dir`, skipping finished points.
pub fn run_shard(study: &Study, dir: &Path, shard: Shard, reporter: &dyn Reporter) -> Result<Summary, Error> {
    let mine: Vec<&Point> = study.shard(shard).collect();
    let mut sum = Summary { points: mine.len(), ..Summary::default() };
    for (k, point) in mine.iter().enumerate() {
        if results::finished(dir, point).is_some() {
            sum.cached += 1;
            continue;
        }
        let s = &point.settings;
        reporter.phase(&format!(
            "point {} ({} of {} in shard {shard}) {}: {} {}{} seed {}",
            point.index,
            k + 1,
            mine.len(),
            point.id,
            s.architecture,
            s.mode,
            s.data.map(|d| format!(" data {d}")).unwrap_or_default(),
            s.seed
        ));
        // another process on this point (a worker of an earlier sweep still
        // running, a shard started twice): leave it to that one
        let Some(_lock) = PointLock::try_take(&results::point_dir(dir, point))? else {
            reporter.note(&format!("point {} is being run by another process; skipped", point.index));
            sum.busy += 1;
            continue;
        };
        // finished by another process between the check above and the lock
        if results::finished(dir, point).is_some() {
            sum.cached += 1;
            continue;
        }
        let row = run_point(study, dir, point, reporter)?;
        sum.ran += 1;
        match row.status {
            Status::Ok => {}
            Status::Diverged => sum.diverged += 1,
            Status::OverBudget => sum.over_budget += 1,
            Status::Failed => {
                sum.failed += 1;
                reporter.note(&format!("point {} failed: {}", point.index, row.error.as_deref().unwrap_or("")));
            }
        }
        results::write_tables(dir, &results::collect(dir, study))?;
    }
    Ok(sum)
}

/// Runs one point and records its row; an error of the point's own is
/// recorded in the row, not returned (a sweep goes on). Only a failure to
/// write the record is returned.
pub fn run_point(study: &Study, dir: &Path, point: &Point, reporter: &dyn Reporter) -> Result<Row, Error> {
    let start = Instant::now();
    let pdir = results::point_dir(dir, point);
    let mut row = Row::new(point);
    let outcome = (|| -> Result<(), Error> {
        write_atomic(&pdir.join("pipeline.yaml"), point.yaml.as_bytes())?;
        let p = Pipeline::from_yaml_in(&point.yaml, &study.base_dir)?;
        let run = pdir.join("run");
        let train = run.join(Stage::Train.name());
        let diverged = crate::train::rejected_dir(&train);
        let _ = std::fs::remove_dir_all(&diverged);
        match pipeline::run(&p, &run, &Options { until: Some(Stage::Train), ..Options::default() }, reporter) {
            Ok(_) => row.read_training(&train)?,
            // a diverged training is a result (kept beside the stage's output): the point stops there
            Err(Error::Gate { .. }) if diverged.exists() => {
                row.read_training(&diverged)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let rejected = run.join(pipeline::VERIFY_REJECTED).join(crate::verify::REPORT_FILE);
        let _ = std::fs::remove_file(&rejected);
        match pipeline::run(&p, &run, &Options { from: Some(Stage::Export), until: Some(study.until), ..Options::default() }, reporter) {
            Ok(_) => row.read_verify(&run.join(Stage::Verify.name()).join(crate::verify::REPORT_FILE)),
            // over the pipeline's budget: a result, with its errors
            Err(Error::Gate { .. }) if rejected.exists() => row.read_verify(&rejected),
            Err(e) => Err(e),
        }
    })();
    if let Err(e) = outcome {
        row.status = Status::Failed;
        row.error = Some(match e.hint() {
            Some(h) => format!("{e} (hint: {h})"),
            None => e.to_string(),
        });
    }
    row.seconds = start.elapsed().as_secs_f64();
    write_atomic(&pdir.join(results::RESULT_FILE), &serde_json::to_vec_pretty(&row).expect("serialises"))?;
    Ok(row)
}

/// What `merge` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Merged {
    pub points: usize,
    pub finished: usize,
    /// Points with no record yet, or a failed one (indices).
    pub missing: Vec<usize>,
    pub diverged: usize,
    pub failed: usize,
}

/// Joins every point's record into results.csv and results.json.
pub fn merge(dir: &Path) -> Result<Merged, Error> {
    let study = results::read_study(dir)?;
    let rows = results::collect(dir, &study);
    results::write_tables(dir, &rows)?;
    Ok(tally(&study, &rows))
}

/// How far the study got, from its points' records.
pub fn tally(study: &Study, rows: &[Row]) -> Merged {
    let done: std::collections::BTreeSet<usize> = rows.iter().filter(|r| r.status != Status::Failed).map(|r| r.index).collect();
    Merged {
        points: study.points.len(),
        finished: done.len(),
        missing: (0..study.points.len()).filter(|i| !done.contains(i)).collect(),
        diverged: rows.iter().filter(|r| r.status == Status::Diverged).count(),
        failed: rows.iter().filter(|r| r.status == Status::Failed).count(),
    }
}

/// Shards of `count` whose points are not all finished.
pub fn unfinished_shards(study: &Study, dir: &Path, count: usize) -> Vec<usize> {
    (0..count)
        .filter(|&i| study.shard(Shard { index: i, count }).any(|p| results::finished(dir, p).is_none()))
        .collect()
}
