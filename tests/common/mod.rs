//! Shared by the Kafka tests: cameras and calls around one spot in Nashville, and reading commands back.
#![allow(dead_code)] // each test file uses its own subset

use prost::Message as _;
use std::time::Duration;
use trigger_core::{CallForService, CameraCommand, CameraRecord, Category, Consent, Location, Status};
use trigger_kafka::{codec, inspect, KafkaSettings};
use trigger_proto::v1 as pb;

/// Downtown Nashville, inside the MNPD jurisdiction.
pub const SPOT: (f64, f64) = (36.1627, -86.7816);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A camera `north_m` metres north of the spot, consenting to every category within 500 m, at any hour.
pub fn camera(id: &str, north_m: f64) -> CameraRecord {
    CameraRecord {
        camera_id: id.into(),
        owner_ref: format!("own-{id}"),
        lat: SPOT.0 + north_m / 111_195.0,
        lon: SPOT.1,
        consent: Consent {
            categories: Category::ALL.into_iter().collect(),
            max_radius_m: 500.0,
            quiet_hours: None,
            daily_cap: 100_000,
            live_stream_allowed: false,
        },
        online: true,
        updated_at: 0,
    }
}

/// A shots-fired call at the spot, leaving the CAD now, received 5 s ago.
pub fn shots_fired(incident: &str, revision: u32, status: Status) -> CallForService {
    let t = now_ms();
    CallForService {
        incident_id: incident.into(),
        agency_id: "nashville-mnpd".into(),
        revision,
        status,
        call_type_code: "83".into(),
        call_type_text: "SHOTS FIRED".into(),
        priority: 1,
        location: Some(Location { lat: SPOT.0, lon: SPOT.1, uncertainty_m: 10.0 }),
        received_at: t - 5_000,
        emitted_at: t,
    }
}

/// Every command on the commands topic (read_committed: skip aborted and open transactions).
pub fn commands(settings: &KafkaSettings, read_committed: bool) -> Vec<CameraCommand> {
    inspect::read_topic(settings, &settings.topics.commands, read_committed, Duration::from_secs(30))
        .unwrap()
        .iter()
        .map(|m| codec::command_from_pb(pb::CameraCommand::decode(m.payload.as_deref().unwrap()).unwrap()).unwrap())
        .collect()
}

/// The shipped configuration, copied into `dir`, plus two break-glass keys: "officer" (agency, seed 1) and
/// "sup" (supervisor, seed 2), held by two different people.
pub fn policy_with_break_glass_keys(dir: &std::path::Path) -> std::path::PathBuf {
    use ed25519_dalek::SigningKey;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for sub in ["codes", "jurisdictions", "profiles"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for f in std::fs::read_dir(root.join("config").join(sub)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(sub).join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut p = std::fs::read_to_string(root.join("config/policy.toml")).unwrap();
    for (id, role, identity, seed) in [("officer", "agency", "staff-114", 1u8), ("sup", "supervisor", "staff-3", 2)] {
        let pk = hex::encode(SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes());
        p.push_str(&format!(
            "\n[[break_glass_key]]\nid = \"{id}\"\nrole = \"{role}\"\nidentity = \"{identity}\"\npublic_key = \"{pk}\"\n"
        ));
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, p).unwrap();
    path
}

/// A break-glass request for a Nashville incident, signed by the given (key id, seed) pairs.
pub fn signed_break_glass(
    incident: &str,
    radius_m: f64,
    max_cameras: usize,
    expires_at: i64,
    signers: &[(&str, u8)],
) -> trigger_core::BreakGlassRequest {
    use ed25519_dalek::{Signer, SigningKey};
    let mut r = trigger_core::BreakGlassRequest {
        agency_id: "nashville-mnpd".into(),
        incident_id: incident.into(),
        radius_m,
        max_cameras,
        expires_at,
        reason_code: "armed_suspect_search".into(),
        authorisations: vec![],
    };
    let msg = r.message();
    r.authorisations = signers
        .iter()
        .map(|(id, seed)| trigger_core::Authorisation {
            key_id: id.to_string(),
            signature: hex::encode(SigningKey::from_bytes(&[*seed; 32]).sign(&msg).to_bytes()),
        })
        .collect();
    r
}

pub const BIN: &str = env!("CARGO_BIN_EXE_dispatch-trigger");
pub const WEEK: &str = "fixtures/nashville-mnpd-2024-07-01_07.csv";

/// Run the binary from the repository root; it must succeed. Returns its standard output.
pub fn run(args: &[&str]) -> String {
    let o = std::process::Command::new(BIN).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap();
    assert!(o.status.success(), "dispatch-trigger {args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Run the binary from `dir`; it must fail. Returns its standard error.
pub fn run_fails_in(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new(BIN).current_dir(dir).args(args).output().unwrap();
    assert!(!o.status.success(), "dispatch-trigger {args:?} succeeded:\n{}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr).unwrap()
}

/// Run the binary from the repository root; it must fail. Returns its standard error.
pub fn run_fails(args: &[&str]) -> String {
    run_fails_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Replay the bundled real week against the seeded layout of 20,000 cameras into `out`, plus `extra`.
/// Returns the replay's standard output (its summary).
pub fn replay_week(out: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["replay", WEEK, "--format", "csv", "--profile", "nashville-mnpd"];
    args.extend(["--generate-cameras", "20000", "--seed", "7", "--out", out.to_str().unwrap()]);
    args.extend(extra);
    run(&args)
}
