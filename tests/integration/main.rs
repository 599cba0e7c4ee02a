//! Integration tests, one module per user-visible behaviour, in one binary.

mod build;
mod cellml;
mod cli;
mod export;
mod foreign;
mod hostile;
mod imported;
mod ffi;
mod kernels;
mod layers;
mod native;
mod pipeline;
mod reference;
mod signing;
mod solver;
mod sweep;
mod train;
mod util;
mod verify;
