//! A study file: a base pipeline and the axes to vary, expanded into points.
//!
//! ```yaml
//! name: smoke
//! pipeline: quick.yaml             # the base pipeline, relative to this file
//! axes:
//!   architecture:
//!     - hidden: [[tanh, 16], [tanh, 16]]
//!     - zoo: [0, 7]                # ids of the authors' 800 (or `all`, or "0-99")
//!     - generate: {shapes: [rectangle, funnel], layers: [3], budgets: [48, 96], activations: [tanh]}
//!   mode: [ddnn, pinn]
//!   data: [10, 100]                # training rows (a seeded subset)
//!   seed: [0, 1, 2]
//!   set: {train.lr: [0.001, 0.003]}   # any other setting, by its path
//! ```
//!
//! Each point is the base pipeline with one value of every axis written in:
//! its own pipeline file, whose content hash is the point's id. A point
//! whose file is unchanged is never re-run, whatever else of the study changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};

use crate::engine::manifest::Target;
use crate::pipeline::{Pipeline, Stage};
use crate::train::arch::{self, Activation, Layer, Shape};
use crate::train::spec::HiddenSpec;
use crate::train::Mode;
use crate::Error;

/// The most points one study expands to: 125 times the authors' 800-model
/// search, and a bound on what a study file makes excite allocate.
pub const MAX_POINTS: usize = 100_000;

/// The authors' zoo, where a study does not name another file.
pub const DEFAULT_ZOO: &str = "../shared/reference/ufjf-results/model-zoo-800.csv";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStudy {
    name: String,
    /// The base pipeline file, relative to the study file.
    pipeline: PathBuf,
    #[serde(default)]
    axes: Axes,
    /// The zoo `zoo:` ids refer to, relative to the study file.
    #[serde(default)]
    zoo_file: Option<PathBuf>,
    /// The last stage each point runs: verify (default) or package.
    #[serde(default = "verify_stage")]
    until: Stage,
    /// The paper's problem (A, B or C) whose published results the report sets beside this study's.
    #[serde(default)]
    compare: Option<String>,
}

fn verify_stage() -> Stage {
    Stage::Verify
}

/// The axes a study may vary; each is a list of values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Axes {
    architecture: Option<Vec<ArchAxis>>,
    mode: Option<Vec<Mode>>,
    /// Training rows: a seeded subset of the dataset's training set.
    data: Option<Vec<usize>>,
    seed: Option<Vec<u64>>,
    windows: Option<Vec<usize>>,
    /// `off`, or `{every, fraction, boost}`.
    adaptive: Option<Vec<Value>>,
    target: Option<Vec<Target>>,
    precision: Option<Vec<String>>,
    /// Any other setting of the base pipeline by its path, each an axis of
    /// its own: `set: {train.lr: [0.001, 0.003], train.steps: [20000, 50000]}`.
    #[serde(default)]
    set: BTreeMap<String, Vec<Value>>,
}

/// One item of the architecture axis: exactly one of its fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchAxis {
    /// One architecture, spelled out.
    hidden: Option<Vec<Layer>>,
    /// Entries of the zoo: a list of ids, `all`, or a range `"A-B"`.
    zoo: Option<Value>,
    /// Shapes × layer counts × neuron budgets × activations.
    generate: Option<Generate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generate {
    shapes: Vec<Shape>,
    layers: Vec<usize>,
    budgets: Vec<usize>,
    activations: Vec<Activation>,
}

/// One architecture of the study, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchChoice {
    pub hidden: Vec<Layer>,
    pub shape: String,
    pub zoo: Option<usize>,
}

/// What a point is: the values its rows are grouped by in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `tanh 32-32-32`, or mixed activations `elu 32, silu 64`.
    pub architecture: String,
    pub shape: String,
    pub neurons: usize,
    pub layers: usize,
    pub zoo: Option<usize>,
    pub mode: String,
    /// Training rows (None: the whole training set).
    pub data: Option<usize>,
    pub seed: u64,
    pub windows: usize,
    pub adaptive: bool,
    pub target: String,
    pub precision: String,
    /// The `set:` axes' values at this point: path → value (YAML).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// One point: a pipeline file and its settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub index: usize,
    /// The first 16 hex digits of the pipeline file's sha256.
    pub id: String,
    pub settings: Settings,
    /// The point's pipeline file.
    pub yaml: String,
}

/// A checked study, expanded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Study {
    pub name: String,
    /// The folder the base pipeline's relative paths are taken from.
    pub base_dir: PathBuf,
    pub until: Stage,
    /// The paper's problem the report compares with.
    pub compare: Option<String>,
    pub points: Vec<Point>,
}

impl Study {
    pub fn from_file(path: &Path) -> Result<Study, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Self::from_yaml(&text, dir).map_err(|e| e.in_file(path))
    }

    /// Parses a study whose relative paths are taken from `dir`, and checks
    /// every point's pipeline: any mistake is found before anything runs.
    pub fn from_yaml(text: &str, dir: &Path) -> Result<Study, Error> {
        let raw: RawStudy = serde_norway::from_str(text).map_err(|e| {
            Error::format("<study>", format!("not a valid study file: {e}"), "a study has name, pipeline and axes (architecture, mode, data, seed, windows, adaptive, target, precision); see models/study-smoke.yaml")
        })?;
        if !matches!(raw.until, Stage::Verify | Stage::Package) {
            return Err(Error::invalid("until", format!("`{}` is not a stage a point can end at", raw.until.name()), "until: verify, or until: package to also package every point"));
        }
        let base_path = dir.join(&raw.pipeline);
        let base_text = std::fs::read_to_string(&base_path).map_err(|e| Error::io(&base_path, e))?;
        // absolute, for workers that start elsewhere
        let base_dir = crate::fsio::absolute(base_path.parent().unwrap_or(Path::new(".")))?;
        let base: Value = serde_norway::from_str(&base_text).map_err(|e| Error::format(&base_path, format!("not YAML: {e}"), "compare with models/quick.yaml"))?;
        Pipeline::from_yaml_in(&base_text, &base_dir).map_err(|e| e.in_file(&base_path))?;
        if base.get("train").is_none() {
            return Err(Error::invalid("pipeline", format!("{} has no `train` section", base_path.display()), "a study trains its points: use a pipeline with a train section, not an import"));
        }
        let zoo_file = raw.zoo_file.as_ref().map(|z| dir.join(z)).unwrap_or_else(|| PathBuf::from(DEFAULT_ZOO));
        let axes = expand_axes(&raw.axes, &zoo_file)?;

        let count = axes.iter().try_fold(1usize, |n, a| n.checked_mul(a.1.len())).filter(|&n| n <= MAX_POINTS);
        if count.is_none() {
            let sizes: Vec<String> = axes.iter().map(|a| format!("{} {}", a.0, a.1.len())).collect();
            return Err(Error::invalid("axes", format!("the axes make more than {MAX_POINTS} points ({})", sizes.join(" × ")), "split the study, or shorten its longest axes"));
        }
        let mut points = Vec::new();
        let mut seen = BTreeSet::new();
        for combo in cartesian(&axes) {
            let mut v = base.clone();
            let mut arch = None;
            let mut set_values = BTreeMap::new();
            for (axis, value) in axes.iter().map(|a| a.0.as_str()).zip(&combo) {
                match value {
                    AxisValue::Arch(a) => {
                        set(&mut v, &["train", "architecture"], serde_norway::to_value(HiddenSpec::Layers { hidden: a.hidden.clone() }).expect("serialises"));
                        arch = Some(a.clone());
                    }
                    AxisValue::Yaml(y) => {
                        if let Some(path) = axis.strip_prefix("set ") {
                            set_values.insert(path.to_string(), show(y));
                        }
                        apply(&mut v, axis, y.clone())
                    }
                }
            }
            let yaml = serde_norway::to_string(&v).expect("serialises");
            let pipeline = Pipeline::from_yaml_in(&yaml, &base_dir).map_err(|e| Error::invalid(format!("point {}", points.len()), format!("{} ({})", e, describe(&axes, &combo)), e.hint().unwrap_or("check the axis values").to_string()))?;
            let mut settings = settings_of(&pipeline, arch)?;
            settings.set = set_values;
            // the content alone: the same point whatever path names the study
            // (an imported cell model's content too, so an edited CellML file makes new points)
            let id = match pipeline.cellml_sha256() {
                "" => crate::hash::sha256_hex(yaml.as_bytes()),
                sha => crate::hash::sha256_parts([yaml.as_bytes(), sha.as_bytes()]),
            }[..16]
                .to_string();
            if !seen.insert(id.clone()) {
                return Err(Error::invalid("axes", format!("two points are the same pipeline ({})", describe(&axes, &combo)), "remove the repeated value from its axis"));
            }
            points.push(Point { index: points.len(), id, settings, yaml });
        }
        let compare = raw.compare.as_deref().map(|c| paper_problem(c, "compare")).transpose()?.map(str::to_string);
        Ok(Study { name: raw.name, base_dir, until: raw.until, compare, points })
    }

    /// The points shard `i` of `n` runs: every n-th, starting at i.
    pub fn shard(&self, shard: Shard) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(move |p| p.index % shard.count == shard.index)
    }
}

/// The paper's problem `name` (A, B or C, either case) as the paper writes it,
/// or an error naming `field`.
pub fn paper_problem(name: &str, field: &str) -> Result<&'static str, Error> {
    ["A", "B", "C"]
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::invalid(field, format!("`{name}` is not one of the paper's problems"), "use A, B or C"))
}

/// `i/n`: the i-th of n parts of a study (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(s: &str) -> Result<Shard, Error> {
        let bad = || Error::invalid("--shard", format!("`{s}` is not I/N with 0 ≤ I < N"), "write --shard 0/4 for the first of four shards");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[derive(Debug, Clone)]
enum AxisValue {
    Arch(ArchChoice),
    Yaml(Value),
}

type Axis = (String, Vec<AxisValue>);

fn expand_axes(a: &Axes, zoo_file: &Path) -> Result<Vec<Axis>, Error> {
    let mut axes: Vec<Axis> = Vec::new();
    let yaml = |v: Vec<Value>| v.into_iter().map(AxisValue::Yaml).collect::<Vec<_>>();
    fn values<T: Serialize>(v: &[T]) -> Vec<AxisValue> {
        v.iter().map(|x| AxisValue::Yaml(serde_norway::to_value(x).expect("serialises"))).collect()
    }
    if let Some(list) = &a.architecture {
        let mut out = Vec::new();
        let mut zoo: Option<Vec<arch::ZooEntry>> = None;
        for item in list {
            match (&item.hidden, &item.zoo, &item.generate) {
                (Some(h), None, None) => out.push(ArchChoice { hidden: h.clone(), shape: shape_of(h), zoo: None }),
                (None, Some(ids), None) => {
                    let entries = match &zoo {
                        Some(z) => z,
                        None => zoo.insert(arch::load_zoo(zoo_file).map_err(|e| match e {
                            Error::Io { .. } => Error::invalid("axes.architecture.zoo", format!("cannot read the zoo {}", zoo_file.display()), "set zoo_file: to the authors' model-zoo-800.csv (shared/reference/ufjf-results)"),
                            e => e,
                        })?),
                    };
                    for id in zoo_ids(ids, entries.len())? {
                        let e = entries.iter().find(|e| e.id == id).ok_or_else(|| {
                            Error::invalid("axes.architecture.zoo", format!("no zoo id {id} in {}", zoo_file.display()), format!("ids run from 0 to {}", entries.len().saturating_sub(1)))
                        })?;
                        out.push(ArchChoice { hidden: e.hidden.clone(), shape: e.shape.name().into(), zoo: Some(id) });
                    }
                }
                (None, None, Some(g)) => {
                    for &shape in &g.shapes {
                        for &layers in &g.layers {
                            for &budget in &g.budgets {
                                for &act in &g.activations {
                                    let hidden = arch::shaped(shape, layers, budget, act).map_err(|e| Error::invalid("axes.architecture.generate", e.to_string(), e.hint().unwrap_or("").to_string()))?;
                                    out.push(ArchChoice { hidden, shape: shape.name().into(), zoo: None });
                                }
                            }
                        }
                    }
                }
                _ => return Err(Error::invalid("axes.architecture", "each item needs exactly one of hidden, zoo or generate", "write - hidden: [[tanh, 32], [tanh, 32]], - zoo: [0, 5], or - generate: {shapes: [funnel], layers: [3], budgets: [96], activations: [tanh]}")),
            }
        }
        axes.push(("architecture".into(), out.into_iter().map(AxisValue::Arch).collect()));
    }
    if let Some(v) = &a.mode {
        axes.push(("mode".into(), values(v)));
    }
    if let Some(v) = &a.data {
        if v.contains(&0) {
            return Err(Error::invalid("axes.data", "0 training rows", "give training-set sizes ≥ 1, such as [10, 100, 1000]"));
        }
        axes.push(("data".into(), values(v)));
    }
    if let Some(v) = &a.seed {
        axes.push(("seed".into(), values(v)));
    }
    if let Some(v) = &a.windows {
        axes.push(("windows".into(), values(v)));
    }
    if let Some(v) = &a.adaptive {
        let mut out = Vec::new();
        for x in v {
            match x {
                Value::String(s) if s == "off" => out.push(Value::Null),
                Value::Bool(false) => out.push(Value::Null),
                Value::Mapping(_) => out.push(x.clone()),
                other => {
                    return Err(Error::invalid("axes.adaptive", format!("{other:?} is neither `off` nor a setting"), "write adaptive: [off, {every: 500, fraction: 0.1, boost: 4}]"));
                }
            }
        }
        axes.push(("adaptive".into(), yaml(out)));
    }
    if let Some(v) = &a.target {
        axes.push(("target".into(), values(v)));
    }
    if let Some(v) = &a.precision {
        axes.push(("precision".into(), values(v)));
    }
    for (path, values) in &a.set {
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len() < 2 || !Stage::ALL.iter().any(|s| s.name() == parts[0]) || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::invalid(format!("axes.set.{path}"), format!("`{path}` is not a setting's path in a pipeline"), "write section.key, such as train.lr, train.steps or simulate.cells"));
        }
        axes.push((format!("set {path}"), yaml(values.clone())));
    }
    if let Some((name, _)) = axes.iter().find(|a| a.1.is_empty()) {
        return Err(Error::invalid(format!("axes.{name}"), "an empty list makes no points", format!("give {name} at least one value, or leave the axis out")));
    }
    Ok(axes)
}

/// `[1, 2]`, `all`, or `"A-B"` (inclusive).
fn zoo_ids(v: &Value, len: usize) -> Result<Vec<usize>, Error> {
    let bad = || Error::invalid("axes.architecture.zoo", format!("{v:?} is not a list of ids, `all` or a range \"A-B\""), "write zoo: [0, 5, 7], zoo: all or zoo: \"0-99\"");
    match v {
        Value::String(s) if s == "all" => Ok((0..len).collect()),
        Value::String(s) => {
            let (a, b) = s.split_once('-').ok_or_else(bad)?;
            let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a > b {
                return Err(bad());
            }
            // refused before the range is made, however far it reaches
            if b >= len {
                return Err(Error::invalid("axes.architecture.zoo", format!("no zoo id {b}"), format!("ids run from 0 to {}", len.saturating_sub(1))));
            }
            Ok((a..=b).collect())
        }
        Value::Number(n) => n.as_u64().map(|n| vec![n as usize]).ok_or_else(bad),
        Value::Sequence(s) => s.iter().map(|x| x.as_u64().map(|n| n as usize).ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

/// The shape the paper would call these widths.
pub fn shape_of(h: &[Layer]) -> String {
    let w: Vec<usize> = h.iter().map(|l| l.1).collect();
    let name = if w.windows(2).all(|p| p[0] == p[1]) {
        "rectangle"
    } else if w.windows(2).all(|p| p[0] <= p[1]) {
        "funnel"
    } else if w.windows(2).all(|p| p[0] >= p[1]) {
        "bottleneck"
    } else if w.len() >= 3 && w[1..w.len() - 1].iter().all(|&m| m > w[0] && m > w[w.len() - 1]) {
        "diamond"
    } else if w.len() >= 3 && w[1..w.len() - 1].iter().all(|&m| m < w[0] && m < w[w.len() - 1]) {
        "bowtie"
    } else {
        "other"
    };
    name.to_string()
}

fn cartesian(axes: &[Axis]) -> Vec<Vec<AxisValue>> {
    let mut out = vec![Vec::new()];
    for (_, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(v.clone());
                    p
                })
            })
            .collect();
    }
    out
}

fn describe(axes: &[Axis], combo: &[AxisValue]) -> String {
    let parts: Vec<String> = axes
        .iter()
        .zip(combo)
        .map(|((name, _), v)| match v {
            AxisValue::Arch(a) => format!("architecture {}", label(&a.hidden)),
            AxisValue::Yaml(y) => format!("{name} {}", show(y)),
        })
        .collect();
    parts.join(", ")
}

/// An axis value as YAML on one line.
fn show(y: &Value) -> String {
    serde_norway::to_string(y).unwrap_or_default().trim().to_string()
}

/// Where each axis goes in a pipeline file.
fn apply(v: &mut Value, axis: &str, value: Value) {
    match axis {
        "mode" => {
            // an ITNN learns from a one-step dataset
            if value.as_str() == Some("itnn") {
                set(v, &["simulate", "kind"], Value::String("itnn".into()));
            }
            set(v, &["train", "mode"], value)
        }
        "data" => set(v, &["train", "rows"], value),
        "seed" => set(v, &["train", "seed"], value),
        "windows" => set(v, &["train", "windows"], value),
        "adaptive" => set(v, &["train", "adaptive"], value),
        "target" => set(v, &["build", "target"], value),
        "precision" => set(v, &["build", "precision"], value),
        other => match other.strip_prefix("set ") {
            Some(path) => set(v, &path.split('.').collect::<Vec<_>>(), value),
            None => unreachable!("axis {other} has no place"),
        },
    }
}

fn set(v: &mut Value, path: &[&str], value: Value) {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let map = cur.as_mapping_mut().expect("a mapping");
        let k = Value::String((*key).into());
        if i + 1 == path.len() {
            if value.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, value);
            }
            return;
        }
        cur = map.entry(k).or_insert(Value::Mapping(Mapping::new()));
    }
}

/// `tanh 32-32-32`, or `elu 32, silu 64` for mixed activations.
pub fn label(h: &[Layer]) -> String {
    if h.windows(2).all(|p| p[0].0 == p[1].0) && !h.is_empty() {
        let w: Vec<String> = h.iter().map(|l| l.1.to_string()).collect();
        format!("{} {}", h[0].0.name(), w.join("-"))
    } else {
        let parts: Vec<String> = h.iter().map(|l| format!("{} {}", l.0.name(), l.1)).collect();
        parts.join(", ")
    }
}

fn settings_of(p: &Pipeline, arch: Option<ArchChoice>) -> Result<Settings, Error> {
    let spec = p.train.as_ref().expect("a study's base pipeline has a train section");
    let arch = match arch {
        Some(a) => a,
        None => {
            let hidden = spec.hidden()?;
            ArchChoice { shape: shape_of(&hidden), hidden, zoo: None }
        }
    };
    let mode = match spec.mode {
        Mode::Ddnn => "ddnn",
        Mode::Pinn => "pinn",
        Mode::Itnn => "itnn",
    };
    Ok(Settings {
        architecture: label(&arch.hidden),
        shape: arch.shape,
        neurons: arch.hidden.iter().map(|l| l.1).sum(),
        layers: arch.hidden.len(),
        zoo: arch.zoo,
        mode: mode.into(),
        data: spec.rows,
        seed: spec.seed,
        windows: spec.windows,
        adaptive: spec.adaptive.is_some(),
        target: p.build.target.name().into(),
        precision: p.build.precision.clone(),
        set: BTreeMap::new(),
    })
}
