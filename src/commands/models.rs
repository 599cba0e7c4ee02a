//! `excite models`: the built-in cell models, or an imported one.

use std::process::ExitCode;

use std::path::Path;

use anyhow::Result;
use excite::cell::equations::Kind;

pub fn run(json: bool) -> Result<ExitCode> {
    let models = excite::cell::all();
    if json {
        let list: Vec<_> = models
            .iter()
            .map(|m| {
                let i = m.info();
                serde_json::json!({
                    "name": i.name, "summary": i.summary, "equations": i.equations,
                    "states": i.states.iter().map(|s| s.name).collect::<Vec<_>>(),
                    "params": i.params.iter().map(|p| serde_json::json!({"name": p.name, "default": p.default, "min": p.min, "max": p.max, "summary": p.summary})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in models {
        let i = m.info();
        println!("{}: {}\n  {}", i.name, i.summary, i.equations);
        println!(
            "  states: {}",
            i.states
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        for p in i.params {
            println!(
                "  {:<6} default {:<6} valid [{}, {}]  {}",
                p.name, p.default, p.min, p.max, p.summary
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `excite models --cellml FILE`: what the import makes of a CellML model.
pub fn cellml(path: &Path, json: bool) -> Result<ExitCode> {
    let eq = excite::cell::cellml::load(path)?;
    let gates = eq.gates(eq.potential());
    let states: Vec<_> = eq.states.iter().zip(&gates).map(|(&s, g)| {
        let v = &eq.vars[s];
        let initial = match v.kind { Kind::State { initial } => initial, _ => f64::NAN };
        serde_json::json!({"name": v.name, "units": v.units, "initial": initial, "gate": g.is_some()})
    }).collect();
    let params: Vec<_> = eq.params.iter().map(|&p| {
        let v = &eq.vars[p];
        let value = match v.kind { Kind::Param { value } => value, _ => f64::NAN };
        serde_json::json!({"name": v.name, "units": v.units, "value": value})
    }).collect();
    let algebraic: Vec<&str> = eq.algebraic.iter().map(|(v, _)| eq.vars[*v].name.as_str()).collect();
    let potential = eq.potential().map(|p| eq.vars[p].name.clone());
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({
            "name": eq.name, "file": path.display().to_string(), "time": {"name": eq.time.0, "units": eq.time.1},
            "potential": potential, "states": states, "params": params, "algebraic": algebraic,
        }))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} ({}): {} states, {} parameters, {} algebraic variables; time {} in {}", eq.name, path.display(), states.len(), params.len(), algebraic.len(), eq.time.0, eq.time.1);
    if let Some(p) = &potential {
        println!("  membrane potential: {p}");
    }
    println!("  states (initial value; * a gating variable, which Rush–Larsen advances exactly):");
    for s in &states {
        println!("    {}{:<28} {:>14} {}", if s["gate"] == true { "*" } else { " " }, s["name"].as_str().unwrap_or(""), s["initial"], s["units"].as_str().unwrap_or(""));
    }
    println!("  parameters:");
    for p in &params {
        println!("     {:<28} {:>14} {}", p["name"].as_str().unwrap_or(""), p["value"], p["units"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}
