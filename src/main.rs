//! dispatch-trigger: turns 911 calls for service into consent-bounded record commands for nearby cameras.
//! This binary wires the crates together: config, camera layouts, replay.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dispatch_trigger::{cameras, config, replay};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use trigger_cad::replay::Pace;
use trigger_cad::{DecodeOptions, Format};
use trigger_core::{CameraRecord, Engine, LatLon};
use trigger_index::{H3Index, RTreeIndex};

#[derive(Parser)]
#[command(
    name = "dispatch-trigger",
    version,
    about = "Turns 911 calls for service into consent-bounded record commands for nearby opted-in cameras"
)]
struct Cli {
    /// Policy file; code tables, jurisdictions and profiles are found beside it.
    #[arg(long, global = true, default_value = config::DEFAULT_POLICY)]
    policy: PathBuf,
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
    /// Load and validate the policy, code tables and jurisdictions; print warnings.
    CheckConfig,
}

#[derive(Subcommand)]
enum CamerasCmd {
    /// Generate a seeded synthetic layout with a realistic consent mix.
    Generate(GenerateArgs),
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
    #[arg(long, value_delimiter = ',', num_args = 4, allow_hyphen_values = true)]
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

#[derive(Clone, Copy, ValueEnum)]
enum IndexKind {
    Rtree,
    H3,
}

#[derive(Args)]
struct ReplayArgs {
    /// CAD log to replay.
    file: PathBuf,
    #[arg(long, value_parser = ["csv", "eido", "jsonl", "pb"])]
    format: String,
    /// CSV profile: a name in config/profiles, or a path.
    #[arg(long)]
    profile: Option<String>,
    /// Camera layout (.jsonl, .csv or .geojson).
    #[arg(long, conflicts_with = "generate_cameras", required_unless_present = "generate_cameras")]
    cameras: Option<PathBuf>,
    /// Instead of --cameras: generate this many cameras around the input's events (seeded).
    #[arg(long, value_name = "N")]
    generate_cameras: Option<usize>,
    /// Seed for --generate-cameras.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (commands.jsonl, decisions.jsonl, notices.jsonl, rejects.jsonl, summary.json).
    #[arg(long)]
    out: PathBuf,
    /// Replay at the recorded pace times X (default: as fast as possible).
    #[arg(long, value_name = "X")]
    speed: Option<f64>,
    /// Spatial index behind the camera registry.
    #[arg(long, value_enum, default_value = "rtree")]
    index: IndexKind,
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
    match cli.command {
        Command::CheckConfig => {
            let p = config::load_policy(&cli.policy)?;
            for w in p.warnings() {
                eprintln!("warning: {w}");
            }
            println!("{}: ok ({} agencies)", cli.policy.display(), p.config.agencies.len());
            Ok(())
        }
        Command::Cameras(CamerasCmd::Generate(a)) => generate(&cli.policy, a),
        Command::Replay(a) => replay(&cli.policy, a),
    }
}

fn decode_file(
    path: &Path,
    format: &str,
    profile: Option<&trigger_cad::CsvProfile>,
    opts: &DecodeOptions,
) -> Result<trigger_cad::Decoded> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
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
        (None, Some(b)) => cameras::Placement::BBox([b[0], b[1], b[2], b[3]]),
        (None, None) => bail!("say where: --around CAD_FILE --profile P, or --bbox MIN_LAT,MIN_LON,MAX_LAT,MAX_LON"),
    };
    let cams = cameras::generate(a.count, a.seed, &placement, tz)?;
    cameras::save(&a.out, &cams)?;
    println!("wrote {} cameras to {}", cams.len(), a.out.display());
    Ok(())
}

fn replay(policy_path: &Path, a: ReplayArgs) -> Result<()> {
    let policy = config::load_policy(policy_path)?;
    for w in policy.warnings() {
        eprintln!("warning: {w}");
    }
    let profile = a.profile.as_deref().map(|p| config::load_profile(p, policy_path)).transpose()?;
    let opts = DecodeOptions { max_message_bytes: a.max_message_bytes, agency_id: a.agency.clone() };
    let decoded = decode_file(&a.file, &a.format, profile.as_ref(), &opts)?;
    let cams: Vec<CameraRecord> = match (&a.cameras, a.generate_cameras) {
        (Some(f), _) => cameras::load(f)?,
        (None, Some(n)) => {
            let tz = profile.as_ref().map_or(chrono_tz::UTC, |p| p.time_zone);
            cameras::generate(n, a.seed, &cameras::Placement::Around(event_points(&decoded)), tz)?
        }
        (None, None) => bail!("--cameras FILE or --generate-cameras N is required"),
    };
    let pace = match a.speed {
        Some(x) if x > 0.0 => Pace::Speed(x),
        Some(x) => bail!("--speed must be > 0, got {x}"),
        None => Pace::AsFastAsPossible,
    };
    let opts = replay::ReplayOptions {
        out_dir: a.out.clone(),
        pace,
        wall_clock: !a.no_wall_clock,
        progress: std::io::stderr().is_terminal(),
        input_name: a.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        format: a.format.clone(),
        profile: profile.as_ref().map(|p| p.name.clone()),
    };
    let mut engine = Engine::new(policy);
    let n = cams.len();
    let summary = match a.index {
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
        a.out.display()
    );
    Ok(())
}

fn report_camera_errors(errs: &[trigger_index::IndexError]) {
    for e in errs.iter().take(10) {
        eprintln!("warning: camera not loaded: {e}");
    }
    if errs.len() > 10 {
        eprintln!("warning: {} more cameras not loaded", errs.len() - 10);
    }
}
