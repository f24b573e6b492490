//! Broker faults on Apache Kafka (a broker of this test's own, from scripts/kafka.sh), mid-stream: SIGSTOP for
//! 10 s, then kill -9 and a restart with the data kept. No event is lost (each one is decided and audited
//! once); a START is only ever commanded for an event decided inside the latency budget (`max_lag_s`, 5 s
//! here), the ones the stall delayed beyond it are audited as `refused_stale`; `/readyz` answers 503 while the
//! brokers do not answer beyond the configured grace, and 200 again after.

mod common;

use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};
use trigger_core::Status;
use trigger_kafka::{inspect, KafkaSettings, Publisher};
use trigger_proto::v1 as pb;

const EVENTS: usize = 600;
const MAX_LAG_MS: i64 = 5_000;

fn readyz(port: u16) -> Option<u16> {
    common::http_get(port, "/readyz")?.split_whitespace().nth(1)?.parse().ok()
}

/// Poll /readyz until it answers `code`; returns false after `within`.
fn wait_ready(port: u16, code: u16, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if readyz(port) == Some(code) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_stalled_and_a_killed_broker_lose_no_event_and_start_nothing_late_on_apache_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("kafka");
    let Some((_broker, bootstrap)) = common::own_broker(&broker_dir) else { return };
    let settings =
        KafkaSettings { bootstrap_servers: bootstrap, group_id: common::unique::name("faults"), ..Default::default() };
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 2, 1, 1).unwrap();
    let mut p = Publisher::new(&settings).unwrap();
    for i in 0..3 {
        p.camera(&settings.topics.registry, &common::camera(&format!("cam-{i}"), 20.0 + 30.0 * i as f64)).unwrap();
    }
    p.wait().unwrap();
    let port = common::unique::port();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "policy = \"{}\"\n{}[kafka.consumer]\n\"session.timeout.ms\" = \"45000\"\n\
             [service]\npoll_timeout_ms = 20\nbroker_grace_ms = 3000\nregistry_sync_timeout_ms = 500\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"info\"\n",
            common::policy_replacing(dir.path(), "max_lag_s = 120", &format!("max_lag_s = {}", MAX_LAG_MS / 1000))
                .display(),
            common::kafka_section(&settings)
        ),
    )
    .unwrap();
    let log = dir.path().join("service.log");
    let mut child = common::serve_until_ready(&config, &log, port, &[]);

    // Calls stream in (~40/s, each stamped when it is produced) while the broker stalls and dies.
    let emitted: BTreeMap<String, i64> = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut p = Publisher::new(&settings).unwrap();
            let mut emitted = BTreeMap::new();
            for i in 0..EVENTS {
                let ev = common::shots_fired(&format!("F-{i:04}"), 1, Status::New);
                emitted.insert(ev.incident_id.clone(), ev.emitted_at);
                p.cfs(&settings.topics.cfs, &ev).unwrap();
                std::thread::sleep(Duration::from_millis(25));
            }
            p.wait().unwrap();
            emitted
        });
        std::thread::sleep(Duration::from_secs(3));
        common::kafka_sh(&broker_dir, "pause").expect("SIGSTOP");
        let stalled = Instant::now();
        assert!(wait_ready(port, 503, Duration::from_secs(9)), "/readyz still 200 with the broker stopped");
        std::thread::sleep(Duration::from_secs(10).saturating_sub(stalled.elapsed()));
        common::kafka_sh(&broker_dir, "resume").expect("SIGCONT");
        assert!(wait_ready(port, 200, Duration::from_secs(60)), "/readyz not 200 after the broker came back");
        std::thread::sleep(Duration::from_secs(2));
        common::kafka_sh(&broker_dir, "kill").expect("kill -9");
        std::thread::sleep(Duration::from_secs(1));
        common::kafka_sh(&broker_dir, "start").expect("restart with data kept");
        assert!(wait_ready(port, 200, Duration::from_secs(60)), "/readyz not 200 after the broker restart");
        sender.join().unwrap()
    });

    // Every event decided and audited (at-least-once: a batch whose offsets could not be committed while the
    // broker was down may be decided again; never lost).
    let t = Instant::now();
    let audit = loop {
        let a = inspect::read_topic(&settings, &settings.topics.audit, false, Duration::from_secs(30)).unwrap();
        if a.len() >= EVENTS || t.elapsed() > Duration::from_secs(120) {
            break a;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "SIGTERM: exit 0");
    let records: Vec<pb::ActivationRecord> =
        audit.iter().map(|r| pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap()).collect();
    let engine =
        trigger_core::Engine::new(dispatch_trigger::config::load_policy(&dir.path().join("policy.toml")).unwrap());
    let by_ref: BTreeMap<String, &String> =
        emitted.keys().map(|id| (engine.incident_ref("nashville-mnpd", id), id)).collect();
    let decided: BTreeSet<&String> = records.iter().filter_map(|r| by_ref.get(&r.incident_ref).copied()).collect();
    assert_eq!(decided.len(), EVENTS, "no event lost");
    eprintln!("{} audit records for {EVENTS} events", records.len());

    // STARTs only inside the budget; the rest audited with their outcome.
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        *outcomes.entry(r.outcome.as_str()).or_default() += 1;
        let lag = r.decided_at_ms - emitted[by_ref[&r.incident_ref]];
        if r.cameras_started > 0 || !r.commanded.is_empty() {
            assert!(lag <= MAX_LAG_MS, "a START for an event decided {lag} ms after it was emitted");
        }
        if r.outcome == "refused_stale" {
            assert!(lag > MAX_LAG_MS, "refused as stale at {lag} ms");
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    assert!(outcomes.get("triggered").copied().unwrap_or(0) > 0, "{outcomes:?}");
    assert!(
        outcomes.get("refused_stale").copied().unwrap_or(0) > 0,
        "the 10 s stall made some events stale: {outcomes:?}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("broker connection lost") || log.contains("delivery failed"), "the fault was seen");
}
