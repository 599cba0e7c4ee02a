//! Timing in the same run: the Euler reference in sample-equivalents per
//! second, and an engine's throughput and latency percentiles at a batch size.

use std::time::Instant;

use crate::engine::Engine;
use crate::solve::Cells;
use crate::train::Mode;
use crate::verify::{trajectory_inputs, Latency, Problem};
use crate::Error;

/// Cell-steps one timed reference solve does at most: a fraction of a second
/// for the built-in FHN (its problems stay below it), a few seconds for a
/// real model (Luo-Rudy 1991: 50 000 steps a beat, ~1e7 cell-steps/s a core).
const MAX_TIMED_CELL_STEPS: usize = 100_000_000;

/// Reference speed on `n` fresh cells of the problem (median of 3):
/// cell-steps per second, and sample-equivalents per second (÷ steps per sample).
/// `n` is capped so the stored samples stay within 256 MiB and one solve
/// within [`MAX_TIMED_CELL_STEPS`] (at least 256 cells, so SIMD blocks and threads are full).
pub fn reference_rate(p: &Problem, n: usize, seed: u64, threads: usize) -> Result<(f64, f64), Error> {
    let per_cell = p.model.info().states.len() * p.grid.n_samples;
    let by_work = (MAX_TIMED_CELL_STEPS / p.grid.total_steps().max(1)).max(256);
    let cells = p.cells(n.min(by_work).min((64 << 20) / per_cell.max(1)).max(1), seed);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(p.solve(&p.grid, &cells, threads)?);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let cell_steps = (cells.n * p.grid.total_steps()) as f64 / times[1];
    Ok((cell_steps, cell_steps / p.grid.steps_per_sample as f64))
}

/// One point of the Euler reference's accuracy-cost line.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EulerPoint {
    pub dt: f64,
    pub seconds_per_sample: f64,
    /// Mean over the outputs of the MAE against the problem's own dt, at its sample times.
    pub mae: f64,
}

/// The Euler reference at coarser steps — every dt that still lands on the
/// sample times (the problem's dt times each divisor of its steps per
/// sample) — with its error against the problem's own dt on `n` fresh
/// cells, and its time per sample: the line a surrogate's accuracy and speed
/// are weighed against (the same ground truth `verify` uses). A dt at which
/// Euler blows up has an infinite error.
pub fn euler_line(p: &Problem, n: usize, seed: u64, threads: usize) -> Result<Vec<EulerPoint>, Error> {
    let cells = p.cells(if p.sampling.is_empty() { 1 } else { n }, seed);
    let truth = p.solve(&p.grid, &cells, threads)?;
    let states = p.output_states()?;
    let k = p.grid.steps_per_sample;
    let mut line = Vec::new();
    for d in (1..=k).filter(|d| k % d == 0) {
        let grid = crate::solve::TimeGrid { dt: p.grid.dt * d as f64, steps_per_sample: k / d, n_samples: p.grid.n_samples };
        let coarse = p.solve(&grid, &cells, threads)?;
        let mut acc = crate::metrics::Accumulator::default();
        let mut per_output = Vec::new();
        for &i in &states {
            for smp in 0..grid.n_samples {
                for c in 0..cells.n {
                    acc.add(coarse.get(i, smp, c) as f64, truth.get(i, smp, c) as f64);
                }
            }
            per_output.push(acc.mae());
            acc = crate::metrics::Accumulator::default();
        }
        let q = Problem { grid, ..p.clone() };
        let (_, samples_per_s) = reference_rate(&q, 20_000, seed ^ 0xBEEF, threads)?;
        line.push(EulerPoint { dt: q.grid.dt, seconds_per_sample: 1.0 / samples_per_s, mae: per_output.iter().sum::<f64>() / per_output.len().max(1) as f64 });
    }
    Ok(line)
}

/// Samples per second and latency percentiles at `batch`, warm-up excluded,
/// for at least `seconds` and 10 batches, on inputs of `cells`.
pub fn time_engine(
    p: &Problem,
    engine: &mut dyn Engine,
    cells: &Cells,
    batch: usize,
    seconds: f64,
) -> Result<(f64, Latency), Error> {
    time_engine_for(p, engine, cells, batch, Timing::Seconds(seconds))
}

/// How long to time an engine.
#[derive(Debug, Clone, Copy)]
pub enum Timing {
    /// At least this long, and at least 10 batches.
    Seconds(f64),
    /// Exactly this many batches.
    Iterations(usize),
}

/// [`time_engine`] with a chosen duration.
pub fn time_engine_for(
    p: &Problem,
    engine: &mut dyn Engine,
    cells: &Cells,
    batch: usize,
    timing: Timing,
) -> Result<(f64, Latency), Error> {
    let n_in = p.inputs.len();
    let pool = match p.kind {
        Mode::Itnn => (0..cells.n)
            .flat_map(|c| (0..n_in).map(move |j| (c, j)))
            .map(|(c, j)| {
                if j < p.outputs.len() {
                    0.5
                } else {
                    p.input_value(cells, &p.inputs[j].name, c) as f32
                }
            })
            .collect(),
        _ => trajectory_inputs(p, cells),
    };
    time_rows(engine, &pool, n_in, batch, timing)
}

/// Times `engine` on batches of `batch` rows cut from `pool` (rows of `n_in`
/// values, repeated as needed): samples per second and latency percentiles.
pub fn time_rows(engine: &mut dyn Engine, pool: &[f32], n_in: usize, batch: usize, timing: Timing) -> Result<(f64, Latency), Error> {
    if pool.is_empty() || n_in == 0 {
        return Err(Error::invalid("timing", "no input rows", "give the engine at least one row"));
    }
    let x: Vec<f32> = pool.iter().copied().cycle().take(batch * n_in).collect();
    for _ in 0..3 {
        engine.run(&x, batch)?;
    }
    let mut lat = Vec::new();
    let start = Instant::now();
    let more = |n: usize, elapsed: f64| match timing {
        Timing::Seconds(s) => n < 10 || elapsed < s,
        Timing::Iterations(k) => n < k.max(1),
    };
    while more(lat.len(), start.elapsed().as_secs_f64()) {
        let t = Instant::now();
        std::hint::black_box(engine.run(&x, batch)?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let total: f64 = lat.iter().sum();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    let latency = Latency {
        mean: total / lat.len() as f64,
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
    };
    Ok((batch as f64 * lat.len() as f64 / (total / 1e3), latency))
}
