//! What a surrogate computes, as its ONNX file records it in
//! `metadata_props`: the cell model and constants, the inputs and outputs
//! with their ranges, the time grid, the fixed initial values and the
//! sampled ranges, and the surrogate kind. The exporter writes these keys,
//! verification and bundles read them back, and `excite annotate` writes
//! them into a model trained elsewhere, from the dataset it describes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{Metadata, ModelMeta, TimeMeta, VarRange, META_FILE};
use crate::Error;

/// The metadata keys, one copy for writer and readers.
pub const KIND: &str = "excite.kind";
pub const MODEL: &str = "excite.model";
pub const INPUTS: &str = "excite.inputs";
pub const OUTPUTS: &str = "excite.outputs";
pub const TIME: &str = "excite.time";
pub const INITIAL: &str = "excite.initial";
pub const SAMPLING: &str = "excite.sampling";
pub const VERSION: &str = "excite.version";

#[derive(Debug, Clone, PartialEq)]
pub struct ProblemMeta {
    /// `ddnn`, `pinn` or `itnn`.
    pub kind: String,
    pub model: ModelMeta,
    pub inputs: Vec<VarRange>,
    pub outputs: Vec<VarRange>,
    pub time: TimeMeta,
    pub initial: BTreeMap<String, f64>,
    pub sampling: BTreeMap<String, [f64; 2]>,
}

impl ProblemMeta {
    /// The `metadata_props` entries.
    pub fn to_props(&self) -> Vec<(String, String)> {
        fn ser<T: serde::Serialize>(v: &T) -> String {
            serde_json::to_string(v).expect("plain data serialises")
        }
        vec![
            (VERSION.into(), env!("CARGO_PKG_VERSION").into()),
            (KIND.into(), self.kind.clone()),
            (MODEL.into(), ser(&self.model)),
            (INPUTS.into(), ser(&self.inputs)),
            (OUTPUTS.into(), ser(&self.outputs)),
            (TIME.into(), ser(&self.time)),
            (INITIAL.into(), ser(&self.initial)),
            (SAMPLING.into(), ser(&self.sampling)),
        ]
    }

    /// Reads the entries back; the error names the missing or malformed key.
    pub fn from_props(props: &[(String, String)]) -> Result<ProblemMeta, String> {
        let get = |k: &str| props.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).ok_or_else(|| format!("no `{k}` in metadata_props"));
        fn de<T: DeserializeOwned>(k: &str, v: &str) -> Result<T, String> {
            serde_json::from_str(v).map_err(|e| format!("`{k}` is not valid: {e}"))
        }
        let model = de(MODEL, get(MODEL)?)?;
        Ok(ProblemMeta {
            kind: get(KIND)?.to_string(),
            model,
            inputs: de(INPUTS, get(INPUTS)?)?,
            outputs: de(OUTPUTS, get(OUTPUTS)?)?,
            time: de(TIME, get(TIME)?)?,
            initial: de(INITIAL, get(INITIAL)?)?,
            sampling: de(SAMPLING, get(SAMPLING)?)?,
        })
    }

    /// The problem of a dataset (its folder or `dataset.json`), for a
    /// surrogate of `kind` trained on it: inputs and outputs in the
    /// dataset's column order.
    pub fn from_dataset(path: &Path, kind: &str) -> Result<ProblemMeta, Error> {
        let file = if path.is_dir() { path.join(META_FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let m: Metadata = serde_json::from_str(&text).map_err(|e| {
            Error::format(&file, format!("not a dataset description: {e}"), "pass the dataset folder (or its dataset.json) that `excite simulate` wrote for the problem the model was trained on")
        })?;
        Ok(ProblemMeta {
            kind: kind.to_string(),
            model: m.model,
            inputs: m.inputs,
            outputs: m.outputs,
            time: m.time,
            initial: m.sampling.initial,
            sampling: m.sampling.ranges,
        })
    }
}
