//! A point's result, and the study's tables.
//!
//! Each finished point writes `points/<id>/result.json` atomically: that
//! file is the record. `results.csv` and `results.json` are views of all of
//! them in point order, rewritten whole (atomically) by whoever finishes a
//! point or merges shards, so a reader never sees half a row, and a view
//! that raced another worker's is corrected by the next one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsio::write_atomic;
use crate::sweep::study::{Point, Settings, Study};
use crate::Error;

pub const RESULT_FILE: &str = "result.json";
pub const CSV_FILE: &str = "results.csv";
pub const JSON_FILE: &str = "results.json";
/// The expanded study, written when a sweep starts (what `merge` and `report` read).
pub const STUDY_FILE: &str = "study.json";

/// How a point ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Trained, built and verified.
    Ok,
    /// Training produced NaN or infinite predictions: recorded, never retried.
    Diverged,
    /// Verified, over the pipeline's accuracy budget (the errors are recorded).
    OverBudget,
    /// Stopped by an error (in `error`); run again on the next sweep.
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Diverged => "diverged",
            Status::OverBudget => "over-budget",
            Status::Failed => "failed",
        }
    }
}

/// A variable's errors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VarError {
    #[serde(deserialize_with = "crate::metrics::null_as_infinity")]
    pub mae: f64,
    #[serde(deserialize_with = "crate::metrics::null_as_infinity")]
    pub max_abs_error: f64,
}

/// One point's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub index: usize,
    pub id: String,
    pub settings: Settings,
    pub status: Status,
    pub error: Option<String>,
    pub parameters: Option<usize>,
    pub multiply_adds: Option<usize>,
    /// Mean over variables of the validation MAE (the paper's "Final Error 1").
    pub val_mae: Option<f64>,
    pub val: BTreeMap<String, VarError>,
    /// Mean over variables of the engine's MAE against fresh reference cells.
    pub verify_mae: Option<f64>,
    pub verify: BTreeMap<String, VarError>,
    /// Which time points verify used: `fresh cells` or `held-out times`.
    pub verify_on: Option<String>,
    pub engine: Option<String>,
    pub engine_samples_per_s: Option<f64>,
    pub reference_samples_per_s: Option<f64>,
    pub train_seconds: Option<f64>,
    pub train_samples_per_s: Option<f64>,
    pub steps: Option<usize>,
    /// Wall time of the point's run here (cached stages take none).
    pub seconds: f64,
    /// Where the figures were measured.
    pub host: String,
    pub cpu: String,
}

impl Row {
    pub fn new(point: &Point) -> Row {
        Row {
            index: point.index,
            id: point.id.clone(),
            settings: point.settings.clone(),
            status: Status::Failed,
            error: None,
            parameters: None,
            multiply_adds: None,
            val_mae: None,
            val: BTreeMap::new(),
            verify_mae: None,
            verify: BTreeMap::new(),
            verify_on: None,
            engine: None,
            engine_samples_per_s: None,
            reference_samples_per_s: None,
            train_seconds: None,
            train_samples_per_s: None,
            steps: None,
            seconds: 0.0,
            host: hostname(),
            cpu: crate::isa::cpu_name(),
        }
    }

    /// Fills in what a training run (its folder) measured.
    pub fn read_training(&mut self, train: &Path) -> Result<(), Error> {
        let m: crate::train::Metrics = read_json(&train.join(crate::train::METRICS_FILE))?;
        let meta: crate::train::SurrogateMeta = read_json(&train.join(crate::train::SURROGATE_FILE))?;
        let arch = &meta.architecture;
        self.parameters = Some(arch.parameters());
        self.multiply_adds = Some(arch.multiply_adds());
        self.val = m.variables.iter().map(|v| (v.name.clone(), VarError { mae: v.mae, max_abs_error: v.max_abs_error })).collect();
        self.val_mae = Some(m.mae);
        self.train_seconds = Some(m.train_seconds);
        self.train_samples_per_s = Some(m.samples_per_s);
        self.steps = Some(m.steps);
        if m.diverged {
            self.status = Status::Diverged;
        }
        Ok(())
    }

    /// Fills in what the verify stage measured (its report, or the rejected one).
    pub fn read_verify(&mut self, report: &Path) -> Result<(), Error> {
        let r: crate::verify::Report = read_json(report)?;
        self.verify = r.variables.iter().map(|v| (v.name.clone(), VarError { mae: v.mae, max_abs_error: v.max_abs_error })).collect();
        self.verify_mae = Some(r.variables.iter().map(|v| v.mae).sum::<f64>() / r.variables.len().max(1) as f64);
        self.verify_on = Some(r.held_out.clone());
        self.engine = Some(format!("{} {}", r.engine.backend, r.engine.precision));
        self.engine_samples_per_s = Some(r.engine_samples_per_s);
        self.reference_samples_per_s = Some(r.reference_samples_per_s);
        self.status = if r.passed { Status::Ok } else { Status::OverBudget };
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::format(path, format!("not the expected JSON: {e}"), "re-run the point (delete its folder under points/)"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// The study a sweep folder holds.
pub fn read_study(dir: &Path) -> Result<Study, Error> {
    let path = dir.join(STUDY_FILE);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::invalid(dir.display().to_string(), format!("{} is not a sweep folder (no {STUDY_FILE})", dir.display()), "give the --out folder of `excite sweep`"),
        _ => Error::io(&path, e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, format!("not a study: {e}"), "run `excite sweep FILE --out DIR` again to rewrite it"))
}

pub fn point_dir(dir: &Path, point: &Point) -> PathBuf {
    dir.join("points").join(&point.id)
}

/// The recorded result of a point, if it finished (a failed one counts as not finished).
pub fn finished(dir: &Path, point: &Point) -> Option<Row> {
    let path = point_dir(dir, point).join(RESULT_FILE);
    let row: Row = read_json(&path).ok()?;
    (row.id == point.id && row.status != Status::Failed).then_some(row)
}

/// Every point's recorded row, in point order (points not yet run are absent).
pub fn collect(dir: &Path, study: &Study) -> Vec<Row> {
    study
        .points
        .iter()
        .filter_map(|p| {
            let mut r = read_json::<Row>(&point_dir(dir, p).join(RESULT_FILE)).ok().filter(|r| r.id == p.id)?;
            // a point's place in this study (a changed study may have moved it)
            r.index = p.index;
            Some(r)
        })
        .collect()
}

/// Rewrites results.csv and results.json from the points' records.
pub fn write_tables(dir: &Path, rows: &[Row]) -> Result<(), Error> {
    write_atomic(&dir.join(JSON_FILE), &serde_json::to_vec_pretty(rows).expect("serialises"))?;
    write_atomic(&dir.join(CSV_FILE), &csv_bytes(rows))
}

/// The rows as CSV: settings, status, sizes, errors per variable, speeds.
pub fn csv_bytes(rows: &[Row]) -> Vec<u8> {
    let vars: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in rows {
            for k in r.val.keys().chain(r.verify.keys()) {
                if !v.contains(k) {
                    v.push(k.clone());
                }
            }
        }
        v
    };
    let mut header: Vec<String> = [
        "index", "id", "architecture", "shape", "neurons", "layers", "zoo", "mode", "data", "seed", "windows", "adaptive", "target", "precision", "set", "status", "parameters", "multiply_adds", "val_mae",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for v in &vars {
        header.push(format!("val_mae_{v}"));
        header.push(format!("val_max_{v}"));
    }
    header.push("verify_mae".into());
    for v in &vars {
        header.push(format!("verify_mae_{v}"));
        header.push(format!("verify_max_{v}"));
    }
    for h in ["verify_on", "engine", "engine_samples_per_s", "reference_samples_per_s", "train_seconds", "train_samples_per_s", "steps", "seconds", "host", "cpu", "error"] {
        header.push(h.into());
    }
    let opt = |x: Option<f64>| x.map(|v| format!("{v:e}")).unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).expect("in memory");
    for r in rows {
        let s = &r.settings;
        let mut rec: Vec<String> = vec![
            r.index.to_string(),
            r.id.clone(),
            s.architecture.clone(),
            s.shape.clone(),
            s.neurons.to_string(),
            s.layers.to_string(),
            s.zoo.map(|z| z.to_string()).unwrap_or_default(),
            s.mode.clone(),
            s.data.map(|d| d.to_string()).unwrap_or_default(),
            s.seed.to_string(),
            s.windows.to_string(),
            s.adaptive.to_string(),
            s.target.clone(),
            s.precision.clone(),
            s.set.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "),
            r.status.name().into(),
            r.parameters.map(|d| d.to_string()).unwrap_or_default(),
            r.multiply_adds.map(|d| d.to_string()).unwrap_or_default(),
            opt(r.val_mae),
        ];
        for v in &vars {
            rec.push(opt(r.val.get(v).map(|e| e.mae)));
            rec.push(opt(r.val.get(v).map(|e| e.max_abs_error)));
        }
        rec.push(opt(r.verify_mae));
        for v in &vars {
            rec.push(opt(r.verify.get(v).map(|e| e.mae)));
            rec.push(opt(r.verify.get(v).map(|e| e.max_abs_error)));
        }
        rec.push(r.verify_on.clone().unwrap_or_default());
        rec.push(r.engine.clone().unwrap_or_default());
        rec.push(opt(r.engine_samples_per_s));
        rec.push(opt(r.reference_samples_per_s));
        rec.push(opt(r.train_seconds));
        rec.push(opt(r.train_samples_per_s));
        rec.push(r.steps.map(|d| d.to_string()).unwrap_or_default());
        rec.push(format!("{:.3}", r.seconds));
        rec.push(r.host.clone());
        rec.push(r.cpu.clone());
        rec.push(r.error.clone().map(|e| crate::error::printable(&e)).unwrap_or_default());
        w.write_record(&rec).expect("in memory");
    }
    w.into_inner().expect("in memory")
}
