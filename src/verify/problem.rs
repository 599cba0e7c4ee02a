//! The problem a surrogate was trained on, read back from its ONNX file's
//! metadata (cell model, inputs and outputs with ranges, time grid, fixed
//! initial values and sampled ranges), and fresh cells drawn from it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cell::Model;
use crate::data::sampling::{self, Method, Rng};
use crate::data::problem::ProblemMeta;
use crate::data::{ModelMeta, TimeMeta, VarRange};
use crate::solve::{Cells, Column, TimeGrid};
use crate::train::Mode;
use crate::Error;

/// The problem a surrogate was trained on, read back from its ONNX metadata.
#[derive(Clone)]
pub struct Problem {
    pub model: &'static dyn Model,
    pub model_meta: ModelMeta,
    pub kind: Mode,
    pub inputs: Vec<VarRange>,
    pub outputs: Vec<VarRange>,
    pub time: TimeMeta,
    pub grid: TimeGrid,
    pub initial: BTreeMap<String, f64>,
    pub sampling: BTreeMap<String, [f64; 2]>,
}

impl Problem {
    /// The problem recorded in the ONNX file `path` ([`ProblemMeta`]).
    pub fn from_onnx(path: &Path) -> Result<Problem, Error> {
        let bytes = crate::onnx::read_bytes(path)?;
        let props = crate::onnx::proto::metadata_props(&bytes)
            .ok_or_else(|| Error::format(path, "not an ONNX model file", "pass an ONNX model"))?;
        Self::from_props(&props).map_err(|e| e.in_file(path))
    }

    /// The problem in `metadata_props` entries.
    pub fn from_props(props: &[(String, String)]) -> Result<Problem, Error> {
        let meta = ProblemMeta::from_props(props).map_err(|problem| {
            Error::format("<model>", problem, "a model from `excite export` records its problem; for one trained elsewhere pass --problem DATASET (the dataset it was trained on), or write it into the file once with `excite annotate MODEL --problem DATASET -o OUT`")
        })?;
        Self::from_meta(meta)
    }

    pub fn from_meta(meta: ProblemMeta) -> Result<Problem, Error> {
        let kind: Mode = serde_json::from_value(serde_json::Value::String(meta.kind.clone()))
            .map_err(|e| Error::format("<model>", format!("excite.kind: {e}"), "one of ddnn, pinn, itnn"))?;
        let model = meta.model.resolve()?;
        let grid = TimeGrid::new(meta.time.t_end, meta.time.dt, meta.time.sample_every)?;
        Ok(Problem {
            model,
            model_meta: meta.model,
            kind,
            inputs: meta.inputs,
            outputs: meta.outputs,
            time: meta.time,
            grid,
            initial: meta.initial,
            sampling: meta.sampling,
        })
    }

    /// The problem of the dataset `dataset` (folder or dataset.json) where
    /// one is given, for a model that records none; else the one the ONNX
    /// file `model` records.
    pub fn of(model: &Path, dataset: Option<&Path>) -> Result<Problem, Error> {
        match dataset {
            Some(d) => Self::from_dataset(d),
            None => Self::from_onnx(model),
        }
    }

    /// The problem of a dataset (folder or dataset.json), for a data-driven
    /// surrogate of it ([`ProblemMeta::from_dataset`]).
    pub fn from_dataset(dataset: &Path) -> Result<Problem, Error> {
        Self::from_meta(ProblemMeta::from_dataset(dataset, "ddnn")?)
    }

    /// `n` fresh cells: the sampled initial states and parameters drawn by
    /// Latin hypercube (all alike when nothing was sampled, as in problem A).
    pub fn cells(&self, n: usize, seed: u64) -> Cells {
        let info = self.model.info();
        let names: Vec<&String> = self.sampling.keys().collect();
        let ranges: Vec<[f64; 2]> = self.sampling.values().copied().collect();
        let cols = sampling::sample(Method::Lhs, &ranges, n, &mut Rng::new(seed));
        let mut init: Vec<Column> = info
            .states
            .iter()
            .map(|s| Column::Same(self.initial.get(s.name).copied().unwrap_or(s.initial)))
            .collect();
        let mut params: Vec<Column> = info
            .params
            .iter()
            .map(|p| {
                Column::Same(
                    self.model_meta
                        .params
                        .get(p.name)
                        .copied()
                        .unwrap_or(p.default),
                )
            })
            .collect();
        for (name, col) in names.into_iter().zip(cols) {
            if let Some(i) = name.strip_suffix('0').and_then(|s| info.state_index(s)) {
                init[i] = Column::PerCell(col);
            } else if let Some(i) = info.param_index(name) {
                params[i] = Column::PerCell(col);
            }
        }
        Cells { n, init, params }
    }

    /// The reference solution of `cells` on `grid` on the CPU, with the problem's scheme.
    pub fn solve(&self, grid: &TimeGrid, cells: &Cells, threads: usize) -> Result<crate::solve::Trajectories<f32>, Error> {
        crate::solve::solve(self.model, grid, cells, self.time.scheme, crate::solve::Device::Cpu, threads)
    }

    /// The model's state behind each output.
    pub fn output_states(&self) -> Result<Vec<usize>, Error> {
        let info = self.model.info();
        self.outputs
            .iter()
            .map(|o| {
                info.state_index(&o.name).ok_or_else(|| {
                    Error::format("<model>", format!("output `{}` is not a state of model `{}`", o.name, info.name), "the surrogate's metadata does not match its cell model; export it again from its dataset")
                })
            })
            .collect()
    }

    /// The value of input `name` for cell `c` (a sampled initial state or parameter).
    pub(super) fn input_value(&self, cells: &Cells, name: &str, c: usize) -> f64 {
        let info = self.model.info();
        if let Some(i) = name.strip_suffix('0').and_then(|s| info.state_index(s)) {
            return cells.init[i].get(c);
        }
        info.param_index(name)
            .map(|i| cells.params[i].get(c))
            .unwrap_or(0.0)
    }
}
