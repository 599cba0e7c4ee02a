//! `excite inspect`: a bundle's manifest, after checking every file.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::printer::rate;

pub fn run(path: &Path, json: bool) -> Result<ExitCode> {
    let (dir, m) = excite::bundle::open(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(ExitCode::SUCCESS);
    }
    let v = &m.validated;
    println!("bundle   {} ({}), {} files verified, at {}", m.name, m.format, m.files.len(), dir.display());
    println!("model    {}: {}", m.cell_model.name, m.cell_model.equations);
    println!("kind     {:?} surrogate, units {}", m.kind, m.units);
    let vars = |vs: &[excite::data::VarRange]| vs.iter().map(|v| format!("{} ∈ [{:.4}, {:.4}]", v.name, v.min, v.max)).collect::<Vec<_>>().join(", ");
    println!("inputs   {}", vars(&m.inputs));
    println!("outputs  {}", vars(&m.outputs));
    for e in &m.engines {
        println!("engine   {} {} {} batch {}:{}:{}", e.dir, e.target.name(), e.precision, e.batch.min, e.batch.opt, e.batch.max);
    }
    let errs: Vec<String> = v.mae.iter().map(|(k, mae)| format!("{k}: MAE {mae:.3e}, max {:.3e}", v.max_abs_error[k])).collect();
    println!("verified {} on {} fresh cells: {}", if v.passed { "passed" } else { "FAILED" }, v.cells, errs.join("; "));
    println!("speed    {} samples/s at batch {} vs Euler {} (×{:.3})", rate(v.engine_samples_per_s), v.batch, rate(v.reference_samples_per_s), v.speedup);
    let versions: Vec<String> = m.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("versions {}", versions.join(", "));
    Ok(ExitCode::SUCCESS)
}
