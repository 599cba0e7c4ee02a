//! ONNX, excite's exchange format: the protobuf codec ([`proto`]), the graph
//! IR every ONNX file is read into and written from ([`graph`]), and the
//! reference interpreter that runs that IR ([`interp`]). Export writes
//! through it, build rewrites graphs in it, and every engine reads it.

pub mod graph;
pub mod interp;
pub mod mlp;
pub mod proto;

pub use graph::Model;
pub use interp::Interpreter;

use std::path::Path;

use crate::Error;

/// Largest ONNX file excite reads: protobuf's own 2 GiB limit.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

const HINT: &str = "export the model again (`excite export`, or your framework's ONNX exporter)";

/// Reads and checks the ONNX model in `path` ([`Model::parse`]); an
/// oversized, malformed or inconsistent file is an error naming the defect.
pub fn read(path: &Path) -> Result<Model, Error> {
    parse_file(path, &read_bytes(path)?)
}

/// The bytes of the ONNX file `path`, refused above [`MAX_FILE_BYTES`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    crate::fsio::read_limited(path, MAX_FILE_BYTES, "an ONNX model file")
}

/// [`Model::parse`] of `bytes` read from `path`, the defect named with the file.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Model, Error> {
    Model::parse(bytes).map_err(|problem| Error::format(path, format!("not a usable ONNX model: {problem}"), HINT))
}

/// `m` in excite's form ([`mlp::Mlp::to_model`]): an MLP from any common
/// exporter is rewritten into it; a graph of excite's own that is more than
/// one fp32 MLP (time windows, fp16 and int8 variants) stays as it is.
/// Anything else is an error naming what is not an MLP.
pub fn canonical(m: Model) -> Result<Model, Error> {
    match mlp::Mlp::from_model(&m) {
        Ok(net) => Ok(net.to_model(&m)),
        Err(_) if m.metadata.iter().any(|(k, _)| k.starts_with("excite.")) && m.nodes.iter().all(|n| interp::OPS.contains(&n.op.as_str()) && n.domain.is_empty()) => Ok(m),
        Err(problem) => Err(Error::format("<model>", problem, "excite reads MLPs: Gemm or MatMul + Add layers with the activations listed in README (Bring your own model); export yours in that shape, or run it with --target cpu through ONNX Runtime")),
    }
}

/// `m` in excite's form ([`canonical`]) recording `problem` in its
/// metadata, so that verification, bundles and every later command know what
/// it computes. Refused when the widths disagree.
pub fn annotate(m: Model, problem: &crate::data::problem::ProblemMeta) -> Result<Model, Error> {
    let mut m = canonical(m)?;
    let (n_in, n_out) = m.features();
    let (n_in, n_out) = (n_in.unwrap_or(0), n_out.unwrap_or(0));
    if (n_in, n_out) != (problem.inputs.len(), problem.outputs.len()) {
        let names = |v: &[crate::data::VarRange]| v.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Error::invalid(
            "--problem",
            format!("the model takes {n_in} inputs and gives {n_out} outputs; the problem has {} ({}) and {} ({})", problem.inputs.len(), names(&problem.inputs), problem.outputs.len(), names(&problem.outputs)),
            "pass the dataset the model was trained on, with its columns in the same order",
        ));
    }
    for (k, v) in problem.to_props() {
        m.set_meta(&k, &v);
    }
    Ok(m)
}

/// Checks that `x` holds `rows` rows of `inputs` values.
pub fn check_rows(x: &[f32], rows: usize, inputs: usize) -> Result<(), Error> {
    if rows.checked_mul(inputs) != Some(x.len()) {
        return Err(Error::invalid("inputs", format!("{} values are not {rows} rows of {inputs} inputs", x.len()), "pass rows × inputs values, row-major"));
    }
    Ok(())
}
