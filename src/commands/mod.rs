//! One handler module per command; `run` dispatches. Shared here: reading a CAD file, the located points
//! of its events, the Kafka target of a command, creating an output's folder.

mod audit;
mod cameras;
mod kafka;
mod replay;
mod reports;
mod signed;

use crate::cli::{AuditCmd, BreakGlassCmd, CamerasCmd, Cli, Command, CommandsCmd, InputFormat, ReportCmd, TopicsCmd};
use anyhow::{Context, Result};
pub(super) use dispatch_trigger::cameras::event_points;
use dispatch_trigger::config;
use dispatch_trigger::serve::ServeConfig;
use std::path::Path;
use trigger_cad::DecodeOptions;
use trigger_kafka::KafkaSettings;

pub(crate) fn run(cli: Cli) -> Result<()> {
    // The demo runs the bundled configuration unless told otherwise: a folder's own config/policy.toml is a
    // deployment's, not the demo's.
    let demo_default = cli.policy.is_none() && matches!(cli.command, Command::Demo(_));
    let policy = match cli.policy {
        Some(p) => p,
        None if demo_default => config::bundled_policy(),
        None => config::default_policy(),
    };
    let policy = policy.as_path();
    match cli.command {
        Command::CheckConfig(a) => reports::check_config(policy, a),
        Command::Classification(a) => reports::classification(policy, a),
        Command::Ref(a) => reports::incident_refs(policy, a),
        Command::Cameras(CamerasCmd::Generate(a)) => cameras::generate(policy, a),
        Command::Cameras(CamerasCmd::Publish(a)) => cameras::publish(a),
        Command::Replay(a) if a.to_kafka.is_some() => replay::to_kafka(policy, a),
        Command::Replay(a) => replay::offline(policy, a),
        Command::Serve(a) => kafka::serve(a),
        Command::Bridge(a) => kafka::bridge(a),
        Command::Ingest(a) => kafka::ingest(policy, a),
        Command::Audit(AuditCmd::Verify(a)) => audit::verify(a),
        Command::Audit(AuditCmd::Redact(a)) => audit::redact(a),
        Command::Simulate(a) => reports::simulate(policy, a),
        Command::Report(ReportCmd::Transparency(a)) => reports::transparency(a),
        Command::Report(ReportCmd::Owner(a)) => reports::owner(a),
        Command::BreakGlass(BreakGlassCmd::Send(a)) => kafka::break_glass_send(a),
        Command::Commands(CommandsCmd::Keygen(a)) => signed::keygen(a),
        Command::Commands(CommandsCmd::Verify(a)) => signed::verify(a),
        Command::Topics(TopicsCmd::Create(a)) => kafka::topics_create(a),
        Command::Demo(a) => kafka::demo(policy, demo_default, a),
    }
}

impl crate::cli::KafkaTarget {
    fn settings(&self) -> Result<KafkaSettings> {
        kafka_target(self.config.as_deref(), &self.bootstrap)
    }
}

/// The kafka section of a service config (or the defaults) pointed at `bootstrap`, after a connection check
/// with its security settings: a wrong password or an untrusted certificate stops the command at once, with
/// the broker's reason.
pub(super) fn kafka_target(config: Option<&Path>, bootstrap: &str) -> Result<KafkaSettings> {
    let mut s = ServeConfig::load(config)?.kafka;
    s.bootstrap_servers = bootstrap.to_string();
    trigger_kafka::connect::check_connection(&s, std::time::Duration::from_secs(15))?;
    Ok(s)
}

/// Read and decode a CAD file (found in the working directory, else beside the installation).
pub(super) fn decode_file(
    path: &Path,
    format: InputFormat,
    profile: Option<&trigger_cad::CsvProfile>,
    opts: &DecodeOptions,
) -> Result<trigger_cad::Decoded> {
    config::decode_file(path, format.format(), profile, opts)
}

pub(super) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        _ => Ok(()),
    }
}
