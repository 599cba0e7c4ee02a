//! The protobuf wire format of ONNX files, by hand: the writer for the few
//! messages excite writes and the one reader of every file it reads. A model
//! is a handful of Gemm and activation nodes, so a small codec beats a
//! protobuf code generator and its build step. Field numbers follow onnx.proto3.

/// A protobuf message under construction.
#[derive(Default, Clone)]
pub struct Msg(pub Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    pub fn int(mut self, field: u32, v: i64) -> Self {
        self.tag(field, 0);
        self.varint(v as u64);
        self
    }

    pub fn float(mut self, field: u32, v: f32) -> Self {
        self.tag(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(self, field: u32, m: &Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

pub const FLOAT: i64 = 1;
pub const INT64: i64 = 7;

/// TensorProto with float32 data.
pub fn tensor(name: &str, dims: &[usize], data: &[f32]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m = m.int(1, d as i64);
    }
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    m.int(2, FLOAT).str(8, name).bytes(9, &raw)
}

/// TensorProto with raw little-endian data of element type `dtype`.
pub fn tensor_raw(name: &str, dims: &[usize], dtype: i64, raw: &[u8]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m = m.int(1, d as i64);
    }
    m.int(2, dtype).str(8, name).bytes(9, raw)
}

/// TensorProto with int64 data.
pub fn tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m = m.int(1, d as i64);
    }
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    m.int(2, INT64).str(8, name).bytes(9, &raw)
}

/// ValueInfoProto of a float tensor; a dimension of `None` is the symbolic batch `N`.
pub fn value_info(name: &str, dims: &[Option<usize>]) -> Msg {
    value_info_typed(name, FLOAT, dims)
}

/// ValueInfoProto of a tensor of element type `dtype`.
pub fn value_info_typed(name: &str, dtype: i64, dims: &[Option<usize>]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let dim = match d {
            Some(v) => Msg::default().int(1, *v as i64),
            None => Msg::default().str(2, "N"),
        };
        shape = shape.msg(1, &dim);
    }
    let tensor_type = Msg::default().int(1, dtype).msg(2, &shape);
    let type_proto = Msg::default().msg(1, &tensor_type);
    Msg::default().str(1, name).msg(2, &type_proto)
}

/// An attribute of a node.
pub enum Attr<'a> {
    Float(&'a str, f32),
    Int(&'a str, i64),
    Floats(&'a str, &'a [f32]),
    Ints(&'a str, &'a [i64]),
    Str(&'a str, &'a str),
    Tensor(&'a str, &'a Msg),
}

/// NodeProto.
pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) -> Msg {
    node_in(op, "", name, inputs, outputs, attrs)
}

/// NodeProto of an operator in `domain` ("" = the default ONNX domain).
pub fn node_in(op: &str, domain: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) -> Msg {
    let mut m = Msg::default();
    for i in inputs {
        m = m.str(1, i);
    }
    for o in outputs {
        m = m.str(2, o);
    }
    m = m.str(3, name).str(4, op);
    for a in attrs {
        let attr = match *a {
            // AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20
            Attr::Float(n, v) => Msg::default().str(1, n).float(2, v).int(20, 1),
            Attr::Int(n, v) => Msg::default().str(1, n).int(3, v).int(20, 2),
            Attr::Str(n, v) => Msg::default().str(1, n).str(4, v).int(20, 3),
            Attr::Tensor(n, t) => Msg::default().str(1, n).msg(5, t).int(20, 4),
            Attr::Floats(n, v) => Msg::default().str(1, n).bytes(7, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).int(20, 6),
            Attr::Ints(n, v) => {
                let mut packed = Msg::default();
                for &i in v {
                    packed.varint(i as u64);
                }
                Msg::default().str(1, n).bytes(8, &packed.0).int(20, 7)
            }
        };
        m = m.msg(5, &attr);
    }
    if !domain.is_empty() {
        m = m.str(7, domain);
    }
    m
}

/// GraphProto.
pub fn graph(
    name: &str,
    nodes: &[Msg],
    initializers: &[Msg],
    inputs: &[Msg],
    outputs: &[Msg],
) -> Msg {
    let mut g = Msg::default();
    for n in nodes {
        g = g.msg(1, n);
    }
    g = g.str(2, name);
    for t in initializers {
        g = g.msg(5, t);
    }
    for i in inputs {
        g = g.msg(11, i);
    }
    for o in outputs {
        g = g.msg(12, o);
    }
    g
}

/// ModelProto: IR version 8 with the default-domain opset `opset`.
pub fn model(
    graph: &Msg,
    opset: i64,
    domains: &[(String, i64)],
    producer_version: &str,
    metadata: &[(String, String)],
) -> Msg {
    let opset_id = Msg::default().str(1, "").int(2, opset);
    let mut m = Msg::default()
        .int(1, 8)
        .str(2, "excite")
        .str(3, producer_version)
        .msg(7, graph)
        .msg(8, &opset_id);
    for (domain, version) in domains {
        m = m.msg(8, &Msg::default().str(1, domain).int(2, *version));
    }
    for (k, v) in metadata {
        m = m.msg(14, &Msg::default().str(1, k).str(2, v));
    }
    m
}

/// Reads a varint at `*pos`.
fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The value of one field, by wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// Every field of a message in order, or `None` when the bytes are not a
/// well-formed message (truncated, a length past the end, an unknown wire
/// type): the one reader every ONNX consumer in excite goes through.
pub fn read(b: &[u8]) -> Option<Vec<(u32, Value<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let end = pos.checked_add(n)?;
        let s = b.get(*pos..end)?;
        *pos = end;
        Some(s)
    };
    while pos < b.len() {
        let tag = read_varint(b, &mut pos)?;
        let field = u32::try_from(tag >> 3).ok()?;
        let value = match tag & 7 {
            0 => Value::Varint(read_varint(b, &mut pos)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut pos, 8)?.try_into().ok()?)),
            5 => Value::Fixed32(u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                Value::Bytes(take(&mut pos, len)?)
            }
            _ => return None,
        };
        out.push((field, value));
    }
    Some(out)
}

/// A packed repeated varint field's values.
pub fn packed_varints(b: &[u8]) -> Option<Vec<u64>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        out.push(read_varint(b, &mut pos)?);
    }
    Some(out)
}

/// The length-delimited fields of a message: (field number, payload).
pub fn fields(b: &[u8]) -> Option<Vec<(u32, &[u8])>> {
    Some(
        read(b)?
            .into_iter()
            .filter_map(|(f, v)| match v {
                Value::Bytes(p) => Some((f, p)),
                _ => None,
            })
            .collect(),
    )
}

/// `metadata_props` of a serialised ModelProto.
pub fn metadata_props(model: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (field, entry) in fields(model)? {
        if field == 14 {
            let kv = fields(entry)?;
            let get = |n: u32| {
                kv.iter()
                    .find(|(f, _)| *f == n)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            out.push((get(1), get(2)));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_tags_encode_as_protobuf() {
        // field 1, varint 150: 08 96 01 (the protobuf documentation's example)
        assert_eq!(Msg::default().int(1, 150).0, [0x08, 0x96, 0x01]);
        // field 2, string "testing": 12 07 74 65 73 74 69 6e 67
        assert_eq!(
            Msg::default().str(2, "testing").0,
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        // negative int64 takes ten bytes
        assert_eq!(Msg::default().int(1, -1).0.len(), 11);
        assert_eq!(Msg::default().float(2, 1.0).0, [0x15, 0, 0, 0x80, 0x3f]);
    }

    #[test]
    fn metadata_reads_back() {
        let g = graph("g", &[], &[], &[], &[]);
        let m = model(
            &g,
            17,
            &[],
            "0",
            &[("a".into(), "1".into()), ("b".into(), "two".into())],
        );
        assert_eq!(
            metadata_props(&m.0).unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "two".into())]
        );
        assert!(metadata_props(&m.0[..m.0.len() - 1]).is_none());
    }

    #[test]
    fn hostile_lengths_are_refused_not_wrapped() {
        // field 1, length 2^64 - 1: the position must not wrap around
        let mut b = vec![0x0a];
        b.extend([0xff; 9]);
        b.push(0x01);
        assert!(read(&b).is_none());
        // a length one past the end, and a truncated fixed32
        assert!(read(&[0x0a, 0x02, 0x00]).is_none());
        assert!(read(&[0x15, 0x00, 0x00]).is_none());
        assert_eq!(read(&[0x08, 0x96, 0x01]).unwrap(), vec![(1, Value::Varint(150))]);
    }
}
