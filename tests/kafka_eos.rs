//! Exactly-once, proven on Apache Kafka (a broker of this test's own, from scripts/kafka.sh): the service binary
//! in `exactly_once` mode decides 10,000 events while it is SIGKILLed at ten random points and restarted each
//! time, and the broker itself is killed (kill -9) and restarted once mid-stream. A `read_committed` reader
//! then finds exactly the commands an uninterrupted run produces — the same (command_id, camera, action)
//! multiset, each once — one audit record per event, every audit partition's chain intact, and one owner notice
//! per START. (librdkafka's mock cluster writes no transaction markers and tansu has no transactions: only a
//! real broker can show this.)

mod common;

use prost::Message as _;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trigger_core::{Action, CallForService, Engine, Status};
use trigger_kafka::{inspect, KafkaSettings, Publisher};
use trigger_proto::v1 as pb;

const INCIDENTS: usize = 5_000; // two revisions each (NEW, CLOSED): 10,000 events
const CAMERAS: usize = 4;
const KILLS: usize = 10;

fn events() -> Vec<CallForService> {
    let mut v = Vec::with_capacity(2 * INCIDENTS);
    for i in 0..INCIDENTS {
        v.push(common::shots_fired(&format!("EOS-{i:05}"), 1, Status::New));
    }
    for i in 0..INCIDENTS {
        v.push(common::shots_fired(&format!("EOS-{i:05}"), 2, Status::Closed));
    }
    v
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dispatch-trigger"))
        .current_dir(common::root())
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .expect("service binary starts")
}

fn count(settings: &KafkaSettings, topic: &str) -> i64 {
    inspect::topic_record_count(settings, topic).unwrap_or(0)
}

#[test]
fn exactly_once_through_ten_sigkills_and_a_broker_kill_on_apache_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("kafka");
    let Some((_broker, bootstrap)) = common::own_broker(&broker_dir) else { return };
    let mut settings = KafkaSettings {
        bootstrap_servers: bootstrap,
        group_id: common::unique::name("eos-proof"),
        ..Default::default()
    };
    settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
    settings.transactional_id = Some(format!("{}-eos", settings.group_id));
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 3, 1, 1).unwrap();
    // A backlog guard long enough that no event is refused as stale, however long the kills and restarts
    // take: what the uninterrupted run decides must not depend on timing.
    let policy = common::policy_replacing(dir.path(), "max_lag_s = 120", "max_lag_s = 86400");
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "policy = \"{}\"\n{}[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [service]\npoll_timeout_ms = 20\nmax_batch = 200\n[http]\nlisten = \"\"\n[log]\nlevel = \"info\"\n",
            policy.display(),
            common::kafka_section(&settings)
        ),
    )
    .unwrap();

    // The registry and the whole stream first: a backlog the service works through while it is killed.
    let mut p = Publisher::new(&settings).unwrap();
    for i in 0..CAMERAS {
        p.camera(&settings.topics.registry, &common::camera(&format!("cam-{i}"), 20.0 + 30.0 * i as f64)).unwrap();
    }
    let evs = events();
    for ev in &evs {
        p.cfs(&settings.topics.cfs, ev).unwrap();
    }
    p.wait().unwrap();

    // What an uninterrupted run commands: each incident starts every camera, then stops it.
    let engine = Engine::new(dispatch_trigger::config::load_policy(&policy).unwrap());
    let mut expected: BTreeMap<(String, String, Action), usize> = BTreeMap::new();
    for i in 0..INCIDENTS {
        let r = engine.incident_ref("nashville-mnpd", &format!("EOS-{i:05}"));
        for c in 0..CAMERAS {
            for a in [Action::Start, Action::Stop] {
                let cam = format!("cam-{c}");
                expected.insert((trigger_core::engine::command_id(&r, &cam, a), cam, a), 1);
            }
        }
    }

    let log = dir.path().join("service.log");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261123);
    let total_commands = (2 * INCIDENTS * CAMERAS) as i64;
    for k in 0..KILLS {
        let mut child = spawn(&config, &log);
        // Run until a random number of further command records reached the broker (committed or not), then die.
        let base = count(&settings, &settings.topics.commands);
        let target = base + rng.random_range(300..2500);
        let t = Instant::now();
        while count(&settings, &settings.topics.commands) < target.min(total_commands)
            && t.elapsed() < Duration::from_secs(60)
        {
            if child.try_wait().unwrap().is_some() {
                break; // after the broker kill, a failed transaction ends the process (crash-only): restart it
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if k == KILLS / 2 {
            // The broker dies mid-stream (kill -9) and comes back with its data on the same port.
            common::kafka_sh(&broker_dir, "kill").expect("broker killed");
            std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
            common::kafka_sh(&broker_dir, "start").expect("broker restarted");
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        eprintln!(
            "kill {k}: {} of {total_commands} command records on the broker",
            count(&settings, &settings.topics.commands)
        );
    }

    // A last instance finishes the stream; then SIGTERM.
    let mut child = spawn(&config, &log);
    let t = Instant::now();
    let audit = loop {
        let audit =
            inspect::read_topic(&settings, &settings.topics.audit, true, Duration::from_secs(60)).unwrap_or_default();
        if audit.len() >= evs.len() {
            break audit;
        }
        if child.try_wait().unwrap().is_some() {
            child = spawn(&config, &log);
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "{} of {} events decided and committed; log:\n{}",
            audit.len(),
            evs.len(),
            std::fs::read_to_string(&log).unwrap_or_default().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "SIGTERM: exit 0");

    // Exactly the uninterrupted run's commands, each once.
    let mut got: BTreeMap<(String, String, Action), usize> = BTreeMap::new();
    for c in common::commands(&settings, true) {
        *got.entry((c.command_id, c.camera_id, c.action)).or_default() += 1;
    }
    let dupes: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dupes.is_empty(), "commands committed more than once: {dupes:?}");
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).take(5).collect();
    assert!(missing.is_empty(), "commands lost: {missing:?}");
    assert_eq!(got, expected, "the committed commands are those of an uninterrupted run");

    // One audit record per event, each partition's chain intact.
    assert_eq!(audit.len(), evs.len(), "one committed audit record per event");
    let mut parts: BTreeMap<i32, Vec<Result<pb::ActivationRecord, String>>> = BTreeMap::new();
    for r in &audit {
        parts
            .entry(r.partition)
            .or_default()
            .push(Ok(pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap()));
    }
    for (p, recs) in &parts {
        let v = trigger_audit::verify(recs, Some(trigger_audit::GENESIS));
        assert!(v.is_ok(), "audit partition {p}: {v:?}");
    }
    let notices = inspect::read_topic(&settings, &settings.topics.notices, true, Duration::from_secs(60)).unwrap();
    assert_eq!(notices.len(), INCIDENTS * CAMERAS, "one owner notice per START");
}
