//! An ONNX model as plain data, read from and written back to protobuf, so
//! `build` can rewrite excite's graphs (precision, quantisation) without an
//! ONNX library. It covers what excite writes: nodes with float/int
//! attributes, initializers with raw data, 2-D inputs and outputs.

use crate::export::proto::{self, fields, Msg};

pub const FLOAT: i32 = 1;
pub const INT8: i32 = 3;
pub const INT64: i32 = 7;
pub const FLOAT16: i32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Float(String, f32),
    Int(String, i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<Attr>,
}

impl Node {
    /// The float attribute `k`, or `default` when absent (ONNX's defaults differ per operator).
    pub fn attr_f(&self, k: &str, default: f32) -> f32 {
        self.attrs.iter().find_map(|a| match a {
            Attr::Float(name, v) if name == k => Some(*v),
            _ => None,
        }).unwrap_or(default)
    }

    /// The integer attribute `k`, or `default` when absent.
    pub fn attr_i(&self, k: &str, default: i64) -> i64 {
        self.attrs.iter().find_map(|a| match a {
            Attr::Int(name, v) if name == k => Some(*v),
            _ => None,
        }).unwrap_or(default)
    }

    pub fn new(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Attr>) -> Node {
        Node {
            op: op.into(),
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs,
        }
    }
}

/// An initializer: element type and little-endian raw data.
#[derive(Debug, Clone, PartialEq)]
pub struct Init {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: i32,
    pub raw: Vec<u8>,
}

impl Init {
    pub fn f32(name: &str, dims: &[usize], data: &[f32]) -> Init {
        Init {
            name: name.into(),
            dims: dims.to_vec(),
            dtype: FLOAT,
            raw: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    pub fn floats(&self) -> Option<Vec<f32>> {
        (self.dtype == FLOAT).then(|| {
            self.raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

/// A graph input or output: name, element type, dims (`None` = dynamic).
#[derive(Debug, Clone, PartialEq)]
pub struct Io {
    pub name: String,
    pub dtype: i32,
    pub dims: Vec<Option<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub opset: i64,
    pub producer_version: String,
    pub name: String,
    pub nodes: Vec<Node>,
    pub inits: Vec<Init>,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub metadata: Vec<(String, String)>,
}

/// (field, value) of the varint fields of a message; fixed32 fields (float
/// attributes) are kept as raw bits under `field | 0x8000_0000`.
fn varints(b: &[u8]) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let read = |pos: &mut usize| proto::read_varint(b, pos);
    while pos < b.len() {
        let Some(tag) = read(&mut pos) else { break };
        match tag & 7 {
            0 => match read(&mut pos) {
                Some(v) => out.push(((tag >> 3) as u32, v)),
                None => break,
            },
            1 => pos += 8,
            5 => {
                // fixed32: keep floats for attributes as raw bits
                if let Some(c) = b.get(pos..pos + 4) {
                    out.push((
                        (tag >> 3) as u32 | 0x8000_0000,
                        u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64,
                    ));
                }
                pos += 4;
            }
            2 => match read(&mut pos) {
                Some(len) => pos += len as usize,
                None => break,
            },
            _ => break,
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Model {
    /// Parses a serialised ModelProto (as excite writes it).
    pub fn parse(bytes: &[u8]) -> Option<Model> {
        let top = fields(bytes)?;
        let graph = top.iter().find(|(f, _)| *f == 7)?.1;
        let opset = top
            .iter()
            .find(|(f, _)| *f == 8)
            .map(|(_, m)| {
                varints(m)
                    .iter()
                    .find(|(f, _)| *f == 2)
                    .map(|v| v.1 as i64)
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let producer_version = top
            .iter()
            .find(|(f, _)| *f == 3)
            .map(|(_, v)| text(v))
            .unwrap_or_default();
        let metadata = proto::metadata_props(bytes)?;
        let mut m = Model {
            opset,
            producer_version,
            name: String::new(),
            nodes: vec![],
            inits: vec![],
            inputs: vec![],
            outputs: vec![],
            metadata,
        };
        for (field, body) in fields(graph)? {
            match field {
                1 => {
                    let f = fields(body)?;
                    let strings = |n: u32| {
                        f.iter()
                            .filter(|(k, _)| *k == n)
                            .map(|(_, v)| text(v))
                            .collect::<Vec<_>>()
                    };
                    let mut attrs = Vec::new();
                    for (_, a) in f.iter().filter(|(k, _)| *k == 5) {
                        let af = fields(a)?;
                        let name = af
                            .iter()
                            .find(|(k, _)| *k == 1)
                            .map(|(_, v)| text(v))
                            .unwrap_or_default();
                        let v = varints(a);
                        if let Some((_, bits)) = v.iter().find(|(k, _)| *k == 0x8000_0002) {
                            attrs.push(Attr::Float(name, f32::from_bits(*bits as u32)));
                        } else if let Some((_, i)) = v.iter().find(|(k, _)| *k == 3) {
                            attrs.push(Attr::Int(name, *i as i64));
                        }
                    }
                    m.nodes.push(Node {
                        op: strings(4).pop().unwrap_or_default(),
                        name: strings(3).pop().unwrap_or_default(),
                        inputs: strings(1),
                        outputs: strings(2),
                        attrs,
                    });
                }
                2 => m.name = text(body),
                5 => {
                    let f = fields(body)?;
                    let v = varints(body);
                    m.inits.push(Init {
                        name: f
                            .iter()
                            .find(|(k, _)| *k == 8)
                            .map(|(_, v)| text(v))
                            .unwrap_or_default(),
                        dims: v
                            .iter()
                            .filter(|(k, _)| *k == 1)
                            .map(|(_, d)| *d as usize)
                            .collect(),
                        dtype: v
                            .iter()
                            .find(|(k, _)| *k == 2)
                            .map(|(_, d)| *d as i32)
                            .unwrap_or(0),
                        raw: f
                            .iter()
                            .find(|(k, _)| *k == 9)
                            .map(|(_, v)| v.to_vec())
                            .unwrap_or_default(),
                    });
                }
                11 | 12 => {
                    let f = fields(body)?;
                    let name = f
                        .iter()
                        .find(|(k, _)| *k == 1)
                        .map(|(_, v)| text(v))
                        .unwrap_or_default();
                    let ty = fields(f.iter().find(|(k, _)| *k == 2)?.1)?;
                    let tensor = ty.iter().find(|(k, _)| *k == 1)?.1;
                    let dtype = varints(tensor)
                        .iter()
                        .find(|(k, _)| *k == 1)
                        .map(|v| v.1 as i32)
                        .unwrap_or(0);
                    let mut dims = Vec::new();
                    if let Some((_, shape)) = fields(tensor)?.iter().find(|(k, _)| *k == 2) {
                        for (_, d) in fields(shape)?.iter().filter(|(k, _)| *k == 1) {
                            dims.push(
                                varints(d)
                                    .iter()
                                    .find(|(k, _)| *k == 1)
                                    .map(|v| v.1 as usize),
                            );
                        }
                    }
                    let io = Io { name, dtype, dims };
                    if field == 11 {
                        m.inputs.push(io)
                    } else {
                        m.outputs.push(io)
                    }
                }
                _ => {}
            }
        }
        Some(m)
    }

    /// Serialises the model (IR 8).
    pub fn to_bytes(&self) -> Vec<u8> {
        let nodes: Vec<Msg> = self
            .nodes
            .iter()
            .map(|n| {
                let ins: Vec<&str> = n.inputs.iter().map(String::as_str).collect();
                let outs: Vec<&str> = n.outputs.iter().map(String::as_str).collect();
                let attrs: Vec<proto::Attr> = n
                    .attrs
                    .iter()
                    .map(|a| match a {
                        Attr::Float(k, v) => proto::Attr::Float(k, *v),
                        Attr::Int(k, v) => proto::Attr::Int(k, *v),
                    })
                    .collect();
                proto::node(&n.op, &n.name, &ins, &outs, &attrs)
            })
            .collect();
        let inits: Vec<Msg> = self
            .inits
            .iter()
            .map(|t| proto::tensor_raw(&t.name, &t.dims, t.dtype as i64, &t.raw))
            .collect();
        let io = |v: &[Io]| {
            v.iter()
                .map(|i| proto::value_info_typed(&i.name, i.dtype as i64, &i.dims))
                .collect::<Vec<_>>()
        };
        let graph = proto::graph(
            &self.name,
            &nodes,
            &inits,
            &io(&self.inputs),
            &io(&self.outputs),
        );
        proto::model(&graph, self.opset, &self.producer_version, &self.metadata).0
    }

    pub fn init(&self, name: &str) -> Option<&Init> {
        self.inits.iter().find(|i| i.name == name)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_meta(&mut self, key: &str, value: &str) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.into(),
            None => self.metadata.push((key.into(), value.into())),
        }
    }
}
