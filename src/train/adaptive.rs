//! Adaptive point density: periodically the training rows with the largest
//! error are found, and mini-batches draw them more often.

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::sampling::Rng;
use crate::train::Net;

/// Batch rows: uniform, or with the hard rows drawn `boost` times as often.
pub(super) fn draw(
    rng: &mut Rng,
    n: usize,
    batch: usize,
    hard: &[u32],
    adaptive: Option<(f64, f64)>,
) -> Vec<usize> {
    let q = match adaptive {
        Some((f, boost)) if !hard.is_empty() => f * boost / (f * boost + (1.0 - f)),
        _ => 0.0,
    };
    (0..batch)
        .map(|_| {
            if q > 0.0 && rng.uniform() < q {
                hard[rng.below(hard.len())] as usize
            } else {
                rng.below(n)
            }
        })
        .collect()
}

/// The `fraction` of training rows with the largest squared error.
pub(super) fn hardest_rows(
    net: &Net,
    x: &[f32],
    y: &[f32],
    n_in: usize,
    n_out: usize,
    fraction: f64,
    device: &Device,
) -> Vec<u32> {
    let rows = x.len() / n_in;
    let mut err = Vec::with_capacity(rows);
    for start in (0..rows).step_by(65536) {
        let end = (start + 65536).min(rows);
        let xt = Tensor::<2>::from_data(
            TensorData::new(x[start * n_in..end * n_in].to_vec(), [end - start, n_in]),
            device,
        );
        let yt = Tensor::<2>::from_data(
            TensorData::new(y[start * n_out..end * n_out].to_vec(), [end - start, n_out]),
            device,
        );
        let e = (net.forward(xt) - yt)
            .square()
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        err.extend(e);
    }
    let mut idx: Vec<u32> = (0..rows as u32).collect();
    let keep = ((rows as f64 * fraction).ceil() as usize).clamp(1, rows);
    idx.select_nth_unstable_by(keep - 1, |&a, &b| {
        err[b as usize].total_cmp(&err[a as usize])
    });
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}
