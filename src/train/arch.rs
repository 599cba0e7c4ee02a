//! Network architectures: the per-layer spec `[(activation, width), …]`, the
//! paper's five shapes at a neuron budget, and the authors' 800-candidate zoo.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Activation functions of hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    #[serde(rename = "relu", alias = "ReLU")]
    Relu,
    #[serde(rename = "leaky_relu", alias = "LeakyReLU", alias = "leakyrelu")]
    LeakyRelu,
    #[serde(rename = "elu", alias = "ELU")]
    Elu,
    #[serde(rename = "silu", alias = "SiLU")]
    Silu,
    #[serde(rename = "gelu", alias = "GELU")]
    Gelu,
    #[serde(rename = "tanh", alias = "Tanh")]
    Tanh,
    #[serde(rename = "sigmoid", alias = "Sigmoid")]
    Sigmoid,
}

impl Activation {
    pub const ALL: [Activation; 7] = [
        Self::Relu,
        Self::LeakyRelu,
        Self::Elu,
        Self::Silu,
        Self::Gelu,
        Self::Tanh,
        Self::Sigmoid,
    ];
    /// Negative slope of [`Activation::LeakyRelu`] (PyTorch's default).
    pub const LEAKY_SLOPE: f64 = 0.01;

    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::LeakyRelu => "leaky_relu",
            Self::Elu => "elu",
            Self::Silu => "silu",
            Self::Gelu => "gelu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
        }
    }

    /// Parses the names used in configs and in the authors' zoo (case-insensitive).
    pub fn parse(s: &str) -> Option<Activation> {
        let s = s.trim().to_ascii_lowercase().replace(['_', '-'], "");
        Self::ALL
            .into_iter()
            .find(|a| a.name().replace('_', "") == s)
    }

    /// The activation in f64: the reference other implementations are tested against.
    pub fn eval(self, z: f64) -> f64 {
        match self {
            Self::Relu => z.max(0.0),
            Self::LeakyRelu => {
                if z >= 0.0 {
                    z
                } else {
                    Self::LEAKY_SLOPE * z
                }
            }
            Self::Elu => {
                if z > 0.0 {
                    z
                } else {
                    z.exp_m1()
                }
            }
            Self::Silu => z / (1.0 + (-z).exp()),
            Self::Gelu => 0.5 * z * (1.0 + crate::special::erf(z / std::f64::consts::SQRT_2)),
            Self::Tanh => z.tanh(),
            Self::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        }
    }
}

/// One hidden layer: activation and width. Written `[tanh, 64]` in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer(pub Activation, pub usize);

/// An MLP: inputs, hidden layers, outputs (the output layer is linear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    pub inputs: usize,
    pub hidden: Vec<Layer>,
    pub outputs: usize,
}

impl Architecture {
    pub fn check(&self) -> Result<(), Error> {
        if self.hidden.is_empty() || self.hidden.iter().any(|l| l.1 == 0) {
            return Err(Error::invalid(
                "architecture.hidden",
                "needs at least one hidden layer, each of width ≥ 1",
                "write layers as [[tanh, 64], [tanh, 64]]",
            ));
        }
        Ok(())
    }

    pub fn neurons(&self) -> usize {
        self.hidden.iter().map(|l| l.1).sum()
    }

    /// Number of trainable parameters.
    pub fn parameters(&self) -> usize {
        let mut d = self.inputs;
        let mut n = 0;
        for l in &self.hidden {
            n += (d + 1) * l.1;
            d = l.1;
        }
        n + (d + 1) * self.outputs
    }

    /// Multiply-adds per evaluation (one per weight).
    pub fn multiply_adds(&self) -> usize {
        let widths: Vec<usize> = std::iter::once(self.inputs).chain(self.hidden.iter().map(|l| l.1)).chain([self.outputs]).collect();
        widths.windows(2).map(|w| w[0] * w[1]).sum()
    }

    /// `4-64-64-2 tanh,tanh`-style summary.
    pub fn summary(&self) -> String {
        let widths: Vec<String> = std::iter::once(self.inputs)
            .chain(self.hidden.iter().map(|l| l.1))
            .chain([self.outputs])
            .map(|w| w.to_string())
            .collect();
        let acts: Vec<&str> = self.hidden.iter().map(|l| l.0.name()).collect();
        format!("{} ({})", widths.join("-"), acts.join(","))
    }
}

/// The paper's architecture shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Equal widths.
    Rectangle,
    /// Widening: each layer twice the previous.
    Funnel,
    /// Narrowing: each layer half the previous.
    Bottleneck,
    /// Wide, narrow in the middle, wide.
    Bowtie,
    /// Narrow, wide in the middle, narrow.
    Diamond,
}

impl Shape {
    /// The name the paper and the zoo file use.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Rectangle => "rectangle",
            Shape::Funnel => "funnel",
            Shape::Bottleneck => "bottleneck",
            Shape::Bowtie => "bowtie",
            Shape::Diamond => "diamond",
        }
    }
}

/// Hidden layers of `shape` with `layers` layers and `budget` neurons in total.
pub fn shaped(
    shape: Shape,
    layers: usize,
    budget: usize,
    activation: Activation,
) -> Result<Vec<Layer>, Error> {
    if layers == 0 || budget < layers {
        return Err(Error::invalid(
            "architecture.budget",
            format!("{budget} neurons cannot fill {layers} layers"),
            "give at least one neuron per layer",
        ));
    }
    let weights: Vec<f64> = match shape {
        Shape::Rectangle => vec![1.0; layers],
        Shape::Funnel => (0..layers).map(|i| 2f64.powi(i as i32)).collect(),
        Shape::Bottleneck => (0..layers).rev().map(|i| 2f64.powi(i as i32)).collect(),
        Shape::Diamond | Shape::Bowtie => {
            if layers < 3 {
                return Err(Error::invalid(
                    "architecture.layers",
                    format!("a {shape:?} needs at least 3 layers, got {layers}"),
                    "use layers: 3, or a rectangle/funnel/bottleneck",
                ));
            }
            let mid = (layers - 1) as f64 / 2.0;
            (0..layers)
                .map(|i| {
                    let d = 2f64.powf(-(i as f64 - mid).abs());
                    if shape == Shape::Diamond {
                        2.0 * d
                    } else {
                        4.0 / (2.0 * d)
                    }
                })
                .collect()
        }
    };
    let total: f64 = weights.iter().sum();
    let mut widths: Vec<usize> = weights
        .iter()
        .map(|w| ((w / total * budget as f64).round() as usize).max(1))
        .collect();
    // put the rounding remainder on the widest layer so the budget is exact
    let sum: usize = widths.iter().sum();
    let widest = (0..layers).max_by_key(|&i| widths[i]).unwrap();
    widths[widest] = (widths[widest] + budget).saturating_sub(sum).max(1);
    Ok(widths.into_iter().map(|w| Layer(activation, w)).collect())
}

/// One entry of the authors' architecture zoo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZooEntry {
    pub id: usize,
    pub hidden: Vec<Layer>,
    pub total_neurons: usize,
    pub shape: Shape,
}

/// Reads `model-zoo-800.csv` (`id,"[['ELU', 32], …]",total_neurons,shape`).
pub fn load_zoo(path: &Path) -> Result<Vec<ZooEntry>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |line: u64, what: &str| {
        Error::format(
            path,
            format!("line {line}: {what}"),
            "use the authors' model-zoo-800.csv (id,layers,total_neurons,shape)",
        )
    };
    #[derive(Deserialize)]
    struct Row {
        id: usize,
        layers: String,
        total_neurons: usize,
        shape: Shape,
    }
    let mut out = Vec::new();
    for row in csv::Reader::from_reader(&bytes[..]).deserialize::<Row>() {
        let row = row.map_err(|e| bad(e.position().map_or(0, |p| p.line()), &e.to_string()))?;
        let line = out.len() as u64 + 2;
        // `[['ELU', 32], ['SiLU', 64]]`: Python's list literal of (activation, width)
        let mut hidden = Vec::new();
        for pair in row.layers.split('[').filter(|p| p.contains(',')) {
            let pair = pair.trim_end_matches([']', ',', ' ']);
            let (name, width) = pair.split_once(',').ok_or_else(|| bad(line, "bad layer"))?;
            let act = Activation::parse(name.trim().trim_matches('\''))
                .ok_or_else(|| bad(line, &format!("unknown activation {name}")))?;
            let width = width.trim().parse().map_err(|_| bad(line, "bad width"))?;
            hidden.push(Layer(act, width));
        }
        out.push(ZooEntry { id: row.id, hidden, total_neurons: row.total_neurons, shape: row.shape });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_fill_the_budget_in_their_form() {
        let w = |s, l, b| {
            shaped(s, l, b, Activation::Tanh)
                .unwrap()
                .iter()
                .map(|l| l.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(w(Shape::Rectangle, 3, 96), [32, 32, 32]);
        assert_eq!(w(Shape::Funnel, 3, 112), [16, 32, 64]);
        assert_eq!(w(Shape::Bottleneck, 3, 112), [64, 32, 16]);
        assert_eq!(w(Shape::Diamond, 3, 128), [32, 64, 32]);
        assert_eq!(w(Shape::Bowtie, 3, 160), [64, 32, 64]);
        for s in [
            Shape::Rectangle,
            Shape::Funnel,
            Shape::Bottleneck,
            Shape::Diamond,
            Shape::Bowtie,
        ] {
            for b in [32, 100, 256] {
                assert_eq!(w(s, 3, b).iter().sum::<usize>(), b, "{s:?} {b}");
            }
        }
        assert!(shaped(Shape::Diamond, 2, 64, Activation::Tanh).is_err());
    }

    #[test]
    fn activation_names_round_trip() {
        for a in Activation::ALL {
            assert_eq!(Activation::parse(a.name()), Some(a));
        }
        assert_eq!(Activation::parse("LeakyReLU"), Some(Activation::LeakyRelu));
        assert!((Activation::Gelu.eval(1.0) - 0.841344746).abs() < 1e-7);
    }
}
