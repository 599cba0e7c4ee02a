//! `excite pipeline`: simulate → train → export → build → verify → package,
//! as one reproducible command that re-runs only what changed.
//!
//! Each stage writes its own folder under the run directory. A stage's input
//! hash covers its configuration section, its upstream stage's output hash
//! and the excite version; `pipeline.lock` records input and output hashes
//! per stage (DVC's dvc.lock is the model). A stage whose input hash is
//! unchanged and whose folder still hashes to the recorded output is
//! skipped. Every stage writes atomically, so an interrupted or failed stage
//! leaves earlier outputs intact, and training resumes from its checkpoint.

mod stages;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsio::write_atomic;
use crate::report::Reporter;
use crate::Error;
pub use stages::{BuildSection, ImportSection, PackageSection, VerifySection};

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Simulate,
    Train,
    Export,
    Build,
    Verify,
    Package,
}

impl Stage {
    pub const ALL: [Stage; 6] = [Stage::Simulate, Stage::Train, Stage::Export, Stage::Build, Stage::Verify, Stage::Package];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Simulate => "simulate",
            Stage::Train => "train",
            Stage::Export => "export",
            Stage::Build => "build",
            Stage::Verify => "verify",
            Stage::Package => "package",
        }
    }
}

/// A pipeline file, checked.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    /// Each stage's configuration section as JSON, for the stage hashes.
    sections: BTreeMap<Stage, String>,
    /// The simulate section, checked (its cell model loaded): what the simulate stage runs.
    pub dataset: crate::data::DatasetSpec,
    /// The training section, checked (none where the model is imported).
    pub train: Option<crate::train::TrainSpec>,
    /// A model trained elsewhere, in place of the train and export stages.
    pub import: Option<ImportSection>,
    pub build: BuildSection,
    pub verify: VerifySection,
    pub package: PackageSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    simulate: serde_norway::Value,
    #[serde(default)]
    train: Option<serde_norway::Value>,
    #[serde(default)]
    import: Option<ImportSection>,
    #[serde(default)]
    export: Option<serde_norway::Value>,
    #[serde(default)]
    build: BuildSection,
    #[serde(default)]
    verify: VerifySection,
    #[serde(default)]
    package: PackageSection,
}

impl Pipeline {
    pub fn from_file(path: &Path) -> Result<Pipeline, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_yaml_in(&text, path.parent().unwrap_or(Path::new("."))).map_err(|e| e.in_file(path))
    }

    /// A pipeline whose relative paths (an imported model, a signing key)
    /// are taken from `base`, the folder of the file it came from.
    pub fn from_yaml_in(text: &str, base: &Path) -> Result<Pipeline, Error> {
        let mut p = Self::parse(text, base)?;
        if let Some(i) = &mut p.import {
            if i.model.is_relative() {
                i.model = base.join(&i.model);
            }
        }
        if let Some(k) = &mut p.package.sign_key {
            if k.is_relative() {
                *k = base.join(&*k);
            }
        }
        Ok(p)
    }

    /// The imported cell model's sha256 (empty for a built-in model): part of
    /// the simulate stage's input and of a study point's name.
    pub fn cellml_sha256(&self) -> &str {
        match self.dataset.model.form() {
            crate::cell::Form::Imported(m) => &m.sha256,
            crate::cell::Form::Builtin(_) => "",
        }
    }

    /// A pipeline whose relative paths are taken from the working directory.
    pub fn from_yaml(text: &str) -> Result<Pipeline, Error> {
        Self::from_yaml_in(text, Path::new(""))
    }

    fn parse(text: &str, base: &Path) -> Result<Pipeline, Error> {
        let raw: RawPipeline = serde_norway::from_str(text)
            .map_err(|e| Error::format("<pipeline>", format!("not a valid pipeline file: {e}"), "compare with models/quick.yaml (sections simulate, train, build, verify, package)"))?;
        // Check the sections now, so a typo fails before any stage runs.
        let dataset = crate::data::DatasetSpec::from_yaml_in(text, base)?;
        let train = match (&raw.train, &raw.import) {
            (Some(_), None) => Some(crate::train::TrainSpec::from_yaml(text)?),
            (None, Some(i)) => {
                i.check()?;
                None
            }
            _ => return Err(Error::invalid("<pipeline>", "needs either a `train` section or an `import` section (a model trained elsewhere), not both or neither", "see models/quick.yaml for train, README (Bring your own model) for import")),
        };
        raw.build.check()?;
        raw.verify.check()?;
        fn json<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).expect("serialises")
        }
        let mut sections = BTreeMap::new();
        sections.insert(Stage::Simulate, json(&raw.simulate));
        sections.insert(Stage::Train, match &raw.import {
            Some(i) => json(i),
            None => json(&raw.train),
        });
        sections.insert(Stage::Export, json(&raw.export));
        sections.insert(Stage::Build, json(&raw.build));
        sections.insert(Stage::Verify, json(&raw.verify));
        sections.insert(Stage::Package, json(&raw.package));
        Ok(Pipeline { name: raw.name, sections, dataset, train, import: raw.import, build: raw.build, verify: raw.verify, package: raw.package })
    }
}

/// `pipeline.lock`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    pub stages: BTreeMap<Stage, LockEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockEntry {
    pub input: String,
    pub output: String,
}

pub const LOCK_FILE: &str = "pipeline.lock";
/// Where a verify stage over its budget leaves its report (the good one stays in verify/).
pub const VERIFY_REJECTED: &str = "verify.rejected";

/// Which stages to run and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Re-run these stages even when up to date (`Some(None)`: all).
    pub force: Option<Option<Stage>>,
    pub from: Option<Stage>,
    pub until: Option<Stage>,
    /// Print the plan only.
    pub dry_run: bool,
}

/// What happened to each stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageOutcome {
    pub stage: Stage,
    /// `ran`, `skipped` (up to date), `would run`, `up to date`, or `not selected`.
    pub status: String,
    pub seconds: f64,
}

/// Hash of every file under `dir` (relative names and contents), or None if it is missing.
pub fn hash_dir(dir: &Path) -> Option<String> {
    let files = crate::fsio::file_hashes(dir).ok()?;
    Some(crate::hash::sha256_parts(files.iter().flat_map(|(name, sha)| [name.as_bytes(), sha.as_bytes()])))
}

/// Runs the pipeline into `run_dir`.
pub fn run(p: &Pipeline, run_dir: &Path, opts: &Options, reporter: &dyn Reporter) -> Result<Vec<StageOutcome>, Error> {
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let lock_path = run_dir.join(LOCK_FILE);
    let mut lock: Lock = match std::fs::read_to_string(&lock_path) {
        Ok(t) => serde_json::from_str(&t).unwrap_or_default(),
        Err(_) => Lock::default(),
    };
    let from = opts.from.unwrap_or(Stage::Simulate);
    let until = opts.until.unwrap_or(Stage::Package);
    let mut upstream = String::new();
    let mut outcomes = Vec::new();
    let mut changed = false;
    for stage in Stage::ALL {
        let dir = run_dir.join(stage.name());
        let mut parts = vec![p.sections[&stage].as_str(), upstream.as_str(), env!("CARGO_PKG_VERSION"), stage.name()];
        if stage == Stage::Build {
            // the effective target too (the native fallback without ONNX Runtime)
            parts.push(stages::build_target(p).0.name());
        }
        // an imported model's content, not only its path
        let imported = match (&p.import, stage) {
            (Some(i), Stage::Train) => crate::hash::sha256_file(&i.model)?,
            (_, Stage::Simulate) => p.cellml_sha256().to_string(),
            _ => String::new(),
        };
        parts.push(&imported);
        let input = crate::hash::sha256_parts(parts.iter().map(|s| s.as_bytes()));
        let recorded = lock.stages.get(&stage).cloned();
        let current = hash_dir(&dir);
        let up_to_date = recorded.as_ref().is_some_and(|r| r.input == input && current.as_deref() == Some(r.output.as_str()));
        let forced = matches!(opts.force, Some(None)) || opts.force == Some(Some(stage));
        let selected = stage >= from && stage <= until;
        // Downstream inputs include upstream output hashes, so a re-run stage that
        // produced the same files leaves its successors up to date; a dry run
        // cannot know, and says they would run.
        let must_run = selected && (!up_to_date || forced || (opts.dry_run && changed));
        if !selected {
            outcomes.push(StageOutcome { stage, status: if up_to_date { "up to date".into() } else { "not selected".into() }, seconds: 0.0 });
            match recorded.filter(|_| up_to_date) {
                Some(r) => upstream = r.output,
                None if stage > until => break,
                None => {
                    return Err(Error::invalid("--from", format!("stage `{}` before `{}` has no up-to-date output", stage.name(), from.name()), format!("run the pipeline from `{}` first", stage.name())))
                }
            }
            continue;
        }
        if opts.dry_run {
            outcomes.push(StageOutcome { stage, status: if must_run { "would run".into() } else { "up to date".into() }, seconds: 0.0 });
            changed |= must_run;
            upstream = recorded.map(|r| r.output).unwrap_or_default();
            continue;
        }
        if !must_run {
            reporter.phase(&format!("{}: up to date, skipped", stage.name()));
            outcomes.push(StageOutcome { stage, status: "skipped".into(), seconds: 0.0 });
            upstream = recorded.expect("up to date").output;
            continue;
        }
        reporter.phase(&format!("{}: running", stage.name()));
        let start = std::time::Instant::now();
        stages::run(stage, p, run_dir, reporter).map_err(|e| match e {
            // name the pipeline stage in the message
            Error::Gate { problem, hint, .. } => Error::Gate { stage: format!("pipeline stage {}", stage.name()), problem, hint },
            other => other,
        })?;
        let output = hash_dir(&dir).ok_or_else(|| Error::io(&dir, std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        lock.stages.insert(stage, LockEntry { input, output: output.clone() });
        write_atomic(&lock_path, &serde_json::to_vec_pretty(&lock).expect("serialises"))?;
        outcomes.push(StageOutcome { stage, status: "ran".into(), seconds: start.elapsed().as_secs_f64() });
        upstream = output;
    }
    Ok(outcomes)
}
