//! dispatch-trigger: turns 911 calls for service into consent-bounded record commands for nearby cameras.
//! This binary wires the crates together: `cli` says what each command takes, `commands` does it (one module
//! per command); the library (`dispatch_trigger`) holds config, camera layouts, replay and the Kafka tools.

mod cli;
mod commands;

use clap::Parser;

fn main() {
    if let Err(e) = commands::run(cli::Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
