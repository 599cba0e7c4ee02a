//! ONNX export: a trained surrogate as one self-describing ONNX file.
//!
//! The graph takes `x` [N, inputs] in physical units and returns `y`
//! [N, outputs] in physical units: the min-max normalisation is folded into
//! the first and last Gemm (in f64), hidden layers are Gemm + activation
//! (SiLU as x·Sigmoid(x), GELU exactly through Erf), opset 17, dynamic batch.
//! Time-split surrogates evaluate every window and pick one per row by t.
//! `metadata_props` carry the cell model, names, ranges, kind, windows and
//! the hash of the training run.


use std::path::Path;


use crate::fsio::write_atomic;
use crate::train::{Activation, TrainedSurrogate, SurrogateMeta, SURROGATE_FILE};
use crate::Error;
use crate::onnx::proto::{self, Attr, Msg};

/// The ONNX opset excite writes.
pub const OPSET: i64 = 17;
pub const INPUT: &str = "x";
pub const OUTPUT: &str = "y";

/// One dense layer in f64: `y = x·w + b`, `w` row-major [d_in, d_out].
struct Dense {
    d_in: usize,
    d_out: usize,
    w: Vec<f64>,
    b: Vec<f64>,
}

fn layers_of(s: &TrainedSurrogate, window: usize) -> Vec<Dense> {
    s.net(window)
        .layers
        .iter()
        .map(|l| {
            let [d_in, d_out] = l.weight.val().dims();
            let w = l
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 weights");
            let b = l
                .bias
                .as_ref()
                .map(|b| b.val().into_data().try_to_vec::<f32>().expect("f32 bias"))
                .unwrap_or_else(|| vec![0.0; d_out]);
            Dense {
                d_in,
                d_out,
                w: w.into_iter().map(f64::from).collect(),
                b: b.into_iter().map(f64::from).collect(),
            }
        })
        .collect()
}

/// Folds `x_unit = (x − mid) / half` into the first layer and
/// `y = y_unit·half + mid` into the last.
fn fold_normalization(layers: &mut [Dense], meta: &SurrogateMeta) {
    let ins = crate::train::Normalization::spans(&meta.normalization.inputs);
    let outs = crate::train::Normalization::spans(&meta.normalization.outputs);
    let first = &mut layers[0];
    for j in 0..first.d_out {
        let mut shift = 0.0;
        for (i, (mid, half)) in ins.iter().enumerate() {
            let w = first.w[i * first.d_out + j];
            shift += mid / half * w;
            first.w[i * first.d_out + j] = w / half;
        }
        first.b[j] -= shift;
    }
    let last = layers.last_mut().expect("at least one layer");
    for (j, (mid, half)) in outs.iter().enumerate() {
        for i in 0..last.d_in {
            last.w[i * last.d_out + j] *= half;
        }
        last.b[j] = last.b[j] * half + mid;
    }
}

/// Nodes and initializers of one window's network, from `input` to `output`.
fn network(
    prefix: &str,
    layers: &[Dense],
    acts: &[Activation],
    input: &str,
    output: &str,
    nodes: &mut Vec<Msg>,
    inits: &mut Vec<Msg>,
) {
    let mut cur = input.to_string();
    for (l, layer) in layers.iter().enumerate() {
        let (w, b) = (format!("{prefix}w{l}"), format!("{prefix}b{l}"));
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        inits.push(proto::tensor(
            &w,
            &[layer.d_in, layer.d_out],
            &f32s(&layer.w),
        ));
        inits.push(proto::tensor(&b, &[layer.d_out], &f32s(&layer.b)));
        let last = l + 1 == layers.len();
        let z = if last {
            output.to_string()
        } else {
            format!("{prefix}z{l}")
        };
        nodes.push(proto::node(
            "Gemm",
            &format!("{prefix}gemm{l}"),
            &[&cur, &w, &b],
            &[&z],
            &[],
        ));
        if last {
            break;
        }
        let a = format!("{prefix}a{l}");
        let n = |s: &str| format!("{prefix}{s}{l}");
        match acts[l] {
            Activation::Relu => nodes.push(proto::node("Relu", &n("relu"), &[&z], &[&a], &[])),
            Activation::Tanh => nodes.push(proto::node("Tanh", &n("tanh"), &[&z], &[&a], &[])),
            Activation::Sigmoid => {
                nodes.push(proto::node("Sigmoid", &n("sigmoid"), &[&z], &[&a], &[]))
            }
            Activation::LeakyRelu => nodes.push(proto::node(
                "LeakyRelu",
                &n("leaky"),
                &[&z],
                &[&a],
                &[Attr::Float("alpha", Activation::LEAKY_SLOPE as f32)],
            )),
            Activation::Elu => nodes.push(proto::node(
                "Elu",
                &n("elu"),
                &[&z],
                &[&a],
                &[Attr::Float("alpha", 1.0)],
            )),
            Activation::Silu => {
                let s = n("sig");
                nodes.push(proto::node(
                    "Sigmoid",
                    &n("silu_sigmoid"),
                    &[&z],
                    &[&s],
                    &[],
                ));
                nodes.push(proto::node("Mul", &n("silu_mul"), &[&z, &s], &[&a], &[]));
            }
            Activation::Gelu => {
                // 0.5·z·(1 + erf(z/√2))
                let (c, one, half) = (
                    format!("{prefix}inv_sqrt2"),
                    format!("{prefix}one"),
                    format!("{prefix}half"),
                );
                if !inits
                    .iter()
                    .any(|t| t.0.windows(c.len()).any(|w| w == c.as_bytes()))
                {
                    inits.push(proto::tensor(&c, &[], &[std::f32::consts::FRAC_1_SQRT_2]));
                    inits.push(proto::tensor(&one, &[], &[1.0]));
                    inits.push(proto::tensor(&half, &[], &[0.5]));
                }
                let (s, e, p, m) = (n("gelu_s"), n("gelu_e"), n("gelu_p"), n("gelu_m"));
                nodes.push(proto::node("Mul", &n("gelu_scale"), &[&z, &c], &[&s], &[]));
                nodes.push(proto::node("Erf", &n("gelu_erf"), &[&s], &[&e], &[]));
                nodes.push(proto::node("Add", &n("gelu_add"), &[&e, &one], &[&p], &[]));
                nodes.push(proto::node("Mul", &n("gelu_mul"), &[&z, &p], &[&m], &[]));
                nodes.push(proto::node(
                    "Mul",
                    &n("gelu_half"),
                    &[&m, &half],
                    &[&a],
                    &[],
                ));
            }
        }
        cur = a;
    }
}

/// The ONNX bytes of the surrogate in run folder `dir`.
pub fn export(dir: &Path) -> Result<Vec<u8>, Error> {
    let s = TrainedSurrogate::load(dir)?;
    let meta = &s.meta;
    let acts: Vec<Activation> = meta.architecture.hidden.iter().map(|l| l.0).collect();
    let (mut nodes, mut inits) = (Vec::new(), Vec::new());
    let k = meta.windows.len();
    for w in 0..k {
        let mut layers = layers_of(&s, w);
        fold_normalization(&mut layers, meta);
        let out = if k == 1 {
            OUTPUT.to_string()
        } else {
            format!("y{w}")
        };
        network(
            &format!("w{w}_"),
            &layers,
            &acts,
            INPUT,
            &out,
            &mut nodes,
            &mut inits,
        );
    }
    if k > 1 {
        // t = x[:, 0:1]; y = Where(t < t1_0, y0, Where(t < t1_1, y1, … y_{K−1}))
        inits.push(proto::tensor_i64("t_index", &[1], &[0]));
        nodes.push(proto::node(
            "Gather",
            "take_t",
            &[INPUT, "t_index"],
            &["t"],
            &[Attr::Int("axis", 1)],
        ));
        let mut rest = format!("y{}", k - 1);
        for w in (0..k - 1).rev() {
            let (bound, cond) = (format!("t1_{w}"), format!("in_window{w}"));
            inits.push(proto::tensor(&bound, &[1], &[meta.windows[w].t1 as f32]));
            nodes.push(proto::node(
                "Less",
                &format!("less{w}"),
                &["t", &bound],
                &[&cond],
                &[],
            ));
            let out = if w == 0 {
                OUTPUT.to_string()
            } else {
                format!("pick{w}")
            };
            nodes.push(proto::node(
                "Where",
                &format!("where{w}"),
                &[&cond, &format!("y{w}"), &rest],
                &[&out],
                &[],
            ));
            rest = out;
        }
    }
    let graph = proto::graph(
        &meta.name,
        &nodes,
        &inits,
        &[proto::value_info(
            INPUT,
            &[None, Some(meta.architecture.inputs)],
        )],
        &[proto::value_info(
            OUTPUT,
            &[None, Some(meta.architecture.outputs)],
        )],
    );
    let model = proto::model(
        &graph,
        OPSET,
        env!("CARGO_PKG_VERSION"),
        &metadata(dir, meta)?,
    );
    Ok(model.0)
}

/// Writes the ONNX file atomically; returns its sha256.
pub fn write(dir: &Path, out: &Path) -> Result<String, Error> {
    let bytes = export(dir)?;
    write_atomic(out, &bytes)?;
    Ok(crate::hash::sha256_hex(&bytes))
}

/// `metadata_props`: what a consumer needs to use and trust the model.
fn metadata(dir: &Path, meta: &SurrogateMeta) -> Result<Vec<(String, String)>, Error> {
    let mut run = Vec::new();
    let mut files = vec![SURROGATE_FILE.to_string()];
    files.extend(meta.windows.iter().map(|w| w.file.clone()));
    for f in &files {
        let p = dir.join(f);
        run.extend(std::fs::read(&p).map_err(|e| Error::io(&p, e))?);
    }
    let run_hash = crate::hash::sha256_hex(&run);
    let json = |v: serde_json::Value| v.to_string();
    Ok(vec![
        ("excite.version".into(), env!("CARGO_PKG_VERSION").into()),
        (
            "excite.kind".into(),
            serde_json::to_value(meta.mode)
                .expect("serialises")
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        (
            "excite.model".into(),
            json(serde_json::to_value(&meta.model).expect("serialises")),
        ),
        (
            "excite.inputs".into(),
            json(serde_json::to_value(&meta.normalization.inputs).expect("serialises")),
        ),
        (
            "excite.outputs".into(),
            json(serde_json::to_value(&meta.normalization.outputs).expect("serialises")),
        ),
        (
            "excite.windows".into(),
            json(serde_json::json!(meta
                .windows
                .iter()
                .map(|w| [w.t0, w.t1])
                .collect::<Vec<_>>())),
        ),
        (
            "excite.time".into(),
            json(serde_json::to_value(&meta.time).expect("serialises")),
        ),
        (
            "excite.initial".into(),
            json(serde_json::to_value(&meta.initial).expect("serialises")),
        ),
        (
            "excite.sampling".into(),
            json(serde_json::to_value(&meta.sampling).expect("serialises")),
        ),
        ("excite.architecture".into(), meta.architecture.summary()),
        ("excite.dataset_sha256".into(), meta.dataset_sha256.clone()),
        ("excite.run_sha256".into(), run_hash),
    ])
}
