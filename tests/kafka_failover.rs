//! Several instances in one consumer group on Apache Kafka (a broker of this test's own): readiness tells which
//! instance decides, and a survivor takes over a killed owner's partition and decides its next events.
//!
//! One CFS partition, two instances: exactly one holds it and answers `/readyz` 200, the other is a standby
//! and answers 503, and each one's `dispatch_trigger_ready` gauge says what its `/readyz` says. SIGKILL of the
//! owner: the standby takes the partition over and decides the next event. SIGSTOP of the new owner for longer
//! than the session timeout: it loses its membership, a third instance takes over, and the one that hung
//! answers 503 once it runs again and decides nothing. How long a failover takes is measured in BENCHMARKS.md,
//! not asserted here.

mod common;

use prost::Message as _;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use trigger_core::Status;
use trigger_kafka::{inspect, KafkaSettings, Publisher};
use trigger_proto::v1 as pb;

struct Instance {
    child: Child,
    port: u16,
}

impl Instance {
    fn start(dir: &std::path::Path, settings: &KafkaSettings, name: &str) -> Self {
        let port = common::unique::port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "policy = \"{}\"\n{}[service]\npoll_timeout_ms = 20\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
                 [log]\nlevel = \"info\"\n",
                common::root().join("config/policy.toml").display(),
                common::kafka_section(settings)
            ),
        )
        .unwrap();
        let child = common::serve_until_up(&config, &dir.join(format!("{name}.log")), port);
        Self { child, port }
    }

    fn readyz(&self) -> Option<u16> {
        common::http_get(self.port, "/readyz")?.split_whitespace().nth(1)?.parse().ok()
    }

    /// /readyz status, and whether the `dispatch_trigger_ready` gauge says the same. /readyz and /metrics are
    /// two requests and the instance's state moves between them (a rebalance, a takeover), so the gauge is
    /// read between two /readyz answers and counts only when both say the same: the state did not move while
    /// it was read. Readings are taken again until two agree (within 10 s); None if the instance does not
    /// answer.
    fn readiness(&self) -> Option<(u16, bool)> {
        let by = Instant::now() + Duration::from_secs(10);
        loop {
            let before = self.readyz()?;
            let metrics = common::http_get(self.port, "/metrics")?;
            let gauge = metrics.lines().find(|l| l.starts_with("dispatch_trigger_ready "))?.ends_with(" 1");
            let after = self.readyz()?;
            if before == after {
                return Some((before, gauge == (before == 200)));
            }
            assert!(Instant::now() < by, "/readyz kept changing for 10 s ({before}, then {after})");
        }
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `a` answers `want_a` and `b` answers `want_b`, every gauge agreeing with its /readyz.
fn settle(a: &Instance, want_a: u16, b: &Instance, want_b: u16, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if let (Some((ca, ga)), Some((cb, gb))) = (a.readiness(), b.readiness()) {
            assert!(ga && gb, "a gauge disagrees with /readyz");
            if (ca, cb) == (want_a, want_b) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Produce one shots-fired call and wait until its audit record is on the audit topic.
fn decided(settings: &KafkaSettings, incident: &str) -> bool {
    let ev = common::shots_fired(incident, 1, Status::New);
    let mut p = Publisher::new(settings).unwrap();
    p.cfs(&settings.topics.cfs, &ev).unwrap();
    p.wait().unwrap();
    let engine = trigger_core::Engine::new(
        dispatch_trigger::config::load_policy(&common::root().join("config/policy.toml")).unwrap(),
    );
    let want = engine.incident_ref("nashville-mnpd", incident);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let audit = inspect::read_topic(settings, &settings.topics.audit, false, Duration::from_secs(10)).unwrap();
        if audit
            .iter()
            .any(|r| pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap().incident_ref == want)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn readiness_names_the_instance_that_decides_and_a_survivor_takes_over_on_apache_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("kafka");
    let Some((_broker, bootstrap)) = common::own_broker(&broker_dir) else { return };
    let group_id = common::unique::name("failover");
    let settings = KafkaSettings { bootstrap_servers: bootstrap, group_id, ..Default::default() };
    trigger_kafka::admin::create_topics(&settings, &settings.topics, 1, 1, 1).unwrap();
    let mut p = Publisher::new(&settings).unwrap();
    p.camera(&settings.topics.registry, &common::camera("cam-0", 30.0)).unwrap();
    p.wait().unwrap();

    let a = Instance::start(dir.path(), &settings, "a");
    let t = Instant::now();
    while a.readiness().map(|r| r.0) != Some(200) {
        assert!(t.elapsed() < Duration::from_secs(60), "the first instance never held the partition");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(decided(&settings, "FO-1"));
    // A second instance joins: one decider; the other is a standby and says so (once it has joined the
    // leadership group).
    let b = Instance::start(dir.path(), &settings, "b");
    let t = Instant::now();
    while !common::http_get(b.port, "/readyz").is_some_and(|r| r.contains("a standby")) {
        assert!(t.elapsed() < Duration::from_secs(60), "the second instance never joined the group");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (owner, standby) = {
        let t = Instant::now();
        loop {
            match (a.readiness(), b.readiness()) {
                (Some((200, true)), Some((503, true))) => break (&a, &b),
                (Some((503, true)), Some((200, true))) => break (&b, &a),
                _ => assert!(t.elapsed() < Duration::from_secs(60), "no single owner after the second joined"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(owner.readiness(), Some((200, true)));
    let why = common::http_get(standby.port, "/readyz").unwrap();
    assert!(why.contains(" 503 ") && why.contains("no partition assigned"), "{why}");
    // Both are available to an orchestrator: the decider, and a standby that can take over.
    for i in [owner, standby] {
        let r = common::http_get(i.port, "/standbyz").unwrap();
        assert!(r.contains(" 200 "), "{r}");
    }

    // SIGKILL of the owner: the standby takes over and decides the next event.
    owner.signal("-KILL");
    assert!(settle(standby, 200, standby, 200, Duration::from_secs(60)), "the survivor never took over");
    assert!(decided(&settings, "FO-2"), "the survivor decides the partition's next event");

    // A third instance stands by; the decider hangs (SIGSTOP) for longer than the session timeout: the third
    // takes over. When the hung one runs again it must not decide (its lease ran out while it hung): it answers
    // 503, and the next event is decided once, by the new decider.
    let c = Instance::start(dir.path(), &settings, "c");
    let t = Instant::now();
    while !common::http_get(c.port, "/readyz").is_some_and(|r| r.contains("a standby")) {
        assert!(t.elapsed() < Duration::from_secs(60), "the third instance never joined the group");
        std::thread::sleep(Duration::from_millis(100));
    }
    standby.signal("-STOP");
    assert!(settle(&c, 200, &c, 200, Duration::from_secs(60)), "the third never took over from the hung one");
    assert!(decided(&settings, "FO-3"));
    standby.signal("-CONT");
    assert!(settle(&c, 200, standby, 503, Duration::from_secs(60)), "the hung one still says it decides");
    assert!(decided(&settings, "FO-4"));
    std::thread::sleep(Duration::from_secs(2));
    let engine = trigger_core::Engine::new(
        dispatch_trigger::config::load_policy(&common::root().join("config/policy.toml")).unwrap(),
    );
    let want = engine.incident_ref("nashville-mnpd", "FO-4");
    let audit = inspect::read_topic(&settings, &settings.topics.audit, false, Duration::from_secs(10)).unwrap();
    let times = audit
        .iter()
        .filter(|r| pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap().incident_ref == want)
        .count();
    assert_eq!(times, 1, "one decider decided FO-4");
    drop(a);
    drop(b);
    drop(c);
}
