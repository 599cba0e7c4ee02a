//! The surrogate network in burn: an MLP of `Linear` layers and activations,
//! with a forward pass that also carries the derivative along one input (the
//! time), which the physics loss of PINN training needs. Burn has no double
//! backward, so the derivative is propagated forward exactly, with ordinary
//! tensor ops that reverse-mode autodiff then differentiates once:
//! `z' = z'_prev·W`, `a' = σ'(z) ⊙ z'`.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{activation, Device, Tensor};

use crate::train::arch::{Activation, Architecture};
use crate::train::fastmath;

/// The MLP; works in normalised units (see [`crate::train::Normalization`]).
#[derive(Module, Debug)]
pub struct Net {
    pub layers: Vec<Linear>,
    #[module(skip)]
    pub activations: Vec<Activation>,
    /// tanh, sigmoid and SiLU through excite's host kernel (CPU backends);
    /// burn's own ops on GPU backends, where a host round trip would cost.
    #[module(skip)]
    pub host_activations: bool,
}

/// A layer's weights, `w` row-major `[inputs][outputs]` (burn's Linear
/// layout), and its bias, as host values.
pub struct HostLayer {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// Held while weights are drawn from burn's process-wide generator.
fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Net {
    /// Fresh weights drawn from `seed`: the same seed gives the same weights
    /// even while other threads of the process make networks too (burn keeps
    /// one random generator per process, so seeding it and drawing happen
    /// under one lock that every draw of this module takes).
    pub fn seeded(arch: &Architecture, device: &Device, host_activations: bool, seed: u64) -> Net {
        let _one_at_a_time = init_lock();
        device.seed(seed);
        Net::draw(arch, device, host_activations)
    }

    /// Fresh weights from burn's process-wide generator as it stands
    /// ([`Net::seeded`] for repeatable ones). `host_activations` as for the
    /// field of that name.
    pub fn new(arch: &Architecture, device: &Device, host_activations: bool) -> Net {
        let _one_at_a_time = init_lock();
        Net::draw(arch, device, host_activations)
    }

    /// Xavier-normal weights, zero bias; the caller holds [`init_lock`].
    fn draw(arch: &Architecture, device: &Device, host_activations: bool) -> Net {
        let mut dims = vec![arch.inputs];
        dims.extend(arch.hidden.iter().map(|l| l.1));
        dims.push(arch.outputs);
        let layers: Vec<_> = dims
            .windows(2)
            .map(|d| {
                LinearConfig::new(d[0], d[1])
                    .with_initializer(Initializer::XavierNormal { gain: 1.0 })
                    .init(device)
            })
            .collect();
        // burn draws a parameter lazily, at its first use: draw them all now, under the lock
        for l in &layers {
            let _ = l.weight.val();
            if let Some(b) = &l.bias {
                let _ = b.val();
            }
        }
        Net {
            layers,
            activations: arch.hidden.iter().map(|l| l.0).collect(),
            host_activations,
        }
    }

    /// Each layer's weights and bias, copied to the host.
    pub fn host_layers(&self) -> Vec<HostLayer> {
        let floats = |t: Tensor<2>| t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 weights");
        self.layers
            .iter()
            .map(|l| {
                let [inputs, outputs] = l.weight.val().dims();
                let w = floats(l.weight.val());
                let b = l.bias.as_ref().map_or_else(|| vec![0.0; outputs], |b| floats(b.val().reshape([1, outputs])));
                HostLayer { inputs, outputs, w, b }
            })
            .collect()
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let (last, hidden) = self.layers.split_last().expect("at least one layer");
        let mut a = x;
        for (layer, act) in hidden.iter().zip(&self.activations) {
            a = apply(*act, layer.forward(a), self.host_activations);
        }
        last.forward(a)
    }

    /// Outputs and their derivative with respect to input column `col`, where
    /// the input moves by `scale` per unit of the physical variable.
    pub fn forward_tangent(&self, x: Tensor<2>, col: usize, scale: f64) -> (Tensor<2>, Tensor<2>) {
        let (last, hidden) = self.layers.split_last().expect("at least one layer");
        let mut a = x;
        let mut da: Option<Tensor<2>> = None;
        for (layer, act) in hidden.iter().zip(&self.activations) {
            let z = layer.forward(a);
            let dz = match da {
                // the input tangent is a scaled unit vector: dz is one row of W
                None => layer.weight.val().narrow(0, col, 1).mul_scalar(scale),
                Some(da) => da.matmul(layer.weight.val()),
            };
            let (value, slope) = apply_with_slope(*act, z, self.host_activations);
            a = value;
            da = Some(slope * dz);
        }
        let dy = da
            .expect("at least one hidden layer")
            .matmul(last.weight.val());
        (last.forward(a), dy)
    }
}

/// σ(z).
pub fn apply(act: Activation, z: Tensor<2>, host: bool) -> Tensor<2> {
    match act {
        Activation::Tanh if !host => activation::tanh(z),
        Activation::Silu if !host => activation::silu(z),
        Activation::Sigmoid if !host => activation::sigmoid(z),
        Activation::Relu => activation::relu(z),
        Activation::LeakyRelu => activation::leaky_relu(z, Activation::LEAKY_SLOPE),
        Activation::Elu => activation::elu(z, 1.0),
        Activation::Silu => fastmath::silu(z),
        Activation::Gelu => activation::gelu(z),
        Activation::Tanh => fastmath::tanh(z),
        Activation::Sigmoid => fastmath::sigmoid(z),
    }
}

/// σ(z) and σ'(z), sharing work where the derivative is a function of the value.
pub fn apply_with_slope(act: Activation, z: Tensor<2>, host: bool) -> (Tensor<2>, Tensor<2>) {
    let sigmoid = |z: Tensor<2>| {
        if host {
            fastmath::sigmoid(z)
        } else {
            activation::sigmoid(z)
        }
    };
    match act {
        Activation::Tanh => {
            let t = if host {
                fastmath::tanh(z)
            } else {
                activation::tanh(z)
            };
            let slope = t.clone().square().neg().add_scalar(1.0);
            (t, slope)
        }
        Activation::Sigmoid => {
            let s = sigmoid(z);
            let slope = s.clone() * s.clone().neg().add_scalar(1.0);
            (s, slope)
        }
        Activation::Relu => {
            let mask = z.clone().greater_elem(0.0).float();
            (activation::relu(z), mask)
        }
        Activation::LeakyRelu => {
            let mask = z.clone().greater_elem(0.0).float();
            let slope = mask
                .clone()
                .mul_scalar(1.0 - Activation::LEAKY_SLOPE)
                .add_scalar(Activation::LEAKY_SLOPE);
            (activation::leaky_relu(z, Activation::LEAKY_SLOPE), slope)
        }
        Activation::Elu => {
            let value = activation::elu(z.clone(), 1.0);
            let mask = z.greater_elem(0.0).float();
            // slope 1 above zero, e^z = elu(z) + 1 below
            let below = value.clone().add_scalar(1.0);
            let slope = mask.clone() + below * mask.neg().add_scalar(1.0);
            (value, slope)
        }
        Activation::Silu => {
            let s = sigmoid(z.clone());
            let value = z.clone() * s.clone();
            // s + z·s·(1 − s)
            let slope = s.clone() + value.clone() * s.neg().add_scalar(1.0);
            (value, slope)
        }
        Activation::Gelu => {
            let value = activation::gelu(z.clone());
            // Φ(z) + z·φ(z)
            let cdf = z
                .clone()
                .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
                .erf()
                .add_scalar(1.0)
                .mul_scalar(0.5);
            let pdf = z
                .clone()
                .square()
                .mul_scalar(-0.5)
                .exp()
                .mul_scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            (value, cdf + z * pdf)
        }
    }
}
