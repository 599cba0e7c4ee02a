//! The training configuration: the YAML a user writes and its checked form.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::train::arch::{self, Activation, Layer, Shape};
use crate::Error;

/// How the surrogate learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Data-driven: MSE against solver data (the paper's L_D).
    Ddnn,
    /// Physics-informed: λ_D·L_D + λ_P·L_physics + λ_B·L_B.
    Pinn,
    /// Iterative: the one-step map state(t) → state(t + Δ), on an ITNN dataset.
    Itnn,
}

/// Hidden layers: spelled out, a shape at a neuron budget, or a zoo entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum HiddenSpec {
    Layers {
        hidden: Vec<Layer>,
    },
    Shaped {
        shape: Shape,
        layers: usize,
        budget: usize,
        activation: Activation,
    },
    Zoo {
        zoo: usize,
        zoo_file: Option<PathBuf>,
    },
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    Constant,
    /// Multiply by `factor` after `patience` validations without improvement (the authors' choice).
    Plateau {
        factor: f64,
        patience: usize,
        min_lr: f64,
    },
    /// Cosine decay from `lr` to `min_lr` over the run.
    Cosine {
        min_lr: f64,
    },
}

/// Loss weights for PINN training (the authors used 10, 1, 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    pub data: f64,
    pub physics: f64,
    pub initial: f64,
}

/// Adaptive point density: every `every` steps, the `fraction` of training
/// rows (or collocation points) with the largest error are drawn `boost`
/// times as often.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adaptive {
    pub every: usize,
    pub fraction: f64,
    pub boost: f64,
}

/// The training section as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub name: String,
    /// Dataset folder written by `excite simulate`.
    pub dataset: PathBuf,
    pub mode: Mode,
    pub architecture: HiddenSpec,
    pub steps: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    #[serde(default = "default_val_every")]
    pub val_every: usize,
    /// Validations without improvement before stopping; 0 trains all steps.
    #[serde(default)]
    pub patience: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_weights")]
    pub loss: LossWeights,
    /// Where a PINN step evaluates the physics residual: at this many fresh
    /// points drawn uniformly over the window, or (`batch`) at the
    /// mini-batch's own rows, as the paper's Eq. 2 writes it.
    #[serde(default)]
    pub collocation: Collocation,
    /// Initial-condition rows per PINN step (the first of the residual's
    /// points moved to t = 0); all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_points: Option<usize>,
    /// A PINN's residual reads each state clamped to the range the dataset
    /// holds it in, so the equations stay in their domain where an
    /// untrained network's outputs stray (a concentration that a logarithm
    /// reads stays positive); inside the range it changes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clamp_states: bool,
    /// ITNN: Gaussian noise of this standard deviation (in each state's
    /// unit scale, where the data span −1 to 1) added to the state inputs of
    /// every training row, the target still the true next state: the map
    /// learns to pull a slightly wrong state back toward the trajectory,
    /// which is what a rollout (fed its own outputs) needs. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_noise: f64,
    #[serde(default)]
    pub adaptive: Option<Adaptive>,
    /// Time-domain splitting: this many sub-models over consecutive windows of t.
    #[serde(default = "one")]
    pub windows: usize,
    /// Train on this many of the dataset's training rows (a seeded random
    /// subset), for studies of scarce data; all rows when absent.
    #[serde(default)]
    pub rows: Option<usize>,
    /// Where to train: `cpu` (burn's flex backend) or `cuda` (needs a build with `--features gpu-train`).
    #[serde(default)]
    pub device: TrainDevice,
}

/// Where a PINN step evaluates the physics residual (`collocation:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collocation {
    /// This many fresh points per step, uniform over the window and the inputs' ranges.
    Points(usize),
    /// At the mini-batch's rows.
    Batch,
}

impl Default for Collocation {
    fn default() -> Self {
        Collocation::Points(default_batch())
    }
}

impl Collocation {
    /// The number of residual points of a step with `batch` rows.
    pub fn count(self, batch: usize) -> usize {
        match self {
            Collocation::Points(n) => n,
            Collocation::Batch => batch,
        }
    }
}

impl Serialize for Collocation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Collocation::Points(n) => s.serialize_u64(*n as u64),
            Collocation::Batch => s.serialize_str("batch"),
        }
    }
}

impl<'de> Deserialize<'de> for Collocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Points(usize),
            Word(String),
        }
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("collocation: give a number of points per step, or `batch` for the mini-batch's own rows"))? {
            Raw::Points(n) => Ok(Collocation::Points(n)),
            Raw::Word(w) if w == "batch" => Ok(Collocation::Batch),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("collocation: `{w}` is neither a number of points nor `batch`"))),
        }
    }
}

/// The burn backend training runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainDevice {
    #[default]
    Cpu,
    Cuda,
}

impl TrainDevice {
    /// The burn device (without autodiff), or why this build cannot provide it.
    pub fn burn_device(self) -> Result<burn::tensor::Device, Error> {
        match self {
            TrainDevice::Cpu => Ok(burn::tensor::Device::flex()),
            #[cfg(feature = "gpu-train")]
            TrainDevice::Cuda => Ok(burn::tensor::Device::cuda(0usize)),
            #[cfg(not(feature = "gpu-train"))]
            TrainDevice::Cuda => Err(Error::unavailable(
                "device: cuda",
                "this excite was built without a GPU training backend",
                "rebuild with `cargo build --release --features gpu-train` (burn's CUDA backend), or set device: cpu",
            )),
        }
    }
}

fn default_batch() -> usize {
    1024
}
fn default_lr() -> f64 {
    1e-3
}
fn default_schedule() -> Schedule {
    Schedule::Plateau {
        factor: 0.5,
        patience: 10,
        min_lr: 1e-6,
    }
}
fn default_val_every() -> usize {
    200
}
fn default_weights() -> LossWeights {
    LossWeights::default()
}

impl Default for LossWeights {
    /// λ_D = 10, λ_P = 1, λ_B = 1.
    fn default() -> Self {
        LossWeights {
            data: 10.0,
            physics: 1.0,
            initial: 1.0,
        }
    }
}
fn one() -> usize {
    1
}

impl TrainSpec {
    /// Reads and checks a YAML file; a relative dataset path is taken from the working directory.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_yaml(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and checks YAML text: a training configuration, or a pipeline
    /// file whose `train` section is one (name from the top, dataset from the
    /// pipeline's simulate stage under runs/<name>).
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let bad = |e: serde_norway::Error| {
            Error::format("<config>", format!("not a valid training configuration: {e}"), "compare with the train section of models/quick.yaml")
        };
        let value: serde_norway::Value = serde_norway::from_str(text).map_err(bad)?;
        let name = value.get("name").and_then(|n| n.as_str()).unwrap_or("run").to_string();
        let dataset = format!("runs/{name}/simulate");
        let value = crate::yaml::section(value, "train", &[("dataset", &dataset)]);
        let spec: TrainSpec = serde_norway::from_value(value).map_err(bad)?;
        spec.check()?;
        Ok(spec)
    }

    pub fn check(&self) -> Result<(), Error> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    field,
                    format!("{v} is not a positive number"),
                    "give a value > 0",
                ))
            }
        };
        positive("lr", self.lr)?;
        for (f, v) in [
            ("steps", self.steps),
            ("batch", self.batch),
            ("val_every", self.val_every),
            ("collocation", self.collocation.count(1)),
            ("initial_points", self.initial_points.unwrap_or(1)),
            ("windows", self.windows),
            ("rows", self.rows.unwrap_or(1)),
        ] {
            if v == 0 {
                return Err(Error::invalid(
                    f,
                    "must be at least 1",
                    format!("set {f} ≥ 1"),
                ));
            }
        }
        for (f, v) in [
            ("loss.data", self.loss.data),
            ("loss.physics", self.loss.physics),
            ("loss.initial", self.loss.initial),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    f,
                    format!("{v} is not a weight ≥ 0"),
                    "use weights such as data: 10, physics: 1, initial: 1",
                ));
            }
        }
        match self.schedule {
            Schedule::Plateau { factor, min_lr, .. } => {
                if !(factor > 0.0 && factor < 1.0) {
                    return Err(Error::invalid(
                        "schedule.factor",
                        format!("{factor} is not in (0, 1)"),
                        "use factor: 0.5",
                    ));
                }
                positive("schedule.min_lr", min_lr)?;
            }
            Schedule::Cosine { min_lr } => positive("schedule.min_lr", min_lr)?,
            Schedule::Constant => {}
        }
        if !(self.input_noise.is_finite() && self.input_noise >= 0.0) {
            return Err(Error::invalid("input_noise", format!("{} is not a standard deviation ≥ 0", self.input_noise), "use a small value such as input_noise: 0.005"));
        }
        if self.input_noise > 0.0 && self.mode != Mode::Itnn {
            return Err(Error::invalid("input_noise", format!("perturbs an ITNN's state inputs; this is a {:?}", self.mode), "remove input_noise, or train mode: itnn"));
        }
        if let Some(a) = self.adaptive {
            if a.every == 0 || !(a.fraction > 0.0 && a.fraction < 1.0) || !(a.boost >= 1.0) {
                return Err(Error::invalid(
                    "adaptive",
                    "needs every ≥ 1, fraction in (0, 1), boost ≥ 1",
                    "use every: 500, fraction: 0.1, boost: 4",
                ));
            }
        }
        Ok(())
    }

    /// The hidden layers this spec names.
    pub fn hidden(&self) -> Result<Vec<Layer>, Error> {
        match &self.architecture {
            HiddenSpec::Layers { hidden } => Ok(hidden.clone()),
            HiddenSpec::Shaped {
                shape,
                layers,
                budget,
                activation,
            } => arch::shaped(*shape, *layers, *budget, *activation),
            HiddenSpec::Zoo { zoo, zoo_file } => {
                let path = zoo_file.clone().unwrap_or_else(|| {
                    PathBuf::from("../shared/reference/ufjf-results/model-zoo-800.csv")
                });
                let entries = arch::load_zoo(&path)?;
                entries
                    .into_iter()
                    .find(|e| e.id == *zoo)
                    .map(|e| e.hidden)
                    .ok_or_else(|| {
                        Error::invalid(
                            "architecture.zoo",
                            format!("no entry {zoo} in {}", path.display()),
                            "use an id from the zoo file's first column",
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<TrainSpec, Error> {
        TrainSpec::from_yaml(&format!("name: t\ndataset: d\nmode: pinn\narchitecture:\n  hidden: [[tanh, 8]]\nsteps: 10\n{extra}"))
    }

    /// `input_noise` is a standard deviation ≥ 0 for an ITNN, refused for
    /// other modes (it perturbs an ITNN's state inputs) and absent when 0.
    #[test]
    fn input_noise_is_an_itnns() {
        let itnn = |extra: &str| TrainSpec::from_yaml(&format!("name: t\ndataset: d\nmode: itnn\narchitecture:\n  hidden: [[tanh, 8]]\nsteps: 10\n{extra}"));
        assert_eq!(itnn("").unwrap().input_noise, 0.0);
        let s = itnn("input_noise: 0.01").unwrap();
        s.check().unwrap();
        assert_eq!(s.input_noise, 0.01);
        assert!(!serde_json::to_string(&itnn("").unwrap()).unwrap().contains("input_noise"));
        for bad in ["input_noise: -0.1", "input_noise: .nan"] {
            let e = itnn(bad).unwrap_err().to_string();
            assert!(e.contains("input_noise") && e.contains("standard deviation"), "{bad}: {e}");
        }
        let e = parse("input_noise: 0.01").unwrap_err().to_string();
        assert!(e.contains("input_noise") && e.contains("Pinn"), "{e}");
    }

    /// `collocation` takes a count or `batch`; anything else, or zero, is refused by name.
    #[test]
    fn collocation_is_a_count_or_batch() {
        assert_eq!(parse("").unwrap().collocation, Collocation::Points(1024));
        assert_eq!(parse("collocation: 96").unwrap().collocation, Collocation::Points(96));
        let s = parse("collocation: batch\ninitial_points: 7").unwrap();
        assert_eq!((s.collocation, s.initial_points), (Collocation::Batch, Some(7)));
        assert_eq!(s.collocation.count(33), 33);
        // it serialises as it was written (a pipeline's content hash sees the same text)
        assert_eq!(serde_json::to_string(&s.collocation).unwrap(), "\"batch\"");
        assert_eq!(serde_json::to_string(&Collocation::Points(96)).unwrap(), "96");
        for (bad, says) in [("collocation: lots", "`lots` is neither"), ("collocation: 0", "collocation"), ("initial_points: 0", "initial_points"), ("collocation: -3", "number of points")] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
