//! The command line: every command and its arguments (clap derive). The handlers are in `commands/`, one
//! module per command.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod args;
pub(crate) use args::*;

/// An input format, as `--format` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InputFormat {
    /// A city CSV export, read through --profile.
    Csv,
    /// NENA EIDO JSON.
    Eido,
    /// One CallForService as JSON per line.
    Jsonl,
    /// Length-delimited protobuf CallForService messages.
    Pb,
}

impl InputFormat {
    pub(crate) fn format(self) -> trigger_cad::Format {
        match self {
            InputFormat::Csv => trigger_cad::Format::Csv,
            InputFormat::Eido => trigger_cad::Format::Eido,
            InputFormat::Jsonl => trigger_cad::Format::Jsonl,
            InputFormat::Pb => trigger_cad::Format::Pb,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InputFormat::Csv => "csv",
            InputFormat::Eido => "eido",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Pb => "pb",
        }
    }
}

#[derive(Parser)]
#[command(
    name = "dispatch-trigger",
    version,
    about = "Turns 911 calls for service into consent-bounded record commands for nearby opted-in cameras"
)]
pub(crate) struct Cli {
    /// Policy file; code tables, jurisdictions and profiles are found beside it. Default: config/policy.toml in
    /// the working directory, else beside the installation, else the copy compiled into this binary.
    #[arg(long, global = true)]
    pub(crate) policy: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Camera layouts.
    #[command(subcommand)]
    Cameras(CamerasCmd),
    /// Replay a CAD log through the engine, offline, in event-time order.
    Replay(ReplayArgs),
    /// Load and validate the policy, code tables, jurisdictions and every CSV profile beside it; print
    /// warnings (a development key, a category no rule maps to, a label outside the vocabularies, ...) and
    /// fail on a profile that can never start a camera (it reads no type text). With --export, list the
    /// export's type texts that can never fire and the words no vocabulary explains.
    CheckConfig(CheckConfigArgs),
    /// Print the classification in force for every agency (shipped vocabularies, code tables as matched,
    /// the input's type columns), keyed by the digest every audit record carries.
    Classification(ClassificationArgs),
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
    /// Signed camera commands: make a signing key, verify commands.
    #[command(subcommand)]
    Commands(CommandsCmd),
    /// Run the Kafka consumer service (layered config: defaults, --config FILE, DT_* environment).
    Serve(ServeArgs),
    /// Bring a city's live CAD feed onto the CFS topic: poll its reporting database (`[sql]`) and write each
    /// new or changed row as a revision, through the city's CSV profile, with the source's watermark beside the
    /// records (docs/connecting-a-cad.md).
    Ingest(IngestArgs),
    /// Drive cameras: consume the commands topic in the bridge's own group, verify each command's signature,
    /// deduplicate across restarts, and make each served camera's target (MQTT, Frigate, Home Assistant,
    /// ZoneMinder zmtrigger) start or stop recording (docs/driving-cameras.md).
    Bridge(BridgeArgs),
    /// The whole Kafka path with zero setup: an in-process broker, a generated registry, the service, and the
    /// bundled CAD sample replayed through it; prints the summary with end-to-end latency percentiles.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Check the hash chain: an audit file (replay's audit.pb, or its folder) or every partition of the audit
    /// topic. Names the first altered, unreadable, missing or reordered record; exits 1 if the chain is broken.
    Verify(VerifyArgs),
    /// Retention of audit detail: drop the per-camera detail (which cameras, distances, exclusion reasons) of
    /// records older than N days; counts, outcomes and the chain stay verifiable.
    Redact(RedactArgs),
}

#[derive(Subcommand)]
pub(crate) enum ReportCmd {
    /// The full history of one owner's cameras: every START and STOP (time, camera, category, coarse area,
    /// distance) and the times they were near an incident but not used, by reason. Built from a verified
    /// audit trail and the camera layout (which cameras are the owner's).
    Owner(OwnerArgs),
    /// The public transparency report (CSV, JSON, self-contained HTML with charts) from a verified audit trail:
    /// per agency x category x month, incidents that triggered, cameras activated, refusals by reason.
    Transparency(TransparencyArgs),
}

#[derive(Subcommand)]
pub(crate) enum BreakGlassCmd {
    /// Send signed requests (JSON, one per line) to the running service: onto the CFS topic, keyed like their
    /// incident, marked with the header dt.kind = break-glass.
    Send(BreakGlassSendArgs),
}

#[derive(Subcommand)]
pub(crate) enum CommandsCmd {
    /// Make an Ed25519 command-signing key: the secret goes to --out (owner-only, never overwritten; serve's
    /// signing.key_file), the public key is printed as a `[[key]]` entry for verifiers' keys files.
    Keygen(KeygenArgs),
    /// Verify camera commands (the commands topic, or a file of length-delimited CameraCommand records):
    /// signature, key id, expiry at --at. Counts by reason; exits 1 if any is unsigned, mis-signed, signed by
    /// an unknown key or malformed (expired ones only with --at, since every old command has expired).
    Verify(CommandsVerifyArgs),
}

#[derive(Subcommand)]
pub(crate) enum TopicsCmd {
    /// Create every topic the service uses (registry and changelog compacted, dead letters kept 7 days).
    Create(TopicsCreateArgs),
}

#[derive(Subcommand)]
pub(crate) enum CamerasCmd {
    /// Generate a seeded synthetic layout with a realistic consent mix.
    Generate(GenerateArgs),
    /// Load a layout into the registry topic (key = camera_id, protobuf CameraRecord).
    Publish(PublishArgs),
}
