//! Datasets: sampled cells, solved by the Euler reference, laid out as
//! `(inputs → outputs)` rows for training, split, and written as
//! `dataset.npz` (arrays `x_train`, `y_train`, `x_val`, `y_val`, `x_test`,
//! `y_test`) plus `dataset.json` (everything needed to reproduce and trust it).

pub mod npz;
pub mod problem;
pub mod sampling;
pub mod spec;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use crate::hash::sha256_hex;

use crate::fsio::{write_atomic, StagingDir};
use crate::report::Reporter;
use crate::solve::{self, Cells, Column, Device, Trajectories};
use crate::Error;
pub use npz::Array2;
use sampling::Rng;
pub use spec::{DatasetSpec, Kind, Split, Target};

/// Version tag of the dataset layout, bumped when it changes.
pub const FORMAT: &str = "excite-dataset/1";
pub const NPZ_FILE: &str = "dataset.npz";
pub const META_FILE: &str = "dataset.json";
/// The splits, in file order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// The metadata written next to the arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format: String,
    pub name: String,
    pub kind: Kind,
    pub model: ModelMeta,
    /// Input columns and their domain (declared ranges; observed for ITNN states).
    pub inputs: Vec<VarRange>,
    /// Output columns and the range observed over the whole dataset.
    pub outputs: Vec<VarRange>,
    pub time: TimeMeta,
    pub sampling: SamplingMeta,
    pub split: SplitMeta,
    pub solver: SolverMeta,
    pub excite_version: String,
    /// sha256 of `dataset.npz`.
    pub content_sha256: String,
}

/// Folders where an imported model's CellML file is looked for by name
/// (and accepted by content) when it is gone from its recorded path.
pub const CELLML_PATH_VAR: &str = "EXCITE_CELLML_PATH";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub name: String,
    pub equations: String,
    pub params: BTreeMap<String, f64>,
    /// The CellML file of an imported model (none for a built-in one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cellml: Option<CellmlMeta>,
}

/// Which file an imported model came from, by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellmlMeta {
    /// Where it was read (absolute where known).
    pub file: String,
    pub sha256: String,
}

impl ModelMeta {
    /// The cell model this metadata names: a built-in one by name, an
    /// imported one from its file, which must still hold the same content;
    /// where it is gone from the recorded path (a project moved to another
    /// machine), a file of the same name and content in a folder of
    /// `EXCITE_CELLML_PATH` (separated as PATH is).
    pub fn resolve(&self) -> Result<&'static dyn crate::cell::Model, Error> {
        let search: Vec<std::path::PathBuf> = std::env::var_os(CELLML_PATH_VAR).map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
        self.resolve_in(&search)
    }

    /// [`ModelMeta::resolve`] with these folders to search.
    pub fn resolve_in(&self, search: &[std::path::PathBuf]) -> Result<&'static dyn crate::cell::Model, Error> {
        let Some(c) = &self.cellml else {
            return crate::cell::by_name(&self.name);
        };
        // the path comes from metadata (perhaps from elsewhere): a file is parsed only if it has the recorded content
        let recorded = Path::new(&c.file);
        let first = match crate::cell::imported::load_expecting(recorded, Some(&c.sha256)) {
            Ok(m) => return Ok(m),
            Err(e) => e,
        };
        let name = recorded.file_name().unwrap_or(recorded.as_os_str());
        for dir in search {
            if let Ok(m) = crate::cell::imported::load_expecting(&dir.join(name), Some(&c.sha256)) {
                return Ok(m);
            }
        }
        Err(first)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarRange {
    pub name: String,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeMeta {
    pub t_end: f64,
    pub dt: f64,
    pub sample_every: f64,
    pub steps_per_sample: usize,
    pub samples_per_cell: usize,
    /// How the reference steps (forward Euler unless said).
    #[serde(default, skip_serializing_if = "is_euler")]
    pub scheme: solve::Scheme,
}

fn is_euler(s: &solve::Scheme) -> bool {
    *s == solve::Scheme::Euler
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingMeta {
    pub method: sampling::Method,
    pub seed: u64,
    pub cells: usize,
    pub initial: BTreeMap<String, f64>,
    pub ranges: BTreeMap<String, [f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMeta {
    /// `cell`: whole trajectories go to one split; `row`: single trajectory split by time point.
    pub by: String,
    pub fractions: Split,
    pub rows: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverMeta {
    pub scheme: String,
    pub precision: String,
    pub device: Device,
    pub kernel: String,
}

/// A generated dataset in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub meta: Metadata,
    /// `(x, y)` for train, val and test.
    pub splits: [(Array2, Array2); 3],
}

/// Samples the cells of `spec` (seeded), without solving them.
pub fn sample_cells(spec: &DatasetSpec) -> Cells {
    let mut rng = Rng::new(spec.seed);
    let ranges: Vec<[f64; 2]> = spec.sampled.iter().map(|s| s.range).collect();
    let mut cols = sampling::sample(spec.method, &ranges, spec.cells, &mut rng).into_iter();
    let mut init: Vec<Column> = spec.initial.iter().map(|&x| Column::Same(x)).collect();
    let mut params: Vec<Column> = spec.params.iter().map(|&x| Column::Same(x)).collect();
    for s in &spec.sampled {
        let col = Column::PerCell(cols.next().expect("one column per sampled dimension"));
        match s.target {
            Target::State(i) => init[i] = col,
            Target::Param(i) => params[i] = col,
        }
    }
    Cells {
        n: spec.cells,
        init,
        params,
    }
}

/// Solves the cells of `spec` and lays the result out as split training rows.
pub fn generate(
    spec: &DatasetSpec,
    threads: usize,
    reporter: &dyn Reporter,
) -> Result<Dataset, Error> {
    let info = spec.model.info();
    let cells = sample_cells(spec);
    reporter.phase(&format!(
        "solving {} cells × {} steps on {}",
        spec.cells,
        spec.grid.total_steps(),
        spec.device
    ));
    let traj = solve::solve(spec.model, &spec.grid, &cells, spec.scheme, spec.device, threads)?;
    if let Some(bad) = traj.data.iter().position(|x| !x.is_finite()) {
        let var = bad / (traj.n_samples * traj.n_cells);
        return Err(Error::invalid(
            "time.dt",
            format!(
                "the {} solution of `{}` diverged (non-finite {})",
                spec.scheme.name(), info.name, info.states[var].name
            ),
            "reduce dt, or narrow the sampled ranges",
        ));
    }
    reporter.phase("building rows");

    let sampled_params: Vec<usize> = spec
        .sampled
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.target, Target::Param(_)))
        .map(|(i, _)| i)
        .collect();
    // an ITNN of a model whose equations read time takes it as an input (decided once, not per row)
    let time_input = spec.kind == Kind::Itnn && spec.reads_time();
    let (in_names, rows_per_cell) = match spec.kind {
        Kind::Trajectory => {
            let mut names = vec!["t".to_string()];
            names.extend(spec.sampled.iter().map(|s| s.name.clone()));
            (names, spec.grid.n_samples)
        }
        Kind::Itnn => {
            let mut names: Vec<String> = info.states.iter().map(|s| s.name.to_string()).collect();
            if time_input {
                names.push("t".into());
            }
            names.extend(sampled_params.iter().map(|&i| spec.sampled[i].name.clone()));
            (names, spec.grid.n_samples - 1)
        }
    };
    let n_in = in_names.len();
    let n_out = spec.outputs.len();
    let sampled_value = |d: usize, c: usize| -> f64 {
        match spec.sampled[d].target {
            Target::State(i) => cells.init[i].get(c),
            Target::Param(i) => cells.params[i].get(c),
        }
    };
    let row = |c: usize, r: usize, x: &mut Vec<f32>, y: &mut Vec<f32>| match spec.kind {
        Kind::Trajectory => {
            x.push(spec.grid.time(r) as f32);
            x.extend((0..spec.sampled.len()).map(|d| sampled_value(d, c) as f32));
            y.extend(spec.outputs.iter().map(|&i| traj.get(i, r, c)));
        }
        Kind::Itnn => {
            // every state in, every state out (spec checked): the step is a map of the whole state
            x.extend((0..n_out).map(|i| traj.get(i, r, c)));
            if time_input {
                x.push(spec.grid.time(r) as f32);
            }
            x.extend(sampled_params.iter().map(|&d| sampled_value(d, c) as f32));
            y.extend((0..n_out).map(|i| traj.get(i, r + 1, c)));
        }
    };

    // Whole trajectories go to one split, so validation sees unseen cells; a
    // single trajectory is split by time point. A separate stream keeps the
    // sampled cells independent of the split.
    let by_cell = spec.cells > 1;
    let units = if by_cell { spec.cells } else { rows_per_cell };
    let mut order: Vec<usize> = (0..units).collect();
    Rng::new(spec.seed ^ 0x5EED_5B17).shuffle(&mut order);
    let n_train = ((units as f64 * spec.split.train).round() as usize).clamp(1, units);
    let n_val = ((units as f64 * spec.split.val).round() as usize).min(units - n_train);
    let parts = [
        &order[..n_train],
        &order[n_train..n_train + n_val],
        &order[n_train + n_val..],
    ];

    let splits = parts.map(|part| {
        let mut part = part.to_vec();
        part.sort_unstable();
        let rows = if by_cell {
            part.len() * rows_per_cell
        } else {
            part.len()
        };
        let (mut x, mut y) = (
            Vec::with_capacity(rows * n_in),
            Vec::with_capacity(rows * n_out),
        );
        for &u in &part {
            if by_cell {
                for r in 0..rows_per_cell {
                    row(u, r, &mut x, &mut y);
                }
            } else {
                row(0, u, &mut x, &mut y);
            }
        }
        (
            Array2 {
                rows,
                cols: n_in,
                data: x,
            },
            Array2 {
                rows,
                cols: n_out,
                data: y,
            },
        )
    });

    let observed = |name: &str, var: usize| {
        let (lo, hi) = traj.data
            [var * traj.n_samples * traj.n_cells..(var + 1) * traj.n_samples * traj.n_cells]
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v as f64), hi.max(v as f64))
            });
        VarRange {
            name: name.to_string(),
            min: lo,
            max: hi,
        }
    };
    let inputs = in_names
        .iter()
        .map(|name| {
            if name == "t" {
                return VarRange {
                    name: name.clone(),
                    min: 0.0,
                    max: spec.grid.t_end(),
                };
            }
            if let Some(s) = spec.sampled.iter().find(|s| &s.name == name) {
                return VarRange {
                    name: name.clone(),
                    min: s.range[0],
                    max: s.range[1],
                };
            }
            observed(
                name,
                info.state_index(name)
                    .expect("ITNN inputs are states or sampled"),
            )
        })
        .collect();
    let outputs = spec.outputs.iter().map(|&i| observed(info.states[i].name, i)).collect();

    let meta = Metadata {
        format: FORMAT.into(),
        name: spec.name.clone(),
        kind: spec.kind,
        model: ModelMeta {
            name: info.name.into(),
            equations: info.equations.into(),
            cellml: match (spec.model.form(), &spec.cellml_file) {
                (crate::cell::Form::Imported(m), Some(file)) => Some(CellmlMeta { file: file.display().to_string(), sha256: m.sha256.clone() }),
                _ => None,
            },
            params: info
                .params
                .iter()
                .zip(&spec.params)
                .map(|(p, &v)| (p.name.to_string(), v))
                .collect(),
        },
        inputs,
        outputs,
        time: TimeMeta {
            t_end: spec.grid.t_end(),
            dt: spec.grid.dt,
            sample_every: spec.grid.sample_every(),
            steps_per_sample: spec.grid.steps_per_sample,
            samples_per_cell: spec.grid.n_samples,
            scheme: spec.scheme,
        },
        sampling: SamplingMeta {
            method: spec.method,
            seed: spec.seed,
            cells: spec.cells,
            initial: info
                .states
                .iter()
                .zip(&spec.initial)
                .map(|(s, &v)| (s.name.to_string(), v))
                .collect(),
            ranges: spec
                .sampled
                .iter()
                .map(|s| (s.name.clone(), s.range))
                .collect(),
        },
        split: SplitMeta {
            by: if by_cell { "cell" } else { "row" }.into(),
            fractions: spec.split,
            rows: SPLITS
                .iter()
                .zip(&splits)
                .map(|(n, (x, _))| (n.to_string(), x.rows))
                .collect(),
        },
        solver: SolverMeta {
            scheme: match spec.scheme {
                solve::Scheme::Euler => "forward-euler".into(),
                s => s.name().into(),
            },
            precision: match spec.model.form() {
                crate::cell::Form::Imported(_) => "f64 (stored as f32)".into(),
                crate::cell::Form::Builtin(_) => "f32".into(),
            },
            device: spec.device,
            kernel: match (spec.model.form(), spec.device) {
                (crate::cell::Form::Imported(_), Device::Cpu) => "compiled equations, f64 lanes".into(),
                (crate::cell::Form::Imported(_), Device::Cuda) => "generated CUDA C, nvrtc".into(),
                (_, Device::Cpu) => solve::cpu::kernel_name().into(),
                (_, Device::Cuda) => "nvrtc".into(),
            },
        },
        excite_version: env!("CARGO_PKG_VERSION").into(),
        content_sha256: String::new(),
    };
    Ok(Dataset { meta, splits })
}

impl Dataset {
    /// The `.npz` bytes of the arrays.
    pub fn npz_bytes(&self) -> Vec<u8> {
        let names: Vec<[String; 2]> = SPLITS
            .iter()
            .map(|s| [format!("x_{s}"), format!("y_{s}")])
            .collect();
        let arrays: Vec<(&str, &Array2)> = names
            .iter()
            .zip(&self.splits)
            .flat_map(|([xn, yn], (x, y))| [(xn.as_str(), x), (yn.as_str(), y)])
            .collect();
        npz::to_bytes(&arrays)
    }

    /// Writes `dataset.npz` and `dataset.json` into `dir`, replacing a previous
    /// dataset there only once both are complete. Returns the final metadata.
    pub fn write(&self, dir: &Path) -> Result<Metadata, Error> {
        let bytes = self.npz_bytes();
        let mut meta = self.meta.clone();
        meta.content_sha256 = sha256_hex(&bytes);
        let staging = StagingDir::new(dir)?;
        write_atomic(&staging.path().join(NPZ_FILE), &bytes)?;
        let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
        write_atomic(&staging.path().join(META_FILE), &json)?;
        staging.commit()?;
        Ok(meta)
    }
}

/// A dataset read back from disk.
pub struct Loaded {
    pub meta: Metadata,
    pub arrays: Vec<(String, Array2)>,
}

/// Reads a dataset folder (or its `dataset.json` / `dataset.npz`), refusing
/// arrays whose hash differs from the one recorded when they were written.
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let meta: Metadata = serde_json::from_str(&text).map_err(|e| {
        Error::format(
            &meta_path,
            format!("not excite dataset metadata ({FORMAT}): {e}"),
            "regenerate it with `excite simulate`",
        )
    })?;
    let npz_path = dir.join(NPZ_FILE);
    let bytes = std::fs::read(&npz_path).map_err(|e| Error::io(&npz_path, e))?;
    let hash = sha256_hex(&bytes);
    if hash != meta.content_sha256 {
        return Err(Error::format(
            &npz_path,
            format!("content hash {hash} does not match the {} recorded in {META_FILE}: the file changed after it was written", meta.content_sha256),
            "regenerate the dataset with `excite simulate`",
        ));
    }
    let arrays = npz::read(&npz_path)?;
    Ok(Loaded { meta, arrays })
}

/// Count, min, max, mean and standard deviation of one column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub count: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
}

impl Stats {
    pub fn of(values: impl Iterator<Item = f32>) -> Stats {
        let (mut n, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            let v = v as f64;
            n += 1;
            let d = v - mean;
            mean += d / n as f64;
            m2 += d * (v - mean);
            min = min.min(v);
            max = max.max(v);
        }
        let std = if n > 1 { (m2 / n as f64).sqrt() } else { 0.0 };
        Stats {
            count: n,
            min,
            max,
            mean,
            std,
        }
    }
}

/// Per-trajectory helper for tests and verification: the full solution of the spec's cells.
pub fn solve_spec(spec: &DatasetSpec, threads: usize) -> Result<Trajectories<f32>, Error> {
    solve::solve(
        spec.model,
        &spec.grid,
        &sample_cells(spec),
        spec.scheme,
        spec.device,
        threads,
    )
}
