//! The forward-Euler reference solver: the yardstick every surrogate is measured against.
//!
//! Three implementations of one scheme, `x ← x + dt·f(x; p)` in f32 (or f64),
//! storing the state only every `steps_per_sample` steps:
//! - [`scalar`]: one cell at a time, the plain reference;
//! - [`cpu`]: SIMD lanes of cells kept in registers between samples, threads over blocks;
//! - [`cuda`]: one GPU thread per cell, compiled at run time with NVRTC.
//!
//! The fast paths are tested against the scalar one.

pub mod cpu;
pub mod imported;
pub mod native;
pub mod cuda;
pub mod scalar;

use crate::Error;

/// Time discretisation: `dt`, and the state stored every `steps_per_sample`
/// steps, `n_samples` times (the first at t = 0).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TimeGrid {
    pub dt: f64,
    pub steps_per_sample: usize,
    pub n_samples: usize,
}

impl TimeGrid {
    /// The grid for `t ∈ [0, t_end]`, stepping `dt` and sampling every `sample_every`.
    pub fn new(t_end: f64, dt: f64, sample_every: f64) -> Result<Self, Error> {
        if !(dt.is_finite() && dt > 0.0) {
            return Err(Error::invalid(
                "time.dt",
                format!("dt = {dt} is not a positive number"),
                "set dt > 0, for example 0.01",
            ));
        }
        if !(sample_every.is_finite() && sample_every > 0.0) {
            return Err(Error::invalid(
                "time.sample_every",
                format!("sample_every = {sample_every} is not a positive number"),
                "set sample_every to a positive multiple of dt, for example 0.1",
            ));
        }
        if !(t_end.is_finite() && t_end >= 0.0) {
            return Err(Error::invalid(
                "time.t_end",
                format!("t_end = {t_end} is not a number ≥ 0"),
                "set t_end ≥ 0, for example 25",
            ));
        }
        let steps = whole_ratio(sample_every, dt).ok_or_else(|| {
            Error::invalid(
                "time.sample_every",
                format!("sample_every = {sample_every} is not a whole multiple of dt = {dt}"),
                format!(
                    "use a multiple of dt, such as {}",
                    (sample_every / dt).round().max(1.0) * dt
                ),
            )
        })?;
        let intervals = whole_ratio(t_end, sample_every).ok_or_else(|| {
            Error::invalid(
                "time.t_end",
                format!("t_end = {t_end} is not a whole multiple of sample_every = {sample_every}"),
                format!(
                    "use a multiple of sample_every, such as {}",
                    (t_end / sample_every).round() * sample_every
                ),
            )
        })?;
        Ok(TimeGrid {
            dt,
            steps_per_sample: steps.max(1),
            n_samples: intervals + 1,
        })
    }

    pub fn sample_every(&self) -> f64 {
        self.dt * self.steps_per_sample as f64
    }

    pub fn t_end(&self) -> f64 {
        self.sample_every() * (self.n_samples - 1) as f64
    }

    /// The time of sample `s`.
    pub fn time(&self, s: usize) -> f64 {
        s as f64 * self.sample_every()
    }

    /// Euler steps taken over the whole grid, per cell.
    pub fn total_steps(&self) -> usize {
        self.steps_per_sample * (self.n_samples - 1)
    }
}

/// `a / b` when it is a whole number (to 1e-9 relative), else `None`.
fn whole_ratio(a: f64, b: f64) -> Option<usize> {
    let r = a / b;
    let n = r.round();
    ((r - n).abs() <= 1e-9 * n.max(1.0)).then_some(n as usize)
}

/// The values of one variable across cells: one for all, or one per cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Same(f64),
    PerCell(Vec<f64>),
}

impl Column {
    #[inline]
    pub fn get(&self, cell: usize) -> f64 {
        match self {
            Column::Same(x) => *x,
            Column::PerCell(v) => v[cell],
        }
    }
}

/// The independent cells to solve: initial state and parameters of each.
#[derive(Debug, Clone)]
pub struct Cells {
    pub n: usize,
    /// One column per state variable of the model.
    pub init: Vec<Column>,
    /// One column per parameter of the model.
    pub params: Vec<Column>,
}

impl Cells {
    /// Checks the columns against the model's shape.
    pub fn check(&self, model: &dyn crate::cell::Model) -> Result<(), Error> {
        let info = model.info();
        self.check_shape(info.name, info.states.len(), info.params.len())
    }

    /// Checks the columns against a model called `name` with `states` state
    /// variables and `params` parameters (built-in or imported).
    pub fn check_shape(&self, name: &str, states: usize, params: usize) -> Result<(), Error> {
        let shape_ok = |cols: &[Column]| {
            cols.iter()
                .all(|c| !matches!(c, Column::PerCell(v) if v.len() != self.n))
        };
        if self.init.len() != states || self.params.len() != params || !shape_ok(&self.init) || !shape_ok(&self.params) {
            return Err(Error::invalid(
                "cells",
                format!("cells do not match model `{name}` ({states} states, {params} parameters)"),
                "build the cells from the model's own state and parameter lists",
            ));
        }
        Ok(())
    }
}

/// Solver output: `data[(var * n_samples + sample) * n_cells + cell]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectories<T> {
    pub n_state: usize,
    pub n_samples: usize,
    pub n_cells: usize,
    pub data: Vec<T>,
}

impl<T: Copy> Trajectories<T> {
    pub fn filled(n_state: usize, n_samples: usize, n_cells: usize, value: T) -> Self {
        Trajectories {
            n_state,
            n_samples,
            n_cells,
            data: vec![value; n_state * n_samples * n_cells],
        }
    }

    #[inline]
    pub fn get(&self, var: usize, sample: usize, cell: usize) -> T {
        self.data[(var * self.n_samples + sample) * self.n_cells + cell]
    }

    /// All cells of one variable at one sample.
    pub fn row(&self, var: usize, sample: usize) -> &[T] {
        let start = (var * self.n_samples + sample) * self.n_cells;
        &self.data[start..start + self.n_cells]
    }
}

impl<T: Copy + Into<f64>> Trajectories<T> {
    /// Largest absolute difference to `other` (same shape), NaN-aware.
    pub fn max_abs_diff<U: Copy + Into<f64>>(&self, other: &Trajectories<U>) -> f64 {
        assert_eq!(
            self.data.len(),
            other.data.len(),
            "trajectories of different shapes"
        );
        self.data.iter().zip(&other.data).fold(0.0, |m, (a, b)| {
            let d = ((*a).into() - (*b).into()).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                m.max(d)
            }
        })
    }
}

/// How states advance over a step (`scheme:` in a dataset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `x ← x + dt·f(x)` for every state.
    #[default]
    Euler,
    /// Gating variables exactly over the step with their rate's coefficients
    /// held ([`Equations::gates`]); the other states by forward Euler.
    RushLarsen,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Euler => "euler",
            Scheme::RushLarsen => "rush-larsen",
        }
    }

    /// Whether `model` can be solved with this scheme: Rush–Larsen needs an
    /// imported model's equations, where gating variables are found.
    pub fn check_for(self, model: &dyn crate::cell::Model) -> Result<(), Error> {
        if self == Scheme::RushLarsen && matches!(model.form(), crate::cell::Form::Builtin(_)) {
            return Err(Error::invalid(
                "scheme",
                format!("built-in model `{}` is solved by forward Euler only (it has no gating variables)", model.info().name),
                "use scheme: euler, or import a model with gating variables",
            ));
        }
        Ok(())
    }
}

/// Where to run the Euler reference.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// SIMD and threads on the CPU.
    Cpu,
    /// An NVIDIA GPU through CUDA (NVRTC-compiled kernel).
    Cuda,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// Solves `cells` of `model` with `scheme` on `device`, stored in f32;
/// `threads = 0` means all cores. Built-in models run their f32 SIMD (or
/// CUDA) Euler kernels; imported models their compiled equations in f64
/// ([`imported`]), Euler or Rush–Larsen.
pub fn solve(
    model: &dyn crate::cell::Model,
    grid: &TimeGrid,
    cells: &Cells,
    scheme: Scheme,
    device: Device,
    threads: usize,
) -> Result<Trajectories<f32>, Error> {
    cells.check(model)?;
    scheme.check_for(model)?;
    match model.form() {
        crate::cell::Form::Imported(m) => {
            let t = match device {
                Device::Cpu => imported::solve_cells(&m.equations, scheme, grid, cells, threads)?,
                Device::Cuda => imported::solve_cuda(&m.equations, scheme, grid, cells)?,
            };
            Ok(Trajectories { n_state: t.n_state, n_samples: t.n_samples, n_cells: t.n_cells, data: t.data.iter().map(|&x| x as f32).collect() })
        }
        crate::cell::Form::Builtin(_) => match device {
            Device::Cpu => cpu::solve_best(model, grid, cells, threads),
            Device::Cuda => cuda::CudaSolver::new()?.solve(model, grid, cells),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_checks_its_inputs() {
        let g = TimeGrid::new(25.0, 0.01, 0.1).unwrap();
        assert_eq!((g.steps_per_sample, g.n_samples), (10, 251));
        assert!((g.t_end() - 25.0).abs() < 1e-12);
        assert!(TimeGrid::new(25.0, 0.0, 0.1)
            .unwrap_err()
            .to_string()
            .contains("time.dt"));
        assert!(TimeGrid::new(25.0, -1.0, 0.1).is_err());
        assert!(TimeGrid::new(25.0, f64::NAN, 0.1).is_err());
        let e = TimeGrid::new(25.0, 0.03, 0.1).unwrap_err().to_string();
        assert!(
            e.contains("time.sample_every") && e.contains("multiple"),
            "{e}"
        );
        assert!(TimeGrid::new(25.05, 0.01, 0.1)
            .unwrap_err()
            .to_string()
            .contains("time.t_end"));
    }
}
