//! `excite inspect`: a bundle's manifest and signature, after checking every file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use excite::bundle::sign::{Signed, TrustedKey};

use super::printer::rate;

#[derive(Args)]
pub struct InspectArgs {
    /// Bundle folder or .tar.gz.
    pub bundle: PathBuf,
    /// Require a signature by this public key (minisign's .pub file).
    #[arg(long, value_name = "PUB")]
    pub trusted_key: Option<PathBuf>,
    /// Print bundle.json and the signature state as JSON: {"bundle": …, "signature": …}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &InspectArgs) -> Result<ExitCode> {
    let trusted = a.trusted_key.as_deref().map(TrustedKey::from_file).transpose()?;
    let opened = excite::bundle::open(&a.bundle, trusted.as_ref())?;
    let m = &opened.manifest;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "bundle": m, "signature": opened.signed }))?);
        return Ok(ExitCode::SUCCESS);
    }
    let v = &m.validated;
    println!("bundle   {} ({}), {} files verified, at {}", m.name, m.format, m.files.len(), opened.dir.display());
    let signed = match &opened.signed {
        Signed::Unsigned => "no".to_string(),
        Signed::Unchecked { key_id: Some(id) } => format!("by key {id}, not checked (pass --trusted-key to check)"),
        Signed::Unchecked { key_id: None } => "an unreadable SHA256SUMS.minisig (not checked)".to_string(),
        Signed::Verified(s) => format!("by key {}, verified (comment: {})", s.key_id, s.trusted_comment),
    };
    println!("signed   {signed}");
    println!("model    {}: {}", m.cell_model.name, m.cell_model.equations);
    println!("kind     {:?} surrogate, units {}", m.kind, m.units);
    let vars = |vs: &[excite::data::VarRange]| vs.iter().map(|v| format!("{} ∈ [{:.4}, {:.4}]", v.name, v.min, v.max)).collect::<Vec<_>>().join(", ");
    println!("inputs   {}", vars(&m.inputs));
    println!("outputs  {}", vars(&m.outputs));
    for e in &m.engines {
        println!("engine   {} {} {} batch {}:{}:{}", e.dir, e.target.name(), e.precision, e.batch.min, e.batch.opt, e.batch.max);
    }
    let errs: Vec<String> = v.mae.iter().map(|(k, mae)| format!("{k}: MAE {mae:.3e}, max {:.3e}", v.max_abs_error.get(k).copied().unwrap_or(f64::NAN))).collect();
    println!("verified {} on {} fresh cells: {}", if v.passed { "passed" } else { "FAILED" }, v.cells, errs.join("; "));
    println!("speed    {} samples/s at batch {} vs Euler {} (×{:.3})", rate(v.engine_samples_per_s), v.batch, rate(v.reference_samples_per_s), v.speedup);
    let versions: Vec<String> = m.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("versions {}", versions.join(", "));
    Ok(ExitCode::SUCCESS)
}
