//! The six stages: each reads its upstream stage's folder and writes its own.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::manifest::Calibrator;
use crate::build::{BatchChoice, BuildSpec, PrecisionChoice};
use crate::engine::manifest::Target;
use crate::pipeline::{Pipeline, Stage};
use crate::report::Reporter;
use crate::verify::{Budget, Settings};
use crate::Error;

/// `build:` — as the flags of `excite build`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildSection {
    pub target: Target,
    /// fp32, fp16, int8 or auto.
    pub precision: String,
    /// N, MIN:OPT:MAX or auto.
    pub batch: String,
    pub batch_cap: usize,
    pub max_latency: Option<f64>,
    pub calibrator: Calibrator,
    pub calibration_rows: usize,
}

impl Default for BuildSection {
    fn default() -> Self {
        BuildSection { target: Target::Cpu, precision: "fp32".into(), batch: "1:1024:65536".into(), batch_cap: 65536, max_latency: None, calibrator: Calibrator::Entropy, calibration_rows: 4096 }
    }
}

impl BuildSection {
    pub fn check(&self) -> Result<(), Error> {
        self.precision_choice()?;
        self.batch_choice()?;
        Ok(())
    }

    fn precision_choice(&self) -> Result<PrecisionChoice, Error> {
        PrecisionChoice::parse(&self.precision, "build.precision")
    }

    fn batch_choice(&self) -> Result<BatchChoice, Error> {
        BatchChoice::parse(&self.batch, self.batch_cap, self.max_latency, "build.batch")
    }
}

/// `verify:` — the accuracy gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySection {
    pub cells: usize,
    pub max_mae: Option<f64>,
    pub max_abs_error: Option<f64>,
    pub seed: u64,
    pub seconds: f64,
}

impl Default for VerifySection {
    fn default() -> Self {
        VerifySection { cells: 200, max_mae: None, max_abs_error: None, seed: Settings::default().seed, seconds: 1.0 }
    }
}

impl VerifySection {
    pub fn check(&self) -> Result<(), Error> {
        for (f, v) in [("verify.max_mae", self.max_mae), ("verify.max_abs_error", self.max_abs_error)] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(Error::invalid(f, format!("{v} is not a number ≥ 0"), "give an error budget such as 0.02"));
                }
            }
        }
        if self.cells == 0 {
            return Err(Error::invalid("verify.cells", "must be at least 1", "use cells: 200"));
        }
        Ok(())
    }

    fn settings(&self) -> Settings {
        Settings { cells: self.cells, seed: self.seed, budget: Budget { max_mae: self.max_mae, max_abs_error: self.max_abs_error }, seconds: self.seconds, ..Settings::default() }
    }
}

/// `import:` — a model trained elsewhere (any MLP-shaped ONNX file), in
/// place of `train:`. The train stage checks it; the export stage writes it
/// in excite's form with the problem of the simulate stage's dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSection {
    /// The ONNX file (relative to the pipeline file).
    pub model: std::path::PathBuf,
    /// `ddnn` (outputs at (t, parameters)) or `itnn` (one step of the state).
    #[serde(default = "ImportSection::ddnn")]
    pub kind: String,
}

impl ImportSection {
    fn ddnn() -> String {
        "ddnn".into()
    }

    pub fn check(&self) -> Result<(), Error> {
        if !matches!(self.kind.as_str(), "ddnn" | "itnn") {
            return Err(Error::invalid("import.kind", format!("`{}` is not ddnn or itnn", self.kind), "kind: ddnn"));
        }
        Ok(())
    }
}

/// `package:` — the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackageSection {
    /// Also write `<name>.tar.gz`.
    pub tar: bool,
    /// Sign the bundle with this minisign secret key (relative to the
    /// pipeline file; an encrypted key's password from EXCITE_KEY_PASSWORD).
    pub sign_key: Option<std::path::PathBuf>,
}

impl Default for PackageSection {
    fn default() -> Self {
        PackageSection { tar: true, sign_key: None }
    }
}

pub(super) fn run(stage: Stage, p: &Pipeline, run_dir: &Path, reporter: &dyn Reporter) -> Result<(), Error> {
    let dir = |s: Stage| run_dir.join(s.name());
    match stage {
        Stage::Simulate => {
            let dataset = crate::data::generate(&p.dataset, 0, reporter)?;
            dataset.write(&dir(Stage::Simulate))?;
        }
        Stage::Train if p.import.is_some() => {
            // the imported model, checked to be an MLP excite reads; recorded by content
            let i = p.import.as_ref().expect("checked");
            crate::onnx::canonical(crate::onnx::read(&i.model)?).map_err(|e| e.in_file(&i.model))?;
            let staging = crate::fsio::StagingDir::new(&dir(Stage::Train))?;
            let record = serde_json::json!({"imported": i.model, "sha256": crate::hash::sha256_file(&i.model)?, "kind": i.kind});
            crate::fsio::write_atomic(&staging.path().join("import.json"), &serde_json::to_vec_pretty(&record).expect("serialises"))?;
            staging.commit()?;
        }
        Stage::Export if p.import.is_some() => {
            let i = p.import.as_ref().expect("checked");
            let problem = crate::data::problem::ProblemMeta::from_dataset(&dir(Stage::Simulate), &i.kind)?;
            let m = crate::onnx::annotate(crate::onnx::read(&i.model)?, &problem).map_err(|e| e.in_file(&i.model))?;
            let staging = crate::fsio::StagingDir::new(&dir(Stage::Export))?;
            crate::fsio::write_atomic(&staging.path().join("model.onnx"), &m.to_bytes())?;
            staging.commit()?;
        }
        Stage::Train => {
            let mut spec = p.train.clone().expect("a pipeline without import has a checked train section");
            spec.dataset = dir(Stage::Simulate);
            // An interrupted run left its checkpoint in the staging folder: continue it.
            let out = dir(Stage::Train);
            let staged = crate::fsio::StagingDir::resumable_path(&out).join("checkpoint-0").join("state.json");
            let resume = staged.exists();
            if resume {
                reporter.note("train: resuming the interrupted run from its checkpoint");
            }
            crate::train::train(&spec, &out, resume, reporter)?;
        }
        Stage::Export => {
            let out = dir(Stage::Export);
            let staging = crate::fsio::StagingDir::new(&out)?;
            crate::export::write(&dir(Stage::Train), &staging.path().join("model.onnx"))?;
            staging.commit()?;
        }
        Stage::Build => {
            let b = &p.build;
            let (target, why) = build_target(p);
            if let Some(why) = why {
                reporter.note(&why);
            }
            let spec = BuildSpec {
                target,
                precision: b.precision_choice()?,
                batch: b.batch_choice()?,
                calibrator: b.calibrator,
                calibration_data: Some(dir(Stage::Simulate)),
                calibration_rows: b.calibration_rows,
                verify: Some(Settings { cells: p.verify.cells.min(100), reference_cells: 20_000, seconds: 0.3, ..p.verify.settings() }),
                seconds: 0.3,
                problem: None,
            };
            crate::build::build(&dir(Stage::Export).join("model.onnx"), &dir(Stage::Build), &spec, reporter)?;
        }
        Stage::Verify => {
            let (_, mut engine) = crate::engine::open(&dir(Stage::Build))?;
            let model = dir(Stage::Build).join("model.onnx");
            let report = crate::verify::verify(&model, engine.as_mut(), &p.verify.settings(), reporter)?;
            if let Some(f) = &report.failure {
                // The previous good report stays; the failing one goes beside it.
                let rejected = run_dir.join(super::VERIFY_REJECTED);
                crate::verify::write(&report, &rejected)?;
                return Err(Error::Gate {
                    stage: "verify".into(),
                    problem: format!("the engine failed the accuracy gate: {f}"),
                    hint: format!("see {}/report.md; relax verify.max_mae / max_abs_error, or improve training", rejected.display()),
                });
            }
            crate::verify::write(&report, &dir(Stage::Verify))?;
        }
        Stage::Package => {
            let onnx = dir(Stage::Export).join("model.onnx");
            let key = match &p.package.sign_key {
                Some(k) => Some(crate::bundle::sign::SigningKey::from_file(k, || std::env::var("EXCITE_KEY_PASSWORD").ok())?),
                None => None,
            };
            let contents = crate::bundle::Contents { name: &p.name, onnx: &onnx, engine: &dir(Stage::Build), report: &dir(Stage::Verify), tar: p.package.tar, sign: key.as_ref() };
            crate::bundle::package(&contents, &dir(Stage::Package))?
        }
    }
    Ok(())
}

/// The target the build stage builds, and why it differs from the file's:
/// without ONNX Runtime a CPU engine falls back to excite's native engine, so
/// the pipeline needs nothing but cargo. Part of the build stage's input
/// hash, so installing ONNX Runtime later rebuilds the engine.
pub fn build_target(p: &Pipeline) -> (Target, Option<String>) {
    match (p.build.target, crate::engine::ort::runtime()) {
        (Target::Cpu, Err(e)) => (Target::NativeCpu, Some(format!("{e}; building the excite native-cpu engine instead (hint: {})", e.hint().unwrap_or("")))),
        (t, _) => (t, None),
    }
}
