//! The reference interpreter: a plain evaluation of the ONNX subset excite
//! writes (Gemm, the seven activations, Gather/Less/Where for time windows,
//! Cast to fp16, Quantize/DequantizeLinear), the scalar reference that
//! calibration reads intermediate tensors from and that faster engines are
//! tested against. `engine::reference` serves it as an engine.

use std::collections::HashMap;
use std::path::Path;

use super::graph::{Model, FLOAT16, INT8};
use crate::Error;

/// A 2-D value `[rows, cols]` (rows = 1 for initializers and scalars, which broadcast).
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
    /// The shape as stored, for initializers (`[K, N]` weights, `[N]` vectors, `[]` scalars).
    pub dims: Vec<usize>,
}

impl Value {
    /// A computed `[rows, cols]` value.
    fn matrix(rows: usize, cols: usize, data: Vec<f32>) -> Value {
        Value { rows, cols, data, dims: vec![rows, cols] }
    }

    /// Whether the value broadcasts to `[rows, cols]` (each side equal or 1)
    /// and holds as many numbers as its shape says.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        (self.rows == rows || self.rows == 1) && (self.cols == cols || self.cols == 1) && Some(self.data.len()) == self.rows.checked_mul(self.cols)
    }

    fn at(&self, r: usize, c: usize) -> f32 {
        let r = if self.rows == 1 { 0 } else { r };
        let c = if self.cols == 1 { 0 } else { c };
        self.data[r * self.cols + c]
    }
}

/// The operators the interpreter runs: excite's graphs in every precision.
pub const OPS: [&str; 16] = ["Gemm", "Tanh", "Sigmoid", "Relu", "Softplus", "LeakyRelu", "Elu", "Erf", "Mul", "Add", "Less", "Gather", "Where", "Cast", "QuantizeLinear", "DequantizeLinear"];

/// The interpreter, holding the model's initializers decoded to f32.
pub struct Interpreter {
    model: Model,
    inits: HashMap<String, Value>,
    inputs: usize,
    outputs: usize,
}

impl Interpreter {
    pub fn new(model: Model) -> Result<Interpreter, Error> {
        let bad = |p: String| {
            Error::format("<model>", p, "the reference interpreter runs models written by `excite export` and `excite build`")
        };
        let mut inits = HashMap::new();
        for t in &model.inits {
            let data: Vec<f32> = match t.dtype {
                1 => t
                    .raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                FLOAT16 => t
                    .raw
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                INT8 => t.raw.iter().map(|&b| b as i8 as f32).collect(),
                7 => t
                    .raw
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                d => {
                    return Err(bad(format!(
                        "initializer `{}` has element type {d}",
                        t.name
                    )))
                }
            };
            let (rows, cols) = match t.dims.len() {
                0 => (1, 1),
                1 => (1, t.dims[0]),
                2 => (t.dims[0], t.dims[1]),
                _ => {
                    return Err(bad(format!(
                        "initializer `{}` has {} dimensions",
                        t.name,
                        t.dims.len()
                    )))
                }
            };
            if rows.checked_mul(cols) != Some(data.len()) {
                return Err(bad(format!("initializer `{}` has {} values for shape {:?}", t.name, data.len(), t.dims)));
            }
            inits.insert(
                t.name.clone(),
                Value {
                    rows,
                    cols,
                    data,
                    dims: t.dims.clone(),
                },
            );
        }
        let (inputs, outputs) = model.features();
        let (inputs, outputs) = (
            inputs.ok_or_else(|| bad("no [N, features] input".into()))?,
            outputs.ok_or_else(|| bad("no [N, features] output".into()))?,
        );
        Ok(Interpreter {
            model,
            inits,
            inputs,
            outputs,
        })
    }

    /// Loads an ONNX file, in excite's form ([`super::canonical`]).
    pub fn load(path: &Path) -> Result<Interpreter, Error> {
        super::canonical(super::read(path)?).and_then(Self::new).map_err(|e| e.in_file(path))
    }

    /// Runs the graph on `x` [rows, inputs]; returns every tensor computed, by name.
    pub fn run_all(&self, x: &[f32], rows: usize) -> Result<HashMap<String, Value>, Error> {
        // In an fp16 graph every tensor between the two Casts is float16:
        // round each result as a float16 runtime would store it.
        super::check_rows(x, rows, self.inputs)?;
        let fp16 = self.model.inits.iter().any(|t| t.dtype == FLOAT16);
        let mut v: HashMap<String, Value> = HashMap::new();
        v.insert(
            self.model.inputs[0].name.clone(),
            Value {
                rows,
                cols: self.inputs,
                data: x.to_vec(),
                dims: vec![rows, self.inputs],
            },
        );
        for n in &self.model.nodes {
            let get = |i: usize| -> Result<&Value, Error> {
                let name = n.inputs.get(i).ok_or_else(|| {
                    Error::format(
                        "<model>",
                        format!("node `{}` lacks input {i}", n.name),
                        "re-export the model",
                    )
                })?;
                v.get(name).or_else(|| self.inits.get(name)).ok_or_else(|| {
                    Error::format(
                        "<model>",
                        format!("node `{}`: unknown tensor `{name}`", n.name),
                        "re-export the model",
                    )
                })
            };
            let map = |a: &Value, f: &dyn Fn(f32) -> f32| Value {
                rows: a.rows,
                cols: a.cols,
                data: a.data.iter().map(|&x| f(x)).collect(),
                dims: a.dims.clone(),
            };
            let shapes = |what: &str| Error::format("<model>", format!("node `{}` ({}): {what}", n.name, n.op), "export the model again");
            let zip = |a: &Value, b: &Value, f: &dyn Fn(f32, f32) -> f32| -> Result<Value, Error> {
                let (rows, cols) = (a.rows.max(b.rows), a.cols.max(b.cols));
                if !a.fits(rows, cols) || !b.fits(rows, cols) {
                    return Err(shapes(&format!("[{}, {}] and [{}, {}] do not broadcast", a.rows, a.cols, b.rows, b.cols)));
                }
                let data = (0..rows * cols)
                    .map(|i| f(a.at(i / cols, i % cols), b.at(i / cols, i % cols)))
                    .collect();
                Ok(Value::matrix(rows, cols, data))
            };
            let out = match n.op.as_str() {
                "Gemm" => {
                    let (a, b) = (get(0)?, get(1)?);
                    let trans_b = n.attr_i("transB", 0) != 0;
                    let (k, m) = if trans_b {
                        (b.cols, b.rows)
                    } else {
                        (b.rows, b.cols)
                    };
                    if a.cols != k || !b.fits(b.rows, b.cols) {
                        return Err(Error::format(
                            "<model>",
                            format!("Gemm `{}`: [{}, {}] × [{k}, {m}]", n.name, a.rows, a.cols),
                            "re-export the model",
                        ));
                    }
                    let (alpha, beta) = (n.attr_f("alpha", 1.0), n.attr_f("beta", 1.0));
                    let c = if n.inputs.len() > 2 {
                        Some(get(2)?)
                    } else {
                        None
                    };
                    if c.is_some_and(|c| !c.fits(a.rows, m)) {
                        return Err(shapes(&format!("the bias does not broadcast to [{}, {m}]", a.rows)));
                    }
                    let mut data = vec![0.0f32; a.rows * m];
                    for r in 0..a.rows {
                        for j in 0..m {
                            let mut s = 0.0f32;
                            for kk in 0..k {
                                let w = if trans_b {
                                    b.data[j * k + kk]
                                } else {
                                    b.data[kk * m + j]
                                };
                                s += a.data[r * k + kk] * w;
                            }
                            data[r * m + j] = alpha * s + c.map_or(0.0, |c| beta * c.at(r, j));
                        }
                    }
                    Value {
                        rows: a.rows,
                        cols: m,
                        data,
                        dims: vec![a.rows, m],
                    }
                }
                "Tanh" => map(get(0)?, &|x| x.tanh()),
                "Sigmoid" => map(get(0)?, &|x| 1.0 / (1.0 + (-x).exp())),
                "Relu" => map(get(0)?, &|x| x.max(0.0)),
                "Softplus" => map(get(0)?, &|x| x.max(0.0) + (-x.abs()).exp().ln_1p()),
                "LeakyRelu" => {
                    let al = n.attr_f("alpha", 0.01);
                    map(get(0)?, &|x| if x >= 0.0 { x } else { al * x })
                }
                "Elu" => {
                    let al = n.attr_f("alpha", 1.0);
                    map(get(0)?, &|x| if x > 0.0 { x } else { al * x.exp_m1() })
                }
                "Erf" => map(get(0)?, &|x| crate::special::erf(x as f64) as f32),
                "Mul" => zip(get(0)?, get(1)?, &|a, b| a * b)?,
                "Add" => zip(get(0)?, get(1)?, &|a, b| a + b)?,
                "Less" => zip(get(0)?, get(1)?, &|a, b| if a < b { 1.0 } else { 0.0 })?,
                "Gather" => {
                    let (a, idx) = (get(0)?, get(1)?);
                    let cols: Vec<usize> = idx
                        .data
                        .iter()
                        .map(|&i| (i >= 0.0 && (i as usize) < a.cols && i.fract() == 0.0).then_some(i as usize))
                        .collect::<Option<_>>()
                        .ok_or_else(|| shapes(&format!("an index outside 0..{}", a.cols)))?;
                    let data = (0..a.rows)
                        .flat_map(|r| cols.iter().map(move |&c| a.data[r * a.cols + c]))
                        .collect();
                    Value {
                        rows: a.rows,
                        cols: cols.len(),
                        data,
                        dims: vec![a.rows, cols.len()],
                    }
                }
                "Where" => {
                    let (c, a, b) = (get(0)?, get(1)?, get(2)?);
                    let (rows, cols) = (a.rows.max(b.rows).max(c.rows), a.cols.max(b.cols));
                    if !a.fits(rows, cols) || !b.fits(rows, cols) || !c.fits(rows, c.cols) || c.data.is_empty() {
                        return Err(shapes("condition and branches do not broadcast"));
                    }
                    let data = (0..rows * cols)
                        .map(|i| {
                            let (r, k) = (i / cols, i % cols);
                            if c.at(r, 0) != 0.0 {
                                a.at(r, k)
                            } else {
                                b.at(r, k)
                            }
                        })
                        .collect();
                    Value::matrix(rows, cols, data)
                }
                "Cast" => {
                    let to = n.attr_i("to", 1) as i32;
                    if to == FLOAT16 {
                        map(get(0)?, &|x| half::f16::from_f32(x).to_f32())
                    } else {
                        get(0)?.clone()
                    }
                }
                "QuantizeLinear" | "DequantizeLinear" => {
                    let (x, scale) = (get(0)?, get(1)?);
                    let zp = if n.inputs.len() > 2 {
                        Some(get(2)?)
                    } else {
                        None
                    };
                    let per_col = scale.data.len() > 1;
                    let want = if per_col { x.cols } else { 1 };
                    if scale.data.len() != want || zp.is_some_and(|z| z.data.len() != want) {
                        return Err(shapes(&format!("a scale or zero point of {} values for {} columns", scale.data.len(), x.cols)));
                    }
                    let q = n.op == "QuantizeLinear";
                    let data = (0..x.data.len())
                        .map(|i| {
                            let c = i % x.cols;
                            let s = if per_col {
                                scale.data[c]
                            } else {
                                scale.data[0]
                            };
                            let z = zp.map_or(0.0, |z| if per_col { z.data[c] } else { z.data[0] });
                            if q {
                                ((x.data[i] / s).round_ties_even() + z).clamp(-128.0, 127.0)
                            } else {
                                (x.data[i] - z) * s
                            }
                        })
                        .collect();
                    Value {
                        rows: x.rows,
                        cols: x.cols,
                        data,
                        dims: x.dims.clone(),
                    }
                }
                op => {
                    return Err(Error::format(
                        "<model>",
                        format!("operator `{op}` (node `{}`) is not supported", n.name),
                        "excite engines run Gemm and activation graphs written by `excite export`",
                    ))
                }
            };
            let out = if fp16
                && !(n.op == "Cast" && n.attr_i("to", 1) == 1)
                && !matches!(n.op.as_str(), "Less" | "Gather")
            {
                Value {
                    data: out
                        .data
                        .iter()
                        .map(|&x| half::f16::from_f32(x).to_f32())
                        .collect(),
                    ..out
                }
            } else {
                out
            };
            for o in &n.outputs {
                v.insert(o.clone(), out.clone());
            }
        }
        Ok(v)
    }
}

impl Interpreter {
    /// Inputs per row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs per row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `int8` for a QDQ graph, `fp16` for float16 weights, else `fp32`.
    pub fn precision(&self) -> &'static str {
        if self.model.nodes.iter().any(|n| n.op == "QuantizeLinear") {
            "int8"
        } else if self.model.inits.iter().any(|t| t.dtype == FLOAT16) {
            "fp16"
        } else {
            "fp32"
        }
    }

    /// The graph's output for `x` [rows, inputs], row-major [rows, outputs].
    pub fn run(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        super::check_rows(x, rows, self.inputs)?;
        let mut all = self.run_all(x, rows)?;
        let name = &self.model.outputs[0].name;
        all.remove(name).map(|v| v.data).ok_or_else(|| {
            Error::format(
                "<model>",
                format!("nothing computes the output `{name}`"),
                "re-export the model",
            )
        })
    }
}
