//! `excite annotate`: write a problem into a model trained elsewhere.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use excite::data::problem::ProblemMeta;

#[derive(Args)]
pub struct AnnotateArgs {
    /// An MLP-shaped ONNX file (torch.onnx, skl2onnx, tf2onnx, keras, jax2onnx, excite).
    pub model: PathBuf,
    /// The dataset the model was trained on (its folder or dataset.json): the
    /// cell model, the inputs and outputs in column order, their ranges and the time grid.
    #[arg(long, value_name = "DATASET")]
    pub problem: PathBuf,
    /// The surrogate's kind: ddnn (state at (t, parameters)), or itnn (one step of the state).
    #[arg(long, default_value = "ddnn")]
    pub kind: String,
    /// The annotated model (in excite's form: Gemm layers, any input scaling folded in).
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(a: &AnnotateArgs) -> Result<ExitCode> {
    let problem = ProblemMeta::from_dataset(&a.problem, &a.kind)?;
    // the kind must be one excite knows before it is written
    excite::verify::Problem::from_meta(problem.clone())?;
    let m = excite::onnx::annotate(excite::onnx::read(&a.model)?, &problem).map_err(|e| e.in_file(&a.model))?;
    excite::fsio::write_atomic(&a.out, &m.to_bytes())?;
    let names = |v: &[excite::data::VarRange]| v.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
    println!("wrote {}: {} ({}) → ({}), {} layers", a.out.display(), problem.model.name, names(&problem.inputs), names(&problem.outputs), m.nodes.iter().filter(|n| n.op == "Gemm").count());
    Ok(ExitCode::SUCCESS)
}
