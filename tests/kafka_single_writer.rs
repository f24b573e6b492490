//! One writer per camera's state, proven against an adversary on Apache Kafka, in both delivery modes: owners'
//! daily caps hold and every camera still recording is stopped when its incident closes, whichever instance
//! decides, whenever one dies.
//!
//! 1. A crash point chosen on purpose: the decider dies right after its commands were acknowledged and before
//!    the incident state that stands for them was (the changelog refuses the state record: a permanent produce
//!    error stops the service). The next decider re-reads that revision only once it is too old to start
//!    anything, so all it knows of the START is what the commands topic says; a second incident then asks for
//!    the same camera (daily cap 1), and the first incident closes.
//! 2. Three instances in one deployment over incidents on three CFS partitions competing for cameras with
//!    daily caps 1 and 2; instances SIGKILLed at random points (seeded: `ADVERSARY_SEED` replays a run) and
//!    restarted, the broker killed once.
//!
//! The oracle reads the raw topics only: the registry records and CFS events the test wrote, the commands and
//! the audit records the service wrote.

mod common;

use prost::Message as _;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trigger_core::{CallForService, CameraRecord, Engine, Status};
use trigger_kafka::{inspect, Delivery, KafkaSettings, Publisher};
use trigger_proto::v1 as pb;

struct Instance {
    name: String,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: usize,
}

impl Instance {
    fn new(dir: &Path, name: &str, settings: &KafkaSettings, policy: &Path, service: &str) -> Self {
        let port = common::unique::port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "policy = \"{}\"\n{}[service]\npoll_timeout_ms = 20\n{service}[http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [log]\nlevel = \"info\"\n",
                policy.display(),
                common::kafka_section(settings)
            ),
        )
        .unwrap();
        Self { name: name.into(), log: dir.join(format!("{name}.log")), config, port, child: None, starts: 0 }
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = self.log.with_extension(format!("{}.log", self.starts));
        let child = Command::new(common::BIN)
            .current_dir(common::root())
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn deciding(&self) -> bool {
        self.child.is_some() && common::http_get(self.port, "/readyz").is_some_and(|r| r.contains(" 200 "))
    }

    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| std::fs::read_to_string(self.log.with_extension(format!("{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait until `ok`; on a time-out, fail with `what` and `logs()`.
/// An engine on the shipped policy: what turns an agency's incident into the `incident_ref` the topics carry.
fn shipped_engine() -> Engine {
    Engine::new(dispatch_trigger::config::load_policy(&common::root().join("config/policy.toml")).unwrap())
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "timed out: {what}\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn camera(id: &str, north_m: f64, daily_cap: u32) -> CameraRecord {
    let mut c = common::camera(id, north_m);
    c.consent.daily_cap = daily_cap;
    c
}

fn send(settings: &KafkaSettings, events: &[CallForService]) {
    let mut p = Publisher::new(settings).unwrap();
    for ev in events {
        p.cfs(&settings.topics.cfs, ev).unwrap();
    }
    p.wait().unwrap();
}

/// A CFS event as written to the topic.
struct Sent {
    agency_id: String,
    incident_id: String,
    revision: u32,
    closed: bool,
}

/// Read back: every camera's cap (from the registry records written), the events sent (from the CFS topic),
/// the commands and the audit records the service wrote. Committed records only: what a camera bridge and an
/// auditor see.
struct Topics {
    caps: BTreeMap<String, u32>,
    sent: Vec<Sent>,
    commands: Vec<pb::CameraCommand>,
    audit: Vec<(i32, pb::ActivationRecord)>,
}

fn read(settings: &KafkaSettings) -> Topics {
    let all = |topic: &str| inspect::read_topic(settings, topic, true, Duration::from_secs(60)).unwrap();
    let caps = all(&settings.topics.registry)
        .into_iter()
        .filter_map(|r| r.payload)
        .map(|b| pb::CameraRecord::decode(b.as_slice()).unwrap())
        .map(|c| (c.camera_id.clone(), c.consent.unwrap().daily_cap))
        .collect();
    let sent = all(&settings.topics.cfs)
        .into_iter()
        .map(|r| {
            let ev = pb::CallForService::decode(r.payload.unwrap().as_slice()).unwrap();
            let closed = ev.status == pb::CfsStatus::Closed as i32;
            Sent { agency_id: ev.agency_id, incident_id: ev.incident_id, revision: ev.revision, closed }
        })
        .collect();
    let commands = all(&settings.topics.commands)
        .into_iter()
        .map(|r| pb::CameraCommand::decode(r.payload.unwrap().as_slice()).unwrap())
        .collect();
    let audit = all(&settings.topics.audit)
        .iter()
        .map(|r| (r.partition, pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap()))
        .collect();
    Topics { caps, sent, commands, audit }
}

/// What must hold whatever happened: no camera over its cap, nothing decided lost, duplicates only under one
/// command_id, every audit chain intact, and every camera still recording for an incident that closed stopped.
fn check(t: &Topics) {
    let engine = shipped_engine();
    let start = pb::CommandAction::Start as i32;
    let stop = pb::CommandAction::Stop as i32;
    // Caps: the incidents each camera was started for.
    let mut started: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in t.commands.iter().filter(|c| c.action == start) {
        started.entry(&c.camera_id).or_default().insert(&c.incident_ref);
    }
    for (cam, incidents) in &started {
        let cap = t.caps[*cam];
        assert!(
            incidents.len() as u32 <= cap,
            "{cam} (daily cap {cap}) started for {} incidents: {incidents:?}",
            incidents.len()
        );
    }
    // Duplicates only under one command_id: one id per (incident, camera, action), one action per id.
    let mut ids: BTreeMap<&str, BTreeSet<(&str, &str, i32)>> = BTreeMap::new();
    for c in &t.commands {
        ids.entry(&c.command_id).or_default().insert((&c.incident_ref, &c.camera_id, c.action));
    }
    assert!(ids.values().all(|v| v.len() == 1), "a command_id names two commands");
    // Nothing lost: every revision sent has its decision record.
    let audited: BTreeSet<(&str, u32)> = t.audit.iter().map(|(_, a)| (a.incident_ref.as_str(), a.revision)).collect();
    for ev in &t.sent {
        let r = engine.incident_ref(&ev.agency_id, &ev.incident_id);
        assert!(
            audited.contains(&(r.as_str(), ev.revision)),
            "{} revision {} was never decided",
            ev.incident_id,
            ev.revision
        );
    }
    // Every audit partition's chain verifies.
    let mut by_partition: BTreeMap<i32, Vec<Result<pb::ActivationRecord, String>>> = BTreeMap::new();
    for (p, a) in &t.audit {
        by_partition.entry(*p).or_default().push(Ok(a.clone()));
    }
    for (p, recs) in by_partition {
        let v = trigger_audit::verify(&recs, Some(trigger_audit::GENESIS));
        assert!(v.is_ok(), "audit partition {p} does not verify: {v:?}");
    }
    // Every incident that closed stops what it started.
    let closed: BTreeSet<String> =
        t.sent.iter().filter(|e| e.closed).map(|e| engine.incident_ref(&e.agency_id, &e.incident_id)).collect();
    let stopped: BTreeSet<(&str, &str)> = t
        .commands
        .iter()
        .filter(|c| c.action == stop)
        .map(|c| (c.incident_ref.as_str(), c.camera_id.as_str()))
        .collect();
    for c in t.commands.iter().filter(|c| c.action == start && closed.contains(&c.incident_ref)) {
        assert!(
            stopped.contains(&(c.incident_ref.as_str(), c.camera_id.as_str())),
            "{} still records for closed incident {}",
            c.camera_id,
            c.incident_ref
        );
    }
}

/// Wait until every event sent has its decision record.
fn all_decided(settings: &KafkaSettings, within: Duration) -> Topics {
    let t0 = Instant::now();
    let engine = shipped_engine();
    loop {
        let t = read(settings);
        let audited: BTreeSet<(String, u32)> =
            t.audit.iter().map(|(_, a)| (a.incident_ref.clone(), a.revision)).collect();
        let missing = t
            .sent
            .iter()
            .filter(|e| !audited.contains(&(engine.incident_ref(&e.agency_id, &e.incident_id), e.revision)))
            .count();
        if missing == 0 {
            return t;
        }
        assert!(t0.elapsed() < within, "{missing} events never decided");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn dies_between_commands_and_state(delivery: Delivery) {
    let Some(broker) = common::Broker::apache() else { return };
    let mut settings = broker.settings(3);
    settings.delivery = delivery;
    let dir = tempfile::tempdir().unwrap();
    // Four seconds of backlog guard: the next decider re-reads the first revision too late to start anything.
    let policy = common::policy_replacing(dir.path(), "max_lag_s = 120", "max_lag_s = 4");
    let mut p = Publisher::new(&settings).unwrap();
    p.camera(&settings.topics.registry, &camera("cam-capped", 30.0, 1)).unwrap();
    p.wait().unwrap();
    let limit = |bytes: &str| {
        trigger_kafka::admin::set_topic_config(&settings, &settings.topics.changelog, "max.message.bytes", bytes)
            .unwrap()
    };
    // Small enough to refuse an incident-state record, large enough for a transaction marker (an aborted
    // transaction must still be able to end).
    limit("150");
    let mut a = Instance::new(dir.path(), "a", &settings, &policy, "permanent_attempts = 1\n");
    a.start();
    wait("the first instance decides", Duration::from_secs(60), || a.deciding(), || a.logs());
    send(&settings, &[common::shots_fired("FIRST", 1, Status::New)]);
    // The decider delivers the START, is refused the incident state, and stops.
    let logs_a = a.log.clone();
    wait(
        "the decider to stop on the refused state record",
        Duration::from_secs(60),
        || a.child.as_mut().unwrap().try_wait().unwrap().is_some(),
        || std::fs::read_to_string(logs_a.with_extension("1.log")).unwrap_or_default(),
    );
    let logs = a.logs();
    assert!(logs.contains(&settings.topics.changelog), "it names the topic that refused the record: {logs}");
    let before = read(&settings);
    if delivery == Delivery::AtLeastOnce {
        assert_eq!(before.commands.len(), 1, "at-least-once: the START went out before the state was refused");
    } else {
        assert!(before.commands.is_empty(), "exactly-once: the aborted transaction's START is never seen");
    }
    limit("1048588");
    std::thread::sleep(Duration::from_secs(5));
    let mut b = Instance::new(dir.path(), "b", &settings, &policy, "");
    b.start();
    a.start();
    wait("a decider", Duration::from_secs(60), || a.deciding() || b.deciding(), || a.logs() + &b.logs());
    send(&settings, &[common::shots_fired("SECOND", 1, Status::New)]);
    send(&settings, &[common::shots_fired("FIRST", 2, Status::Closed)]);
    let t = all_decided(&settings, Duration::from_secs(120));
    check(&t);
    if delivery == Delivery::AtLeastOnce {
        let engine = shipped_engine();
        let second = engine.incident_ref("nashville-mnpd", "SECOND");
        let r = t.audit.iter().map(|(_, a)| a).find(|a| a.incident_ref == second).unwrap();
        assert!(
            r.excluded.iter().any(|x| x.camera_id == "cam-capped" && x.reason == "daily_cap"),
            "the second incident is told the cap is spent: {r:#?}"
        );
    }
}

#[test]
fn at_least_once_a_decider_that_dies_between_its_commands_and_its_state_exceeds_no_cap() {
    dies_between_commands_and_state(Delivery::AtLeastOnce);
}

#[test]
fn exactly_once_a_decider_that_dies_between_its_commands_and_its_state_exceeds_no_cap() {
    dies_between_commands_and_state(Delivery::ExactlyOnce);
}

const INCIDENTS: usize = 24;

fn three_instances_killed_at_random(delivery: Delivery) {
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, bootstrap)) = common::own_broker(&dir.path().join("kafka")) else { return };
    let mut settings = KafkaSettings {
        bootstrap_servers: bootstrap,
        group_id: common::unique::name("adversary"),
        delivery,
        ..Default::default()
    };
    settings.topics.cfs = "adversary.cfs".into();
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 3, 1, 1).unwrap();
    let seed: u64 =
        std::env::var("ADVERSARY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::rng().random());
    eprintln!("ADVERSARY_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Six cameras within 150 m: three an owner allows once a day, three twice.
    let mut p = Publisher::new(&settings).unwrap();
    for i in 0..6 {
        p.camera(&settings.topics.registry, &camera(&format!("cam-{i}"), 20.0 * (i + 1) as f64, 1 + (i as u32 % 2)))
            .unwrap();
    }
    p.wait().unwrap();
    let policy = common::root().join("config/policy.toml");
    let mut instances: Vec<Instance> =
        (0..3).map(|i| Instance::new(dir.path(), &format!("i{i}"), &settings, &policy, "")).collect();
    for i in &mut instances {
        i.start();
    }
    wait(
        "a decider",
        Duration::from_secs(60),
        || instances.iter().any(Instance::deciding),
        || instances.iter().map(Instance::logs).collect(),
    );

    // Incidents open (spread over the CFS partitions by their keys) and close four later, while instances are
    // killed at random points and come back; the broker is killed once.
    let kills = 6;
    let broker_kill_at = rng.random_range(1..kills);
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(500..3000));
    let mut done_kills = 0;
    for i in 0..INCIDENTS + 4 {
        let mut batch = Vec::new();
        if i < INCIDENTS {
            batch.push(common::shots_fired(&format!("ADV-{i}"), 1, Status::New));
        }
        if i >= 4 {
            batch.push(common::shots_fired(&format!("ADV-{}", i - 4), 2, Status::Closed));
        }
        send(&settings, &batch);
        std::thread::sleep(Duration::from_millis(rng.random_range(100..600)));
        if Instant::now() >= next_kill && done_kills < kills {
            done_kills += 1;
            if done_kills == broker_kill_at {
                eprintln!("kill: the broker");
                common::kafka_sh(&dir.path().join("kafka"), "kill").unwrap();
                std::thread::sleep(Duration::from_millis(rng.random_range(500..4000)));
                common::kafka_sh(&dir.path().join("kafka"), "start").unwrap();
            } else {
                // The decider more often than not: that is where a crash can cost a cap.
                let decider = instances.iter().position(Instance::deciding);
                let victim = match decider {
                    Some(d) if rng.random_bool(0.7) => d,
                    _ => rng.random_range(0..instances.len()),
                };
                eprintln!("kill: {} (deciding: {:?})", instances[victim].name, decider.map(|d| &instances[d].name));
                instances[victim].kill();
                std::thread::sleep(Duration::from_millis(rng.random_range(0..3000)));
                instances[victim].start();
            }
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(1000..5000));
        }
    }
    let t = all_decided(&settings, Duration::from_secs(180));
    let logs: String = instances.iter().map(Instance::logs).collect();
    let starts = t.commands.iter().filter(|c| c.action == pb::CommandAction::Start as i32).count();
    eprintln!(
        "{} events, {} commands ({starts} STARTs), {} decision records",
        t.sent.len(),
        t.commands.len(),
        t.audit.len()
    );
    assert!(starts > 0, "cameras were started at all: {logs}");
    check(&t);
}

#[test]
fn at_least_once_three_instances_killed_at_random_keep_every_cap_and_stop_every_camera() {
    three_instances_killed_at_random(Delivery::AtLeastOnce);
}

#[test]
fn exactly_once_three_instances_killed_at_random_keep_every_cap_and_stop_every_camera() {
    three_instances_killed_at_random(Delivery::ExactlyOnce);
}
