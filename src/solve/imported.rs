//! The scalar reference solver of imported models: the equation IR
//! evaluated in f64, one cell, forward Euler or Rush–Larsen. The time of
//! step `n` is `n·dt` (not a running sum), so a stimulus edge falls on the
//! same step however long the run.

use crate::cell::equations::{Equations, Gate};
use crate::solve::TimeGrid;
use crate::Error;

/// How states advance over a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `x ← x + dt·f(x)` for every state.
    Euler,
    /// Gating variables exactly over the step with their rate's coefficients
    /// held ([`Equations::gates`]); the other states by forward Euler.
    RushLarsen,
}

/// The scheme's per-state update rules for a model.
pub struct Stepper<'a> {
    eq: &'a Equations,
    gates: Vec<Option<Gate>>,
}

impl<'a> Stepper<'a> {
    pub fn new(eq: &'a Equations, scheme: Scheme) -> Self {
        let gates = match scheme {
            Scheme::Euler => vec![None; eq.states.len()],
            Scheme::RushLarsen => eq.gates(eq.potential()),
        };
        Stepper { eq, gates }
    }

    /// How many states advance by Rush–Larsen.
    pub fn gate_count(&self) -> usize {
        self.gates.iter().filter(|g| g.is_some()).count()
    }

    /// One step from time `t`.
    pub fn step(&self, t: f64, dt: f64, x: &mut [f64], params: &[f64]) {
        let vals = self.eq.values(t, x, params);
        let rates: Vec<f64> = self.eq.rates.iter().map(|e| e.eval(&vals, t)).collect();
        for (k, xk) in x.iter_mut().enumerate() {
            *xk = match &self.gates[k] {
                Some(g) => {
                    let (a, b) = (g.a.eval(&vals, t), g.b.eval(&vals, t));
                    if b == 0.0 {
                        *xk + dt * a
                    } else {
                        *xk + (a + b * *xk) * (b * dt).exp_m1() / b
                    }
                }
                None => *xk + dt * rates[k],
            };
        }
    }
}

/// The states at every sample of `grid` (`[sample][state]`), from `initial`
/// with `params` (in the order of `eq.states` and `eq.params`).
pub fn solve(eq: &Equations, scheme: Scheme, grid: &TimeGrid, initial: &[f64], params: &[f64]) -> Result<Vec<Vec<f64>>, Error> {
    if initial.len() != eq.states.len() || params.len() != eq.params.len() {
        return Err(Error::invalid("cells", format!("{} initial values and {} parameters for a model of {} states and {} parameters", initial.len(), params.len(), eq.states.len(), eq.params.len()), "give one value for each"));
    }
    let stepper = Stepper::new(eq, scheme);
    let mut x = initial.to_vec();
    let mut out = Vec::with_capacity(grid.n_samples);
    let mut n = 0usize;
    for s in 0..grid.n_samples {
        if s > 0 {
            for _ in 0..grid.steps_per_sample {
                stepper.step(n as f64 * grid.dt, grid.dt, &mut x, params);
                n += 1;
            }
        }
        out.push(x.clone());
    }
    Ok(out)
}
