//! Generated types for the dispatch-trigger wire contracts (`proto/dispatch_trigger.proto`).
//!
//! This crate holds generated code and the length-delimited framing the `.pb` streams share ([`framing`]);
//! conversions to and from the domain types live in `trigger-cad` (inputs) and in the crates that emit
//! outputs.

pub mod framing;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/dispatch_trigger.v1.rs"));
}

pub use prost::Message;
