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


use crate::data::problem::ProblemMeta;
use crate::fsio::write_atomic;
use crate::train::{Activation, TrainedSurrogate, SurrogateMeta, SURROGATE_FILE};
use crate::Error;
use crate::onnx::graph::{Attr, Init, Io, Model, Node, FLOAT, INT64};
use crate::onnx::mlp;

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
        .host_layers()
        .into_iter()
        .map(|l| Dense {
            d_in: l.inputs,
            d_out: l.outputs,
            w: l.w.into_iter().map(f64::from).collect(),
            b: l.b.into_iter().map(f64::from).collect(),
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

/// One window's layers as the one dense-network form ([`mlp::emit`] writes
/// it): hidden layers with their activations, the last one linear.
fn dense(layers: &[Dense], acts: &[Activation]) -> Vec<mlp::Dense> {
    layers
        .iter()
        .enumerate()
        .map(|(l, d)| mlp::Dense {
            d_in: d.d_in,
            d_out: d.d_out,
            w: d.w.iter().map(|&x| x as f32).collect(),
            b: d.b.iter().map(|&x| x as f32).collect(),
            act: if l + 1 == layers.len() {
                mlp::Act::Linear
            } else {
                match acts[l] {
                    Activation::Relu => mlp::Act::Relu,
                    Activation::Tanh => mlp::Act::Tanh,
                    Activation::Sigmoid => mlp::Act::Sigmoid,
                    Activation::LeakyRelu => mlp::Act::LeakyRelu(Activation::LEAKY_SLOPE as f32),
                    Activation::Elu => mlp::Act::Elu(1.0),
                    Activation::Silu => mlp::Act::Silu,
                    Activation::Gelu => mlp::Act::Gelu,
                }
            },
        })
        .collect()
}

/// The ONNX bytes of the surrogate in run folder `dir`.
pub fn export(dir: &Path) -> Result<Vec<u8>, Error> {
    let s = TrainedSurrogate::load(dir)?;
    refuse_diverged(dir, s.meta.mode)?;
    let meta = &s.meta;
    let acts: Vec<Activation> = meta.architecture.hidden.iter().map(|l| l.0).collect();
    let (mut nodes, mut inits) = (Vec::new(), Vec::new());
    let k = meta.windows.len();
    for w in 0..k {
        let mut layers = layers_of(&s, w);
        fold_normalization(&mut layers, meta);
        let out = if k == 1 { OUTPUT.to_string() } else { format!("y{w}") };
        mlp::emit(&format!("w{w}_"), &dense(&layers, &acts), INPUT, &out, &mut nodes, &mut inits);
    }
    if k > 1 {
        // t = x[:, 0:1]; y = Where(t < t1_0, y0, Where(t < t1_1, y1, … y_{K−1}))
        inits.push(Init { name: "t_index".into(), dims: vec![1], dtype: INT64, raw: 0i64.to_le_bytes().to_vec(), unread: None });
        nodes.push(Node::new("Gather", "take_t", &[INPUT, "t_index"], &["t"], vec![Attr::Int("axis".into(), 1)]));
        let mut rest = format!("y{}", k - 1);
        for w in (0..k - 1).rev() {
            let (bound, cond) = (format!("t1_{w}"), format!("in_window{w}"));
            inits.push(Init::f32(&bound, &[1], &[meta.windows[w].t1 as f32]));
            nodes.push(Node::new("Less", &format!("less{w}"), &["t", &bound], &[&cond], vec![]));
            let out = if w == 0 { OUTPUT.to_string() } else { format!("pick{w}") };
            nodes.push(Node::new("Where", &format!("where{w}"), &[&cond, &format!("y{w}"), &rest], &[&out], vec![]));
            rest = out;
        }
    }
    let io = |name: &str, d: usize| Io { name: name.into(), dtype: FLOAT, dims: vec![None, Some(d)] };
    let model = Model {
        opset: OPSET,
        producer_version: env!("CARGO_PKG_VERSION").into(),
        name: meta.name.clone(),
        nodes,
        inits,
        inputs: vec![io(INPUT, meta.architecture.inputs)],
        outputs: vec![io(OUTPUT, meta.architecture.outputs)],
        metadata: metadata(dir, meta)?,
        domains: vec![],
    };
    Ok(model.to_bytes())
}

/// Writes the ONNX file atomically; returns its sha256.
pub fn write(dir: &Path, out: &Path) -> Result<String, Error> {
    let bytes = export(dir)?;
    write_atomic(out, &bytes)?;
    Ok(crate::hash::sha256_hex(&bytes))
}

/// A training run whose metrics say it diverged has nothing worth exporting
/// (its weights are NaN or its outputs are): a named error, with what the
/// trainer found out about why.
fn refuse_diverged(dir: &Path, mode: crate::train::Mode) -> Result<(), Error> {
    let path = dir.join(crate::train::METRICS_FILE);
    let Ok(text) = std::fs::read(&path) else { return Ok(()) };
    let m: crate::train::Metrics = serde_json::from_slice(&text).map_err(|e| Error::format(&path, format!("not training metrics: {e}"), "train again to rewrite it"))?;
    if !m.diverged {
        return Ok(());
    }
    Err(Error::Gate {
        stage: "export".into(),
        problem: format!("the training run in {} diverged ({}); there is nothing to export", dir.display(), m.diverged_why.as_deref().unwrap_or("a validation prediction is NaN or infinite")),
        hint: crate::train::diverged_hint(mode).into(),
    })
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
    let problem = ProblemMeta {
        kind: serde_json::to_value(meta.mode).expect("serialises").as_str().unwrap_or_default().to_string(),
        model: meta.model.clone(),
        inputs: meta.normalization.inputs.clone(),
        outputs: meta.normalization.outputs.clone(),
        time: meta.time.clone(),
        initial: meta.initial.clone(),
        sampling: meta.sampling.clone(),
    };
    let windows: Vec<[f64; 2]> = meta.windows.iter().map(|w| [w.t0, w.t1]).collect();
    let mut props = problem.to_props();
    props.extend([
        ("excite.windows".to_string(), serde_json::json!(windows).to_string()),
        ("excite.architecture".to_string(), meta.architecture.summary()),
        ("excite.dataset_sha256".to_string(), meta.dataset_sha256.clone()),
        ("excite.run_sha256".to_string(), run_hash),
    ]);
    Ok(props)
}
