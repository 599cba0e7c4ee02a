//! `excite models`: the built-in cell models.

use std::process::ExitCode;

use anyhow::Result;

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
