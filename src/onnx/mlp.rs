//! Multilayer perceptrons as the common exporters write them, read into one
//! form: dense layers (weights [inputs][outputs], bias) each with an
//! activation. torch.onnx writes Gemm with transB = 1 (or MatMul + Add from
//! the dynamo exporter), skl2onnx MatMul + Add behind a Cast and before a
//! Reshape (StandardScaler as ai.onnx.ml Scaler), tf2onnx and keras MatMul +
//! Add; GELU and SiLU arrive as one operator or as a few elementwise nodes.
//! [`Mlp::from_model`] follows the data from the graph input to its output:
//! - Gemm (any transA = 0, transB, alpha, beta) and MatMul + Add are dense layers;
//! - Sub, Add, Mul, Div by constants and Scaler are affine maps, folded into
//!   the neighbouring layer (input scaling into the first, output scaling
//!   into the last);
//! - Identity, Dropout, Cast to float, Flatten, Reshape to [batch, features],
//!   Squeeze and Unsqueeze that come back to [batch, features] pass through;
//! - Relu, LeakyRelu, Elu, Tanh, Sigmoid, Softplus and Gelu are activations,
//!   and a group of elementwise nodes that fans out from a layer's output and
//!   joins again (torch's GELU through Erf, x·Sigmoid(x)) is recognised by
//!   what it computes, evaluated on probe values against each activation.
//!
//! Anything else is an error naming each unsupported node and its operator.
//! [`Mlp::to_model`] writes the one form every engine and build pass takes.

use std::collections::{HashMap, HashSet};

use super::graph::{Attr, Init, Io, Model, Node, FLOAT, INT32, INT64};

/// An activation function, as excite's kernels compute it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Linear,
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Tanh,
    Sigmoid,
    Softplus,
    /// x·sigmoid(x).
    Silu,
    /// 0.5·x·(1 + erf(x/√2)), exact.
    Gelu,
    /// The tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    GeluTanh,
}

/// √(2/π) and the cubic coefficient of the tanh form of GELU.
const GELU_TANH_SCALE: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_CUBIC: f64 = 0.044_715;

impl Act {
    /// The function in f64, for recognition and tests.
    pub fn eval(self, x: f64) -> f64 {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        match self {
            Act::Linear => x,
            Act::Relu => x.max(0.0),
            Act::LeakyRelu(a) => if x < 0.0 { a as f64 * x } else { x },
            Act::Elu(a) => if x < 0.0 { a as f64 * (x.exp() - 1.0) } else { x },
            Act::Tanh => x.tanh(),
            Act::Sigmoid => sigmoid(x),
            Act::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Act::Silu => x * sigmoid(x),
            Act::Gelu => 0.5 * x * (1.0 + crate::special::erf(x / std::f64::consts::SQRT_2)),
            Act::GeluTanh => 0.5 * x * (1.0 + (GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x)).tanh()),
        }
    }

    /// The derivative in f64.
    pub fn derivative(self, x: f64) -> f64 {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        match self {
            Act::Linear => 1.0,
            Act::Relu => if x > 0.0 { 1.0 } else { 0.0 },
            Act::LeakyRelu(a) => if x < 0.0 { a as f64 } else { 1.0 },
            Act::Elu(a) => if x < 0.0 { a as f64 * x.exp() } else { 1.0 },
            Act::Tanh => 1.0 - x.tanh().powi(2),
            Act::Sigmoid => sigmoid(x) * (1.0 - sigmoid(x)),
            Act::Softplus => sigmoid(x),
            Act::Silu => sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x))),
            Act::Gelu => {
                let cdf = 0.5 * (1.0 + crate::special::erf(x / std::f64::consts::SQRT_2));
                cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
            }
            Act::GeluTanh => {
                let t = (GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_TANH_SCALE * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x)
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Act::Linear => "linear",
            Act::Relu => "relu",
            Act::LeakyRelu(_) => "leaky_relu",
            Act::Elu(_) => "elu",
            Act::Tanh => "tanh",
            Act::Sigmoid => "sigmoid",
            Act::Softplus => "softplus",
            Act::Silu => "silu",
            Act::Gelu => "gelu",
            Act::GeluTanh => "gelu_tanh",
        }
    }
}

/// One dense layer: `act(x·w + b)`, `w` row-major [d_in][d_out].
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub d_in: usize,
    pub d_out: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub act: Act,
}

/// A network of dense layers from one input to one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub input: String,
    pub output: String,
    pub layers: Vec<Dense>,
}

/// A constant: its shape and values (as f64; integers exactly up to 2⁵³).
#[derive(Debug, Clone)]
struct Const {
    dims: Vec<usize>,
    v: Vec<f64>,
}

fn const_of(t: &Init) -> Option<Const> {
    if t.unread.is_some() {
        return None;
    }
    let v: Vec<f64> = match t.dtype {
        FLOAT => t.floats()?.into_iter().map(f64::from).collect(),
        INT64 | INT32 => t.ints()?.into_iter().map(|i| i as f64).collect(),
        super::graph::DOUBLE => t.raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        _ => return None,
    };
    // a Constant node's tensor is not checked by the reader: its shape must hold its values
    let count = t.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    (count == v.len()).then(|| Const { dims: t.dims.clone(), v })
}

/// A per-feature affine map `x·s + o` (in f64).
#[derive(Debug, Clone)]
struct Affine {
    s: Vec<f64>,
    o: Vec<f64>,
}

impl Affine {
    fn identity() -> Affine {
        Affine { s: vec![1.0], o: vec![0.0] }
    }

    fn is_identity(&self) -> bool {
        self.s.iter().all(|&s| s == 1.0) && self.o.iter().all(|&o| o == 0.0)
    }
}

/// Where the walk stands: on a layer's output before its activation (affine
/// maps fold into that layer), or on a value (the input, an activation)
/// with an affine map pending for the next layer.
enum State {
    PreActivation,
    Value(Affine),
}

const ELEMENTWISE: [&str; 16] = ["Mul", "Add", "Sub", "Div", "Erf", "Tanh", "Sigmoid", "Exp", "Log", "Pow", "Sqrt", "Neg", "Reciprocal", "Softplus", "Relu", "Abs"];

impl Mlp {
    /// Reads the MLP in `m`: its first graph input (not an initializer) to
    /// its one output. The error names what is not an MLP, or every node
    /// whose operator is not one of those in the module comment.
    pub fn from_model(m: &Model) -> Result<Mlp, String> {
        let unsupported: Vec<String> = m
            .nodes
            .iter()
            .filter(|n| !SUPPORTED.contains(&n.op.as_str()))
            .map(|n| format!("`{}` (node `{}`)", if n.domain.is_empty() { n.op.clone() } else { format!("{}.{}", n.domain, n.op) }, n.name))
            .collect();
        if !unsupported.is_empty() {
            let (s, verb) = if unsupported.len() > 1 { ("s", "are") } else { ("", "is") };
            return Err(format!("not an MLP excite can read: operator{s} {} {verb} not supported", unsupported.join(", ")));
        }
        Walk::new(m)?.run()
    }

    pub fn inputs(&self) -> usize {
        self.layers[0].d_in
    }

    /// The outputs for `rows` rows of `x`, in f64 (the scalar reference of
    /// the network, before any engine's rounding).
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(rows * self.outputs());
        for r in 0..rows {
            let mut v: Vec<f64> = x[r * self.inputs()..(r + 1) * self.inputs()].iter().map(|&v| v as f64).collect();
            for l in &self.layers {
                v = (0..l.d_out).map(|j| l.act.eval(l.b[j] as f64 + (0..l.d_in).map(|i| v[i] * l.w[i * l.d_out + j] as f64).sum::<f64>())).collect();
            }
            out.extend(v);
        }
        out
    }

    /// d outputs / d inputs for each of `rows` rows of `x`: row-major
    /// [rows][outputs][inputs], exact in f64, by forward-mode tangents (one
    /// per input) carried through every layer with the activations' derivatives.
    pub fn jacobian(&self, x: &[f32], rows: usize) -> Vec<f64> {
        let (n_in, n_out) = (self.inputs(), self.outputs());
        let widest = self.layers.iter().map(|l| l.d_out.max(l.d_in)).max().unwrap_or(0);
        let mut out = Vec::with_capacity(rows * n_out * n_in);
        // value and tangents of the current layer's input, tangents as [input k][unit i]
        // so the inner loop runs along a weight row (contiguous, vectorisable)
        let (mut v, mut nv) = (vec![0.0f64; widest], vec![0.0f64; widest]);
        let (mut t, mut nt) = (vec![0.0f64; n_in * widest], vec![0.0f64; n_in * widest]);
        for r in 0..rows {
            for (i, &xi) in x[r * n_in..(r + 1) * n_in].iter().enumerate() {
                v[i] = xi as f64;
            }
            let mut d = n_in;
            t[..n_in * widest].fill(0.0);
            for k in 0..n_in {
                t[k * widest + k] = 1.0;
            }
            for l in &self.layers {
                let z = &mut nv[..l.d_out];
                z.iter_mut().zip(&l.b).for_each(|(z, &b)| *z = b as f64);
                nt.fill(0.0);
                for i in 0..d {
                    let row = &l.w[i * l.d_out..(i + 1) * l.d_out];
                    let vi = v[i];
                    for (z, &w) in z.iter_mut().zip(row) {
                        *z += vi * w as f64;
                    }
                    for k in 0..n_in {
                        let tki = t[k * widest + i];
                        if tki != 0.0 {
                            for (o, &w) in nt[k * widest..k * widest + l.d_out].iter_mut().zip(row) {
                                *o += tki * w as f64;
                            }
                        }
                    }
                }
                for j in 0..l.d_out {
                    let g = l.act.derivative(z[j]);
                    for k in 0..n_in {
                        nt[k * widest + j] *= g;
                    }
                    z[j] = l.act.eval(z[j]);
                }
                std::mem::swap(&mut v, &mut nv);
                std::mem::swap(&mut t, &mut nt);
                d = l.d_out;
            }
            for o in 0..n_out {
                for k in 0..n_in {
                    out.push(t[k * widest + o]);
                }
            }
        }
        out
    }

    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].d_out
    }

    /// The model in excite's form, every engine's input: `input` [N, inputs]
    /// → Gemm (weights [inputs][outputs], bias) + activation per layer →
    /// `output` [N, outputs], opset 17; SiLU as Sigmoid and Mul, GELU
    /// through Erf, Softplus as itself. `like` gives the name, producer and
    /// metadata.
    pub fn to_model(&self, like: &Model) -> Model {
        let (mut nodes, mut inits) = (Vec::new(), Vec::new());
        emit("", &self.layers, &self.input, &self.output, &mut nodes, &mut inits);
        let io = |name: &str, d: usize| Io { name: name.to_string(), dtype: FLOAT, dims: vec![None, Some(d)] };
        Model {
            opset: 17,
            producer_version: like.producer_version.clone(),
            name: like.name.clone(),
            nodes,
            inits,
            inputs: vec![io(&self.input, self.inputs())],
            outputs: vec![io(&self.output, self.outputs())],
            metadata: like.metadata.clone(),
            domains: vec![],
        }
    }
}

/// Nodes and initializers of `layers` from `input` to `output`, names
/// prefixed with `prefix`: excite's one way of writing a dense network
/// (the exporter writes each time window with it).
pub fn emit(prefix: &str, layers: &[Dense], input: &str, output: &str, nodes: &mut Vec<Node>, inits: &mut Vec<Init>) {
    let mut cur = input.to_string();
    for (l, layer) in layers.iter().enumerate() {
        let (w, b) = (format!("{prefix}w{l}"), format!("{prefix}b{l}"));
        inits.push(Init::f32(&w, &[layer.d_in, layer.d_out], &layer.w));
        inits.push(Init::f32(&b, &[layer.d_out], &layer.b));
        let last = l + 1 == layers.len();
        let n = |s: &str| format!("{prefix}{s}{l}");
        let a = if last { output.to_string() } else { n("a") };
        let z = if layer.act == Act::Linear { a.clone() } else { n("z") };
        nodes.push(Node::new("Gemm", &n("gemm"), &[&cur, &w, &b], &[&z], vec![]));
        let mut konst = |name: String, v: f32| {
            if !inits.iter().any(|t| t.name == name) {
                inits.push(Init::f32(&name, &[], &[v]));
            }
            name
        };
        match layer.act {
            Act::Linear => {}
            Act::Relu => nodes.push(Node::new("Relu", &n("relu"), &[&z], &[&a], vec![])),
            Act::Tanh => nodes.push(Node::new("Tanh", &n("tanh"), &[&z], &[&a], vec![])),
            Act::Sigmoid => nodes.push(Node::new("Sigmoid", &n("sigmoid"), &[&z], &[&a], vec![])),
            Act::Softplus => nodes.push(Node::new("Softplus", &n("softplus"), &[&z], &[&a], vec![])),
            Act::LeakyRelu(alpha) => nodes.push(Node::new("LeakyRelu", &n("leaky"), &[&z], &[&a], vec![Attr::Float("alpha".into(), alpha)])),
            Act::Elu(alpha) => nodes.push(Node::new("Elu", &n("elu"), &[&z], &[&a], vec![Attr::Float("alpha".into(), alpha)])),
            Act::Silu => {
                let s = n("sig");
                nodes.push(Node::new("Sigmoid", &n("silu_sigmoid"), &[&z], &[&s], vec![]));
                nodes.push(Node::new("Mul", &n("silu_mul"), &[&z, &s], &[&a], vec![]));
            }
            Act::Gelu => {
                // 0.5·z·(1 + erf(z/√2))
                let c = konst(format!("{prefix}inv_sqrt2"), std::f32::consts::FRAC_1_SQRT_2);
                let one = konst(format!("{prefix}one"), 1.0);
                let half = konst(format!("{prefix}half"), 0.5);
                let (s, e, p, m) = (n("gelu_s"), n("gelu_e"), n("gelu_p"), n("gelu_m"));
                nodes.push(Node::new("Mul", &n("gelu_scale"), &[&z, &c], &[&s], vec![]));
                nodes.push(Node::new("Erf", &n("gelu_erf"), &[&s], &[&e], vec![]));
                nodes.push(Node::new("Add", &n("gelu_add"), &[&e, &one], &[&p], vec![]));
                nodes.push(Node::new("Mul", &n("gelu_mul"), &[&z, &p], &[&m], vec![]));
                nodes.push(Node::new("Mul", &n("gelu_half"), &[&m, &half], &[&a], vec![]));
            }
            Act::GeluTanh => {
                // 0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³))), in operators every runtime has
                let c = konst(format!("{prefix}gelu_cubic"), GELU_TANH_CUBIC as f32);
                let k = konst(format!("{prefix}gelu_sqrt_2_pi"), GELU_TANH_SCALE as f32);
                let one = konst(format!("{prefix}one"), 1.0);
                let half = konst(format!("{prefix}half"), 0.5);
                let t = |s: &str| n(&format!("gelu_{s}"));
                nodes.push(Node::new("Mul", &t("sq_node"), &[&z, &z], &[&t("sq")], vec![]));
                nodes.push(Node::new("Mul", &t("cube_node"), &[&t("sq"), &z], &[&t("cube")], vec![]));
                nodes.push(Node::new("Mul", &t("cubic_node"), &[&t("cube"), &c], &[&t("cubic")], vec![]));
                nodes.push(Node::new("Add", &t("inner_node"), &[&z, &t("cubic")], &[&t("inner")], vec![]));
                nodes.push(Node::new("Mul", &t("scaled_node"), &[&t("inner"), &k], &[&t("scaled")], vec![]));
                nodes.push(Node::new("Tanh", &t("tanh_node"), &[&t("scaled")], &[&t("th")], vec![]));
                nodes.push(Node::new("Add", &t("add_node"), &[&t("th"), &one], &[&t("p")], vec![]));
                nodes.push(Node::new("Mul", &t("mul_node"), &[&z, &t("p")], &[&t("m")], vec![]));
                nodes.push(Node::new("Mul", &t("half_node"), &[&t("m"), &half], &[&a], vec![]));
            }
        }
        cur = a;
    }
}

/// The operators an MLP may contain (see the module comment).
const SUPPORTED: [&str; 29] = [
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Scaler", "Identity", "Dropout", "Cast", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Constant", "Relu", "LeakyRelu", "Elu", "Tanh", "Sigmoid", "Softplus", "Gelu", "Erf", "Exp", "Log", "Pow", "Sqrt", "Neg", "Reciprocal",
];

struct Walk<'a> {
    m: &'a Model,
    consts: HashMap<String, Const>,
    /// Consumers of each tensor (node indices).
    users: HashMap<String, Vec<usize>>,
    used: HashSet<usize>,
    layers: Vec<Dense>,
    /// The current value's width (None until known).
    width: Option<usize>,
    /// The current value's rank (2 for [batch, features]).
    rank: usize,
}

fn attr_floats(n: &Node, k: &str) -> Option<Vec<f64>> {
    match n.attr(k)? {
        Attr::Floats(_, v) => Some(v.iter().map(|&x| x as f64).collect()),
        Attr::Float(_, v) => Some(vec![*v as f64]),
        _ => None,
    }
}

impl<'a> Walk<'a> {
    fn new(m: &'a Model) -> Result<Walk<'a>, String> {
        let mut consts: HashMap<String, Const> = m.inits.iter().filter_map(|t| const_of(t).map(|c| (t.name.clone(), c))).collect();
        let mut users: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in m.nodes.iter().enumerate() {
            if n.op == "Constant" {
                let value = match n.attrs.first() {
                    Some(Attr::Tensor(_, t)) => const_of(t),
                    Some(Attr::Float(k, v)) if k == "value_float" => Some(Const { dims: vec![], v: vec![*v as f64] }),
                    Some(Attr::Floats(k, v)) if k == "value_floats" => Some(Const { dims: vec![v.len()], v: v.iter().map(|&x| x as f64).collect() }),
                    Some(Attr::Int(k, v)) if k == "value_int" => Some(Const { dims: vec![], v: vec![*v as f64] }),
                    Some(Attr::Ints(k, v)) if k == "value_ints" => Some(Const { dims: vec![v.len()], v: v.iter().map(|&x| x as f64).collect() }),
                    _ => None,
                };
                let value = value.ok_or_else(|| format!("Constant `{}` holds no numeric tensor", n.name))?;
                consts.insert(n.outputs[0].clone(), value);
                continue;
            }
            for t in &n.inputs {
                users.entry(t.clone()).or_default().push(i);
            }
        }
        Ok(Walk { m, consts, users, used: HashSet::new(), layers: Vec::new(), width: None, rank: 2 })
    }

    fn run(mut self) -> Result<Mlp, String> {
        let m = self.m;
        let input = m.inputs.iter().find(|i| !self.consts.contains_key(&i.name)).ok_or("the graph has no input that is not a constant")?;
        if m.outputs.len() != 1 {
            return Err(format!("the graph has {} outputs; an MLP surrogate has one", m.outputs.len()));
        }
        let output = &m.outputs[0];
        if input.dims.len() != 2 {
            return Err(format!("input `{}` has rank {}; an MLP takes [batch, features]", input.name, input.dims.len()));
        }
        self.width = input.dims[1];
        let mut cur = input.name.clone();
        let mut state = State::Value(Affine::identity());
        let mut steps = 0;
        while cur != output.name {
            steps += 1;
            if steps > 4 * m.nodes.len() + 4 {
                return Err("the graph loops".into());
            }
            let users: Vec<usize> = self.users.get(&cur).map(|u| u.iter().copied().filter(|i| !self.used.contains(i)).collect()).unwrap_or_default();
            let [i] = users[..] else {
                if users.is_empty() {
                    return Err(format!("tensor `{cur}` leads nowhere: the graph output `{}` is not reached from input `{}`", output.name, input.name));
                }
                // a fan-out: an activation made of elementwise nodes
                let (act, k, c, out) = self.composite(&cur, &users)?;
                state = self.activate(state, act, &cur)?;
                // the group may compute k·act + c (torch's GELU halves after joining)
                state = self.apply_affine(state, vec![k], vec![c])?;
                cur = out;
                continue;
            };
            self.used.insert(i);
            let n = &m.nodes[i];
            let out = n.outputs[0].clone();
            let other = |k: usize| n.inputs.get(k).and_then(|t| self.consts.get(t)).cloned();
            match n.op.as_str() {
                "Identity" | "Dropout" => {}
                "Cast" => {
                    if n.attr_i("to", FLOAT as i64) != FLOAT as i64 {
                        return Err(format!("operator `Cast` (node `{}`) converts to element type {}, not float32", n.name, n.attr_i("to", 0)));
                    }
                }
                "Flatten" => {
                    if self.rank != 2 || n.attr_i("axis", 1) != 1 {
                        return Err(format!("Flatten `{}` changes the [batch, features] shape", n.name));
                    }
                }
                "Reshape" => {
                    let shape = other(1).ok_or_else(|| format!("Reshape `{}` has no constant shape", n.name))?;
                    let d = self.width.map(|w| w as f64);
                    let ok = shape.v.len() == 2 && (shape.v[0] == -1.0 || shape.v[0] == 0.0) && (Some(shape.v[1]) == d || (shape.v[1] == -1.0 && self.rank == 2));
                    // skl2onnx ends a multi-output regressor with a Reshape to
                    // [-1, 1]: [N·d, 1], the same values in the same order as [N, d]
                    let flattened_output = shape.v == [-1.0, 1.0] && out == output.name;
                    if !(ok || flattened_output) || self.rank != 2 {
                        return Err(format!("Reshape `{}` to {:?} is not [batch, {}]", n.name, shape.v, self.width.map_or("features".to_string(), |w| w.to_string())));
                    }
                }
                "Squeeze" | "Unsqueeze" => {
                    let axes = match n.attr("axes") {
                        Some(Attr::Ints(_, a)) => a.clone(),
                        _ => other(1).map(|c| c.v.iter().map(|&x| x as i64).collect()).unwrap_or_default(),
                    };
                    if axes.is_empty() || axes.iter().any(|&a| a == 0 || a == -(self.rank as i64)) {
                        return Err(format!("{} `{}` touches the batch axis", n.op, n.name));
                    }
                    self.rank = if n.op == "Squeeze" { self.rank.saturating_sub(axes.len()) } else { self.rank + axes.len() };
                }
                "Gemm" | "MatMul" => {
                    if n.inputs.first() != Some(&cur) || self.rank != 2 {
                        return Err(format!("{} `{}` does not take the network's value as its first input of rank 2", n.op, n.name));
                    }
                    if n.attr_i("transA", 0) != 0 {
                        return Err(format!("Gemm `{}` with transA = 1 multiplies by the batch", n.name));
                    }
                    let w = other(1).ok_or_else(|| format!("{} `{}`: the weights are not a constant", n.op, n.name))?;
                    let [r, c] = w.dims[..] else {
                        return Err(format!("{} `{}`: weights of shape {:?}, not 2-D", n.op, n.name, w.dims));
                    };
                    let trans = n.op == "Gemm" && n.attr_i("transB", 0) != 0;
                    let (d_in, d_out) = if trans { (c, r) } else { (r, c) };
                    let alpha = if n.op == "Gemm" { n.attr_f("alpha", 1.0) as f64 } else { 1.0 };
                    let mut wv = vec![0.0f64; d_in * d_out];
                    for i in 0..d_in {
                        for j in 0..d_out {
                            wv[i * d_out + j] = alpha * if trans { w.v[j * d_in + i] } else { w.v[i * d_out + j] };
                        }
                    }
                    let mut b = vec![0.0f64; d_out];
                    if n.op == "Gemm" {
                        if let Some(t) = n.inputs.get(2).filter(|t| !t.is_empty()) {
                            let c = self.consts.get(t).ok_or_else(|| format!("Gemm `{}`: bias `{t}` is not a constant", n.name))?;
                            let beta = n.attr_f("beta", 1.0) as f64;
                            let v = per_feature(c, d_out).ok_or_else(|| format!("Gemm `{}`: bias of shape {:?} for {d_out} outputs", n.name, c.dims))?;
                            b.iter_mut().zip(v).for_each(|(b, v)| *b = beta * v);
                        }
                    }
                    if let Some(w) = self.width {
                        if w != d_in {
                            return Err(format!("{} `{}` takes {d_in} features, the value has {w}", n.op, n.name));
                        }
                    }
                    // the affine map pending on the input folds into the weights
                    if let State::Value(a) = &state {
                        if !a.is_identity() {
                            let (s, o) = (broadcast(&a.s, d_in).map_err(|e| format!("{} `{}`: {e}", n.op, n.name))?, broadcast(&a.o, d_in).map_err(|e| format!("{} `{}`: {e}", n.op, n.name))?);
                            for j in 0..d_out {
                                let mut shift = 0.0;
                                for i in 0..d_in {
                                    shift += o[i] * wv[i * d_out + j];
                                    wv[i * d_out + j] *= s[i];
                                }
                                b[j] += shift;
                            }
                        }
                    }
                    self.layers.push(Dense { d_in, d_out, w: wv.iter().map(|&x| x as f32).collect(), b: b.iter().map(|&x| x as f32).collect(), act: Act::Linear });
                    self.width = Some(d_out);
                    state = State::PreActivation;
                }
                "Add" | "Sub" | "Mul" | "Div" | "Scaler" => {
                    let (s, o) = self.affine(n, &cur)?;
                    state = self.apply_affine(state, s, o)?;
                }
                "Relu" => state = self.activate(state, Act::Relu, &n.name)?,
                "Tanh" => state = self.activate(state, Act::Tanh, &n.name)?,
                "Sigmoid" => state = self.activate(state, Act::Sigmoid, &n.name)?,
                "Softplus" => state = self.activate(state, Act::Softplus, &n.name)?,
                "LeakyRelu" => state = self.activate(state, Act::LeakyRelu(n.attr_f("alpha", 0.01)), &n.name)?,
                "Elu" => state = self.activate(state, Act::Elu(n.attr_f("alpha", 1.0)), &n.name)?,
                "Gelu" => {
                    let act = match n.attr("approximate") {
                        None => Act::Gelu,
                        Some(Attr::Str(_, a)) if a == "none" => Act::Gelu,
                        Some(Attr::Str(_, a)) if a == "tanh" => Act::GeluTanh,
                        Some(other) => return Err(format!("Gelu `{}`: approximate = {other:?} is neither \"none\" nor \"tanh\"", n.name)),
                    };
                    state = self.activate(state, act, &n.name)?;
                }
                op => return Err(format!("operator `{op}` (node `{}`) does not fit an MLP here", n.name)),
            }
            cur = out;
        }
        if self.layers.is_empty() {
            return Err("the graph has no dense layer (Gemm or MatMul)".into());
        }
        if self.rank != 2 {
            return Err("the output is not [batch, outputs]".into());
        }
        // an affine map left after the last activation: one more linear layer
        if let State::Value(a) = state {
            if !a.is_identity() {
                let d = self.width.expect("known after a layer");
                let (s, o) = (broadcast(&a.s, d)?, broadcast(&a.o, d)?);
                let mut w = vec![0.0f32; d * d];
                for i in 0..d {
                    w[i * d + i] = s[i] as f32;
                }
                self.layers.push(Dense { d_in: d, d_out: d, w, b: o.iter().map(|&x| x as f32).collect(), act: Act::Linear });
            }
        }
        Ok(Mlp { input: input.name.clone(), output: output.name.clone(), layers: self.layers })
    }

    /// `n` (Add, Sub, Mul, Div with a constant, or Scaler) as `x·s + o` on `cur`.
    fn affine(&self, n: &Node, cur: &str) -> Result<(Vec<f64>, Vec<f64>), String> {
        if n.op == "Scaler" {
            // ai.onnx.ml Scaler: (x − offset)·scale
            let off = attr_floats(n, "offset").unwrap_or_else(|| vec![0.0]);
            let sc = attr_floats(n, "scale").unwrap_or_else(|| vec![1.0]);
            let d = off.len().max(sc.len());
            let (off, sc) = (broadcast(&off, d)?, broadcast(&sc, d)?);
            return Ok((sc.clone(), off.iter().zip(&sc).map(|(o, s)| -o * s).collect()));
        }
        let (first, second) = (n.inputs.first().map(String::as_str), n.inputs.get(1).map(String::as_str));
        let (c, value_first) = match (first, second) {
            (Some(a), Some(b)) if a == cur && self.consts.contains_key(b) => (&self.consts[b], true),
            (Some(a), Some(b)) if b == cur && self.consts.contains_key(a) => (&self.consts[a], false),
            _ => return Err(format!("{} `{}` combines the network's value with something that is not a constant", n.op, n.name)),
        };
        let d = self.width.unwrap_or(1).max(1);
        let v = per_feature(c, d).ok_or_else(|| format!("{} `{}`: a constant of shape {:?} for {d} features", n.op, n.name, c.dims))?;
        let ones = vec![1.0; v.len()];
        let zeros = vec![0.0; v.len()];
        Ok(match (n.op.as_str(), value_first) {
            ("Add", _) => (ones, v),
            ("Sub", true) => (ones, v.iter().map(|x| -x).collect()),
            ("Sub", false) => (vec![-1.0; v.len()], v),
            ("Mul", _) => (v, zeros),
            ("Div", true) => {
                if v.iter().any(|&x| x == 0.0) {
                    return Err(format!("Div `{}` divides by zero", n.name));
                }
                (v.iter().map(|x| 1.0 / x).collect(), zeros)
            }
            _ => return Err(format!("Div `{}` divides a constant by the network's value, which is not affine", n.name)),
        })
    }

    fn apply_affine(&mut self, state: State, s: Vec<f64>, o: Vec<f64>) -> Result<State, String> {
        Ok(match state {
            State::PreActivation => {
                let l = self.layers.last_mut().expect("a layer");
                let (s, o) = (broadcast(&s, l.d_out)?, broadcast(&o, l.d_out)?);
                for j in 0..l.d_out {
                    for i in 0..l.d_in {
                        l.w[i * l.d_out + j] = (l.w[i * l.d_out + j] as f64 * s[j]) as f32;
                    }
                    l.b[j] = (l.b[j] as f64 * s[j] + o[j]) as f32;
                }
                State::PreActivation
            }
            State::Value(a) => {
                let d = a.s.len().max(s.len()).max(self.width.unwrap_or(0));
                let (as_, ao, s, o) = (broadcast(&a.s, d)?, broadcast(&a.o, d)?, broadcast(&s, d)?, broadcast(&o, d)?);
                State::Value(Affine { s: (0..d).map(|i| as_[i] * s[i]).collect(), o: (0..d).map(|i| ao[i] * s[i] + o[i]).collect() })
            }
        })
    }

    fn activate(&mut self, state: State, act: Act, at: &str) -> Result<State, String> {
        match state {
            State::PreActivation if self.layers.last().is_some_and(|l| l.act == Act::Linear) => {
                self.layers.last_mut().expect("a layer").act = act;
                Ok(State::Value(Affine::identity()))
            }
            _ => Err(format!("the activation at `{at}` does not follow a dense layer (an activation of an activation, or of the input)")),
        }
    }

    /// The activation computed by the elementwise nodes that fan out from
    /// `z` (its consumers `first`) and join into one tensor, found by
    /// evaluating them on probe values: `k·act(z) + c` and the joined tensor.
    fn composite(&mut self, z: &str, first: &[usize]) -> Result<(Act, f64, f64, String), String> {
        let m = self.m;
        let mut region: Vec<usize> = Vec::new();
        let mut produced: HashSet<String> = HashSet::from([z.to_string()]);
        let mut joined = None;
        // nodes are in topological order (ONNX requires it): scan forward
        for i in first.iter().copied().min().unwrap_or(0)..m.nodes.len() {
            let n = &m.nodes[i];
            if self.used.contains(&i) || n.op == "Constant" || !n.inputs.iter().any(|t| produced.contains(t)) {
                continue;
            }
            if !ELEMENTWISE.contains(&n.op.as_str()) || region.len() >= 16 {
                return Err(format!("tensor `{z}` feeds {} nodes, and `{}` ({}) is not part of an activation excite recognises", first.len(), n.name, n.op));
            }
            if let Some(t) = n.inputs.iter().find(|t| !produced.contains(*t) && !self.consts.contains_key(*t)) {
                return Err(format!("node `{}` ({}) mixes `{t}` into the activation after `{z}`", n.name, n.op));
            }
            region.push(i);
            produced.insert(n.outputs[0].clone());
            let consumed: HashSet<&String> = region.iter().flat_map(|&i| m.nodes[i].inputs.iter()).collect();
            let open: Vec<&String> = produced.iter().filter(|t| !consumed.contains(t)).collect();
            if first.iter().all(|u| region.contains(u)) && open.len() == 1 {
                joined = Some(open[0].clone());
                break;
            }
        }
        let out = joined.ok_or_else(|| format!("the nodes after `{z}` do not join into one tensor"))?;
        // evaluate the region on probe values of z
        let probes: Vec<f64> = (-48..=48).map(|k| k as f64 / 8.0).collect();
        let mut values: HashMap<String, Vec<f64>> = HashMap::from([(z.to_string(), probes.clone())]);
        for &i in &region {
            let n = &m.nodes[i];
            let arg = |k: usize| -> Option<Vec<f64>> {
                let t = n.inputs.get(k)?;
                values.get(t).cloned().or_else(|| self.consts.get(t).filter(|c| c.v.len() == 1).map(|c| vec![c.v[0]; probes.len()]))
            };
            let bad = || format!("node `{}` ({}) has an input that is not one value per element", n.name, n.op);
            let a = arg(0).ok_or_else(bad)?;
            let un = |f: &dyn Fn(f64) -> f64| a.iter().map(|&x| f(x)).collect::<Vec<f64>>();
            let v: Vec<f64> = match n.op.as_str() {
                "Erf" => un(&crate::special::erf),
                "Tanh" => un(&f64::tanh),
                "Sigmoid" => un(&|x| 1.0 / (1.0 + (-x).exp())),
                "Exp" => un(&f64::exp),
                "Log" => un(&f64::ln),
                "Sqrt" => un(&f64::sqrt),
                "Neg" => un(&|x| -x),
                "Abs" => un(&f64::abs),
                "Reciprocal" => un(&|x| 1.0 / x),
                "Relu" => un(&|x| x.max(0.0)),
                "Softplus" => un(&|x| Act::Softplus.eval(x)),
                op => {
                    let b = arg(1).ok_or_else(bad)?;
                    a.iter().zip(&b).map(|(&x, &y)| match op {
                        "Mul" => x * y,
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Div" => x / y,
                        _ => x.powf(y),
                    }).collect()
                }
            };
            values.insert(n.outputs[0].clone(), v);
        }
        let got = &values[&out];
        // the best k·act + c of each candidate, by least squares, must match everywhere
        let fit = |a: Act| -> Option<(f64, f64)> {
            let xs: Vec<f64> = probes.iter().map(|&x| a.eval(x)).collect();
            let n = xs.len() as f64;
            let (mx, my) = (xs.iter().sum::<f64>() / n, got.iter().sum::<f64>() / n);
            let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
            let k = xs.iter().zip(got).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / var;
            let c = my - k * mx;
            // exact constants stay exact (a ×2 undone by a later ×0.5 must give 1)
            let k = if (k - k.round()).abs() < 1e-9 { k.round() } else { k };
            let c = if c.abs() < 1e-9 { 0.0 } else { c };
            let ok = k.is_finite() && k.abs() > 1e-9 && xs.iter().zip(got).all(|(x, y)| (k * x + c - y).abs() <= 1e-5 * (1.0 + y.abs()));
            ok.then_some((k, c))
        };
        let candidates = [Act::Gelu, Act::GeluTanh, Act::Silu, Act::Tanh, Act::Sigmoid, Act::Softplus, Act::Relu, Act::Elu(1.0)];
        let (act, (k, c)) = candidates.into_iter().find_map(|a| fit(a).map(|f| (a, f))).ok_or_else(|| {
            let names: Vec<String> = region.iter().map(|&i| format!("{} `{}`", m.nodes[i].op, m.nodes[i].name)).collect();
            format!("the nodes after `{z}` ({}) compute no activation excite has (relu, leaky_relu, elu, tanh, sigmoid, softplus, silu, gelu and its tanh form)", names.join(", "))
        })?;
        self.used.extend(region);
        Ok((act, k, c, out))
    }
}

/// A constant as `d` per-feature values: a scalar, [d], [1, d] or [1].
fn per_feature(c: &Const, d: usize) -> Option<Vec<f64>> {
    let n = c.v.len();
    let feature_shaped = match c.dims.len() {
        0 => true,
        1 => true,
        2 => c.dims[0] == 1,
        _ => false,
    };
    if !feature_shaped || c.v.len() != n {
        return None;
    }
    match n {
        1 => Some(vec![c.v[0]; d.max(1)]),
        _ if n == d || d <= 1 => Some(c.v.clone()),
        _ => None,
    }
}

/// `v` as `d` per-feature values: one value repeated, or exactly `d`.
fn broadcast(v: &[f64], d: usize) -> Result<Vec<f64>, String> {
    match v.len() {
        1 => Ok(vec![v[0]; d]),
        n if n == d => Ok(v.to_vec()),
        n => Err(format!("{n} per-feature values where the network has {d} features")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(name: &str, d: usize) -> Io {
        Io { name: name.into(), dtype: FLOAT, dims: vec![None, Some(d)] }
    }

    fn model(nodes: Vec<Node>, inits: Vec<Init>, d_in: usize) -> Model {
        Model { opset: 17, producer_version: String::new(), name: "t".into(), nodes, inits, inputs: vec![io("x", d_in)], outputs: vec![io("y", 2)], metadata: vec![], domains: vec![] }
    }

    /// Found by tests/fuzz.rs: a scaling with fewer values than the input's
    /// features indexed past them; now each mismatch is a named error.
    #[test]
    fn per_feature_constants_that_do_not_fit_are_named() {
        let w = Init::f32("w", &[7, 2], &[0.5; 14]);
        let mut scaler = Node::new("Scaler", "scale", &["x"], &["s"], vec![Attr::Floats("offset".into(), vec![0.0; 3]), Attr::Floats("scale".into(), vec![1.0; 3])]);
        scaler.domain = "ai.onnx.ml".into();
        let m = model(vec![scaler, Node::new("MatMul", "mm", &["s", "w"], &["y"], vec![])], vec![w.clone()], 7);
        let e = Mlp::from_model(&m).unwrap_err();
        assert!(e.contains("3 per-feature values") && e.contains("7 features"), "{e}");
        // a Constant whose shape does not hold its values is not a constant
        let bad = Init { name: "c".into(), dims: vec![2, 3], dtype: FLOAT, raw: 1f32.to_le_bytes().to_vec(), unread: None };
        let m = model(vec![Node::new("Constant", "k", &[], &["c"], vec![Attr::Tensor("value".into(), bad)]), Node::new("Gemm", "g", &["x", "c"], &["y"], vec![])], vec![], 3);
        assert!(Mlp::from_model(&m).unwrap_err().contains("Constant `k`"));
    }

    /// The Jacobian matches central differences of the f64 forward pass for
    /// every activation.
    #[test]
    fn jacobian_matches_finite_differences() {
        for act in [Act::Relu, Act::LeakyRelu(0.1), Act::Elu(1.0), Act::Tanh, Act::Sigmoid, Act::Softplus, Act::Silu, Act::Gelu, Act::GeluTanh] {
            let w0: Vec<f32> = (0..12).map(|i| ((i * 7 % 5) as f32 - 2.0) / 3.0).collect();
            let w1: Vec<f32> = (0..8).map(|i| ((i * 3 % 7) as f32 - 3.0) / 4.0).collect();
            let net = Mlp {
                input: "x".into(),
                output: "y".into(),
                layers: vec![Dense { d_in: 3, d_out: 4, w: w0, b: vec![0.1, -0.2, 0.3, 0.05], act }, Dense { d_in: 4, d_out: 2, w: w1, b: vec![0.0, 1.0], act: Act::Linear }],
            };
            let x = [0.3f32, -0.7, 1.1];
            let j = net.jacobian(&x, 1);
            for k in 0..3 {
                let h = 1e-3f32;
                let (mut a, mut b) = (x, x);
                a[k] += h;
                b[k] -= h;
                let (ya, yb) = (net.forward(&a, 1), net.forward(&b, 1));
                for o in 0..2 {
                    let fd = (ya[o] - yb[o]) / (a[k] as f64 - b[k] as f64);
                    assert!((j[o * 3 + k] - fd).abs() < 1e-5, "{act:?} d y{o}/d x{k}: {} vs {fd}", j[o * 3 + k]);
                }
            }
        }
    }
}
