//! An imported cell model: a CellML file's equations as a cell model like the
//! built-in ones, with state and parameter names (`component.variable`), the
//! file's initial values and parameter values as defaults, and the file's
//! sha256, which every dataset, surrogate and bundle made from it records.
//!
//! Loaded models live for the rest of the process (the rest of excite holds
//! `&'static dyn Model`); one file's content is loaded once however often it
//! is named (a sweep names it once per point), so what is kept is bounded by
//! the distinct files a process reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use crate::cell::equations::{Equations, Kind};
use crate::cell::{Form, Model, ModelInfo, Param, StateVar};
use crate::Error;

/// A CellML model, loaded.
pub struct Imported {
    info: &'static ModelInfo,
    pub equations: Equations,
    /// sha256 of the file's bytes.
    pub sha256: String,
}

impl Model for Imported {
    fn info(&self) -> &'static ModelInfo {
        self.info
    }
    fn form(&self) -> Form<'_> {
        Form::Imported(self)
    }
}

/// The model in the CellML file `path` (read once per distinct content).
pub fn load(path: &Path) -> Result<&'static Imported, Error> {
    load_expecting(path, None)
}

/// [`load`], where `expected` (a sha256 recorded with data made from the
/// file) must be the content's: a path named in metadata from elsewhere is
/// only parsed when it holds exactly that file.
pub fn load_expecting(path: &Path, expected: Option<&str>) -> Result<&'static Imported, Error> {
    static LOADED: OnceLock<Mutex<HashMap<String, &'static Imported>>> = OnceLock::new();
    let bytes = super::cellml::read(path).map_err(|e| match e {
        // a missing file: where relative paths start, or that the recorded file must come back
        Error::Io { .. } => Error::format(
            path,
            format!("cannot read the CellML file: {e}"),
            match expected {
                None => "check the path (a relative path is taken from the folder of the configuration file)",
                Some(_) => "put the CellML file the data were made from back at this path, or name the folder that now holds it in EXCITE_CELLML_PATH",
            },
        ),
        e => e,
    })?;
    let sha256 = crate::hash::sha256_hex(&bytes);
    if let Some(want) = expected.filter(|&want| want != sha256) {
        return Err(Error::invalid(
            "model.cellml",
            format!("`{}` has changed since the data were made (sha256 {} then, {} now)", path.display(), want.get(..12).unwrap_or(want), &sha256[..12]),
            "restore the file the surrogate was trained on (or name a folder holding it in EXCITE_CELLML_PATH), or make the dataset again from the new one",
        ));
    }
    let loaded = LOADED.get_or_init(Default::default);
    if let Some(m) = loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&sha256) {
        return Ok(m);
    }
    let equations = super::cellml::parse_bytes(&bytes, path)?;
    let info = Box::leak(Box::new(info_of(&equations, &sha256)));
    let model: &'static Imported = Box::leak(Box::new(Imported { info, equations, sha256: sha256.clone() }));
    Ok(*loaded.lock().unwrap_or_else(|e| e.into_inner()).entry(sha256).or_insert(model))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The [`ModelInfo`] of an imported model: names `component.variable`,
/// defaults the file's values; a parameter may take any finite value (the
/// file states no range).
fn info_of(eq: &Equations, sha256: &str) -> ModelInfo {
    let states = eq
        .states
        .iter()
        .map(|&s| {
            let v = &eq.vars[s];
            let Kind::State { initial } = v.kind else { unreachable!("states are states") };
            StateVar { name: leak(v.name.clone()), summary: leak(format!("state, {}", v.units)), initial }
        })
        .collect::<Vec<_>>();
    let params = eq
        .params
        .iter()
        .map(|&p| {
            let v = &eq.vars[p];
            let Kind::Param { value } = v.kind else { unreachable!("parameters are parameters") };
            Param { name: leak(v.name.clone()), default: value, min: -f64::MAX, max: f64::MAX, summary: leak(format!("parameter, {}", v.units)) }
        })
        .collect::<Vec<_>>();
    ModelInfo {
        name: leak(eq.name.clone()),
        summary: leak(format!("imported from CellML (sha256 {})", &sha256[..12])),
        equations: leak(format!(
            "CellML model `{}`: {} states, {} parameters, {} algebraic variables; time {} in {}; file sha256 {sha256}",
            eq.name,
            eq.states.len(),
            eq.params.len(),
            eq.algebraic.len(),
            eq.time.0,
            eq.time.1
        )),
        states: Box::leak(states.into_boxed_slice()),
        params: Box::leak(params.into_boxed_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_content_is_loaded_once_and_named_by_its_file() {
        let dir = std::env::temp_dir().join(format!("excite-imported-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = include_str!("../../models/fhn-cardiac.cellml");
        let (a, b) = (dir.join("a.cellml"), dir.join("b.cellml"));
        std::fs::write(&a, text).unwrap();
        std::fs::write(&b, text).unwrap();
        let (ma, mb) = (load(&a).unwrap(), load(&b).unwrap());
        assert!(std::ptr::eq(ma, mb));
        assert_eq!(ma.sha256, crate::hash::sha256_hex(text.as_bytes()));
        let info = ma.info();
        assert_eq!(info.states.len(), 2);
        assert!(info.states.iter().all(|s| s.name.contains('.')), "{:?}", info.states);
        assert!(info.equations.contains(&ma.sha256));
        // its `v` is dimensionless, the recovery variable: no membrane potential
        assert_eq!(ma.equations.potential(), None);
        let e = load(&dir.join("missing.cellml")).err().unwrap();
        assert!(e.to_string().contains("missing.cellml"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
