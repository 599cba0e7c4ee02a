//! The problem a surrogate was trained on, read back from its ONNX file's
//! metadata (cell model, inputs and outputs with ranges, time grid, fixed
//! initial values and sampled ranges), and fresh cells drawn from it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cell::{self, Model};
use crate::data::sampling::{self, Method, Rng};
use crate::data::{ModelMeta, TimeMeta, VarRange};
use crate::solve::{Cells, Column, TimeGrid};
use crate::train::Mode;
use crate::Error;

/// The problem a surrogate was trained on, read back from its ONNX metadata.
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
    pub fn from_onnx(path: &Path) -> Result<Problem, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let hint = "export the surrogate with `excite export`, which records the cell model and ranges in the file";
        let props = crate::onnx::proto::metadata_props(&bytes)
            .ok_or_else(|| Error::format(path, "not an ONNX model file", hint))?;
        let get = |k: &str| {
            props
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| Error::format(path, format!("no `{k}` in metadata_props"), hint))
        };
        let parse = |k: &str| -> Result<serde_json::Value, Error> {
            serde_json::from_str(&get(k)?)
                .map_err(|e| Error::format(path, format!("`{k}` is not valid JSON: {e}"), hint))
        };
        let de = |k: &str| -> Result<_, Error> { Ok(parse(k)?) };
        let model_meta: ModelMeta = serde_json::from_value(de("excite.model")?)
            .map_err(|e| Error::format(path, format!("excite.model: {e}"), hint))?;
        let inputs: Vec<VarRange> = serde_json::from_value(de("excite.inputs")?)
            .map_err(|e| Error::format(path, format!("excite.inputs: {e}"), hint))?;
        let outputs: Vec<VarRange> = serde_json::from_value(de("excite.outputs")?)
            .map_err(|e| Error::format(path, format!("excite.outputs: {e}"), hint))?;
        let time: TimeMeta = serde_json::from_value(de("excite.time")?)
            .map_err(|e| Error::format(path, format!("excite.time: {e}"), hint))?;
        let initial = serde_json::from_value(de("excite.initial")?)
            .map_err(|e| Error::format(path, format!("excite.initial: {e}"), hint))?;
        let sampling = serde_json::from_value(de("excite.sampling")?)
            .map_err(|e| Error::format(path, format!("excite.sampling: {e}"), hint))?;
        let kind: Mode = serde_json::from_value(serde_json::Value::String(get("excite.kind")?))
            .map_err(|e| Error::format(path, format!("excite.kind: {e}"), hint))?;
        let model = cell::by_name(&model_meta.name)?;
        let grid = TimeGrid::new(time.t_end, time.dt, time.sample_every)?;
        Ok(Problem {
            model,
            model_meta,
            kind,
            inputs,
            outputs,
            time,
            grid,
            initial,
            sampling,
        })
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
            .map(|s| Column::Same(self.initial.get(s.name).copied().unwrap_or(0.0)))
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
