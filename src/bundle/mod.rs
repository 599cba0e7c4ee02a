//! Bundles: what ships to other applications — the ONNX model, the built
//! engines, the verification report and `bundle.json` (cell model, inputs
//! and outputs with ranges, surrogate kind, precision, validated errors,
//! throughput, versions, sha256 of every file), as a folder and a `.tar.gz`.
//! [`Surrogate`] loads one and predicts with the best engine available
//! there; `ffi` exposes the same to C and C++.

pub mod archive;
pub mod ffi;
pub mod sign;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{ModelMeta, TimeMeta, VarRange};
use crate::engine::manifest::{BatchProfile, Manifest, Target};
use crate::engine::Engine;
use crate::fsio::{write_atomic, StagingDir};
use crate::onnx::mlp::Mlp;
use crate::train::Mode;
use crate::verify::{Budget, Problem, Report};
use crate::Error;
use sign::{Signed, SigningKey, TrustedKey, SIGNATURE_FILE};

pub const BUNDLE_FILE: &str = "bundle.json";
/// sha256 of every file of the bundle, `bundle.json` included, as sha256sum writes them.
pub const SUMS_FILE: &str = "SHA256SUMS";
pub const FORMAT: &str = "excite-bundle/1";
/// The setting that makes every [`Surrogate::load`] require a signature by one key.
pub const TRUSTED_KEY_VAR: &str = "EXCITE_TRUSTED_KEY";

const REPACKAGE: &str = "re-package the bundle with `excite pipeline`, or get it again from its source";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleEngine {
    /// Folder inside the bundle.
    pub dir: String,
    pub target: Target,
    pub precision: String,
    pub batch: BatchProfile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validated {
    pub passed: bool,
    pub budget: Budget,
    pub cells: usize,
    pub mae: BTreeMap<String, f64>,
    pub rmse: BTreeMap<String, f64>,
    pub max_abs_error: BTreeMap<String, f64>,
    pub engine_samples_per_s: f64,
    pub batch: usize,
    pub reference_samples_per_s: f64,
    pub speedup: f64,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: String,
    pub name: String,
    pub cell_model: ModelMeta,
    pub kind: Mode,
    /// Units of every input and output (the FitzHugh–Nagumo forms are dimensionless).
    pub units: String,
    pub inputs: Vec<VarRange>,
    pub outputs: Vec<VarRange>,
    pub time: TimeMeta,
    /// The ONNX model (physical units in and out).
    pub model: String,
    pub engines: Vec<BundleEngine>,
    pub validated: Validated,
    pub versions: BTreeMap<String, String>,
    /// sha256 of every other file in the bundle.
    pub files: BTreeMap<String, String>,
}

/// What the numbers going in and out are measured in: an imported model's
/// variables' own units, as its file names them.
fn units(p: &Problem) -> String {
    let crate::cell::Form::Imported(m) = p.model.form() else {
        return "dimensionless (time in the model's time unit)".into();
    };
    let eq = &m.equations;
    let of = |name: &str| -> String {
        if name == "t" {
            return eq.time.1.clone();
        }
        // a sampled initial value is named after its state (`membrane.V0`)
        let var = eq.find(name).or_else(|| name.strip_suffix('0').and_then(|s| eq.find(s)));
        var.map_or_else(|| "unknown".into(), |i| eq.vars[i].units.clone())
    };
    let list: Vec<String> = p.inputs.iter().chain(&p.outputs).map(|v| format!("{} in {}", v.name, of(&v.name))).collect();
    format!("as the CellML file: {}", list.join(", "))
}

/// What goes into a bundle: the exported model, one built engine folder and
/// the verification report folder of that engine.
#[derive(Debug, Clone, Copy)]
pub struct Contents<'a> {
    pub name: &'a str,
    pub onnx: &'a Path,
    pub engine: &'a Path,
    pub report: &'a Path,
    /// Write `<name>.tar.gz` beside the folder.
    pub tar: bool,
    /// Sign the bundle with this key ([`sign`]): folder and archive alike.
    pub sign: Option<&'a SigningKey>,
}

/// Packages `c` as `out/<name>/` (and `out/<name>.tar.gz`), replacing `out` only once complete.
pub fn package(c: &Contents, out: &Path) -> Result<(), Error> {
    let staging = StagingDir::new(out)?;
    let bundle = staging.path().join(c.name);
    std::fs::create_dir_all(&bundle).map_err(|e| Error::io(&bundle, e))?;
    let onnx = c.onnx;
    std::fs::copy(onnx, bundle.join("model.onnx")).map_err(|e| Error::io(onnx, e))?;
    let engine = Manifest::load(c.engine)?;
    let engine_dir = format!("engines/{}-{}", engine.target.name(), engine.precision.name());
    crate::fsio::copy_dir(c.engine, &bundle.join(&engine_dir))?;
    crate::fsio::copy_dir(c.report, &bundle.join("report"))?;
    let report_path = c.report.join(crate::verify::REPORT_FILE);
    let report: Report = serde_json::from_slice(&std::fs::read(&report_path).map_err(|e| Error::io(&report_path, e))?)
        .map_err(|e| Error::format(&report_path, format!("not a verification report: {e}"), "re-run the verify stage"))?;
    let problem = Problem::from_onnx(onnx)?;
    let by_var = |f: &dyn Fn(&crate::verify::VarReport) -> f64| report.variables.iter().map(|v| (v.name.clone(), f(v))).collect();
    let mut files = crate::fsio::file_hashes(&bundle)?;
    files.remove(BUNDLE_FILE);
    let manifest = BundleManifest {
        format: FORMAT.into(),
        name: c.name.into(),
        cell_model: problem.model_meta.clone(),
        kind: problem.kind,
        units: units(&problem),
        inputs: problem.inputs.clone(),
        outputs: problem.outputs.clone(),
        time: problem.time.clone(),
        model: "model.onnx".into(),
        engines: vec![BundleEngine { dir: engine_dir, target: engine.target, precision: engine.precision.name().into(), batch: engine.batch }],
        validated: Validated {
            passed: report.passed,
            budget: report.budget,
            cells: report.cells,
            mae: by_var(&|v| v.mae),
            rmse: by_var(&|v| v.rmse),
            max_abs_error: by_var(&|v| v.max_abs_error),
            engine_samples_per_s: report.engine_samples_per_s,
            batch: report.batch,
            reference_samples_per_s: report.reference_samples_per_s,
            speedup: report.speedup,
        },
        versions: [("excite".to_string(), env!("CARGO_PKG_VERSION").to_string()), ("onnxruntime".to_string(), engine.runtime.version.clone())].into(),
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("serialises");
    write_atomic(&bundle.join(BUNDLE_FILE), &json)?;
    let mut sums = manifest.files.clone();
    sums.insert(BUNDLE_FILE.into(), crate::hash::sha256_hex(&json));
    let sums_bytes = sums_text(&sums);
    write_atomic(&bundle.join(SUMS_FILE), sums_bytes.as_bytes())?;
    if let Some(key) = c.sign {
        sign::sign_sums(&bundle, sums_bytes.as_bytes(), key, &sign::default_comment(c.name))?;
    }
    if c.tar {
        archive::pack(&bundle, c.name, &staging.path().join(format!("{}.tar.gz", c.name)))?;
    }
    staging.commit()
}

/// A bundle opened and checked by [`open`].
#[derive(Debug, Clone)]
pub struct Opened {
    /// The bundle folder (for an archive, its unpacked copy in the cache).
    pub dir: PathBuf,
    pub manifest: BundleManifest,
    pub signed: Signed,
    /// The bytes of `SHA256SUMS` that were checked (and signed, where signed).
    pub sums: Vec<u8>,
}

/// Opens a bundle folder or `.tar.gz` (unpacked once into the per-user
/// cache, [`archive::extract`]) and checks it: every path its manifest names
/// stays inside it, only regular files are present, and every file matches
/// `SHA256SUMS` (which covers `bundle.json` too) and `bundle.json`'s list.
/// With a `trusted` key, the bundle must carry that key's signature over
/// `SHA256SUMS` ([`sign`]); an unsigned or otherwise signed bundle is refused.
pub fn open(path: &Path, trusted: Option<&TrustedKey>) -> Result<Opened, Error> {
    let dir = if path.is_file() { archive::extract(path, &archive::Limits::from_env())? } else { path.to_path_buf() };
    let mut found = crate::fsio::file_hashes(&dir)?;
    let sums = dir.join(SUMS_FILE);
    if found.remove(SUMS_FILE).is_none() {
        return Err(Error::format(&sums, "missing: the bundle's checksums of every file", REPACKAGE));
    }
    found.remove(SIGNATURE_FILE);
    // one read: the bytes whose signature is checked are the bytes parsed
    let bytes = std::fs::read(&sums).map_err(|e| Error::io(&sums, e))?;
    let signed = sign::check(&dir, &bytes, trusted)?;
    let listed = std::str::from_utf8(&bytes).ok().and_then(parse_sums).ok_or_else(|| Error::format(&sums, "not a list of `sha256  file` lines", REPACKAGE))?;
    crate::fsio::check_hashes(&dir, SUMS_FILE, &listed, &found, true, REPACKAGE)?;
    let mpath = dir.join(BUNDLE_FILE);
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let m: BundleManifest = serde_json::from_str(&text).map_err(|e| Error::format(&mpath, format!("not a bundle manifest ({FORMAT}): {e}"), "package one with `excite pipeline`"))?;
    crate::fsio::confined(&dir, &m.model, "bundle.json `model`")?;
    for e in &m.engines {
        crate::fsio::confined(&dir, &e.dir, "bundle.json `engines[].dir`")?;
    }
    found.remove(BUNDLE_FILE);
    crate::fsio::check_hashes(&dir, BUNDLE_FILE, &m.files, &found, true, REPACKAGE)?;
    Ok(Opened { dir, manifest: m, signed, sums: bytes })
}

/// Signs a bundle folder or `.tar.gz` with `key` ([`sign`] has the format):
/// checks every file first, then writes `SHA256SUMS.minisig` into the folder,
/// or rewrites the archive with it inside (atomically; the old archive stays
/// on any failure). `comment` is the signed comment; by default the time,
/// the file and the bundle's name.
pub fn sign_bundle(path: &Path, key: &SigningKey, comment: Option<&str>) -> Result<sign::Signature, Error> {
    let opened = open(path, None)?;
    let comment = comment.map_or_else(|| sign::default_comment(&opened.manifest.name), str::to_string);
    // the checksums just checked are the ones signed
    let bytes = &opened.sums;
    if !path.is_file() {
        return sign::sign_sums(&opened.dir, bytes, key, &comment);
    }
    // an archive: a signed copy of its folder, packed again in its place
    let scratch = sign::scratch_dir()?;
    let result = (|| {
        let name = opened.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let copy = scratch.join(&name);
        crate::fsio::copy_dir(&opened.dir, &copy)?;
        let signature = sign::sign_sums(&copy, bytes, key, &comment)?;
        archive::pack(&copy, &name, path)?;
        Ok(signature)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// `SHA256SUMS` in sha256sum's format: `<hex>  <file>` a line.
fn sums_text(files: &BTreeMap<String, String>) -> String {
    files.iter().map(|(f, h)| format!("{h}  {f}\n")).collect()
}

fn parse_sums(text: &str) -> Option<BTreeMap<String, String>> {
    text.lines().filter(|l| !l.is_empty()).map(|l| l.split_once("  ").map(|(h, f)| (f.to_string(), h.to_string()))).collect()
}

/// A bundled surrogate ready to predict: `Surrogate::load(path)?.predict(&x)?`.
pub struct Surrogate {
    pub manifest: BundleManifest,
    engine: Box<dyn Engine>,
    engine_name: String,
    /// The network as dense layers, for derivatives (None for a
    /// time-windowed model, which is more than one MLP).
    network: Option<Mlp>,
}

impl Surrogate {
    /// Loads a bundle (folder or `.tar.gz`) and opens the best engine that
    /// works here: TensorRT, then CUDA, then ONNX Runtime CPU, then excite's
    /// own reference interpreter, which needs no runtime library.
    ///
    /// With `EXCITE_TRUSTED_KEY` set (a minisign public key file), this is
    /// [`Surrogate::load_trusted`] with that key: a host application, C or
    /// Python, then loads only bundles signed by it, without a code change.
    pub fn load(path: impl AsRef<Path>) -> Result<Surrogate, Error> {
        match std::env::var_os(TRUSTED_KEY_VAR).filter(|v| !v.is_empty()) {
            Some(key) => Self::load_trusted(path, &TrustedKey::from_file(Path::new(&key)).map_err(|e| Error::invalid(TRUSTED_KEY_VAR, e.to_string(), "point it at a minisign public key file, or unset it"))?),
            None => Self::from_opened(open(path.as_ref(), None)?),
        }
    }

    /// [`Surrogate::load`] for a bundle that must be signed by `trusted`:
    /// an unsigned bundle, another key's signature or any change after
    /// signing is refused, naming which.
    pub fn load_trusted(path: impl AsRef<Path>, trusted: &TrustedKey) -> Result<Surrogate, Error> {
        Self::from_opened(open(path.as_ref(), Some(trusted))?)
    }

    fn from_opened(opened: Opened) -> Result<Surrogate, Error> {
        let Opened { dir, manifest, .. } = opened;
        let model = crate::fsio::confined(&dir, &manifest.model, "bundle.json `model`")?;
        let parsed = crate::onnx::read(&model)?;
        let network = Mlp::from_model(&parsed).ok();
        let rank = |t: Target| match t {
            Target::Tensorrt => 0,
            Target::NativeCuda => 1,
            Target::Cuda => 1,
            Target::NativeCpu => 2,
            Target::Cpu => 3,
            Target::Reference => 4,
        };
        let mut engines = manifest.engines.clone();
        engines.sort_by_key(|e| rank(e.target));
        for e in &engines {
            if let Ok((m, engine)) = crate::engine::open(&crate::fsio::confined(&dir, &e.dir, "bundle.json `engines[].dir`")?) {
                let name = format!("{} {} ({})", engine.info().backend, m.precision.name(), e.dir);
                return Ok(Surrogate { manifest, engine, engine_name: name, network });
            }
        }
        let engine = crate::onnx::canonical(parsed).and_then(crate::onnx::Interpreter::new).map_err(|e| e.in_file(&model))?;
        Ok(Surrogate { manifest, engine: Box::new(engine), engine_name: "excite-reference fp32 (model.onnx)".into(), network })
    }

    /// A surrogate of `manifest`'s inputs and outputs that predicts with
    /// `engine` (one the host built), named `name` in [`Surrogate::engine`].
    pub fn with_engine(manifest: BundleManifest, engine: Box<dyn Engine>, name: &str) -> Surrogate {
        Surrogate { manifest, engine, engine_name: name.to_string(), network: None }
    }

    /// d outputs / d inputs per row of `x`: [rows][outputs][inputs], exact
    /// derivatives of the bundled network ([`Mlp::jacobian`], f64 rounded to f32).
    pub fn jacobian(&self, x: &[f32]) -> Result<Vec<f32>, Error> {
        let net = self.network.as_ref().ok_or_else(|| Error::invalid("jacobian", "this bundle's model is not one MLP (a time-windowed surrogate switches networks at window edges)", "differentiate per window, or use finite differences"))?;
        Ok(net.jacobian(x, self.rows(x)?).into_iter().map(|v| v as f32).collect())
    }

    /// How many rows `x` holds; an error naming the inputs unless whole rows.
    fn rows(&self, x: &[f32]) -> Result<usize, Error> {
        let n = self.inputs();
        if n == 0 || x.len() % n != 0 {
            return Err(Error::invalid("inputs", format!("{} values are not whole rows of {n} inputs", x.len()), format!("pass rows × {n} values: {}", self.manifest.inputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", "))));
        }
        Ok(x.len() / n)
    }

    /// The parts: manifest, engine, its name, and the network (for hosts
    /// that keep the engine themselves, like the Python package).
    pub fn into_parts(self) -> (BundleManifest, Box<dyn Engine>, String, Option<Mlp>) {
        (self.manifest, self.engine, self.engine_name, self.network)
    }

    /// Outputs for `x`: rows of `inputs()` values in physical units, row-major.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>, Error> {
        let rows = self.rows(x)?;
        self.engine.run(x, rows)
    }

    pub fn inputs(&self) -> usize {
        self.manifest.inputs.len()
    }

    pub fn outputs(&self) -> usize {
        self.manifest.outputs.len()
    }

    /// The engine in use, e.g. `onnxruntime-cpu fp32 (engines/cpu-fp32)`.
    pub fn engine(&self) -> &str {
        &self.engine_name
    }
}
