//! The dispatch-trigger application: configuration loading, camera layouts and the offline replay driver.
//! `main.rs` is the command line over these; benches and tests use them directly.

pub mod cameras;
pub mod config;
pub mod replay;
