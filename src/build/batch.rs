//! Batch-size tuning: throughput and latency over powers of two, the choice
//! (largest throughput, or the largest batch meeting a p99 latency limit),
//! and the curve as CSV and SVG.

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::verify::chart::{self, Chart, Scale, Series};
use crate::verify::{time_engine, Problem};
use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub batch: usize,
    pub samples_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Measures `engine` at 1, 2, 4, … up to `cap` rows per batch.
pub fn sweep(
    p: &Problem,
    engine: &mut dyn Engine,
    cap: usize,
    seconds: f64,
) -> Result<Vec<Point>, Error> {
    let cells = p.cells(256, 17);
    let mut out = Vec::new();
    let mut b = 1;
    while b <= cap.max(1) {
        let (rate, lat) = time_engine(p, engine, &cells, b, seconds)?;
        out.push(Point {
            batch: b,
            samples_per_s: rate,
            p50_ms: lat.p50,
            p99_ms: lat.p99,
        });
        b *= 2;
    }
    Ok(out)
}

/// The batch with the highest throughput, or with `max_latency_ms` the
/// largest whose p99 latency stays within it.
pub fn choose(points: &[Point], max_latency_ms: Option<f64>) -> Result<usize, Error> {
    match max_latency_ms {
        Some(limit) => points
            .iter()
            .filter(|p| p.p99_ms <= limit)
            .map(|p| p.batch)
            .max()
            .ok_or_else(|| {
                Error::invalid(
                    "--max-latency",
                    format!(
                        "no batch size meets a p99 latency of {limit} ms (batch 1: {:.4} ms)",
                        points[0].p99_ms
                    ),
                    "raise --max-latency",
                )
            }),
        None => Ok(points
            .iter()
            .max_by(|a, b| a.samples_per_s.total_cmp(&b.samples_per_s))
            .map(|p| p.batch)
            .unwrap_or(1)),
    }
}

/// `batch.csv`: one row per batch size.
pub fn csv(points: &[Point]) -> Vec<u8> {
    crate::fsio::csv_bytes(points)
}

pub fn svg(points: &[Point]) -> String {
    let series = vec![Series {
        name: "samples/s".into(),
        color: 0,
        stroke: crate::verify::chart::Stroke::Solid,
        points: points.iter().map(|p| (p.batch as f64, p.samples_per_s)).collect(),
    }];
    chart::svg(&Chart {
        title: "throughput by batch size",
        x_label: "batch (rows)",
        y_label: "samples/s",
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        series: &series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_follows_throughput_or_latency() {
        let pts: Vec<Point> = [
            (1, 1e5, 0.01),
            (64, 5e6, 0.02),
            (1024, 9e6, 0.2),
            (4096, 8e6, 1.0),
        ]
        .iter()
        .map(|&(b, r, l)| Point {
            batch: b,
            samples_per_s: r,
            p50_ms: l,
            p99_ms: l,
        })
        .collect();
        assert_eq!(choose(&pts, None).unwrap(), 1024);
        assert_eq!(choose(&pts, Some(0.05)).unwrap(), 64);
        assert!(choose(&pts, Some(0.001))
            .unwrap_err()
            .to_string()
            .contains("no batch size"));
    }
}
