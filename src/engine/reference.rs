//! The reference interpreter ([`crate::onnx::Interpreter`]) as an engine:
//! slow, exact, and needing no runtime library.

use crate::engine::{Engine, EngineInfo};
use crate::onnx::Interpreter;
use crate::Error;

impl Engine for Interpreter {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            backend: "excite-reference".into(),
            precision: self.precision().into(),
            inputs: self.inputs(),
            outputs: self.outputs(),
            runtime: format!("excite {}", env!("CARGO_PKG_VERSION")),
        }
    }

    fn run(&mut self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        Interpreter::run(self, x, rows)
    }
}
