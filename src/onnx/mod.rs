//! ONNX, excite's exchange format: the protobuf codec ([`proto`]), the graph
//! IR every ONNX file is read into and written from ([`graph`]), and the
//! reference interpreter that runs that IR ([`interp`]). Export writes
//! through it, build rewrites graphs in it, and every engine reads it.

pub mod graph;
pub mod interp;
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
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > MAX_FILE_BYTES {
        return Err(Error::format(path, format!("{len} bytes, over the {MAX_FILE_BYTES}-byte limit of an ONNX file"), HINT));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// [`Model::parse`] of `bytes` read from `path`, the defect named with the file.
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Model, Error> {
    Model::parse(bytes).map_err(|problem| Error::format(path, format!("not a usable ONNX model: {problem}"), HINT))
}

/// Checks that `x` holds `rows` rows of `inputs` values.
pub fn check_rows(x: &[f32], rows: usize, inputs: usize) -> Result<(), Error> {
    if rows.checked_mul(inputs) != Some(x.len()) {
        return Err(Error::invalid("inputs", format!("{} values are not {rows} rows of {inputs} inputs", x.len()), "pass rows × inputs values, row-major"));
    }
    Ok(())
}
