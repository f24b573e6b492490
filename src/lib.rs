//! The dispatch-trigger application. `runtime` is the process every long-running command shares (layered
//! configuration, logs, endpoints, signals); one module per application over it: `serve` (the Kafka service),
//! `bridge` (driving cameras), `ingest` (a city's live CAD feed onto the CFS topic), `offline` and `simulate` (replays of a CAD log through the engine, no broker),
//! `report` and `transparency` (reports from the audit trail), `kafka_tools` (demo, publishing a layout, a
//! CAD log or break-glass requests). Shared by them: `config` (the policy and its tables from disk), `keys`
//! (signing and verifying keys), `cameras` (layouts), `index` (the camera index of the chosen backend).
//! `main.rs` is the command line over these; the benchmark tools are a binary of their own
//! (`src/bin/dispatch-trigger-bench`); benches and tests use the modules directly.

pub mod bridge;
pub mod cameras;
pub mod config;
pub mod index;
pub mod ingest;
pub mod kafka_tools;
pub mod keys;
pub mod offline;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod simulate;
pub mod stats;
pub mod transparency;

use std::io::IsTerminal;

/// A progress bar on stderr when it is a terminal; hidden otherwise (CI logs, pipes).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{wide_bar}} {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}}"
        ))
        .expect("valid template"),
    );
    b
}
