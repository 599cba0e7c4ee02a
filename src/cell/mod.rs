//! Cell models: ODEs of one excitable cell, written once and solved everywhere.
//!
//! A model is one file in `src/cell/models/`: a type implementing
//! [`CellModel`] plus a `pub static MODEL`. The build script finds every file
//! there and registers it, so adding a model means adding that one file. The
//! right-hand side is generic over [`Real`], which lets the same equations run
//! in f64 (checking), f32 (the scalar reference) and SIMD lanes; the CUDA
//! solver takes the same equations as a short CUDA C snippet.

pub mod c_source;
pub mod cellml;
pub mod equations;
pub mod imported;
pub mod program;
mod real;
pub mod symbolic;

pub use real::{Lanes, Real};

use crate::Error;

/// Most state variables a model may have (sizes the solvers' stack buffers).
pub const MAX_STATE: usize = 8;
/// Most parameters a model may have.
pub const MAX_PARAMS: usize = 16;

/// A state variable of a model.
#[derive(Debug, Clone, Copy)]
pub struct StateVar {
    pub name: &'static str,
    pub summary: &'static str,
    /// The initial value a dataset starts from unless it says otherwise.
    pub initial: f64,
}

/// A parameter of a model with its default and the range of valid values.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub default: f64,
    /// Smallest valid value (inclusive).
    pub min: f64,
    /// Largest valid value (inclusive).
    pub max: f64,
    pub summary: &'static str,
}

/// What a model is, for people and for the metadata of everything built on it.
#[derive(Debug)]
pub struct ModelInfo {
    /// The name used in configuration files (`fhn-cardiac`).
    pub name: &'static str,
    pub summary: &'static str,
    /// The equations in plain text, as recorded in dataset metadata.
    pub equations: &'static str,
    pub states: &'static [StateVar],
    pub params: &'static [Param],
}

impl ModelInfo {
    pub fn state_index(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|s| s.name == name)
    }

    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    pub fn defaults(&self) -> Vec<f64> {
        self.params.iter().map(|p| p.default).collect()
    }

    /// The states' default initial values.
    pub fn initial_state(&self) -> Vec<f64> {
        self.states.iter().map(|s| s.initial).collect()
    }

    /// Checks a value for parameter `i` against its valid range.
    pub fn check_param(&self, i: usize, value: f64) -> Result<(), Error> {
        let p = &self.params[i];
        if !value.is_finite() || value < p.min || value > p.max {
            return Err(Error::invalid(
                format!("params.{}", p.name),
                format!(
                    "{value} is outside the valid range [{}, {}] of `{}` in model `{}`",
                    p.min, p.max, p.name, self.name
                ),
                format!("choose a value in [{}, {}] ({})", p.min, p.max, p.summary),
            ));
        }
        Ok(())
    }
}

/// An ODE cell model `dx/dt = f(x; p)`.
pub trait CellModel: Send + Sync + 'static {
    /// Number of state variables; equals `info().states.len()`.
    const N_STATE: usize;

    fn info(&self) -> &'static ModelInfo;

    /// Writes `f(x; p)` into `dx`. `p` follows `info().params`, `x` and `dx`
    /// follow `info().states`.
    fn rhs<R: Real>(&self, p: &[R], x: &[R], dx: &mut [R]);

    /// The same right-hand side in CUDA C: a `__device__` function
    /// `void rhs(const float* p, const float* x, float* dx)`.
    fn cuda_rhs(&self) -> &'static str;
}

/// The object-safe face of a cell model, built in or imported: what the
/// rest of excite holds (`&'static dyn Model`). [`Model::form`] says which
/// it is; code that needs a built-in model's concrete type (the solvers,
/// which inline the right-hand side into their loops) gets it through
/// [`with_model`].
pub trait Model: std::any::Any + Send + Sync {
    fn info(&self) -> &'static ModelInfo;
    fn form(&self) -> Form<'_>;
}

/// What a model's equations are made of.
pub enum Form<'a> {
    /// Rust generic over [`Real`] (with its CUDA twin).
    Builtin(&'a dyn Builtin),
    /// The equation IR of an imported file, which may read time.
    Imported(&'a imported::Imported),
}

/// A built-in model's right-hand side, object-safe.
pub trait Builtin {
    fn rhs_f64(&self, p: &[f64], x: &[f64], dx: &mut [f64]);
    /// The right-hand side on symbols, for [`symbolic::trace`].
    fn rhs_sym(&self, p: &[symbolic::Sym], x: &[symbolic::Sym], dx: &mut [symbolic::Sym]);
    fn cuda_rhs(&self) -> &'static str;
}

impl<M: CellModel> Builtin for M {
    fn rhs_f64(&self, p: &[f64], x: &[f64], dx: &mut [f64]) {
        self.rhs(p, x, dx)
    }
    fn rhs_sym(&self, p: &[symbolic::Sym], x: &[symbolic::Sym], dx: &mut [symbolic::Sym]) {
        self.rhs(p, x, dx)
    }
    fn cuda_rhs(&self) -> &'static str {
        CellModel::cuda_rhs(self)
    }
}

impl<M: CellModel> Model for M {
    fn info(&self) -> &'static ModelInfo {
        CellModel::info(self)
    }
    fn form(&self) -> Form<'_> {
        Form::Builtin(self)
    }
}

/// Code written once over a model's concrete type, run by [`with_model`]
/// on a `&dyn Model` (a generic closure, which Rust does not have).
pub trait WithModel {
    type Out;
    fn call<M: CellModel>(self, model: &M) -> Self::Out;
}

/// Runs `f` on the concrete type behind `model`: the layers above (the
/// solvers) get a monomorphised instance per built-in model without the
/// cell layer knowing them.
pub fn with_model<F: WithModel>(model: &dyn Model, f: F) -> Result<F::Out, Error> {
    registry::dispatch(model as &dyn std::any::Any, f).map_err(|_| {
        Error::invalid(
            "model",
            format!("`{}` is not a built-in cell model, so no compiled solver exists for it", model.info().name),
            "add the model as a file in src/cell/models/ (README, 'Cell models')",
        )
    })
}

/// `any` as the type of `_like`, for the generated dispatch.
fn downcast_like<'a, M: CellModel>(_like: &M, any: &'a dyn std::any::Any) -> Option<&'a M> {
    any.downcast_ref::<M>()
}

mod registry {
    include!(concat!(env!("OUT_DIR"), "/models.rs"));
}

/// Every built-in model, sorted by name.
pub fn all() -> &'static [&'static dyn Model] {
    registry::MODELS
}

/// The built-in model called `name`, or an error listing the known ones.
pub fn by_name(name: &str) -> Result<&'static dyn Model, Error> {
    all()
        .iter()
        .copied()
        .find(|m| m.info().name == name)
        .ok_or_else(|| {
            let known: Vec<_> = all().iter().map(|m| m.info().name).collect();
            Error::invalid(
                "model",
                format!("unknown cell model `{name}`"),
                format!("use one of: {}, or import one with `model: {{cellml: FILE}}`", known.join(", ")),
            )
        })
}

/// Where a configuration takes its cell model from: a built-in model's name
/// (`model: fhn-cardiac`) or a CellML file (`model: {cellml: lr1991.cellml}`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged, expecting = "`model` is neither a built-in cell model's name (`model: fhn-cardiac`) nor a CellML file (`model: {cellml: FILE}`)")]
pub enum ModelRef {
    Builtin(String),
    Cellml { cellml: std::path::PathBuf },
}

impl ModelRef {
    /// The model, a relative CellML path taken from `base` (the folder of the configuration file).
    pub fn resolve(&self, base: &std::path::Path) -> Result<&'static dyn Model, Error> {
        match self {
            ModelRef::Builtin(name) => by_name(name),
            ModelRef::Cellml { cellml } => {
                let model: &'static dyn Model = imported::load(&base.join(cellml))?;
                Ok(model)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        assert!(all().len() >= 2);
        for m in all() {
            let info = m.info();
            assert!(info.states.len() <= MAX_STATE && info.params.len() <= MAX_PARAMS);
            for (i, p) in info.params.iter().enumerate() {
                assert!(
                    p.min <= p.default && p.default <= p.max,
                    "{}.{}",
                    info.name,
                    p.name
                );
                info.check_param(i, p.default).unwrap();
            }
        }
        assert!(by_name("fhn").is_ok() && by_name("fhn-cardiac").is_ok());
        let err = by_name("hodgkin").err().unwrap();
        assert!(
            err.to_string().contains("hodgkin") && err.hint().unwrap().contains("fhn-cardiac"),
            "{err}"
        );
    }
}
