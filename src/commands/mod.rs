//! One file per command; each takes resolved arguments and returns an exit code.

pub mod bench;
pub mod build;
pub mod data_inspect;
pub mod export;
pub mod inspect;
pub mod pipeline;
pub mod models;
pub mod printer;
pub mod simulate;
pub mod train;
pub mod verify;
