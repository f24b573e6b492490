//! Shared by the Kafka tests: cameras and calls around one spot in Nashville, and reading commands back.
#![allow(dead_code)] // each test file uses its own subset

pub(crate) mod mariadb;
pub(crate) mod postgres;
pub(crate) mod tls;
pub(crate) mod unique;

use std::time::Duration;
use trigger_core::{CallForService, CameraCommand, CameraRecord, Category, Consent, Location, Status};
use trigger_kafka::{codec, inspect, KafkaSettings};

/// The fast tier (`TEST_TIER=fast`, README "Layout and CI"): a test that needs a server of its own (Apache
/// Kafka, PostgreSQL, MariaDB, Mosquitto, tansu, Prometheus) skips that part and says so on standard error
/// (shown, not captured), as it does when the server is not installed. Unset (or `full`), everything runs and CI's `*_REQUIRED`
/// variables make a missing server a failure. True when `what` is skipped.
pub(crate) fn fast_tier_skips(what: &str) -> bool {
    match std::env::var("TEST_TIER").as_deref() {
        Ok("fast") => {
            // Straight to standard error, not through the test harness's capture: a skip is seen in the
            // run's output although the test counts as passed.
            use std::io::Write as _;
            let test = std::thread::current().name().unwrap_or("a test").to_string();
            let _ = writeln!(std::io::stderr(), "skipped in the fast tier (TEST_TIER=fast): {test}: {what}");
            true
        }
        Ok("full") | Err(_) => false,
        Ok(other) => panic!("TEST_TIER={other:?}: the tiers are \"fast\" and \"full\""),
    }
}

/// Wait until `ok` holds, looking every 50 ms: a wait for an event, never for a length of time. Fails the test,
/// naming `what` it waited for, if `within` passes first.
pub(crate) fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let by = std::time::Instant::now() + within;
    while !ok() {
        assert!(std::time::Instant::now() < by, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Downtown Nashville, inside the MNPD jurisdiction.
pub(crate) const SPOT: (f64, f64) = (36.1627, -86.7816);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A camera `north_m` metres north of the spot, consenting to every category within 500 m, at any hour.
pub(crate) fn camera(id: &str, north_m: f64) -> CameraRecord {
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
pub(crate) fn shots_fired(incident: &str, revision: u32, status: Status) -> CallForService {
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
        blocked: None,
        type_fields: vec![],
    }
}

/// Every command on the commands topic (read_committed: skip aborted and open transactions).
pub(crate) fn commands(settings: &KafkaSettings, read_committed: bool) -> Vec<CameraCommand> {
    inspect::read_topic(settings, &settings.topics.commands, read_committed, Duration::from_secs(30))
        .unwrap()
        .iter()
        .map(|m| codec::decode_command(m.payload.as_deref().unwrap()).unwrap().0)
        .collect()
}

/// The shipped configuration, copied into `dir`, plus two break-glass keys: "officer" (agency, seed 1) and
/// "sup" (supervisor, seed 2), held by two different people.
pub(crate) fn policy_with_break_glass_keys(dir: &std::path::Path) -> std::path::PathBuf {
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
pub(crate) fn signed_break_glass(
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

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_dispatch-trigger");
pub(crate) const WEEK: &str = "fixtures/nashville-mnpd-2024-07-01_07.csv";

/// Run the binary from the repository root; it must succeed. Returns its standard output.
pub(crate) fn run(args: &[&str]) -> String {
    let o = std::process::Command::new(BIN).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap();
    assert!(o.status.success(), "dispatch-trigger {args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Run the binary from `dir`; it must fail. Returns its standard error.
pub(crate) fn run_fails_in(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new(BIN).current_dir(dir).args(args).output().unwrap();
    assert!(!o.status.success(), "dispatch-trigger {args:?} succeeded:\n{}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr).unwrap()
}

/// Run the binary from the repository root; it must fail. Returns its standard error.
pub(crate) fn run_fails(args: &[&str]) -> String {
    run_fails_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Replay the bundled real week against the seeded layout of 20,000 cameras into `out`, plus `extra`.
/// Returns the replay's standard output (its summary).
pub(crate) fn replay_week(out: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["replay", WEEK, "--format", "csv", "--profile", "nashville-mnpd"];
    args.extend(["--generate-cameras", "20000", "--seed", "7", "--out", out.to_str().unwrap()]);
    args.extend(extra);
    run(&args)
}

/// The broker a Kafka test runs on. Tests written once run on both (`on_every_broker!`): librdkafka's mock
/// cluster (in process, for fault injection) and Apache Kafka, the reference broker on which a delivery
/// guarantee counts as proven.
pub(crate) enum Broker {
    Mock(trigger_kafka::EmbeddedCluster),
    Apache { bootstrap: String },
}

impl Broker {
    pub(crate) fn mock() -> Self {
        Broker::Mock(trigger_kafka::EmbeddedCluster::start(1).expect("mock cluster"))
    }

    /// Apache Kafka: `KAFKA_BOOTSTRAP` if set, else `scripts/kafka.sh start` fetches it from Maven Central (once,
    /// cached) and starts one broker shared by every test binary (it keeps running: `scripts/kafka.sh stop`).
    /// Without Java or Maven the test is skipped, saying so, unless `KAFKA_REQUIRED=1` (CI), where it fails.
    pub(crate) fn apache() -> Option<Self> {
        if fast_tier_skips("the Apache Kafka run") {
            return None;
        }
        static BOOTSTRAP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let b = BOOTSTRAP.get_or_init(|| {
            if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
                return Some(b);
            }
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
            let out = std::process::Command::new("bash").arg(script).arg("start").output();
            match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP=").map(str::to_string)),
                Ok(o) => {
                    let why = String::from_utf8_lossy(&o.stderr).into_owned();
                    assert!(std::env::var("KAFKA_REQUIRED").is_err(), "Apache Kafka is required: {why}");
                    eprintln!("skipped on Apache Kafka: scripts/kafka.sh start failed: {why}");
                    None
                }
                Err(e) => {
                    assert!(std::env::var("KAFKA_REQUIRED").is_err(), "Apache Kafka is required: {e}");
                    None
                }
            }
        });
        b.clone().map(|bootstrap| Broker::Apache { bootstrap })
    }

    pub(crate) fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(c) => c.bootstrap_servers(),
            Broker::Apache { bootstrap } => bootstrap.clone(),
        }
    }

    pub(crate) fn is_apache(&self) -> bool {
        matches!(self, Broker::Apache { .. })
    }

    /// Settings for one test, its topics created (`partitions` for the CFS topic and its outputs, one for the
    /// registry): its own consumer group and its own topic names (the Apache Kafka broker is shared).
    pub(crate) fn settings(&self, partitions: i32) -> KafkaSettings {
        // A long-lived broker outlives many test processes, and process ids are reused: a tag met again would
        // read an earlier run's records.
        let tag = unique::name("test");
        let settings = KafkaSettings {
            bootstrap_servers: self.bootstrap(),
            group_id: tag.clone(),
            topics: trigger_kafka::Topics::tagged(&tag),
            ..KafkaSettings::default()
        };
        match self {
            Broker::Mock(c) => c.create_topics(&settings.topics, partitions).expect("topics"),
            Broker::Apache { .. } => {
                trigger_kafka::admin::create_topics(&settings, &settings.topics, partitions, 1, 1).expect("topics");
            }
        }
        settings
    }
}

/// Write each test once; run it on the mock cluster and on Apache Kafka: `on_every_broker! { fn name(b: &Broker)
/// { ... } }` makes `mock_cluster::name` and `apache_kafka::name`.
#[macro_export]
macro_rules! on_every_broker {
    ($($(#[$m:meta])* fn $name:ident($b:ident: &Broker) $body:block)*) => {
        $( $(#[$m])* fn $name($b: &$crate::common::Broker) $body )*
        mod mock_cluster {
            $( #[test] fn $name() { super::$name(&$crate::common::Broker::mock()) } )*
        }
        mod apache_kafka {
            $( #[test] fn $name() {
                if let Some(b) = $crate::common::Broker::apache() { super::$name(&b) }
            } )*
        }
    };
}

/// The `[kafka]` section of a serve.toml for `settings`: bootstrap, group, delivery mode, transactional id and
/// topic names.
pub(crate) fn kafka_section(settings: &KafkaSettings) -> String {
    let t = &settings.topics;
    let mut delivery = String::new();
    if settings.delivery == trigger_kafka::Delivery::ExactlyOnce {
        delivery += "delivery = \"exactly_once\"\n";
    }
    if let Some(id) = &settings.transactional_id {
        delivery += &format!("transactional_id = \"{id}\"\n");
    }
    format!(
        "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\n{delivery}\
         [kafka.topics]\ncfs = \"{}\"\nregistry = \"{}\"\ncommands = \"{}\"\naudit = \"{}\"\nnotices = \"{}\"\n\
         dead_letter = \"{}\"\nchangelog = \"{}\"\nleader = \"{}\"\nwatermark = \"{}\"\n",
        settings.bootstrap_servers,
        settings.group_id,
        t.cfs,
        t.registry,
        t.commands,
        t.audit,
        t.notices,
        t.dead_letter,
        t.changelog,
        t.leader,
        t.watermark
    )
}

/// The repository root (where the binary runs from).
pub(crate) fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/kafka.sh WHAT --dir DIR`; its standard output, or None (with its error printed) if it failed.
pub(crate) fn kafka_sh(dir: &std::path::Path, what: &str) -> Option<String> {
    let o = std::process::Command::new("bash")
        .arg(root().join("scripts/kafka.sh"))
        .args([what, "--dir"])
        .arg(dir)
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!("scripts/kafka.sh {what}: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// An Apache Kafka broker of one test's own (for faults it injects); resumed and deleted however the test
/// ends.
pub(crate) struct OwnBroker(pub std::path::PathBuf);

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = kafka_sh(&self.0, "resume");
        let _ = kafka_sh(&self.0, "wipe");
    }
}

/// Start a broker of the test's own in `dir`: its guard and bootstrap address. None (the test skips) when
/// Apache Kafka cannot start here, unless `KAFKA_REQUIRED=1`, where that fails the test.
pub(crate) fn own_broker(dir: &std::path::Path) -> Option<(OwnBroker, String)> {
    if fast_tier_skips("an Apache Kafka broker of the test's own") {
        return None;
    }
    let Some(started) = kafka_sh(dir, "start") else {
        assert!(std::env::var("KAFKA_REQUIRED").is_err(), "Apache Kafka is required (scripts/kafka.sh start failed)");
        eprintln!("skipped: Apache Kafka could not be started here");
        return None;
    };
    let bootstrap = started.trim_start_matches("KAFKA_BOOTSTRAP=").to_string();
    Some((OwnBroker(dir.to_path_buf()), bootstrap))
}

/// An Apache Kafka of the test's own in `dir/kafka`, its topics made (one partition each), and exactly-once
/// settings of a consumer group named after `group` on it (None: skipped, as [`own_broker`]).
pub(crate) fn own_eos_cluster(dir: &std::path::Path, group: &str) -> Option<(OwnBroker, KafkaSettings)> {
    let (broker, bootstrap) = own_broker(&dir.join("kafka"))?;
    let group_id = unique::name(group);
    let mut settings = KafkaSettings { bootstrap_servers: bootstrap, group_id, ..Default::default() };
    settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 1, 1, 1).unwrap();
    Some((broker, settings))
}

/// Stop `broker`'s Apache Kafka (SIGSTOP) for 75 s, longer than a transaction's commit waits (60 s: it is
/// aborted and the sink opened anew), while `during` runs, then let it go on. The `ingest` process whose
/// endpoints are on `port` names Kafka on `/readyz` within 40 s (once a write has waited `broker_grace_ms`,
/// 10 s) and still at 75 s.
pub(crate) fn ingest_broker_outage(broker: &OwnBroker, port: u16, during: impl FnOnce()) {
    kafka_sh(&broker.0, "pause").expect("SIGSTOP");
    let stopped = std::time::Instant::now();
    during();
    let said = readyz_saying(port, "Kafka", Duration::from_secs(40));
    let noticed = stopped.elapsed();
    std::thread::sleep(Duration::from_secs(75).saturating_sub(stopped.elapsed()));
    let later = http_get(port, "/readyz").unwrap_or_default();
    kafka_sh(&broker.0, "resume").expect("SIGCONT");
    assert!(said.contains(" 503 ") && said.contains("Kafka brokers have not acknowledged"), "{said}");
    eprintln!("/readyz named Kafka {noticed:?} into the outage; at 75 s: {later}");
    assert!(later.contains(" 503 ") && later.contains("Kafka"), "{later}");
}

/// The shipped policy with one setting changed (`from` -> `to`), written into `dir` beside links to the
/// shipped code tables and jurisdictions.
pub(crate) fn policy_replacing(dir: &std::path::Path, from: &str, to: &str) -> std::path::PathBuf {
    for d in ["codes", "jurisdictions"] {
        std::os::unix::fs::symlink(root().join("config").join(d), dir.join(d)).unwrap();
    }
    let text = std::fs::read_to_string(root().join("config/policy.toml")).unwrap();
    assert!(text.contains(from), "config/policy.toml has no {from:?}");
    let p = dir.join("policy.toml");
    std::fs::write(&p, text.replace(from, to)).unwrap();
    p
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0): the whole response, status line first; None if nothing
/// answers.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// `serve --config CONFIG` as a child process (standard error to `log`, `env` added), returned once its
/// `/readyz` until it says `want` (or `within` passes): what it said last.
pub(crate) fn readyz_saying(port: u16, want: &str, within: Duration) -> String {
    let by = std::time::Instant::now() + within;
    let mut said = String::new();
    while !said.contains(want) && std::time::Instant::now() < by {
        said = http_get(port, "/readyz").unwrap_or_default();
        std::thread::sleep(Duration::from_millis(200));
    }
    said
}

/// `/readyz` on `port` answers 200. Fails the test if it exits or is not ready within 60 s.
pub(crate) fn serve_until_ready(
    config: &std::path::Path,
    log: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> std::process::Child {
    spawn_until_ready("serve", config, log, port, env)
}

/// `serve --config CONFIG` as a child process, returned once its `/healthz` answers: ready or not (a standby
/// of a consumer group holds no partition and is not ready).
pub(crate) fn serve_until_up(config: &std::path::Path, log: &std::path::Path, port: u16) -> std::process::Child {
    spawn_until(200, "/healthz", "serve", config, log, port, &[])
}

/// `COMMAND --config CONFIG` (serve, bridge) as a child process, returned once its `/readyz` answers 200.
pub(crate) fn spawn_until_ready(
    command: &str,
    config: &std::path::Path,
    log: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> std::process::Child {
    spawn_until(200, "/readyz", command, config, log, port, env)
}

fn spawn_until(
    code: u16,
    path: &str,
    command: &str,
    config: &std::path::Path,
    log: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut child = std::process::Command::new(BIN)
        .current_dir(root())
        .args([command, "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the service binary starts");
    let t0 = std::time::Instant::now();
    while !http_get(port, path).is_some_and(|r| r.contains(&format!(" {code} "))) {
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        assert!(t0.elapsed() < Duration::from_secs(60), "the service did not become ready: {}", log());
        assert!(child.try_wait().unwrap().is_none(), "the service exited: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The bundled NENA EIDO sample (../shared/data/eido), the template of the pushed sources' documents.
pub(crate) fn eido_template() -> serde_json::Value {
    let path = root().join("../shared/data/eido/sample-civil-unrest-2020.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The incident id of `eido_document(_, n, _)`.
pub(crate) fn eido_incident(n: usize) -> String {
    format!("urn:emergency:uid:incidentid:{n}:test.psap")
}

/// The template as incident `n`'s document last updated at `at_ms`.
pub(crate) fn eido_document(template: &serde_json::Value, n: usize, at_ms: i64) -> String {
    let mut doc = template.clone();
    doc["incidentTrackingIdentifier"] = eido_incident(n).into();
    let at = chrono::DateTime::from_timestamp_millis(at_ms).unwrap();
    doc["LastUpdateTimeStamp"] = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into();
    doc.to_string()
}

/// The revision the contract gives a state last updated at `at_ms` (Unix ms): whole seconds since 2020-01-01.
pub(crate) fn revision_of(at_ms: i64) -> u32 {
    ((at_ms - 1_577_836_800_000) / 1000) as u32
}

/// A process of the binary, killed when the test ends (a failing assertion included).
pub(crate) struct Running(pub(crate) std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dispatch-trigger ingest --config CONFIG`, its log appended to `log`, with `env` set.
pub(crate) fn ingest(config: &std::path::Path, log: &std::path::Path, env: &[(&str, &str)]) -> Running {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Running(
        std::process::Command::new(BIN)
            .current_dir(root())
            .args(["ingest", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ingest starts"),
    )
}

/// Every (incident, revision) on the CFS topic in its order, as many times as it is there (read committed).
pub(crate) fn revisions_on_topic(settings: &KafkaSettings) -> Vec<(String, u32)> {
    use prost::Message as _;
    let records = inspect::read_topic(settings, &settings.topics.cfs, true, Duration::from_secs(30)).unwrap();
    records
        .iter()
        .map(|r| {
            let m = trigger_proto::v1::CallForService::decode(r.payload.as_deref().unwrap_or_default()).unwrap();
            (m.incident_id, m.revision)
        })
        .collect()
}
