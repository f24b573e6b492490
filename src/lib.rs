//! The dispatch-trigger application: configuration loading, camera layouts, the offline replay driver, the
//! Kafka service wiring (`serve`) and the Kafka tools (`demo`, `cameras publish`, `replay --to-kafka`).
//! `main.rs` is the command line over these; benches and tests use them directly.

pub mod bridge;
pub mod cameras;
pub mod config;
pub mod index;
pub mod kafka_tools;
pub mod replay;
pub mod report;
pub mod serve;
pub mod signing;
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
