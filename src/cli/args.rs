//! The arguments of each command (clap derive).

use super::InputFormat;
use clap::Args;
use dispatch_trigger::config;
use dispatch_trigger::serve::IndexKind;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct RedactArgs {
    /// audit.pb, or a replay output folder holding one.
    pub(crate) path: PathBuf,
    /// Records decided more than this many days before --now lose their detail.
    #[arg(long)]
    pub(crate) older_than_days: u32,
    /// The reference time, RFC 3339 (default: now).
    #[arg(long)]
    pub(crate) now: Option<String>,
    /// Write here (default: rewrite the file in place, through a temporary file).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// A topic read back instead of a file: `--from-kafka BOOTSTRAP [--config FILE]`.
#[derive(Args)]
pub(crate) struct FromKafka {
    /// Read the topic from this Kafka cluster instead of a file (read_committed).
    #[arg(long, value_name = "BOOTSTRAP")]
    pub(crate) from_kafka: Option<String>,
    /// With --from-kafka: service config file whose topic names and security to use.
    #[arg(long, requires = "from_kafka")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// audit.pb, or a replay output folder holding one.
    #[arg(required_unless_present = "from_kafka", conflicts_with = "from_kafka")]
    pub(crate) path: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) source: FromKafka,
    /// Accept a stream that starts mid-chain (older records deleted by retention); by default the first record
    /// must start a chain.
    #[arg(long)]
    pub(crate) any_start: bool,
    /// Require the first record to follow this hash (a head published earlier).
    #[arg(long, conflicts_with = "any_start")]
    pub(crate) after: Option<String>,
}

#[derive(Args)]
pub(crate) struct TransparencyArgs {
    /// audit.pb, or a replay output folder holding one.
    #[arg(long)]
    pub(crate) audit: PathBuf,
    /// Output folder (transparency.csv, transparency.json, transparency.html).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// H3 resolution of the area table (at most the audit's, 7 by default).
    #[arg(long, default_value_t = 7)]
    pub(crate) resolution: u8,
    /// Cells with fewer triggered incidents than this get no count.
    #[arg(long, default_value_t = 3)]
    pub(crate) min_count: u64,
}

#[derive(Args)]
pub(crate) struct OwnerArgs {
    /// The owner's opaque reference.
    #[arg(long)]
    pub(crate) owner: String,
    /// audit.pb, or a replay output folder holding one.
    #[arg(long)]
    pub(crate) audit: PathBuf,
    /// Camera layout (.jsonl, .csv or .geojson) that says which cameras are the owner's.
    #[arg(long)]
    pub(crate) cameras: PathBuf,
}

#[derive(Args)]
pub(crate) struct SimulateArgs {
    /// CAD log (CSV through --profile).
    #[arg(long)]
    pub(crate) cad: PathBuf,
    #[arg(long)]
    pub(crate) profile: String,
    /// Camera layout (.jsonl, .csv or .geojson).
    #[arg(long, conflicts_with = "generate_cameras", required_unless_present = "generate_cameras")]
    pub(crate) cameras: Option<PathBuf>,
    /// Instead of --cameras: generate this many cameras around the log's events (seeded).
    #[arg(long, value_name = "N")]
    pub(crate) generate_cameras: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// KNOB=V1,V2,...: radius (every category, metres), max_cameras, radius_cap.
    #[arg(long)]
    pub(crate) vary: String,
    /// Output folder: simulation.json, simulation.csv, map-KNOB-VALUE.png.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args)]
pub(crate) struct BreakGlassSendArgs {
    /// Requests, one JSON object per line (see docs/privacy-and-audit.md, "Break-glass").
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) target: KafkaTarget,
}

#[derive(Args)]
pub(crate) struct TopicsCreateArgs {
    #[command(flatten)]
    pub(crate) target: KafkaTarget,
    /// Partitions of the CFS topic, its outputs and the changelog (they must match for exactly-once).
    #[arg(long, default_value_t = 6)]
    pub(crate) partitions: i32,
    /// Partitions of the commands and owner-notices topics (default: --partitions). Fewer means fewer produce
    /// requests for an event that starts cameras to wait on (BENCHMARKS.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub(crate) fanout_partitions: Option<i32>,
    #[arg(long, default_value_t = 3)]
    pub(crate) registry_partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub(crate) replication: i32,
    /// Retention of the audit topic, days (default: forever; see `audit redact` for dropping detail instead).
    #[arg(long, value_name = "DAYS")]
    pub(crate) audit_retention_days: Option<u32>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["incident", "csv"])))]
pub(crate) struct RefArgs {
    /// Agency id of the incident numbers.
    #[arg(long)]
    pub(crate) agency: String,
    /// One CAD incident number.
    #[arg(long)]
    pub(crate) incident: Option<String>,
    /// A CSV file: every row gets an `incident_ref` column computed from --column (printed to stdout).
    #[arg(long, value_name = "FILE", requires = "column")]
    pub(crate) csv: Option<PathBuf>,
    /// The CSV column that holds the incident number.
    #[arg(long)]
    pub(crate) column: Option<String>,
}

#[derive(Args)]
pub(crate) struct CheckConfigArgs {
    /// A city's export: list every distinct type text a rule maps to a trigger category that can never
    /// start a camera as the CAD writes it, with the words the vocabularies do not explain.
    #[arg(long, value_name = "FILE")]
    pub(crate) export: Option<PathBuf>,
    /// The export's format.
    #[arg(long, value_enum, default_value = "csv")]
    pub(crate) format: super::InputFormat,
    /// The CSV profile that reads the export.
    #[arg(long)]
    pub(crate) profile: Option<String>,
}

#[derive(Args)]
pub(crate) struct ClassificationArgs {
    /// The CSV profile whose type columns feed the engine (as `replay --profile`); without it, the service's
    /// input (the CallForService fields).
    #[arg(long)]
    pub(crate) profile: Option<String>,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see config/serve.toml); every key is optional.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration (defaults, file and environment merged) and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// CAD log to replay (CSV through --profile); default: the bundled week of Nashville calls.
    #[arg(long, default_value = config::BUNDLED_SAMPLE)]
    pub(crate) cad: PathBuf,
    #[arg(long, default_value = "nashville-mnpd")]
    pub(crate) profile: String,
    /// Generated cameras around the log's events.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) cameras: usize,
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Events per second into the CFS topic.
    #[arg(long, default_value_t = 200.0)]
    pub(crate) rate: f64,
    /// Partitions of the CFS and output topics.
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: i32,
    /// Also write the summary here (JSON).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Add the bridge: it verifies the signed commands and drives an in-process HTTP sink speaking Frigate's
    /// events API; the summary gains the latency from CAD emitted to camera target called.
    #[arg(long)]
    pub(crate) bridge: bool,
    /// With --bridge: a second target that answers 503 to every call serves every fourth camera, so the
    /// summary shows what a failing target costs the healthy one (its commands retry until they expire).
    #[arg(long, requires = "bridge")]
    pub(crate) failing_target: bool,
    /// Run on this Kafka cluster instead of the embedded broker (topics and groups named for this run).
    #[arg(long, value_name = "BOOTSTRAP")]
    pub(crate) bootstrap: Option<String>,
}

#[derive(Args)]
pub(crate) struct KafkaTarget {
    /// Kafka bootstrap servers.
    #[arg(long = "to", value_name = "BOOTSTRAP")]
    pub(crate) bootstrap: String,
    /// Service config file whose kafka section (topics, security) to use.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct PublishArgs {
    /// Camera layout (.jsonl, .csv or .geojson).
    #[arg(long)]
    pub(crate) cameras: PathBuf,
    #[command(flatten)]
    pub(crate) target: KafkaTarget,
}

#[derive(Args)]
pub(crate) struct Placement {
    /// Place cameras around the located events of this CAD file.
    #[arg(long, value_name = "CAD_FILE", conflicts_with = "bbox")]
    pub(crate) around: Option<PathBuf>,
    /// Format of --around.
    #[arg(long, value_enum, default_value = "csv", requires = "around")]
    pub(crate) around_format: InputFormat,
    /// Place cameras uniformly in MIN_LAT,MIN_LON,MAX_LAT,MAX_LON.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub(crate) bbox: Option<Vec<f64>>,
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    #[arg(long)]
    pub(crate) count: usize,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) placement: Placement,
    /// CSV profile of --around (a name in config/profiles or a path); its time zone is the owners'.
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Owners' time zone for quiet hours (default: the profile's, else UTC).
    #[arg(long)]
    pub(crate) time_zone: Option<chrono_tz::Tz>,
    /// Output file: .jsonl, .csv or .geojson.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args)]
#[command(after_help = "Required: FILE and --format; --profile with --format csv; a camera layout \
    (--cameras FILE or --generate-cameras N) and --out DIR, unless --to-kafka.")]
pub(crate) struct ReplayArgs {
    /// CAD log to replay (required).
    pub(crate) file: PathBuf,
    /// Input format (required).
    #[arg(long, value_enum)]
    pub(crate) format: InputFormat,
    /// CSV profile: a name in config/profiles, or a path (required with --format csv).
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Camera layout (.jsonl, .csv or .geojson). One of --cameras or --generate-cameras is required offline.
    #[arg(long, conflicts_with = "generate_cameras")]
    pub(crate) cameras: Option<PathBuf>,
    /// Instead of --cameras: generate this many cameras around the input's events (seeded).
    #[arg(long, value_name = "N")]
    pub(crate) generate_cameras: Option<usize>,
    /// Seed for --generate-cameras.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Output directory (commands.jsonl, decisions.jsonl, notices.jsonl, rejects.jsonl, summary.json); required
    /// unless --to-kafka.
    #[arg(long, required_unless_present = "to_kafka")]
    pub(crate) out: Option<PathBuf>,
    /// Instead of deciding offline: produce the log into the CFS topic of this Kafka cluster, as protobuf.
    #[arg(long, value_name = "BOOTSTRAP", conflicts_with_all = ["out", "cameras", "generate_cameras", "index"])]
    pub(crate) to_kafka: Option<String>,
    /// With --to-kafka: a fixed rate in events per second instead of the recorded pace.
    #[arg(long, value_name = "N", conflicts_with = "speed", requires = "to_kafka")]
    pub(crate) rate: Option<f64>,
    /// With --to-kafka: keep recorded event times (the service refuses old events as stale). By default each
    /// event is sent as leaving the CAD now, keeping its recorded received->emitted gap.
    #[arg(long, requires = "to_kafka")]
    pub(crate) recorded_times: bool,
    /// With --to-kafka: also send each record the decoder refused, as its original bytes (dead-letter tests).
    #[arg(long, requires = "to_kafka")]
    pub(crate) include_rejects: bool,
    /// With --to-kafka: service config file whose kafka section (topics, security) to use.
    #[arg(long, requires = "to_kafka")]
    pub(crate) config: Option<PathBuf>,
    /// Break-glass requests (JSON lines: a request plus "at", Unix ms), decided among the events at their time.
    #[arg(long, value_name = "FILE", conflicts_with = "to_kafka")]
    pub(crate) break_glass: Option<PathBuf>,
    /// Replay at the recorded pace times X (default: as fast as possible).
    #[arg(long, value_name = "X")]
    pub(crate) speed: Option<f64>,
    /// Spatial index behind the camera registry.
    #[arg(long, value_enum)]
    pub(crate) index: Option<IndexKind>,
    /// Leave the wall-clock decide latency out of summary.json, so every output is byte-identical across runs.
    #[arg(long)]
    pub(crate) no_wall_clock: bool,
    /// Largest accepted message / row, bytes.
    #[arg(long, default_value_t = trigger_cad::DEFAULT_MAX_MESSAGE_BYTES)]
    pub(crate) max_message_bytes: usize,
    /// Agency id to use for every event (overrides what the input says).
    #[arg(long)]
    pub(crate) agency: Option<String>,
}

#[derive(Args)]
pub(crate) struct KeygenArgs {
    /// The key id verifiers know it by (carried in every command; [A-Za-z0-9._-], e.g. the month of issue).
    #[arg(long)]
    pub(crate) key_id: String,
    /// Where to write the secret key (hex).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args)]
pub(crate) struct CommandsVerifyArgs {
    /// A file of length-delimited CameraCommand records.
    #[arg(required_unless_present = "from_kafka", conflicts_with = "from_kafka")]
    pub(crate) path: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) source: FromKafka,
    /// The trusted public keys: a TOML file of `[[key]]` tables with `id` and `public_key`.
    #[arg(long)]
    pub(crate) keys: PathBuf,
    /// Check expiry at this instant (ms since the epoch) and count expired commands as failures.
    #[arg(long)]
    pub(crate) at: Option<i64>,
}

#[derive(Args)]
pub(crate) struct IngestArgs {
    /// TOML configuration (see config/ingest.toml).
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

#[derive(Args)]
pub(crate) struct BridgeArgs {
    /// TOML configuration (see config/bridge.toml).
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}
