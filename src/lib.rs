//! excite: cell-electrophysiology ODE models turned into fast, verified neural surrogates.
//!
//! The library is organised by pipeline stage, data flowing one way:
//! [`cell`] (the models) → [`solve`] (the Euler reference) → [`data`]
//! (datasets) → [`train`] (burn surrogates) → [`export`] (ONNX) → [`build`]
//! (engines, see [`engine`]) → [`verify`] → [`bundle`]; [`pipeline`] runs
//! them in order. Other applications load a bundle with
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
pub mod pipeline;
pub mod report;
pub mod solve;
pub mod train;
pub mod verify;

pub use bundle::Surrogate;
pub use error::Error;
