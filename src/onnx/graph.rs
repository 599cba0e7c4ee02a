//! The graph IR: an ONNX model as plain data, read from and written back to
//! protobuf, so excite can rewrite graphs (precision, quantisation,
//! normalising other exporters' MLPs) and run them without an ONNX library.
//! It reads what the common exporters write: attributes of every kind but
//! graphs, node domains, initializers in raw or typed fields (data kept in
//! external files is refused by name), inputs and outputs with their shapes.

use super::proto::{self, Msg, Value};

pub const FLOAT: i32 = 1;
pub const INT8: i32 = 3;
pub const INT32: i32 = 6;
pub const INT64: i32 = 7;
pub const DOUBLE: i32 = 11;
pub const FLOAT16: i32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Float(String, f32),
    Int(String, i64),
    Floats(String, Vec<f32>),
    Ints(String, Vec<i64>),
    Str(String, String),
    Tensor(String, Init),
}

impl Attr {
    pub fn name(&self) -> &str {
        match self {
            Attr::Float(n, _) | Attr::Int(n, _) | Attr::Floats(n, _) | Attr::Ints(n, _) | Attr::Str(n, _) | Attr::Tensor(n, _) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: String,
    /// The operator's domain: "" for ONNX's, `ai.onnx.ml` for its ML operators.
    pub domain: String,
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

    /// The attribute called `k`, of any kind.
    pub fn attr(&self, k: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name() == k)
    }

    pub fn new(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Attr>) -> Node {
        Node {
            op: op.into(),
            domain: String::new(),
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs,
        }
    }
}

/// An initializer: element type and little-endian raw data (the typed
/// fields of the file, `float_data` and the like, are read into it).
#[derive(Debug, Clone, PartialEq)]
pub struct Init {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: i32,
    pub raw: Vec<u8>,
    /// Why the data could not be read (kept in an external file, typed data
    /// past its limit), for [`Model::parse`] to name; None when it was.
    pub unread: Option<String>,
}

impl Init {
    pub fn f32(name: &str, dims: &[usize], data: &[f32]) -> Init {
        Init {
            name: name.into(),
            dims: dims.to_vec(),
            dtype: FLOAT,
            raw: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            unread: None,
        }
    }

    /// The values as i64 (INT64, INT32), e.g. a Reshape's shape.
    pub fn ints(&self) -> Option<Vec<i64>> {
        match self.dtype {
            INT64 => Some(self.raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
            INT32 => Some(self.raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect()),
            _ => None,
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
    /// Opset versions of other operator domains the nodes use (`ai.onnx.ml`).
    pub domains: Vec<(String, i64)>,
}

/// A message's fields, read once, with typed look-ups by field number.
struct Fields<'a>(Vec<(u32, Value<'a>)>);

impl<'a> Fields<'a> {
    fn of(b: &'a [u8]) -> Option<Fields<'a>> {
        proto::read(b).map(Fields)
    }

    fn bytes(&self, n: u32) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.0.iter().filter_map(move |(f, v)| match v {
            Value::Bytes(b) if *f == n => Some(*b),
            _ => None,
        })
    }

    fn varints(&self, n: u32) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().filter_map(move |(f, v)| match v {
            Value::Varint(x) if *f == n => Some(*x),
            _ => None,
        })
    }

    fn varint(&self, n: u32) -> Option<u64> {
        self.varints(n).next()
    }

    /// A repeated fixed-width field (floats: 4, doubles: 8), packed or not,
    /// as little-endian bytes: never more than the message holds.
    fn fixed(&self, n: u32, width: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (f, v) in &self.0 {
            match v {
                Value::Fixed32(x) if *f == n && width == 4 => out.extend(x.to_le_bytes()),
                Value::Fixed64(x) if *f == n && width == 8 => out.extend(x.to_le_bytes()),
                Value::Bytes(b) if *f == n => {
                    if b.len() % width != 0 {
                        return None;
                    }
                    out.extend_from_slice(b);
                }
                _ => {}
            }
        }
        Some(out)
    }

    /// How many values a repeated varint field holds, packed or not, counted
    /// without decoding them (a packed value ends at a byte below 0x80).
    fn count_varints(&self, n: u32) -> usize {
        self.0
            .iter()
            .map(|(f, v)| match v {
                Value::Varint(_) if *f == n => 1,
                Value::Bytes(b) if *f == n => b.iter().filter(|&&x| x < 0x80).count(),
                _ => 0,
            })
            .sum()
    }

    /// A repeated varint field, packed or not; None past `limit` values
    /// (one byte of the file may become eight in memory).
    fn ints(&self, n: u32, limit: usize) -> Option<Vec<u64>> {
        if self.count_varints(n) > limit {
            return None;
        }
        let mut out = Vec::new();
        for (f, v) in &self.0 {
            match v {
                Value::Varint(x) if *f == n => out.push(*x),
                Value::Bytes(b) if *f == n => out.extend(proto::packed_varints(b)?),
                _ => {}
            }
        }
        Some(out)
    }

    fn fixed32(&self, n: u32) -> Option<u32> {
        self.0.iter().find_map(|(f, v)| match v {
            Value::Fixed32(x) if *f == n => Some(*x),
            _ => None,
        })
    }

    fn text(&self, n: u32) -> String {
        self.bytes(n).last().map(text).unwrap_or_default()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20
/// (older files leave the type out). Graph-valued attributes (control flow)
/// are left out: no MLP has them, and their node is refused where it is run.
fn read_attr(b: &[u8]) -> Option<Option<Attr>> {
    let af = Fields::of(b)?;
    let name = af.text(1);
    let ty = af.varint(20);
    let attr = match ty {
        Some(1) => Attr::Float(name, f32::from_bits(af.fixed32(2)?)),
        Some(2) => Attr::Int(name, af.varint(3)? as i64),
        Some(3) => Attr::Str(name, af.text(4)),
        Some(4) => Attr::Tensor(name, read_tensor(af.bytes(5).next()?)?),
        Some(6) => Attr::Floats(name, af.fixed(7, 4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Some(7) => Attr::Ints(name, af.ints(8, MAX_ATTR_INTS)?.into_iter().map(|v| v as i64).collect()),
        Some(_) => return Some(None),
        None => match (af.fixed32(2), af.varint(3)) {
            (Some(bits), _) => Attr::Float(name, f32::from_bits(bits)),
            (None, Some(i)) => Attr::Int(name, i as i64),
            _ => return Some(None),
        },
    };
    Some(Some(attr))
}

/// TensorProto: dims 1, data_type 2, float_data 4, int32_data 5,
/// int64_data 7, name 8, raw_data 9, double_data 10, data_location 14.
/// Typed fields become little-endian raw data of the element type; what
/// cannot be read is recorded in `unread` for [`Model::parse`] to name.
fn read_tensor(b: &[u8]) -> Option<Init> {
    let f = Fields::of(b)?;
    let dims = f.varints(1).map(|d| usize::try_from(d).ok()).collect::<Option<Vec<_>>>()?;
    let dtype = f.varint(2).unwrap_or(0) as i32;
    let (mut raw, mut unread) = (f.bytes(9).last().unwrap_or_default().to_vec(), None);
    if f.varint(14) == Some(1) {
        unread = Some("keeps its data in an external file, which excite does not read; save the model with its data inside (onnx.save_model(m, path, save_as_external_data=False))".to_string());
    } else if f.bytes(9).next().is_none() {
        match typed_data(&f, dtype) {
            Ok(r) => raw = r?,
            Err(why) => unread = Some(why),
        }
    }
    Some(Init { name: f.text(8), dims, dtype, raw, unread })
}

/// Most bytes the integer-typed fields (int32_data, int64_data) may decode
/// to: their shapes, indices and quantised weights are small, and a
/// one-byte value there becomes up to eight in memory.
pub const MAX_TYPED_INT_BYTES: usize = 256 << 20;
/// Most values in an integer-list attribute (axes, shapes, perms).
const MAX_ATTR_INTS: usize = 1 << 20;

/// The typed data field of a tensor as raw bytes (`Ok(None)`: malformed).
fn typed_data(f: &Fields, dtype: i32) -> Result<Option<Vec<u8>>, String> {
    // (field, bytes per value in memory) of the varint-typed ones
    let (field, width) = match dtype {
        FLOAT => return Ok(f.fixed(4, 4)),
        DOUBLE => return Ok(f.fixed(10, 8)),
        INT64 => (7, 8),
        // int32, int8, uint8, float16 and bfloat16 all travel in int32_data
        INT32 => (5, 4),
        INT8 | 2 => (5, 1),
        FLOAT16 | 16 => (5, 2),
        _ => return Ok(Some(Vec::new())),
    };
    let values = f.count_varints(field);
    if values.saturating_mul(width) > MAX_TYPED_INT_BYTES {
        return Err(format!("holds {values} integer values in a typed field, over the {MAX_TYPED_INT_BYTES}-byte limit of such data; write it as raw_data"));
    }
    let Some(v) = f.ints(field, values) else { return Ok(None) };
    Ok(Some(match width {
        8 => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        4 => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        2 => v.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect(),
        _ => v.iter().map(|&x| x as u8).collect(),
    }))
}

/// Most elements one initializer may have (2³¹, 8 GiB of float32): a larger
/// declared shape is a damaged or hostile file, refused before anything is
/// allocated for it.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Bytes per element of the element types excite reads, by ONNX type number.
fn element_size(dtype: i32) -> Option<usize> {
    match dtype {
        FLOAT | 6 => Some(4),      // float, int32
        INT8 | 2 => Some(1),       // int8, uint8
        INT64 | 11 => Some(8),     // int64, double
        FLOAT16 | 16 => Some(2),   // float16, bfloat16
        _ => None,
    }
}

/// Inputs an operator needs at the least, for the operators excite runs
/// (others are refused by name where they are run).
fn min_inputs(op: &str) -> usize {
    match op {
        "Constant" => 0,
        "Where" => 3,
        "Gemm" | "Add" | "Mul" | "Less" | "Gather" | "QuantizeLinear" | "DequantizeLinear" => 2,
        _ => 1,
    }
}

impl Model {
    /// Parses a serialised ModelProto and checks what every consumer relies
    /// on: a graph input and output, every node with an output and the inputs
    /// its operator needs, every initializer's data as long as its shape says
    /// (counted with checked arithmetic, at most [`MAX_ELEMENTS`]). The error
    /// names the first defect.
    pub fn parse(bytes: &[u8]) -> Result<Model, String> {
        let m = Model::read(bytes).ok_or("not a well-formed ONNX protobuf (truncated, or a length past its end)")?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("the graph has no input or no output".into());
        }
        for n in &self.nodes {
            if n.outputs.is_empty() {
                return Err(format!("node `{}` ({}) has no output", n.name, n.op));
            }
            if n.inputs.len() < min_inputs(&n.op) {
                return Err(format!("node `{}` ({}) has {} inputs, needs {}", n.name, n.op, n.inputs.len(), min_inputs(&n.op)));
            }
        }
        for t in &self.inits {
            if let Some(why) = &t.unread {
                return Err(format!("initializer `{}` {why}", t.name));
            }
            let count = t.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&c| c <= MAX_ELEMENTS);
            let Some(count) = count else {
                return Err(format!("initializer `{}` declares shape {:?}, over {MAX_ELEMENTS} elements", t.name, t.dims));
            };
            if let Some(size) = element_size(t.dtype) {
                if t.raw.len() != count * size {
                    return Err(format!("initializer `{}`: shape {:?} needs {} bytes of element type {}, the file has {}", t.name, t.dims, count * size, t.dtype, t.raw.len()));
                }
            }
        }
        Ok(())
    }

    /// The protobuf fields, unchecked.
    fn read(bytes: &[u8]) -> Option<Model> {
        let top = Fields::of(bytes)?;
        let graph = Fields::of(top.bytes(7).next()?)?;
        // opset_import: domain 1, version 2; "" (or "ai.onnx") is ONNX's own
        let (mut opset, mut domains) = (0, Vec::new());
        for o in top.bytes(8) {
            let o = Fields::of(o)?;
            let (domain, version) = (o.text(1), o.varint(2).unwrap_or(0) as i64);
            if domain.is_empty() || domain == "ai.onnx" {
                opset = version;
            } else {
                domains.push((domain, version));
            }
        }
        let metadata = proto::metadata_props(bytes)?;
        let mut m = Model {
            opset,
            producer_version: top.text(3),
            name: graph.text(2),
            nodes: vec![],
            inits: vec![],
            inputs: vec![],
            outputs: vec![],
            metadata,
            domains,
        };
        for body in graph.bytes(1) {
            let f = Fields::of(body)?;
            let mut attrs = Vec::new();
            for a in f.bytes(5) {
                if let Some(attr) = read_attr(a)? {
                    attrs.push(attr);
                }
            }
            m.nodes.push(Node {
                op: f.text(4),
                domain: f.text(7),
                name: f.text(3),
                inputs: f.bytes(1).map(text).collect(),
                outputs: f.bytes(2).map(text).collect(),
                attrs,
            });
        }
        for body in graph.bytes(5) {
            m.inits.push(read_tensor(body)?);
        }
        for (field, list) in [(11, &mut m.inputs), (12, &mut m.outputs)] {
            for body in graph.bytes(field) {
                // ValueInfoProto: name 1, type 2 → TypeProto.tensor_type 1 → elem_type 1, shape 2 → dim 1 → dim_value 1
                let f = Fields::of(body)?;
                let ty = Fields::of(f.bytes(2).next()?)?;
                let tensor = Fields::of(ty.bytes(1).next()?)?;
                let mut dims = Vec::new();
                if let Some(shape) = tensor.bytes(2).next() {
                    for d in Fields::of(shape)?.bytes(1) {
                        dims.push(Fields::of(d)?.varint(1).map(|v| v as usize));
                    }
                }
                list.push(Io { name: f.text(1), dtype: tensor.varint(1).unwrap_or(0) as i32, dims });
            }
        }
        Some(m)
    }

    /// Serialises the model (IR 8).
    pub fn to_bytes(&self) -> Vec<u8> {
        let tensor = |t: &Init| proto::tensor_raw(&t.name, &t.dims, t.dtype as i64, &t.raw);
        let nodes: Vec<Msg> = self
            .nodes
            .iter()
            .map(|n| {
                let ins: Vec<&str> = n.inputs.iter().map(String::as_str).collect();
                let outs: Vec<&str> = n.outputs.iter().map(String::as_str).collect();
                let tensors: Vec<Msg> = n.attrs.iter().map(|a| if let Attr::Tensor(_, t) = a { tensor(t) } else { Msg::default() }).collect();
                let attrs: Vec<proto::Attr> = n
                    .attrs
                    .iter()
                    .zip(&tensors)
                    .map(|(a, t)| match a {
                        Attr::Float(k, v) => proto::Attr::Float(k, *v),
                        Attr::Int(k, v) => proto::Attr::Int(k, *v),
                        Attr::Floats(k, v) => proto::Attr::Floats(k, v),
                        Attr::Ints(k, v) => proto::Attr::Ints(k, v),
                        Attr::Str(k, v) => proto::Attr::Str(k, v),
                        Attr::Tensor(k, _) => proto::Attr::Tensor(k, t),
                    })
                    .collect();
                proto::node_in(&n.op, &n.domain, &n.name, &ins, &outs, &attrs)
            })
            .collect();
        let inits: Vec<Msg> = self.inits.iter().map(tensor).collect();
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
        proto::model(&graph, self.opset, &self.domains, &self.producer_version, &self.metadata).0
    }

    /// The declared feature counts of the first input and output ([batch,
    /// features]), where the file declares them.
    pub fn features(&self) -> (Option<usize>, Option<usize>) {
        let width = |io: &[Io]| io.first().and_then(|i| i.dims.get(1).copied().flatten());
        (width(&self.inputs), width(&self.outputs))
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
