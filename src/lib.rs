//! excite: cell-electrophysiology ODE models turned into fast, verified neural surrogates.
//!
//! The library is layered, data flowing one way (README, "Layout", declares
//! the layers and `tests/integration/layers.rs` keeps every import pointing
//! down): support ([`error`](Error), [`fsio`], [`hash`], [`report`], [`isa`],
//! [`gpu`], [`special`], [`yaml`]) → [`cell`] (the models) → [`solve`] (the
//! Euler reference) → [`data`] (datasets) and [`metrics`] → [`onnx`] (graph
//! IR, codec, interpreter) → [`train`] (burn surrogates) → [`export`] (ONNX)
//! → [`engine`] → [`verify`] → [`build`] → [`bundle`] → [`pipeline`], which
//! runs the stages in order. Other applications load a bundle with
//! [`Surrogate::load`]`(path)?.predict(&x)?`, or through the C ABI in
//! [`bundle::ffi`]. The `excite` binary is a thin layer over these modules;
//! nothing here prints, long work reports through [`report::Reporter`].

pub mod build;
pub mod bundle;
pub mod cell;
pub mod data;
pub mod engine;
mod error;
pub mod export;
pub mod fsio;
pub mod gpu;
pub mod hash;
pub mod isa;
pub mod metrics;
pub mod onnx;
pub mod pipeline;
pub mod report;
pub mod solve;
pub mod special;
pub mod sweep;
pub mod train;
pub mod verify;
pub mod yaml;

pub use bundle::Surrogate;
pub use error::{printable, Error};
