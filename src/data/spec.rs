//! The dataset configuration: the YAML a user writes ([`RawSpec`]) and the
//! checked form the rest of excite works with ([`DatasetSpec`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cell::{self, Model};
use crate::data::sampling::Method;
use crate::solve::{Device, Scheme, TimeGrid};
use crate::Error;

/// What a surrogate learns from the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Inputs `(t, sampled initial states and parameters)` → state at `t`
    /// (the paper's problems A, B and C).
    Trajectory,
    /// Inputs `(state at t, sampled parameters)` → state one sample later.
    Itnn,
}

/// The dataset section as written in YAML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// A name for the dataset (used in metadata and default paths).
    pub name: String,
    /// A built-in cell model's name (`excite models` lists them), or
    /// `{cellml: FILE}` to import one (a relative path is taken from the
    /// configuration file's folder).
    pub model: cell::ModelRef,
    /// `euler` (default) or `rush-larsen` (imported models).
    #[serde(default)]
    pub scheme: Option<Scheme>,
    /// The states to learn, by name (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Parameter values replacing the model's defaults.
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    pub time: RawTime,
    /// Fixed initial values of state variables that are not sampled (default 0).
    #[serde(default)]
    pub initial: BTreeMap<String, f64>,
    /// Sampled initial states and parameters: name → [low, high].
    #[serde(default)]
    pub sample: BTreeMap<String, [f64; 2]>,
    /// Number of cells (trajectories) to sample; must be 1 when nothing is sampled.
    #[serde(default)]
    pub cells: Option<usize>,
    #[serde(default)]
    pub sampling: Option<Method>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub split: Option<Split>,
    #[serde(default)]
    pub device: Option<Device>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTime {
    pub t_end: f64,
    pub dt: f64,
    pub sample_every: f64,
}

/// Fractions of the dataset in each split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub train: f64,
    pub val: f64,
    #[serde(default)]
    pub test: f64,
}

/// A sampled dimension: an initial state or a parameter, and its range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampled {
    /// `u0` for the initial value of state `u`, or the parameter's name.
    pub name: String,
    pub target: Target,
    pub range: [f64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "of", content = "index")]
pub enum Target {
    State(usize),
    Param(usize),
}

/// A checked dataset specification.
#[derive(Clone)]
pub struct DatasetSpec {
    pub name: String,
    pub model: &'static dyn Model,
    /// The CellML file this configuration named for an imported model
    /// (absolute where it resolves): what the dataset records. The model
    /// itself is shared by every file of the same content in a process.
    pub cellml_file: Option<PathBuf>,
    pub kind: Kind,
    /// Parameter values, in the model's order (defaults with overrides applied).
    pub params: Vec<f64>,
    pub grid: TimeGrid,
    pub scheme: Scheme,
    /// The states learnt (indices in the model's order; every state for an ITNN).
    pub outputs: Vec<usize>,
    /// Initial state of every cell before sampling, in the model's order.
    pub initial: Vec<f64>,
    /// Sampled dimensions, states first (model order), then parameters.
    pub sampled: Vec<Sampled>,
    pub cells: usize,
    pub method: Method,
    pub seed: u64,
    pub split: Split,
    pub device: Device,
}

impl std::fmt::Debug for DatasetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetSpec")
            .field("name", &self.name)
            .field("model", &self.model.info().name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The problem-A preset built into the binary, used when no config is given.
pub const QUICK_PRESET: &str = include_str!("../../models/quick.yaml");

impl DatasetSpec {
    /// Reads and checks a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_yaml_in(&text, path.parent().unwrap_or(Path::new(""))).map_err(|e| e.in_file(path))
    }

    /// Parses and checks YAML text, relative paths taken from the working directory.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        Self::from_yaml_in(text, Path::new(""))
    }

    /// Whether the model's equations read time (an ITNN then takes it as an input).
    pub fn reads_time(&self) -> bool {
        match self.model.form() {
            cell::Form::Imported(m) => m.equations.reads_time(),
            cell::Form::Builtin(_) => false,
        }
    }

    /// Parses and checks YAML text: a dataset configuration, or a pipeline
    /// file whose `simulate` section is one (its `name` comes from the top);
    /// a relative CellML path is taken from `base`.
    pub fn from_yaml_in(text: &str, base: &Path) -> Result<Self, Error> {
        let bad = |e: serde_norway::Error| {
            Error::format(
                "<config>",
                format!("not a valid dataset configuration: {e}"),
                "compare with the presets in models/, for example models/problem-a.yaml",
            )
        };
        let value: serde_norway::Value = serde_norway::from_str(text).map_err(bad)?;
        let value = crate::yaml::section(value, "simulate", &[]);
        let raw: RawSpec = serde_norway::from_value(value).map_err(bad)?;
        raw.resolve(base)
    }
}

impl RawSpec {
    /// Checks every field and resolves names against the model (a relative CellML path from `base`).
    pub fn resolve(&self, base: &Path) -> Result<DatasetSpec, Error> {
        let model = self.model.resolve(base)?;
        let info = model.info();
        let grid = TimeGrid::new(self.time.t_end, self.time.dt, self.time.sample_every)?;
        // checked now, so a configuration fails before anything is solved
        let scheme = self.scheme.unwrap_or_default();
        scheme.check_for(model)?;

        let mut params = info.defaults();
        for (name, &value) in &self.params {
            let i = info
                .param_index(name)
                .ok_or_else(|| unknown(&format!("params.{name}"), name, info, false))?;
            info.check_param(i, value)?;
            params[i] = value;
        }

        let mut initial = info.initial_state();
        for (name, &value) in &self.initial {
            let i = info
                .state_index(name)
                .ok_or_else(|| unknown(&format!("initial.{name}"), name, info, true))?;
            if !value.is_finite() {
                return Err(Error::invalid(
                    format!("initial.{name}"),
                    format!("{value} is not a finite number"),
                    "give a finite initial value",
                ));
            }
            initial[i] = value;
        }

        let mut sampled = Vec::new();
        for (name, &[lo, hi]) in &self.sample {
            let field = format!("sample.{name}");
            if !(lo.is_finite() && hi.is_finite()) {
                return Err(Error::invalid(
                    field,
                    format!("range [{lo}, {hi}] is not finite"),
                    "give two finite numbers [low, high]",
                ));
            }
            if lo > hi {
                return Err(Error::invalid(
                    field,
                    format!("range [{lo}, {hi}] is inverted"),
                    format!("write it as [{hi}, {lo}]"),
                ));
            }
            let target = if let Some(i) = info.state_index(name) {
                if self.initial.contains_key(name) {
                    return Err(Error::invalid(
                        field,
                        format!("`{name}` is both fixed in `initial` and sampled"),
                        format!("remove `{name}` from one of `initial` and `sample`"),
                    ));
                }
                Target::State(i)
            } else if let Some(i) = info.param_index(name) {
                info.check_param(i, lo)?;
                info.check_param(i, hi)?;
                Target::Param(i)
            } else {
                return Err(unknown(&field, name, info, true));
            };
            let name = match target {
                Target::State(_) => format!("{name}0"),
                Target::Param(_) => name.clone(),
            };
            sampled.push(Sampled {
                name,
                target,
                range: [lo, hi],
            });
        }
        sampled.sort_by_key(|s| match s.target {
            Target::State(i) => i,
            Target::Param(i) => cell::MAX_STATE + i,
        });

        let cells = self
            .cells
            .unwrap_or(if sampled.is_empty() { 1 } else { 1000 });
        if cells == 0 {
            return Err(Error::invalid(
                "cells",
                "cells = 0",
                "sample at least one cell",
            ));
        }
        if sampled.is_empty() && cells != 1 {
            return Err(Error::invalid(
                "cells",
                format!("cells = {cells} but nothing is sampled, so every cell would be the same"),
                "set cells: 1, or add ranges under `sample`",
            ));
        }
        let kind = self.kind.unwrap_or(Kind::Trajectory);
        let outputs = match &self.outputs {
            None => (0..info.states.len()).collect(),
            Some(names) => {
                let mut outputs = Vec::new();
                for name in names {
                    let i = info.state_index(name).ok_or_else(|| {
                        Error::invalid(
                            format!("outputs.{name}"),
                            format!("model `{}` has no state `{name}`", info.name),
                            format!("use some of: {}", info.states.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")),
                        )
                    })?;
                    if outputs.contains(&i) {
                        return Err(Error::invalid(format!("outputs.{name}"), format!("`{name}` is listed twice"), "list each state once"));
                    }
                    outputs.push(i);
                }
                if outputs.is_empty() {
                    return Err(Error::invalid("outputs", "no state to learn", "list at least one state, or leave `outputs` out for all"));
                }
                outputs
            }
        };
        if kind == Kind::Itnn && outputs.len() != info.states.len() {
            return Err(Error::invalid(
                "outputs",
                format!("an ITNN steps the whole state, but `outputs` lists {} of the {} states of `{}`", outputs.len(), info.states.len(), info.name),
                "leave `outputs` out for an ITNN (its inputs and outputs are every state)",
            ));
        }
        if kind == Kind::Itnn && grid.n_samples < 2 {
            return Err(Error::invalid(
                "time.t_end",
                "an ITNN dataset needs at least two samples per trajectory",
                "make t_end at least one sample_every",
            ));
        }

        let split = self.split.unwrap_or(Split {
            train: 0.5,
            val: 0.25,
            test: 0.25,
        });
        let fractions = [
            ("split.train", split.train),
            ("split.val", split.val),
            ("split.test", split.test),
        ];
        for (field, f) in fractions {
            if !(f.is_finite() && (0.0..=1.0).contains(&f)) {
                return Err(Error::invalid(
                    field,
                    format!("{f} is not a fraction in [0, 1]"),
                    "use fractions such as train: 0.5, val: 0.25, test: 0.25",
                ));
            }
        }
        if (split.train + split.val + split.test - 1.0).abs() > 1e-9
            || split.train == 0.0
            || split.val == 0.0
        {
            return Err(Error::invalid(
                "split",
                format!(
                    "train {} + val {} + test {} must add up to 1 with train and val above 0",
                    split.train, split.val, split.test
                ),
                "use fractions such as train: 0.5, val: 0.25, test: 0.25",
            ));
        }

        let cellml_file = match &self.model {
            cell::ModelRef::Cellml { cellml } => Some(std::fs::canonicalize(base.join(cellml)).unwrap_or_else(|_| base.join(cellml))),
            cell::ModelRef::Builtin(_) => None,
        };
        Ok(DatasetSpec {
            name: self.name.clone(),
            model,
            cellml_file,
            kind,
            params,
            grid,
            scheme,
            outputs,
            initial,
            sampled,
            cells,
            method: self.sampling.unwrap_or(Method::Lhs),
            seed: self.seed.unwrap_or(0),
            split,
            device: self.device.unwrap_or(Device::Cpu),
        })
    }
}

fn unknown(field: &str, name: &str, info: &cell::ModelInfo, states_too: bool) -> Error {
    let mut known: Vec<&str> = Vec::new();
    if states_too {
        known.extend(info.states.iter().map(|s| s.name));
    }
    if !field.starts_with("initial") {
        known.extend(info.params.iter().map(|p| p.name));
    }
    Error::invalid(
        field,
        format!("model `{}` has no variable `{name}`", info.name),
        format!("use one of: {}", known.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        let e = DatasetSpec::from_yaml(yaml).unwrap_err();
        format!("{e} / hint: {}", e.hint().unwrap_or(""))
    }

    const BASE: &str =
        "name: t\nmodel: fhn-cardiac\ntime: {t_end: 25, dt: 0.01, sample_every: 0.1}\n";

    #[test]
    fn quick_preset_resolves() {
        let s = DatasetSpec::from_yaml(QUICK_PRESET).unwrap();
        assert_eq!(s.model.info().name, "fhn-cardiac");
        assert_eq!(s.cells, 1);
        assert_eq!(s.grid.n_samples, 251);
    }

    #[test]
    fn bad_inputs_name_the_field_and_the_fix() {
        let e = err("name: t\nmodel: hodgkin\ntime: {t_end: 25, dt: 0.01, sample_every: 0.1}\n");
        assert!(e.contains("model") && e.contains("fhn-cardiac"), "{e}");
        let e = err(&format!("{BASE}sample: {{u: [0.8, 0.1]}}\n"));
        assert!(
            e.contains("sample.u") && e.contains("inverted") && e.contains("[0.1, 0.8]"),
            "{e}"
        );
        let e = err(&format!("{BASE}sample: {{u: [.nan, 0.1]}}\n"));
        assert!(e.contains("sample.u") && e.contains("not finite"), "{e}");
        let e = err(&format!("{BASE}params: {{alpha: 3}}\n"));
        assert!(e.contains("params.alpha") && e.contains("[0, 1]"), "{e}");
        let e = err(&format!("{BASE}params: {{beta: 3}}\n"));
        assert!(e.contains("params.beta") && e.contains("k1"), "{e}");
        let e = err("name: t\nmodel: fhn\ntime: {t_end: 25, dt: 0, sample_every: 0.1}\n");
        assert!(e.contains("time.dt"), "{e}");
        let e = err("name: t\nmodel: fhn\ntime: {t_end: 25, dt: 0.03, sample_every: 0.1}\n");
        assert!(
            e.contains("time.sample_every") && e.contains("multiple"),
            "{e}"
        );
        let e = err("name: t\nmodel: fhn\ntime: [1, 2\n");
        assert!(e.contains("not a valid dataset configuration"), "{e}");
        let e = err(&format!("{BASE}cellz: 3\n"));
        assert!(e.contains("unknown field") && e.contains("cellz"), "{e}");
        let e = err(&format!("{BASE}cells: 10\n"));
        assert!(
            e.contains("cells") && e.contains("nothing is sampled"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}sample: {{u: [0, 1]}}\nsplit: {{train: 0.9, val: 0.2}}\n"
        ));
        assert!(e.contains("split"), "{e}");
    }

    #[test]
    fn sampled_dimensions_follow_model_order() {
        let s = DatasetSpec::from_yaml(&format!(
            "{BASE}sample: {{k: [0, 1], v: [0, 0.12], u: [0, 0.9]}}\n"
        ))
        .unwrap();
        let names: Vec<_> = s.sampled.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["u0", "v0", "k"]);
    }
}
