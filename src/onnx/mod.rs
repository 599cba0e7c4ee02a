//! ONNX, excite's exchange format: the protobuf codec ([`proto`]), the graph
//! IR every ONNX file is read into and written from ([`graph`]), and the
//! reference interpreter that runs that IR ([`interp`]). Export writes
//! through it, build rewrites graphs in it, and every engine reads it.

pub mod graph;
pub mod interp;
pub mod proto;

pub use graph::Model;
pub use interp::Interpreter;

use crate::Error;

/// Checks that `x` holds `rows` rows of `inputs` values.
pub fn check_rows(x: &[f32], rows: usize, inputs: usize) -> Result<(), Error> {
    if rows.checked_mul(inputs) != Some(x.len()) {
        return Err(Error::invalid("inputs", format!("{} values are not {rows} rows of {inputs} inputs", x.len()), "pass rows × inputs values, row-major"));
    }
    Ok(())
}
