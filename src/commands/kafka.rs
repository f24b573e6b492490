//! The Kafka commands: `serve`, `bridge`, `ingest`, `demo`, `topics create`, `break-glass send`.

use super::{create_parent, decode_file, event_points};
use crate::cli::{BreakGlassSendArgs, BridgeArgs, DemoArgs, IngestArgs, InputFormat, ServeArgs, TopicsCreateArgs};
use anyhow::{Context, Result};
use dispatch_trigger::runtime::{self, LogSection, Process};
use dispatch_trigger::serve::{self, ServeConfig};
use dispatch_trigger::{cameras, config, kafka_tools};
use std::path::Path;
use trigger_cad::pacing::Pace;
use trigger_cad::DecodeOptions;

pub(super) fn serve(a: ServeArgs) -> Result<()> {
    let cfg = ServeConfig::load(a.config.as_deref())?;
    if a.print_config {
        // Secrets serialise as <redacted> (trigger_kafka::settings::Secret).
        println!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let process = Process::start(&cfg.log, &cfg.http)?;
    let stats = serve::run(&cfg, &process.health, &process.shutdown)?;
    tracing::info!(
        events = stats.events,
        start_commands = stats.start_commands,
        stop_commands = stats.stop_commands,
        dead_letters = stats.dead_letters,
        "stopped"
    );
    Ok(())
}

pub(super) fn bridge(a: BridgeArgs) -> Result<()> {
    let cfg = dispatch_trigger::bridge::BridgeConfig::load(&a.config)?;
    if a.print_config {
        println!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let process = Process::start(&cfg.log, &cfg.http)?;
    let stats = dispatch_trigger::bridge::run(&cfg, &process.health, &process.shutdown)?;
    tracing::info!(stats = %serde_json::to_string(&stats)?, "stopped");
    Ok(())
}

pub(super) fn ingest(policy: &Path, a: IngestArgs) -> Result<()> {
    let cfg = dispatch_trigger::ingest::IngestConfig::load(&a.config)?;
    if a.print_config {
        println!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let process = Process::start(&cfg.log, &cfg.http)?;
    let written = dispatch_trigger::ingest::run(&cfg, policy, &process.health, &process.shutdown)?;
    tracing::info!(rows = written.rows, records = written.records, dead_letters = written.dead_letters, "stopped");
    Ok(())
}

pub(super) fn demo(policy_path: &Path, bundled: bool, a: DemoArgs) -> Result<()> {
    runtime::init_logging(&LogSection::quiet());
    let origin = if bundled { "the bundled configuration" } else { "--policy" };
    eprintln!("demo: policy {} ({origin})", policy_path.display());
    let policy = config::load_policy(policy_path)
        .with_context(|| format!("demo: the policy {} ({origin}) cannot be used", policy_path.display()))?;
    let profile = config::load_profile(&a.profile, policy_path)?;
    for e in config::type_text_errors(&profile, &policy) {
        eprintln!("error: {e}");
    }
    let decoded = decode_file(&a.cad, InputFormat::Csv, Some(&profile), &DecodeOptions::default())?;
    let cams =
        cameras::generate(a.cameras, a.seed, &cameras::Placement::Around(event_points(&decoded)), profile.time_zone)?;
    let pace = Pace::rate(a.rate).map_err(anyhow::Error::msg)?;
    let summary = kafka_tools::demo(kafka_tools::DemoOptions {
        cameras: cams,
        decoded,
        cad_log: a.cad.display().to_string(),
        pace,
        partitions: a.partitions,
        policy: policy_path.to_path_buf(),
        bridge: a.bridge,
        failing_target: a.failing_target,
        bootstrap: a.bootstrap.clone(),
    })?;
    let json = serde_json::to_string_pretty(&summary)?;
    println!("{json}");
    if let Some(out) = &a.out {
        create_parent(out)?;
        std::fs::write(out, format!("{json}\n")).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

pub(super) fn topics_create(a: TopicsCreateArgs) -> Result<()> {
    let settings = a.target.settings()?;
    let defaults = trigger_kafka::admin::TopicLayout::new(a.partitions, a.registry_partitions, a.replication);
    let layout = trigger_kafka::admin::TopicLayout {
        fanout_partitions: a.fanout_partitions,
        audit_retention_ms: a.audit_retention_days.map_or(defaults.audit_retention_ms, |d| i64::from(d) * 86_400_000),
        ..defaults
    };
    let created = trigger_kafka::admin::create_topics_with(&settings, &settings.topics, &layout)?;
    println!("created {} topics at {}: {}", created.len(), settings.bootstrap_servers, created.join(", "));
    Ok(())
}

pub(super) fn break_glass_send(a: BreakGlassSendArgs) -> Result<()> {
    let settings = a.target.settings()?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let stop = runtime::shutdown_flag()?;
    let mut p = trigger_kafka::Publisher::new(&settings)?;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let req: trigger_core::BreakGlassRequest =
            serde_json::from_str(line).with_context(|| format!("{} line {}", a.file.display(), i + 1))?;
        p.break_glass(&settings.topics.cfs, &req)?;
    }
    let n = kafka_tools::delivered(&mut p, &stop, "sending break-glass requests")?;
    println!("sent {n} break-glass requests to {}", settings.topics.cfs);
    Ok(())
}
