//! The Kafka commands: `serve`, `demo`, `bench-kafka`, `topics create`, `break-glass send`.

use super::{create_parent, decode_file, event_points};
use crate::cli::{
    BenchArgs, BenchBootstrapArgs, BreakGlassSendArgs, BridgeArgs, DemoArgs, InputFormat, ServeArgs, TopicsCreateArgs,
};
use anyhow::{Context, Result};
use dispatch_trigger::serve::{self, ServeConfig};
use dispatch_trigger::{cameras, config, kafka_tools};
use std::path::{Path, PathBuf};
use trigger_cad::replay::Pace;
use trigger_cad::DecodeOptions;

/// What a long-running process (serve, bridge) sets up first: logs, the Prometheus recorder, SIGTERM/SIGINT,
/// /metrics /healthz /readyz on `listen`.
fn process_telemetry(
    log: &serve::LogSection,
    listen: &str,
) -> Result<(std::sync::Arc<trigger_kafka::Health>, std::sync::Arc<std::sync::atomic::AtomicBool>)> {
    serve::init_logging(log);
    serve::prometheus()?;
    let shutdown = serve::shutdown_flag()?;
    let health = std::sync::Arc::new(trigger_kafka::Health::default());
    if let Some(addr) = serve::spawn_http(listen, health.clone())? {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    Ok((health, shutdown))
}

pub(super) fn serve(a: ServeArgs) -> Result<()> {
    let cfg = ServeConfig::load(a.config.as_deref())?;
    if a.print_config {
        // Secrets serialise as <redacted> (trigger_kafka::settings::Secret).
        println!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let (health, shutdown) = process_telemetry(&cfg.log, &cfg.http.listen)?;
    let stats = serve::run(&cfg, &health, &shutdown)?;
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
    let (health, shutdown) = process_telemetry(&cfg.log, &cfg.http.listen)?;
    let stats = dispatch_trigger::bridge::run(&cfg, &health, &shutdown)?;
    tracing::info!(stats = %serde_json::to_string(&stats)?, "stopped");
    Ok(())
}

pub(super) fn demo(policy_path: &Path, bundled: bool, a: DemoArgs) -> Result<()> {
    serve::init_logging(&serve::LogSection { format: serve::LogFormat::Text, level: "warn".into() });
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

pub(super) fn bench(policy_path: &Path, a: BenchArgs) -> Result<()> {
    serve::init_logging(&serve::LogSection { format: serve::LogFormat::Text, level: "warn".into() });
    let profile = config::load_profile(&a.profile, policy_path)?;
    let cad = if a.cad.exists() { a.cad.clone() } else { PathBuf::from(config::BUNDLED_SAMPLE) };
    let mut decoded = decode_file(&cad, InputFormat::Csv, Some(&profile), &DecodeOptions::default())?;
    trigger_cad::replay::event_time_order(&mut decoded.events);
    let cams =
        cameras::generate(a.cameras, 42, &cameras::Placement::Around(event_points(&decoded)), profile.time_zone)?;
    eprintln!("{}: {} events, {} cameras", cad.display(), decoded.events.len(), cams.len());
    let rows = kafka_tools::bench_kafka(&kafka_tools::BenchOptions {
        rates: a.rates,
        seconds: a.seconds,
        max_events: a.max_events,
        partitions: a.partitions,
        fanout_partitions: a.fanout_partitions,
        exactly_once: a.exactly_once,
        cameras: cams,
        events: decoded.events.into_iter().map(|e| e.event).collect(),
        policy: policy_path.to_path_buf(),
        bootstrap: a.bootstrap.clone(),
        rounds: a.rounds,
    })?;
    print_bench_table(&rows);
    if let Some(out) = &a.out {
        create_parent(out)?;
        std::fs::write(out, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

pub(super) fn bench_bootstrap(policy_path: &Path, a: BenchBootstrapArgs) -> Result<()> {
    serve::init_logging(&serve::LogSection { format: serve::LogFormat::Text, level: "warn".into() });
    let registry = match a.reuse {
        Some(prefix) => kafka_tools::Registry::Reuse(prefix),
        None => kafka_tools::Registry::Publish { cameras: a.cameras, partitions: a.partitions, keep: a.keep },
    };
    let row = kafka_tools::bench_bootstrap(&a.bootstrap, registry, policy_path)?;
    println!("| cameras | partitions | topic MB | bare consumer s | serve ready s | ratio | serve RSS MB | RSS bytes/camera |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        row.cameras,
        row.partitions,
        row.topic_mb,
        row.bare_consumer_s,
        row.serve_ready_s,
        row.ratio,
        row.serve_rss_mb,
        row.serve_rss_bytes_per_camera
    );
    if let Some(out) = &a.out {
        create_parent(out)?;
        std::fs::write(out, serde_json::to_string_pretty(&row)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn print_bench_table(rows: &[kafka_tools::BenchRow]) {
    println!("| processor | offered (events/s) | events | achieved (events/s) | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let p = r.end_to_end_ms.as_ref();
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.processor,
            r.offered,
            r.events,
            r.achieved_per_s,
            f(p.map(|p| p.p50)),
            f(p.map(|p| p.p99)),
            f(p.map(|p| p.p999)),
            f(p.map(|p| p.max))
        );
    }
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
    let stop = serve::shutdown_flag()?;
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
