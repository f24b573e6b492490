//! dispatch-trigger-bench: the benchmark tools, kept out of the product's command line. `kafka` measures the
//! engine next to a bare consume -> produce relay on one broker; `bootstrap` measures `serve`'s start-up on a
//! registry of N cameras next to a bare consumer; `ingest` and `push` measure the live CAD sources (a polled
//! database row, a vendor's HTTPS push) to their records acknowledged. BENCHMARKS.md gives the commands and
//! today's figures.

mod bootstrap;
mod breakdown;
mod ingest;
mod kafka;
mod push;
mod to_camera;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use dispatch_trigger::runtime::{init_logging, LogSection};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(name = "dispatch-trigger-bench", version, about = "Benchmarks of dispatch-trigger (BENCHMARKS.md)")]
struct Cli {
    /// Policy file (default: config/policy.toml, found as `dispatch-trigger` finds it).
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A bare consume -> produce relay and the engine on one broker (in-process, or Apache Kafka with
    /// --bootstrap), at fixed rates and flat out: end-to-end percentiles and sustained rate.
    Kafka(KafkaArgs),
    /// `serve`'s start-up on a registry of N cameras (spawn to /readyz 200, its RSS then) next to a bare
    /// consumer reading the same topic, on Apache Kafka.
    Bootstrap(BootstrapArgs),
    /// `ingest`'s `sql` source: a row committed in a PostgreSQL table to its CFS record acknowledged, at a
    /// poll interval and settle margin (a table and topics of its own, dropped after).
    Ingest(IngestArgs),
    /// `ingest`'s `http_push` source: a vendor's HTTPS push (bearer token) to its 200, which comes once Kafka
    /// acknowledged the record (topics of its own, deleted after).
    Push(PushArgs),
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The cluster (Apache Kafka: `scripts/kafka.sh bootstrap`).
    #[arg(long, value_name = "BOOTSTRAP")]
    bootstrap: String,
    #[arg(long, default_value_t = 300)]
    pushes: u64,
    /// Pushes per second, each a request of its own.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// At-least-once instead of exactly-once.
    #[arg(long)]
    at_least_once: bool,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// A PostgreSQL server to make the table in (libpq connection string).
    #[arg(long)]
    postgres: String,
    /// The cluster (Apache Kafka: `scripts/kafka.sh bootstrap`).
    #[arg(long, value_name = "BOOTSTRAP")]
    bootstrap: String,
    #[arg(long, default_value_t = 300)]
    rows: u64,
    /// Rows inserted per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value_t = 2000)]
    poll_interval_ms: u64,
    /// The query's settle margin (rows updated less than this long ago wait for the next poll).
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// At-least-once instead of exactly-once.
    #[arg(long)]
    at_least_once: bool,
    /// Also run `serve` and `bridge` (with an in-process Frigate sink) on the same cluster, the rows shaped as
    /// the Nashville profile reads them, and report a row committed -> the camera's recorder called.
    #[arg(long)]
    to_camera: bool,
    /// With --to-camera: the cameras generated around the rows.
    #[arg(long, default_value_t = 20_000)]
    cameras: usize,
}

#[derive(Debug, Args)]
struct KafkaArgs {
    /// Offered rates, events per second.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    rates: Vec<f64>,
    /// Seconds per fixed-rate run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Events in the flat-out run.
    #[arg(long, default_value_t = 20_000)]
    max_events: usize,
    /// Runs per rate and processor, pooled into one row each; rounds alternate which side goes first, and with
    /// more than one an uncounted pair at the first rate warms the broker up first.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Partitions of the CFS topic and its outputs.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Partitions of the engine's commands and owner-notices topics (default: --partitions; the relay's output
    /// keeps --partitions).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    fanout_partitions: Option<i32>,
    /// Run the engine in exactly-once mode (one transaction per batch) instead of at-least-once.
    #[arg(long)]
    exactly_once: bool,
    /// Also print where the one-event batches' time went (registry sync, plan, acknowledgements), relay and
    /// engine side by side.
    #[arg(long)]
    breakdown: bool,
    /// CAD log whose events are replayed (cycled), CSV through --profile; the bundled week when it is missing.
    #[arg(long, default_value = "../shared/data/cad/nashville_mnpd_calls_2024_sample.csv")]
    cad: PathBuf,
    #[arg(long, default_value = "nashville-mnpd")]
    profile: String,
    #[arg(long, default_value_t = 50_000)]
    cameras: usize,
    /// Also write the rows here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run against this cluster (Apache Kafka: `scripts/kafka.sh bootstrap`) instead of the in-process broker.
    #[arg(long, value_name = "BOOTSTRAP")]
    bootstrap: Option<String>,
}

#[derive(Debug, Args)]
struct BootstrapArgs {
    /// The cluster (Apache Kafka: `scripts/kafka.sh bootstrap`).
    #[arg(long, value_name = "BOOTSTRAP")]
    bootstrap: String,
    #[arg(long, default_value_t = 1_000_000)]
    cameras: usize,
    /// Registry topic partitions.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Read the registry an earlier run published (the tag it printed, `boot-…`) instead of publishing one;
    /// `--cameras` and `--partitions` are then the topic's own.
    #[arg(long, value_name = "TAG", conflicts_with_all = ["cameras", "partitions", "keep"])]
    reuse: Option<String>,
    /// Leave the published registry on the broker (for --reuse); without it the run's topics are deleted.
    #[arg(long)]
    keep: bool,
    /// Also write the row here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    init_logging(&LogSection::quiet());
    let policy = cli.policy.unwrap_or_else(dispatch_trigger::config::default_policy);
    let done = match cli.command {
        Command::Kafka(a) => kafka::run(&policy, a),
        Command::Bootstrap(a) => bootstrap::run(&policy, a),
        Command::Ingest(a) => ingest::run(a),
        Command::Push(a) => push::run(a),
    };
    if let Err(e) = done {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

/// Settings on topics of the run's own (named after `tag`, one partition each, made here) and its own
/// consumer group, in the delivery mode asked.
fn tagged_cluster(bootstrap: &str, tag: &str, at_least_once: bool) -> Result<trigger_kafka::KafkaSettings> {
    use trigger_kafka::{Delivery, KafkaSettings, Topics};
    let settings = KafkaSettings {
        bootstrap_servers: bootstrap.to_string(),
        group_id: tag.to_string(),
        topics: Topics::tagged(tag),
        delivery: if at_least_once { Delivery::AtLeastOnce } else { Delivery::ExactlyOnce },
        ..KafkaSettings::default()
    };
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 1, 1, 1)?;
    Ok(settings)
}

/// Write `value` as JSON to `out`, its folder made first.
fn write_json(out: &Path, value: &impl serde::Serialize) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))
}
