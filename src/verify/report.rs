//! The verification report on disk: `report.json` (for scripts),
//! `report.md` (for people) and two SVG plots, written as one folder.

use std::fmt::Write as _;
use std::path::Path;

use crate::fsio::{write_atomic, StagingDir};
use crate::verify::chart::{self, Chart, Scale, Series, Stroke};
use crate::verify::Report;
use crate::Error;

/// The report's file for scripts in its folder.
pub const REPORT_FILE: &str = "report.json";

/// Writes the report folder, replacing a previous one only when complete.
pub fn write(r: &Report, dir: &Path) -> Result<(), Error> {
    let staging = StagingDir::new(dir)?;
    let p = staging.path();
    write_atomic(
        &p.join(REPORT_FILE),
        &serde_json::to_vec_pretty(r).expect("serialises"),
    )?;
    write_atomic(&p.join("report.md"), markdown(r).as_bytes())?;
    write_atomic(&p.join("trajectories.svg"), trajectories(r).as_bytes())?;
    write_atomic(&p.join("error.svg"), errors(r).as_bytes())?;
    staging.commit()
}

fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let verdict = if r.passed { "PASSED" } else { "FAILED" };
    let _ = writeln!(m, "# Verification: {verdict}\n");
    let _ = writeln!(
        m,
        "- model: `{}` (sha256 `{}`)",
        r.model_file, r.model_sha256
    );
    let _ = writeln!(
        m,
        "- engine: {} {} ({})",
        r.engine.backend, r.engine.precision, r.engine.runtime
    );
    let _ = writeln!(
        m,
        "- reference: {}, {} ({:?} surrogate), {} cells, seed {}\n- compared on: {}",
        match r.scheme {
            crate::solve::Scheme::Euler => "forward Euler",
            crate::solve::Scheme::RushLarsen => "Rush-Larsen",
        },
        r.cell_model, r.kind, r.cells, r.seed, r.held_out
    );
    let _ = writeln!(
        m,
        "- budget: MAE ≤ {}, max abs error ≤ {}\n",
        sci(r.budget.max_mae),
        sci(r.budget.max_abs_error)
    );
    let _ = writeln!(m, "| variable | MAE | RMSE | max abs error | worst at t | passed |\n|---|---:|---:|---:|---:|:---:|");
    for v in &r.variables {
        let _ = writeln!(
            m,
            "| {} | {:.3e} | {:.3e} | {:.3e} | {:.4} | {} |",
            v.name,
            v.mae,
            v.rmse,
            v.max_abs_error,
            v.worst.t,
            if v.passed { "yes" } else { "**no**" }
        );
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(m, "\nFirst failure: {f}");
    }
    let _ = writeln!(m, "\n## Speed\n\n| | samples/s |\n|---|---:|");
    let _ = writeln!(
        m,
        "| engine, batch {} | {:.3e} |",
        r.batch, r.engine_samples_per_s
    );
    let _ = writeln!(
        m,
        "| Euler reference ({} steps per sample; {:.3e} cell-steps/s) | {:.3e} |",
        r.steps_per_sample, r.reference_cell_steps_per_s, r.reference_samples_per_s
    );
    let _ = writeln!(m, "| **speed-up** | **{:.2}×** |", r.speedup);
    let l = r.latency_ms;
    let _ = writeln!(
        m,
        "\nEngine latency per batch: mean {:.3} ms, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms.",
        l.mean, l.p50, l.p90, l.p99
    );
    let _ = writeln!(
        m,
        "\n![trajectories](trajectories.svg)\n\n![error over time](error.svg)"
    );
    m
}

fn trajectories(r: &Report) -> String {
    let mut series = Vec::new();
    let t = &r.error_vs_time.t;
    let name = r.variables.first().map(|v| v.name.as_str()).unwrap_or("");
    for (k, ex) in r.examples.iter().enumerate() {
        let pts = |vals: &[f64]| t.iter().copied().zip(vals.iter().copied()).collect::<Vec<_>>();
        for (what, vals, stroke) in [("reference", &ex.reference, Stroke::Solid), ("engine", &ex.engine, Stroke::Dashed)] {
            if let Some(v) = vals.first() {
                series.push(Series { name: format!("cell {} {what}", ex.cell), color: k, stroke, points: pts(v) });
            }
        }
    }
    chart::svg(&Chart {
        title: &format!("{name}: engine (dashed) vs Euler reference"),
        x_label: "t",
        y_label: name,
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series: &series,
    })
}

fn errors(r: &Report) -> String {
    let series: Vec<Series> = r
        .error_vs_time
        .mae
        .iter()
        .enumerate()
        .map(|(k, (name, e))| Series {
            name: format!("{name} MAE"),
            color: k,
            stroke: Stroke::Solid,
            points: r.error_vs_time.t.iter().copied().zip(e.iter().copied()).collect(),
        })
        .collect();
    chart::svg(&Chart {
        title: "mean absolute error over time (log scale)",
        x_label: "t",
        y_label: "MAE",
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        series: &series,
    })
}

/// A figure in a report: `1.234e-3`, or `—` where there is none.
pub fn sci(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |x| format!("{x:.3e}"))
}
