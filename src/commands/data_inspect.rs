//! `excite data inspect`: a dataset's metadata and per-variable statistics.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use excite::data::{self, Stats};

pub fn run(path: &Path, json: bool) -> Result<ExitCode> {
    let loaded = data::load(path)?;
    let meta = &loaded.meta;
    let names = |array: &str| -> Vec<String> {
        let vars = if array.starts_with('x') {
            &meta.inputs
        } else {
            &meta.outputs
        };
        vars.iter().map(|v| v.name.clone()).collect()
    };
    let mut stats = Vec::new();
    for (name, a) in &loaded.arrays {
        let cols = names(name);
        for j in 0..a.cols {
            let var = cols.get(j).cloned().unwrap_or_else(|| format!("col{j}"));
            stats.push((name.clone(), var, Stats::of(a.column(j))));
        }
    }
    if json {
        let stats: Vec<_> = stats
            .iter()
            .map(|(a, v, s)| serde_json::json!({"array": a, "variable": v, "stats": s}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"metadata": meta, "stats": stats}))?
        );
    } else {
        println!("dataset  {} ({})", meta.name, meta.format);
        println!("model    {}: {}", meta.model.name, meta.model.equations);
        let params: Vec<String> = meta
            .model
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("params   {}", params.join(" "));
        let rows: Vec<String> = data::SPLITS
            .iter()
            .map(|s| format!("{s} {}", meta.split.rows.get(*s).copied().unwrap_or(0)))
            .collect();
        println!(
            "kind     {:?}; split by {} ({} rows)",
            meta.kind,
            meta.split.by,
            rows.join(", ")
        );
        println!(
            "time     t ∈ [0, {}], dt {}, sample every {} ({} steps)",
            meta.time.t_end, meta.time.dt, meta.time.sample_every, meta.time.steps_per_sample
        );
        let ranges: Vec<String> = meta
            .sampling
            .ranges
            .iter()
            .map(|(k, [lo, hi])| format!("{k} ∈ [{lo}, {hi}]"))
            .collect();
        println!(
            "sampling {:?}, seed {}, {} cells{}",
            meta.sampling.method,
            meta.sampling.seed,
            meta.sampling.cells,
            if ranges.is_empty() {
                String::new()
            } else {
                format!(": {}", ranges.join(", "))
            }
        );
        println!(
            "solver   {} {} on {} ({}), excite {}",
            meta.solver.scheme,
            meta.solver.precision,
            meta.solver.device,
            meta.solver.kernel,
            meta.excite_version
        );
        println!("sha256   {} (verified)", meta.content_sha256);
        println!();
        println!(
            "{:<8} {:<6} {:>9} {:>12} {:>12} {:>12} {:>12}",
            "array", "var", "count", "min", "max", "mean", "std"
        );
        for (a, v, s) in &stats {
            println!(
                "{a:<8} {v:<6} {:>9} {:>12.5e} {:>12.5e} {:>12.5e} {:>12.5e}",
                s.count, s.min, s.max, s.mean, s.std
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
