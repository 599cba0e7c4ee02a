//! Errors of predictions against reference values, and the rollout of a
//! one-step map: one copy for training (validation metrics, ITNN rollout),
//! verification and the benches, so they report the same numbers.
//!
//! A NaN or infinite prediction (or reference) counts as an infinite error,
//! so a diverged network can never report a finite MAE; [`VarMetrics::diverged`]
//! says so.

use serde::{Deserialize, Serialize};

/// `|prediction − reference|`, infinite when either is NaN or infinite.
#[inline]
pub fn abs_error(prediction: f64, reference: f64) -> f64 {
    let d = (prediction - reference).abs();
    if d.is_finite() {
        d
    } else {
        f64::INFINITY
    }
}

/// The largest [`abs_error`] between two equally long slices (0 for empty ones).
pub fn max_abs_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared slices of different lengths");
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max(abs_error(*x as f64, *y as f64)))
}

/// Running error statistics of one variable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accumulator {
    sum_abs: f64,
    sum_sq: f64,
    max: f64,
    count: usize,
}

impl Accumulator {
    /// Adds one comparison; returns its absolute error.
    #[inline]
    pub fn add(&mut self, prediction: f64, reference: f64) -> f64 {
        let e = abs_error(prediction, reference);
        self.sum_abs += e;
        self.sum_sq += e * e;
        self.max = self.max.max(e);
        self.count += 1;
        e
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn mae(&self) -> f64 {
        self.sum_abs / self.count.max(1) as f64
    }

    pub fn rmse(&self) -> f64 {
        (self.sum_sq / self.count.max(1) as f64).sqrt()
    }

    pub fn max_abs_error(&self) -> f64 {
        self.max
    }

    /// The statistics under `name`.
    pub fn finish(&self, name: &str) -> VarMetrics {
        VarMetrics { name: name.into(), mae: self.mae(), rmse: self.rmse(), max_abs_error: self.max }
    }
}

/// The `q`-quantile of `v` (linear interpolation between order statistics, as numpy's default).
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

/// Error statistics of one output variable, physical units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarMetrics {
    pub name: String,
    #[serde(deserialize_with = "null_as_infinity")]
    pub mae: f64,
    #[serde(deserialize_with = "null_as_infinity")]
    pub rmse: f64,
    #[serde(deserialize_with = "null_as_infinity")]
    pub max_abs_error: f64,
}

/// JSON has no NaN or infinity (serde_json writes them as null): a loss
/// that diverged reads back as NaN, so a diverged run's checkpoint resumes and its
/// metrics read back.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// As [`null_as_nan`], for a best-so-far that starts at infinity.
pub fn null_as_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}


impl VarMetrics {
    /// Whether a prediction was NaN or infinite (every error is finite otherwise).
    pub fn diverged(&self) -> bool {
        !self.max_abs_error.is_finite()
    }
}

/// MAE, RMSE and max abs error per variable of row-major `pred` and `truth`
/// (rows of `names.len()` values).
pub fn errors(names: &[String], pred: &[f32], truth: &[f32]) -> Vec<VarMetrics> {
    assert_eq!(pred.len(), truth.len(), "predictions and references of different lengths");
    let n = names.len();
    names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let mut acc = Accumulator::default();
            for (p, t) in pred.iter().skip(j).step_by(n).zip(truth.iter().skip(j).step_by(n)) {
                acc.add(*p as f64, *t as f64);
            }
            acc.finish(name)
        })
        .collect()
}

/// Rolls a one-step map out from `cells` initial rows `x0` ([cells][inputs],
/// the first `n_state` inputs being the state, the rest fixed per cell but
/// time): `step(x, cells)` gives the next states [cells][n_state], which
/// become the next inputs. Where `time` is `Some((column, dt))` that input is
/// the time, advanced by `dt` a step from its value in `x0` (the step of a
/// model with a stimulus protocol depends on it). Returns the states after
/// each of `steps` steps, [steps][cells][n_state].
pub fn rollout<E>(x0: &[f32], cells: usize, n_state: usize, steps: usize, time: Option<(usize, f64)>, mut step: impl FnMut(&[f32], usize) -> Result<Vec<f32>, E>) -> Result<Vec<f32>, E> {
    let n_in = if cells == 0 { n_state } else { x0.len() / cells };
    assert!(n_in >= n_state && x0.len() == cells * n_in, "rollout inputs are not [cells][inputs] with the state first");
    assert!(time.is_none_or(|(col, _)| col >= n_state && col < n_in), "the time column is not among the fixed inputs");
    let mut x = x0.to_vec();
    let mut out = Vec::with_capacity(steps * cells * n_state);
    for k in 0..steps {
        let y = step(&x, cells)?;
        for c in 0..cells {
            x[c * n_in..c * n_in + n_state].copy_from_slice(&y[c * n_state..(c + 1) * n_state]);
            if let Some((col, dt)) = time {
                // from the start each time, so no rounding accumulates
                x[c * n_in + col] = (x0[c * n_in + col] as f64 + (k + 1) as f64 * dt) as f32;
            }
        }
        out.extend_from_slice(&y[..cells * n_state]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_per_variable() {
        let names = vec!["u".to_string(), "v".to_string()];
        // rows (u, v): errors u = 1, 3; v = 0, 4
        let m = errors(&names, &[1.0, 0.0, 3.0, 4.0], &[0.0, 0.0, 0.0, 0.0]);
        assert_eq!((m[0].mae, m[0].max_abs_error), (2.0, 3.0));
        assert!((m[0].rmse - 5f64.sqrt()).abs() < 1e-12);
        assert_eq!((m[1].mae, m[1].rmse, m[1].max_abs_error), (2.0, 8f64.sqrt(), 4.0));
        assert!(!m[0].diverged());
    }

    #[test]
    fn nan_and_infinite_predictions_make_the_metrics_infinite() {
        let names = vec!["u".to_string()];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // the bad value first and last: a max that drops NaN would miss either
            for pred in [[bad, 0.5], [0.5, bad]] {
                let m = &errors(&names, &pred, &[0.0, 0.0])[0];
                assert!(m.mae.is_infinite() && m.rmse.is_infinite() && m.max_abs_error.is_infinite(), "{bad} {m:?}");
                assert!(m.diverged());
                assert!(max_abs_error(&pred, &[0.0, 0.0]).is_infinite());
            }
        }
    }

    #[test]
    fn rollout_feeds_each_state_back() {
        // x' = x + k per step, k a fixed input; two cells
        let x0 = [0.0, 1.0, 10.0, 2.0];
        let out = rollout(&x0, 2, 1, 3, None, |x, n| Ok::<_, ()>((0..n).map(|c| x[2 * c] + x[2 * c + 1]).collect())).unwrap();
        assert_eq!(out, vec![1.0, 12.0, 2.0, 14.0, 3.0, 16.0]);
        // the second input is time, from 0.5 and 0 a step of 0.25: x' = x + t
        let x0 = [0.0, 0.5, 10.0, 0.0];
        let out = rollout(&x0, 2, 1, 3, Some((1, 0.25)), |x, n| Ok::<_, ()>((0..n).map(|c| x[2 * c] + x[2 * c + 1]).collect())).unwrap();
        assert_eq!(out, vec![0.5, 10.0, 1.25, 10.25, 2.25, 10.75]);
    }
}
