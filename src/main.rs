//! dispatch-trigger: turns 911 calls for service into consent-bounded record commands for nearby cameras.
//! This binary wires the crates together: config, camera layouts, replay, the Kafka service and its tools.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use dispatch_trigger::serve::{IndexKind, ServeConfig};
use dispatch_trigger::{cameras, config, kafka_tools, replay, serve};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use trigger_cad::replay::Pace;
use trigger_cad::{DecodeOptions, Format};
use trigger_core::{CameraRecord, Engine, LatLon};
use trigger_index::{H3Index, RTreeIndex};
use trigger_kafka::KafkaSettings;

#[derive(Parser)]
#[command(
    name = "dispatch-trigger",
    version,
    about = "Turns 911 calls for service into consent-bounded record commands for nearby opted-in cameras"
)]
struct Cli {
    /// Policy file; code tables, jurisdictions and profiles are found beside it. Default: config/policy.toml in
    /// the working directory, else beside the installation, else the copy compiled into this binary.
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Camera layouts.
    #[command(subcommand)]
    Cameras(CamerasCmd),
    /// Replay a CAD log through the engine, offline, in event-time order.
    Replay(ReplayArgs),
    /// Load and validate the policy, code tables, jurisdictions and every CSV profile beside it; print
    /// warnings (a development key, a profile whose columns the hard block cannot see through, ...).
    CheckConfig,
    /// The opaque incident reference of a CAD incident number, for holders of the policy's incident_ref_key
    /// (the agency, an auditor) joining audit records to their own CAD numbers.
    Ref(RefArgs),
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Reports built from the audit trail.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Privacy-impact simulation: replay a CAD log under several settings of one policy knob and report, per
    /// setting, activations per camera, the share of cameras activated, recordings per incident, and a map.
    Simulate(SimulateArgs),
    /// Kafka topics of the service.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Break-glass requests.
    #[command(subcommand)]
    BreakGlass(BreakGlassCmd),
    /// Run the Kafka consumer service (layered config: defaults, --config FILE, DT_* environment).
    Serve(ServeArgs),
    /// The whole Kafka path with zero setup: an in-process broker, a generated registry, the service, and the
    /// bundled CAD sample replayed through it; prints the summary with end-to-end latency percentiles.
    Demo(DemoArgs),
    /// Benchmark: a bare consume->produce relay and the engine on one in-process broker, at fixed rates and
    /// flat out; end-to-end percentiles and sustained rate (see BENCHMARKS.md).
    BenchKafka(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Offered rates, events per second.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    rates: Vec<f64>,
    /// Seconds per fixed-rate run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Events in the flat-out run.
    #[arg(long, default_value_t = 20_000)]
    max_events: usize,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// CAD log whose events are replayed (cycled), CSV through --profile.
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

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain: an audit file (replay's audit.pb, or its folder) or every partition of the audit
    /// topic. Names the first altered, unreadable, missing or reordered record; exits 1 if the chain is broken.
    Verify(VerifyArgs),
    /// Retention of audit detail: drop the per-camera detail (which cameras, distances, exclusion reasons) of
    /// records older than N days; counts, outcomes and the chain stay verifiable.
    Redact(RedactArgs),
}

#[derive(Args)]
struct RedactArgs {
    /// audit.pb, or a replay output folder holding one.
    path: PathBuf,
    /// Records decided more than this many days before --now lose their detail.
    #[arg(long)]
    older_than_days: u32,
    /// The reference time, RFC 3339 (default: now).
    #[arg(long)]
    now: Option<String>,
    /// Write here (default: rewrite the file in place, through a temporary file).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// audit.pb, or a replay output folder holding one.
    #[arg(required_unless_present = "from_kafka", conflicts_with = "from_kafka")]
    path: Option<PathBuf>,
    /// Read the audit topic of this Kafka cluster instead.
    #[arg(long, value_name = "BOOTSTRAP")]
    from_kafka: Option<String>,
    /// With --from-kafka: service config file whose topic names and security to use.
    #[arg(long, requires = "from_kafka")]
    config: Option<PathBuf>,
    /// Accept a stream that starts mid-chain (older records deleted by retention); by default the first record
    /// must start a chain.
    #[arg(long)]
    any_start: bool,
    /// Require the first record to follow this hash (a head published earlier).
    #[arg(long, conflicts_with = "any_start")]
    after: Option<String>,
}

#[derive(Subcommand)]
enum ReportCmd {
    /// The full history of one owner's cameras: every START and STOP (time, camera, category, coarse area,
    /// distance) and the times they were near an incident but not used, by reason. Built from a verified
    /// audit trail and the camera layout (which cameras are the owner's).
    Owner(OwnerArgs),
    /// The public transparency report (CSV, JSON, self-contained HTML with charts) from a verified audit trail:
    /// per agency x category x month, incidents that triggered, cameras activated, refusals by reason.
    Transparency(TransparencyArgs),
}

#[derive(Args)]
struct TransparencyArgs {
    /// audit.pb, or a replay output folder holding one.
    #[arg(long)]
    audit: PathBuf,
    /// Output folder (transparency.csv, transparency.json, transparency.html).
    #[arg(long)]
    out: PathBuf,
    /// H3 resolution of the area table (at most the audit's, 7 by default).
    #[arg(long, default_value_t = 7)]
    resolution: u8,
    /// Cells with fewer triggered incidents than this get no count.
    #[arg(long, default_value_t = 3)]
    min_count: u64,
}

#[derive(Args)]
struct OwnerArgs {
    /// The owner's opaque reference.
    #[arg(long)]
    owner: String,
    /// audit.pb, or a replay output folder holding one.
    #[arg(long)]
    audit: PathBuf,
    /// Camera layout (.jsonl, .csv or .geojson) that says which cameras are the owner's.
    #[arg(long)]
    cameras: PathBuf,
}

#[derive(Args)]
struct SimulateArgs {
    /// CAD log (CSV through --profile).
    #[arg(long)]
    cad: PathBuf,
    #[arg(long)]
    profile: String,
    /// Camera layout (.jsonl, .csv or .geojson).
    #[arg(long, conflicts_with = "generate_cameras", required_unless_present = "generate_cameras")]
    cameras: Option<PathBuf>,
    /// Instead of --cameras: generate this many cameras around the log's events (seeded).
    #[arg(long, value_name = "N")]
    generate_cameras: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// KNOB=V1,V2,...: radius (every category, metres), max_cameras, radius_cap.
    #[arg(long)]
    vary: String,
    /// Output folder: simulation.json, simulation.csv, map-KNOB-VALUE.png.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum BreakGlassCmd {
    /// Send signed requests (JSON, one per line) to the running service: onto the CFS topic, keyed like their
    /// incident, marked with the header dt.kind = break-glass.
    Send(BreakGlassSendArgs),
}

#[derive(Args)]
struct BreakGlassSendArgs {
    /// Requests, one JSON object per line (see README, Break-glass).
    file: PathBuf,
    #[command(flatten)]
    target: KafkaTarget,
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// Create every topic the service uses (registry and changelog compacted, dead letters kept 7 days).
    Create(TopicsCreateArgs),
}

#[derive(Args)]
struct TopicsCreateArgs {
    #[command(flatten)]
    target: KafkaTarget,
    /// Partitions of the CFS topic, its outputs and the changelog (they must match for exactly-once).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value_t = 3)]
    registry_partitions: i32,
    #[arg(long, default_value_t = 1)]
    replication: i32,
    /// Retention of the audit topic, days (default: forever; see `audit redact` for dropping detail instead).
    #[arg(long, value_name = "DAYS")]
    audit_retention_days: Option<u32>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["incident", "csv"])))]
struct RefArgs {
    /// Agency id of the incident numbers.
    #[arg(long)]
    agency: String,
    /// One CAD incident number.
    #[arg(long)]
    incident: Option<String>,
    /// A CSV file: every row gets an `incident_ref` column computed from --column (printed to stdout).
    #[arg(long, value_name = "FILE", requires = "column")]
    csv: Option<PathBuf>,
    /// The CSV column that holds the incident number.
    #[arg(long)]
    column: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (see config/serve.toml); every key is optional.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (defaults, file and environment merged) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// CAD log to replay (CSV through --profile); default: the bundled week of Nashville calls.
    #[arg(long, default_value = config::BUNDLED_SAMPLE)]
    cad: PathBuf,
    #[arg(long, default_value = "nashville-mnpd")]
    profile: String,
    /// Generated cameras around the log's events.
    #[arg(long, default_value_t = 20_000)]
    cameras: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Events per second into the CFS topic.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Partitions of the CFS and output topics.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Also write the summary here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct KafkaTarget {
    /// Kafka bootstrap servers.
    #[arg(long = "to", value_name = "BOOTSTRAP")]
    bootstrap: String,
    /// Service config file whose kafka section (topics, security) to use.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl KafkaTarget {
    fn settings(&self) -> Result<KafkaSettings> {
        kafka_target(self.config.as_deref(), &self.bootstrap)
    }
}

/// The kafka section of a service config (or the defaults) pointed at `bootstrap`, after a connection check
/// with its security settings: a wrong password or an untrusted certificate stops the command at once, with
/// the broker's reason.
fn kafka_target(config: Option<&Path>, bootstrap: &str) -> Result<KafkaSettings> {
    let mut s = ServeConfig::load(config)?.kafka;
    s.bootstrap_servers = bootstrap.to_string();
    trigger_kafka::connect::check_connection(&s, std::time::Duration::from_secs(15))?;
    Ok(s)
}

#[derive(Args)]
struct PublishArgs {
    /// Camera layout (.jsonl, .csv or .geojson).
    #[arg(long)]
    cameras: PathBuf,
    #[command(flatten)]
    target: KafkaTarget,
}

#[derive(Subcommand)]
enum CamerasCmd {
    /// Generate a seeded synthetic layout with a realistic consent mix.
    Generate(GenerateArgs),
    /// Load a layout into the registry topic (key = camera_id, protobuf CameraRecord).
    Publish(PublishArgs),
}

#[derive(Args)]
struct Placement {
    /// Place cameras around the located events of this CAD file.
    #[arg(long, value_name = "CAD_FILE", conflicts_with = "bbox")]
    around: Option<PathBuf>,
    /// Format of --around.
    #[arg(long, default_value = "csv", requires = "around")]
    around_format: String,
    /// Place cameras uniformly in MIN_LAT,MIN_LON,MAX_LAT,MAX_LON.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    bbox: Option<Vec<f64>>,
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    placement: Placement,
    /// CSV profile of --around (a name in config/profiles or a path); its time zone is the owners'.
    #[arg(long)]
    profile: Option<String>,
    /// Owners' time zone for quiet hours (default: the profile's, else UTC).
    #[arg(long)]
    time_zone: Option<chrono_tz::Tz>,
    /// Output file: .jsonl, .csv or .geojson.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
#[command(after_help = "Required: FILE and --format; --profile with --format csv; a camera layout \
    (--cameras FILE or --generate-cameras N) and --out DIR, unless --to-kafka.")]
struct ReplayArgs {
    /// CAD log to replay (required).
    file: PathBuf,
    /// Input format (required).
    #[arg(long, value_parser = ["csv", "eido", "jsonl", "pb"])]
    format: String,
    /// CSV profile: a name in config/profiles, or a path (required with --format csv).
    #[arg(long)]
    profile: Option<String>,
    /// Camera layout (.jsonl, .csv or .geojson). One of --cameras or --generate-cameras is required offline.
    #[arg(long, conflicts_with = "generate_cameras")]
    cameras: Option<PathBuf>,
    /// Instead of --cameras: generate this many cameras around the input's events (seeded).
    #[arg(long, value_name = "N")]
    generate_cameras: Option<usize>,
    /// Seed for --generate-cameras.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (commands.jsonl, decisions.jsonl, notices.jsonl, rejects.jsonl, summary.json); required
    /// unless --to-kafka.
    #[arg(long, required_unless_present = "to_kafka")]
    out: Option<PathBuf>,
    /// Instead of deciding offline: produce the log into the CFS topic of this Kafka cluster, as protobuf.
    #[arg(long, value_name = "BOOTSTRAP", conflicts_with_all = ["out", "cameras", "generate_cameras", "index"])]
    to_kafka: Option<String>,
    /// With --to-kafka: a fixed rate in events per second instead of the recorded pace.
    #[arg(long, value_name = "N", conflicts_with = "speed", requires = "to_kafka")]
    rate: Option<f64>,
    /// With --to-kafka: keep recorded event times (the service refuses old events as stale). By default each
    /// event is sent as leaving the CAD now, keeping its recorded received->emitted gap.
    #[arg(long, requires = "to_kafka")]
    recorded_times: bool,
    /// With --to-kafka: also send each record the decoder refused, as its original bytes (dead-letter tests).
    #[arg(long, requires = "to_kafka")]
    include_rejects: bool,
    /// With --to-kafka: service config file whose kafka section (topics, security) to use.
    #[arg(long, requires = "to_kafka")]
    config: Option<PathBuf>,
    /// Break-glass requests (JSON lines: a request plus "at", Unix ms), decided among the events at their time.
    #[arg(long, value_name = "FILE", conflicts_with = "to_kafka")]
    break_glass: Option<PathBuf>,
    /// Replay at the recorded pace times X (default: as fast as possible).
    #[arg(long, value_name = "X")]
    speed: Option<f64>,
    /// Spatial index behind the camera registry.
    #[arg(long, value_enum)]
    index: Option<IndexKind>,
    /// Leave the wall-clock decide latency out of summary.json, so every output is byte-identical across runs.
    #[arg(long)]
    no_wall_clock: bool,
    /// Largest accepted message / row, bytes.
    #[arg(long, default_value_t = trigger_cad::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Agency id to use for every event (overrides what the input says).
    #[arg(long)]
    agency: Option<String>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> Result<()> {
    let policy = cli.policy.unwrap_or_else(config::default_policy);
    let policy = policy.as_path();
    match cli.command {
        Command::CheckConfig => {
            let p = config::load_policy(policy)?;
            let checked = config::check_profiles(policy, &p)?;
            for w in p.warnings().iter().chain(&checked.warnings) {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} agencies, {} CSV profiles: {})",
                policy.display(),
                p.config.agencies.len(),
                checked.profiles.len(),
                checked.profiles.join(", ")
            );
            Ok(())
        }
        Command::Ref(a) => incident_refs(policy, a),
        Command::Cameras(CamerasCmd::Generate(a)) => generate(policy, a),
        Command::Cameras(CamerasCmd::Publish(a)) => {
            let settings = a.target.settings()?;
            let cams = cameras::load(&a.cameras)?;
            let n = kafka_tools::publish_cameras(&settings, &cams)?;
            println!("published {n} cameras to {} at {}", settings.topics.registry, settings.bootstrap_servers);
            Ok(())
        }
        Command::Replay(a) if a.to_kafka.is_some() => replay_to_kafka(policy, a),
        Command::Replay(a) => replay(policy, a),
        Command::Serve(a) => serve_cmd(a),
        Command::Audit(AuditCmd::Verify(a)) => audit_verify(a),
        Command::Audit(AuditCmd::Redact(a)) => audit_redact(a),
        Command::Simulate(a) => simulate(policy, a),
        Command::Report(ReportCmd::Transparency(a)) => {
            let r = dispatch_trigger::transparency::build(&a.audit, a.resolution, a.min_count)?;
            dispatch_trigger::transparency::write(&r, &a.out)?;
            println!(
                "{} rows, {} areas from {} audit records -> {}/transparency.{{csv,json,html}}",
                r.rows.len(),
                r.areas.len(),
                r.audit_records,
                a.out.display()
            );
            Ok(())
        }
        Command::Report(ReportCmd::Owner(a)) => {
            let cams = cameras::load(&a.cameras)?;
            let r = dispatch_trigger::report::owner(&a.owner, &cams, &a.audit)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::BreakGlass(BreakGlassCmd::Send(a)) => {
            let settings = a.target.settings()?;
            let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
            let mut p = trigger_kafka::Publisher::new(&settings)?;
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let req: trigger_core::BreakGlassRequest =
                    serde_json::from_str(line).with_context(|| format!("{} line {}", a.file.display(), i + 1))?;
                p.break_glass(&settings.topics.cfs, &req)?;
            }
            let n = p.wait()?;
            println!("sent {n} break-glass requests to {}", settings.topics.cfs);
            Ok(())
        }
        Command::Topics(TopicsCmd::Create(a)) => {
            let settings = a.target.settings()?;
            let created = trigger_kafka::admin::create_topics_with(
                &settings,
                &settings.topics,
                a.partitions,
                a.registry_partitions,
                a.replication,
                a.audit_retention_days.map_or(trigger_kafka::admin::AUDIT_RETENTION_MS, |d| i64::from(d) * 86_400_000),
            )?;
            println!("created {} topics at {}: {}", created.len(), settings.bootstrap_servers, created.join(", "));
            Ok(())
        }
        Command::Demo(a) => demo(policy, a),
        Command::BenchKafka(a) => bench_kafka(policy, a),
    }
}

fn decode_file(
    path: &Path,
    format: &str,
    profile: Option<&trigger_cad::CsvProfile>,
    opts: &DecodeOptions,
) -> Result<trigger_cad::Decoded> {
    let path = config::input_path(path);
    let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let format: Format = format.parse().map_err(anyhow::Error::msg)?;
    trigger_cad::decode(format, &data, profile, opts).map_err(anyhow::Error::msg)
}

fn event_points(d: &trigger_cad::Decoded) -> Vec<LatLon> {
    d.events
        .iter()
        .filter_map(|e| e.event.location)
        .filter(|l| trigger_core::reject::check_coordinates(l.lat, l.lon).is_ok())
        .map(|l| l.point())
        .collect()
}

fn generate(policy: &Path, a: GenerateArgs) -> Result<()> {
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy)).transpose()?;
    let tz = a.time_zone.or(profile.as_ref().map(|p| p.time_zone)).unwrap_or(chrono_tz::UTC);
    let placement = match (&a.placement.around, &a.placement.bbox) {
        (Some(f), _) => {
            let d = decode_file(f, &a.placement.around_format, profile.as_ref(), &DecodeOptions::default())?;
            cameras::Placement::Around(event_points(&d))
        }
        (None, Some(b)) => match b[..] {
            [min_lat, min_lon, max_lat, max_lon] => cameras::Placement::BBox([min_lat, min_lon, max_lat, max_lon]),
            _ => bail!("--bbox takes four numbers, MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (got {})", b.len()),
        },
        (None, None) => bail!("say where: --around CAD_FILE --profile P, or --bbox MIN_LAT,MIN_LON,MAX_LAT,MAX_LON"),
    };
    let cams = cameras::generate(a.count, a.seed, &placement, tz)?;
    cameras::save(&a.out, &cams)?;
    println!("wrote {} cameras to {}", cams.len(), a.out.display());
    Ok(())
}

fn simulate(policy_path: &Path, a: SimulateArgs) -> Result<()> {
    let (knob, values) = dispatch_trigger::simulate::parse_vary(&a.vary)?;
    let profile = config::load_profile(&a.profile, policy_path)?;
    let mut decoded = decode_file(&a.cad, "csv", Some(&profile), &DecodeOptions::default())?;
    let cams = match (&a.cameras, a.generate_cameras) {
        (Some(f), _) => cameras::load(f)?,
        (None, Some(n)) => {
            cameras::generate(n, a.seed, &cameras::Placement::Around(event_points(&decoded)), profile.time_zone)?
        }
        (None, None) => bail!("--cameras FILE or --generate-cameras N is required"),
    };
    let settings = dispatch_trigger::simulate::run(
        &mut decoded,
        cams,
        &dispatch_trigger::simulate::SimulateOptions {
            policy: policy_path,
            knob,
            values,
            out: a.out.clone(),
            progress: std::io::stderr().is_terminal(),
        },
    )?;
    println!("| {:?} | incidents triggered | recordings started | per incident (mean) | activations per camera p99 / max | cameras ever activated | activated per month |", knob);
    println!("|---|---|---|---|---|---|---|");
    for s in &settings {
        println!(
            "| {} | {} | {} | {} | {} / {} | {:.1}% | {:.2}% |",
            s.value,
            s.incidents_triggered,
            s.recordings_started,
            s.recordings_per_incident.mean,
            s.activations_per_camera.p99,
            s.activations_per_camera.max,
            100.0 * s.share_of_cameras_ever_activated,
            100.0 * s.share_of_cameras_activated_per_month
        );
    }
    eprintln!("wrote {}/simulation.{{json,csv}} and {} maps", a.out.display(), settings.len());
    Ok(())
}

fn audit_redact(a: RedactArgs) -> Result<()> {
    let path = if a.path.is_dir() { a.path.join("audit.pb") } else { a.path.clone() };
    let (mut records, _) = dispatch_trigger::report::read_verified_audit(&path)?;
    let now = match &a.now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t).with_context(|| format!("--now {t:?}"))?.timestamp_millis(),
        None => chrono::Utc::now().timestamp_millis(),
    };
    let cutoff = now - a.older_than_days as i64 * 86_400_000;
    let mut n = 0;
    for r in records.iter_mut().filter(|r| r.decided_at_ms < cutoff && !r.detail_redacted) {
        trigger_audit::redact(r);
        n += 1;
    }
    let out = a.out.clone().unwrap_or_else(|| path.clone());
    let tmp = out.with_extension("pb.tmp");
    std::fs::write(&tmp, trigger_audit::encode_stream(&records))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot replace {}", out.display()))?;
    println!("{n} of {} records lost their per-camera detail -> {}", records.len(), out.display());
    Ok(())
}

fn audit_verify(a: VerifyArgs) -> Result<()> {
    let start = match (&a.after, a.any_start) {
        (Some(h), _) => Some(h.as_str()),
        (None, true) => None,
        (None, false) => Some(trigger_audit::GENESIS),
    };
    let mut streams: Vec<(String, Vec<Result<trigger_proto::v1::ActivationRecord, String>>)> = Vec::new();
    if let Some(b) = &a.from_kafka {
        let settings = kafka_target(a.config.as_deref(), b)?;
        let topic = settings.topics.audit.clone();
        let records = trigger_kafka::inspect::read_topic(&settings, &topic, true, std::time::Duration::from_secs(120))?;
        let mut by_partition: std::collections::BTreeMap<i32, Vec<_>> = Default::default();
        for r in records {
            let rec = <trigger_proto::v1::ActivationRecord as prost::Message>::decode(
                r.payload.unwrap_or_default().as_slice(),
            )
            .map_err(|e| format!("offset {}: {e}", r.offset));
            by_partition.entry(r.partition).or_default().push(rec);
        }
        streams.extend(by_partition.into_iter().map(|(p, v)| (format!("{topic} partition {p}"), v)));
    } else {
        let mut path = a.path.clone().expect("clap requires a path without --from-kafka");
        if path.is_dir() {
            path = path.join("audit.pb");
        }
        let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        streams.push((path.display().to_string(), trigger_audit::decode_stream(&data)));
    }
    let mut broken = 0;
    for (name, records) in &streams {
        match trigger_audit::verify(records, start) {
            Ok(v) => println!(
                "{name}: ok, {} records ({} without per-camera detail), head {}",
                v.records, v.redacted, v.head
            ),
            Err(b) => {
                broken += 1;
                println!("{name}: BROKEN: {b}");
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} of {} audit streams are broken", streams.len());
        std::process::exit(1);
    }
    Ok(())
}

fn serve_cmd(a: ServeArgs) -> Result<()> {
    let cfg = ServeConfig::load(a.config.as_deref())?;
    if a.print_config {
        // Secrets serialise as <redacted> (trigger_kafka::settings::Secret).
        println!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(());
    }
    serve::init_logging(&cfg.log);
    serve::prometheus()?;
    let shutdown = serve::shutdown_flag()?;
    let health = std::sync::Arc::new(trigger_kafka::Health::default());
    if let Some(addr) = serve::spawn_http(&cfg.http.listen, health.clone())? {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
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

fn demo(policy_path: &Path, a: DemoArgs) -> Result<()> {
    serve::init_logging(&serve::LogSection { format: serve::LogFormat::Text, level: "warn".into() });
    let profile = config::load_profile(&a.profile, policy_path)?;
    let decoded = decode_file(&a.cad, "csv", Some(&profile), &DecodeOptions::default())?;
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
    })?;
    let json = serde_json::to_string_pretty(&summary)?;
    println!("{json}");
    if let Some(out) = &a.out {
        create_parent(out)?;
        std::fs::write(out, format!("{json}\n")).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn bench_kafka(policy_path: &Path, a: BenchArgs) -> Result<()> {
    serve::init_logging(&serve::LogSection { format: serve::LogFormat::Text, level: "warn".into() });
    let profile = config::load_profile(&a.profile, policy_path)?;
    let cad = if a.cad.exists() { a.cad.clone() } else { PathBuf::from(config::BUNDLED_SAMPLE) };
    let mut decoded = decode_file(&cad, "csv", Some(&profile), &DecodeOptions::default())?;
    trigger_cad::replay::event_time_order(&mut decoded.events);
    let cams =
        cameras::generate(a.cameras, 42, &cameras::Placement::Around(event_points(&decoded)), profile.time_zone)?;
    eprintln!("{}: {} events, {} cameras", cad.display(), decoded.events.len(), cams.len());
    let rows = kafka_tools::bench_kafka(&kafka_tools::BenchOptions {
        rates: a.rates,
        seconds: a.seconds,
        max_events: a.max_events,
        partitions: a.partitions,
        cameras: cams,
        events: decoded.events.into_iter().map(|e| e.event).collect(),
        policy: policy_path.to_path_buf(),
        bootstrap: a.bootstrap.clone(),
    })?;
    println!("| processor | offered (events/s) | events | achieved (events/s) | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
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
    if let Some(out) = &a.out {
        create_parent(out)?;
        std::fs::write(out, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn replay_to_kafka(policy_path: &Path, a: ReplayArgs) -> Result<()> {
    let settings = kafka_target(a.config.as_deref(), a.to_kafka.as_deref().expect("checked by the caller"))?;
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy_path)).transpose()?;
    let opts = DecodeOptions { max_message_bytes: a.max_message_bytes, agency_id: a.agency.clone() };
    let decoded = decode_file(&a.file, &a.format, profile.as_ref(), &opts)?;
    // Sending only refused records is what --include-rejects is for (dead-letter tests); otherwise it is a
    // misconfiguration.
    if let (Err(why), false) = (replay::check_decoded(&decoded), a.include_rejects) {
        bail!("{why}\n(nothing sent; --include-rejects sends refused records as their original bytes)");
    }
    let pace = match (a.speed, a.rate) {
        (Some(x), _) => Pace::speed(x).map_err(anyhow::Error::msg)?,
        (_, Some(r)) => Pace::rate(r).map_err(anyhow::Error::msg)?,
        (None, None) => Pace::AsFastAsPossible,
    };
    let times = if a.recorded_times { kafka_tools::Times::Recorded } else { kafka_tools::Times::Rebased };
    let stop = serve::shutdown_flag()?;
    let r = kafka_tools::send_cad_log(&settings, decoded, pace, times, a.include_rejects, &stop)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    eprintln!(
        "sent {} events and {} bad records to {} in {:.1} s",
        r.events, r.bad_records, settings.topics.cfs, r.seconds
    );
    Ok(())
}

fn replay(policy_path: &Path, a: ReplayArgs) -> Result<()> {
    let out = a.out.clone().expect("clap requires --out without --to-kafka");
    let policy = config::load_policy(policy_path)?;
    for w in policy.warnings() {
        eprintln!("warning: {w}");
    }
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy_path)).transpose()?;
    let opts = DecodeOptions { max_message_bytes: a.max_message_bytes, agency_id: a.agency.clone() };
    let decoded = decode_file(&a.file, &a.format, profile.as_ref(), &opts)?;
    let refused_all = replay::check_decoded(&decoded).err();
    let cams: Vec<CameraRecord> = match (&a.cameras, a.generate_cameras) {
        (Some(f), _) => cameras::load(f)?,
        // Nothing was decoded, so there is nothing to place cameras around (the run fails after its outputs).
        (None, Some(_)) if refused_all.is_some() => vec![],
        (None, Some(n)) => {
            let tz = profile.as_ref().map_or(chrono_tz::UTC, |p| p.time_zone);
            cameras::generate(n, a.seed, &cameras::Placement::Around(event_points(&decoded)), tz)?
        }
        (None, None) => {
            bail!("a camera layout is required: --cameras FILE (.jsonl, .csv or .geojson) or --generate-cameras N")
        }
    };
    let pace = a.speed.map(Pace::speed).transpose().map_err(anyhow::Error::msg)?.unwrap_or(Pace::AsFastAsPossible);
    let opts = replay::ReplayOptions {
        out_dir: out.clone(),
        pace,
        wall_clock: !a.no_wall_clock,
        progress: std::io::stderr().is_terminal(),
        input_name: a.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        format: a.format.clone(),
        profile: profile.as_ref().map(|p| p.name.clone()),
        break_glass: a.break_glass.as_deref().map(replay::load_break_glass).transpose()?.unwrap_or_default(),
    };
    let mut engine = Engine::new(policy);
    let n = cams.len();
    let summary = match a.index.unwrap_or_default() {
        IndexKind::Rtree => {
            let (ix, errs) = RTreeIndex::bulk_load(cams);
            report_camera_errors(&errs);
            replay::run(&mut engine, &ix, ix.len(), "rstar", decoded, &opts)?
        }
        IndexKind::H3 => {
            let (ix, errs) = H3Index::bulk_load(cams);
            report_camera_errors(&errs);
            replay::run(&mut engine, &ix, ix.len(), "h3o", decoded, &opts)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!(
        "{} decisions and {} rejects against {n} cameras: {} incidents triggered, {} commands -> {}",
        summary.decisions,
        summary.rejects_total,
        summary.triggered_incidents,
        summary.commands.values().sum::<u64>(),
        out.display()
    );
    match refused_all {
        Some(why) => bail!("{why}\n(outputs written to {}; rejects.jsonl has every record)", out.display()),
        None => Ok(()),
    }
}

fn incident_refs(policy: &Path, a: RefArgs) -> Result<()> {
    let engine = Engine::new(config::load_policy(policy)?);
    if engine.policy().config.incident_ref_key == trigger_core::policy::DEV_INCIDENT_REF_KEY {
        eprintln!("warning: incident_ref_key is the development default: these are not your deployment's references");
    }
    if let Some(id) = &a.incident {
        println!("{}", engine.incident_ref(&a.agency, id));
        return Ok(());
    }
    let (path, column) = (a.csv.expect("clap: --incident or --csv"), a.column.expect("clap: --csv needs --column"));
    let mut r = csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = r.headers()?.clone();
    let at = header
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == column)
        .with_context(|| format!("{}: no column {column:?} (columns: {:?})", path.display(), header))?;
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(header.iter().chain(["incident_ref"]))?;
    for (i, row) in r.records().enumerate() {
        let row = row.with_context(|| format!("{} row {}", path.display(), i + 2))?;
        let id = row.get(at).unwrap_or_default().trim();
        let reference = if id.is_empty() { String::new() } else { engine.incident_ref(&a.agency, id) };
        w.write_record(row.iter().chain([reference.as_str()]))?;
    }
    w.flush()?;
    Ok(())
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn report_camera_errors(errs: &[trigger_index::IndexError]) {
    for e in errs.iter().take(10) {
        eprintln!("warning: camera not loaded: {e}");
    }
    if errs.len() > 10 {
        eprintln!("warning: {} more cameras not loaded", errs.len() - 10);
    }
}
