//! The Kafka service end to end, each test on two brokers (`on_every_broker!`): Apache Kafka, the reference
//! broker (single-node KRaft, from Maven Central: scripts/kafka.sh), and librdkafka's mock cluster (the real
//! protocol in process; broker faults). The Kafka client is never mocked.

mod common;

use common::{camera, shots_fired};
use dispatch_trigger::serve::{self, ServeConfig};
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_core::{Action, CameraCommand, Category, Engine, Location, Status};
use trigger_kafka::codec::CameraStatus;
use trigger_kafka::service::{H_OFFSET, H_REASON, H_TOPIC};
use trigger_kafka::{inspect, EmbeddedCluster, Health, KafkaSettings, Publisher, RunStats};
use trigger_proto::v1 as pb;

fn setup(partitions: i32) -> (EmbeddedCluster, KafkaSettings) {
    let cluster = EmbeddedCluster::start(1).expect("mock cluster");
    let settings = KafkaSettings {
        bootstrap_servers: cluster.bootstrap_servers(),
        group_id: common::unique::name("test"),
        ..KafkaSettings::default()
    };
    cluster.create_topics(&settings.topics, partitions).expect("topics");
    (cluster, settings)
}

fn config(settings: &KafkaSettings) -> ServeConfig {
    let mut c = ServeConfig { kafka: settings.clone(), ..ServeConfig::default() };
    c.service.poll_timeout_ms = 20;
    c.service.registry_sync_timeout_ms = 5000;
    c.http.listen = String::new();
    // Rebalances within a test's time: members learn of a joining member at their next heartbeat.
    c.kafka.consumer.insert("heartbeat.interval.ms".into(), "100".into());
    c.kafka.consumer.insert("session.timeout.ms".into(), "15000".into());
    c
}

fn publish(settings: &KafkaSettings, f: impl FnOnce(&mut Publisher, &KafkaSettings)) {
    let mut p = Publisher::new(settings).unwrap();
    f(&mut p, settings);
    p.wait().expect("acknowledged");
}

/// The service on a thread; stopped (as by SIGTERM) when dropped or by `stop()`.
struct Running<'s> {
    stop: &'s AtomicBool,
    health: &'s Health,
    handle: Option<std::thread::ScopedJoinHandle<'s, anyhow::Result<RunStats>>>,
}

/// A failing assertion drops the handle: stop the service, so the scope can end and the failure show.
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

impl Running<'_> {
    fn wait_handled(&self, n: u64) {
        let t = Instant::now();
        while self.health.handled.load(Relaxed) < n {
            assert!(!self.handle.as_ref().unwrap().is_finished(), "the service stopped early: {:?}", self.health);
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "handled {} of {n} events",
                self.health.handled.load(Relaxed)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(mut self) -> RunStats {
        self.stop.store(true, Relaxed);
        self.handle.take().unwrap().join().expect("service thread").expect("service ran")
    }
}

fn start<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    cfg: &'s ServeConfig,
    health: &'s Health,
    stop: &'s AtomicBool,
) -> Running<'s> {
    let handle = s.spawn(move || serve::run(cfg, health, stop));
    let t = Instant::now();
    while !health.ready.load(Relaxed) {
        assert!(!handle.is_finished(), "service ended before ready: {:?}", handle.join().unwrap().err());
        assert!(t.elapsed() < Duration::from_secs(60), "not ready in 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    Running { stop, health, handle: Some(handle) }
}

fn commands(settings: &KafkaSettings) -> Vec<CameraCommand> {
    common::commands(settings, false)
}

fn audit(settings: &KafkaSettings) -> Vec<pb::ActivationRecord> {
    inspect::read_topic(settings, &settings.topics.audit, false, Duration::from_secs(30))
        .unwrap()
        .iter()
        .map(|m| pb::ActivationRecord::decode(m.payload.as_deref().unwrap()).unwrap())
        .collect()
}

fn incident_ref(incident: &str) -> String {
    let policy = dispatch_trigger::config::load_policy(std::path::Path::new("config/policy.toml")).unwrap();
    Engine::new(policy).incident_ref("nashville-mnpd", incident)
}

fn cameras_of(cmds: &[CameraCommand], incident: &str, action: Action) -> BTreeSet<String> {
    let r = incident_ref(incident);
    cmds.iter().filter(|c| c.incident_ref == r && c.action == action).map(|c| c.camera_id.clone()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_broker_outage_loses_no_event() {
    if common::fast_tier_skips("a fault test (the broker down)") {
        return;
    }
    let (cluster, settings) = setup(2);
    let cfg = config(&settings);
    publish(&settings, |p, s| p.camera(&s.topics.registry, &camera("cam-0", 50.0)).unwrap());
    let (health, stop) = (Health::default(), AtomicBool::new(false));
    std::thread::scope(|s| {
        let svc = start(s, &cfg, &health, &stop);
        publish(&settings, |p, s| {
            for i in 0..20 {
                p.cfs(&s.topics.cfs, &shots_fired(&format!("PRE-{i}"), 1, Status::New)).unwrap();
            }
        });
        svc.wait_handled(20);
        // Down while more events are produced and the service is polling; back after 3 s. The producer below
        // (librdkafka) holds its records until the broker returns, as the service holds its outputs.
        cluster.broker_down(1).unwrap();
        let sender = s.spawn(|| {
            publish(&settings, |p, s| {
                for i in 0..20 {
                    p.cfs(&s.topics.cfs, &shots_fired(&format!("DURING-{i}"), 1, Status::New)).unwrap();
                }
            })
        });
        std::thread::sleep(Duration::from_secs(3));
        cluster.broker_up(1).unwrap();
        sender.join().unwrap();
        svc.wait_handled(40);
        svc.stop();
    });
    let decided: BTreeSet<String> = audit(&settings).into_iter().map(|a| a.incident_ref).collect();
    for i in 0..20 {
        for phase in ["PRE", "DURING"] {
            assert!(decided.contains(&incident_ref(&format!("{phase}-{i}"))), "{phase}-{i} was not decided");
        }
    }
    let cmds = commands(&settings);
    assert_eq!(cmds.iter().filter(|c| c.action == Action::Start).count(), 40, "one START per incident");
}
/// Readiness while the group membership is lost, and the membership watchdog (the mock cluster's coordinator
/// forgets the member and refuses its joins): `/readyz`'s answer is 503 with the reason while the consumer is
/// without membership, the watchdog creates the consumer anew once the bound has passed, and when the
/// coordinator accepts joins again the instance decides again.
#[test]
fn a_lost_membership_is_not_ready_and_the_watchdog_creates_the_consumer_anew() {
    if common::fast_tier_skips("a fault test (the group membership lost)") {
        return;
    }
    let (cluster, settings) = setup(1);
    let mut cfg = config(&settings);
    cfg.service.membership_watchdog_ms = 2_000;
    publish(&settings, |p, s| p.camera(&s.topics.registry, &camera("cam-0", 50.0)).unwrap());
    let health = Health::default();
    let stop = AtomicBool::new(false);
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(60), "{what}: {:?}", health.readiness(trigger_kafka::wall_ms()));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::scope(|s| {
        let svc = start(s, &cfg, &health, &stop);
        wait("ready", &|| health.readiness(trigger_kafka::wall_ms()).is_ok());
        cluster.lose_group_memberships(100_000);
        wait("not ready once the membership is lost", &|| {
            health.readiness(trigger_kafka::wall_ms()).is_err_and(|why| why.contains("membership was lost"))
        });
        wait("the watchdog fired", &|| health.consumers_recreated.load(Relaxed) >= 1);
        assert!(health.readiness(trigger_kafka::wall_ms()).is_err(), "still without membership");
        cluster.accept_joins();
        wait("ready again", &|| health.readiness(trigger_kafka::wall_ms()).is_ok());
        publish(&settings, |p, s| p.cfs(&s.topics.cfs, &shots_fired("W-1", 1, Status::New)).unwrap());
        svc.wait_handled(1);
        svc.stop();
    });
}

fn committed_commands(settings: &KafkaSettings) -> Vec<CameraCommand> {
    common::commands(settings, true)
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let code = body.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body)
}

#[test]
fn topics_create_keeps_the_audit_trail_forever_and_dead_letters_a_week() {
    let Some(b) = common::Broker::apache() else { return };
    let settings = b.settings(2);
    let audit = inspect::topic_config(&settings, &settings.topics.audit).unwrap();
    assert_eq!(audit["retention.ms"], "-1", "a cluster default (often 7 days) would expire the audit trail");
    let dlq = inspect::topic_config(&settings, &settings.topics.dead_letter).unwrap();
    assert_eq!(dlq["retention.ms"], trigger_kafka::admin::DEAD_LETTER_RETENTION_MS);
    let registry = inspect::topic_config(&settings, &settings.topics.registry).unwrap();
    assert_eq!(registry["cleanup.policy"], "compact");
}

crate::on_every_broker! {
    fn one_bad_camera_never_stops_an_exactly_once_deployment_across_restarts(b: &Broker) {
        let mut settings = b.settings(2);
        settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
        let mut cfg = config(&settings);
        cfg.kafka.transactional_id = Some(format!("{}-eos", settings.group_id));
        publish(&settings, |p, s| {
            p.camera(&s.topics.registry, &camera("cam-0", 40.0)).unwrap();
            p.raw(&s.topics.registry, b"cam-bad", b"\x08\xff\xff not a camera").unwrap();
        });
        // Two runs: the registry is re-read from its start at each, so the bad record comes back every time.
        for (run, incident) in ["EOS-A", "EOS-B"].into_iter().enumerate() {
            let (health, stop) = (Health::default(), AtomicBool::new(false));
            std::thread::scope(|s| {
                let svc = start(s, &cfg, &health, &stop);
                publish(&settings, |p, s| p.cfs(&s.topics.cfs, &shots_fired(incident, 1, Status::New)).unwrap());
                svc.wait_handled(1);
                let stats = svc.stop();
                assert_eq!(stats.registry.bad, 1, "run {run}");
            });
        }
        let cmds = common::commands(&settings, true);
        for incident in ["EOS-A", "EOS-B"] {
            assert_eq!(cameras_of(&cmds, incident, Action::Start), set(&["cam-0"]), "{incident} decided and committed");
        }
        let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, true, Duration::from_secs(30)).unwrap();
        // (The mock cluster does not keep offsets committed in a transaction, so there the second run decides the
        // first run's event again and dead-letters it as a duplicate revision: count the registry's letters.)
        let registry = settings.topics.registry.as_bytes();
        let dlq: Vec<_> = dlq.into_iter().filter(|m| m.header(H_TOPIC) == Some(registry)).collect();
        // Dead-lettered at each start (the registry is re-read), outside the transactions; each copy names its
        // source record (dt.source.partition / offset), so copies can be told from distinct bad records.
        assert!(dlq.len() >= 2, "{} dead letters", dlq.len());
        assert!(dlq.iter().all(|m| m.key.as_deref() == Some(&b"cam-bad"[..]) && m.header(H_OFFSET).is_some()));
    }

    fn a_refused_record_too_large_for_its_dead_letter_keeps_a_digest_and_the_service_goes_on(b: &Broker) {
        for delivery in [trigger_kafka::Delivery::AtLeastOnce, trigger_kafka::Delivery::ExactlyOnce] {
            let mut settings = b.settings(1);
            settings.delivery = delivery;
            let mut cfg = config(&settings);
            if delivery == trigger_kafka::Delivery::ExactlyOnce {
                cfg.kafka.transactional_id = Some(format!("{}-eos", settings.group_id));
            }
            publish(&settings, |p, s| p.camera(&s.topics.registry, &camera("cam-0", 40.0)).unwrap());
            // Just under librdkafka's 1,000,000-byte default: the CAD's producer accepts it; its dead letter
            // (bytes + key + headers) would not fit.
            let huge = vec![b'x'; 999_000];
            let (health, stop) = (Health::default(), AtomicBool::new(false));
            std::thread::scope(|s| {
                let svc = start(s, &cfg, &health, &stop);
                publish(&settings, |p, s| {
                    p.raw(&s.topics.cfs, &[b'k'; 900], &huge).unwrap();
                    p.cfs(&s.topics.cfs, &shots_fired("AFTER-HUGE", 1, Status::New)).unwrap();
                });
                svc.wait_handled(2);
                let stats = svc.stop();
                assert_eq!(stats.dead_letters, 1, "{delivery:?}");
            });
            let committed = delivery == trigger_kafka::Delivery::ExactlyOnce;
            let cmds = common::commands(&settings, committed);
            assert_eq!(cameras_of(&cmds, "AFTER-HUGE", Action::Start), set(&["cam-0"]), "{delivery:?}");
            let dlq =
                inspect::read_topic(&settings, &settings.topics.dead_letter, committed, Duration::from_secs(30)).unwrap();
            assert_eq!(dlq.len(), 1);
            let h = |k: &str| String::from_utf8_lossy(dlq[0].header(k).unwrap()).into_owned();
            assert_eq!(h(H_REASON), "oversized_message");
            assert_eq!(h(trigger_kafka::service::H_PAYLOAD_DROPPED), "too_large");
            assert_eq!(h(trigger_kafka::service::H_ORIGINAL_BYTES), "999000");
            assert!(dlq[0].payload.as_deref().unwrap_or_default().is_empty());
        }
    }

    fn full_loop_dead_letters_bad_input_and_keeps_the_good_events_around_it(b: &Broker) {
        let settings = b.settings(3);
        let cfg = config(&settings);
        publish(&settings, |p, s| {
            for (i, d) in [40.0, 90.0, 160.0].into_iter().enumerate() {
                p.camera(&s.topics.registry, &camera(&format!("cam-{i}"), d)).unwrap();
            }
            // A registry record that is not a camera: dead-lettered, never indexed.
            p.raw(&s.topics.registry, b"cam-bad", b"\x08\xff\xff not a camera").unwrap();
        });
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            let mut null_island = shots_fired("INC-0", 1, Status::New);
            null_island.location = Some(Location { lat: 0.0, lon: 0.0, uncertainty_m: 0.0 });
            let oversized = vec![b'x'; trigger_cad::DEFAULT_MAX_MESSAGE_BYTES + 1];
            publish(&settings, |p, s| {
                let t = &s.topics.cfs;
                p.cfs(t, &shots_fired("INC-1", 1, Status::New)).unwrap();
                p.raw(t, b"garbage", b"\xff\xfe this is not protobuf").unwrap();
                p.cfs(t, &shots_fired("INC-2", 1, Status::New)).unwrap();
                p.cfs(t, &null_island).unwrap();
                p.raw(t, b"big", &oversized).unwrap();
                p.cfs(t, &shots_fired("INC-1", 2, Status::Closed)).unwrap();
                p.cfs(t, &shots_fired("INC-1", 2, Status::Closed)).unwrap(); // duplicate revision
            });
            svc.wait_handled(7);
            let stats = svc.stop();
            assert_eq!(stats.events, 7);
            assert_eq!(stats.registry.upserts, 3);
            assert_eq!(stats.registry.bad, 1);
        });

        let cmds = commands(&settings);
        let all = set(&["cam-0", "cam-1", "cam-2"]);
        assert_eq!(cameras_of(&cmds, "INC-1", Action::Start), all, "good events before the bad ones still trigger");
        assert_eq!(cameras_of(&cmds, "INC-2", Action::Start), all, "good events between bad ones still trigger");
        assert_eq!(cameras_of(&cmds, "INC-1", Action::Stop), all, "closing the incident stops its cameras");
        assert_eq!(cmds.len(), 9);
        let records = audit(&settings);
        // Each audit partition is the hash chain of the CFS partition with the same number.
        let parts = inspect::read_topic(&settings, &settings.topics.audit, false, Duration::from_secs(30)).unwrap();
        let mut by_partition: BTreeMap<i32, Vec<Result<pb::ActivationRecord, String>>> = BTreeMap::new();
        for r in parts {
            by_partition
                .entry(r.partition)
                .or_default()
                .push(Ok(pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap()));
        }
        for (p, recs) in &by_partition {
            assert!(trigger_audit::verify(recs, Some(trigger_audit::GENESIS)).is_ok(), "audit partition {p}");
        }
        let outcomes: Vec<String> = records.into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes.iter().filter(|o| *o == "triggered").count(), 2);
        assert_eq!(outcomes.iter().filter(|o| *o == "closed").count(), 1);
        assert_eq!(outcomes.len(), 3, "one audit record per decided event: {outcomes:?}");

        let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, false, Duration::from_secs(30)).unwrap();
        let mut by_reason: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for m in &dlq {
            let get = |k: &str| m.header(k).map(|v| String::from_utf8_lossy(v).into_owned());
            let topic = get(H_TOPIC).unwrap();
            assert!(get(H_OFFSET).unwrap().parse::<i64>().is_ok());
            let reason = get(H_REASON).unwrap();
            if reason == "invalid_camera_record" {
                assert_eq!(topic, settings.topics.registry);
            } else {
                assert_eq!(topic, settings.topics.cfs);
            }
            by_reason.insert(reason, m.payload.clone().unwrap_or_default());
        }
        assert_eq!(
            by_reason.keys().map(String::as_str).collect::<Vec<_>>(),
            ["duplicate_revision", "invalid_camera_record", "malformed_protobuf", "null_island", "oversized_message"]
        );
        assert_eq!(by_reason["malformed_protobuf"], b"\xff\xfe this is not protobuf", "original bytes kept");
        assert_eq!(by_reason["oversized_message"].len(), trigger_cad::DEFAULT_MAX_MESSAGE_BYTES + 1);
        assert_eq!(by_reason["invalid_camera_record"], b"\x08\xff\xff not a camera");
    }

    fn a_registry_camera_that_cannot_be_true_is_dead_lettered_named_and_never_commanded(b: &Broker) {
        let settings = b.settings(3);
        let cfg = config(&settings);
        let mut no_cap = camera("cam-nocap", 10.0);
        no_cap.consent.daily_cap = 0;
        let mut off_globe = camera("cam-offglobe", 20.0);
        off_globe.lat = 129.95;
        let mut negative = camera("cam-negative", 30.0);
        negative.consent.max_radius_m = -5.0;
        publish(&settings, |p, s| {
            for c in [&no_cap, &off_globe, &negative, &camera("cam-ok", 40.0)] {
                p.camera(&s.topics.registry, c).unwrap();
            }
        });
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            publish(&settings, |p, s| p.cfs(&s.topics.cfs, &shots_fired("INC-R", 1, Status::New)).unwrap());
            svc.wait_handled(1);
            let stats = svc.stop();
            assert_eq!((stats.registry.upserts, stats.registry.bad), (1, 3));
        });
        assert_eq!(cameras_of(&commands(&settings), "INC-R", Action::Start), set(&["cam-ok"]), "only the valid camera");
        let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, false, Duration::from_secs(30)).unwrap();
        let mut problems: Vec<String> = dlq
            .iter()
            .map(|m| String::from_utf8_lossy(m.header(trigger_kafka::service::H_CAMERA_PROBLEM).unwrap()).into_owned())
            .collect();
        problems.sort();
        assert_eq!(problems, ["invalid_coordinates", "invalid_radius", "zero_daily_cap"]);
    }

    fn timestamps_off_the_calendar_are_dead_lettered_and_the_service_goes_on(b: &Broker) {
        let settings = b.settings(1);
        let cfg = config(&settings);
        publish(&settings, |p, s| p.camera(&s.topics.registry, &camera("cam-0", 40.0)).unwrap());
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            publish(&settings, |p, s| {
                let mut ancient = shots_fired("INC-MIN", 1, Status::New);
                ancient.emitted_at = i64::MIN;
                let mut far = shots_fired("INC-MAX", 1, Status::New);
                (far.received_at, far.emitted_at) = (i64::MAX - 1, i64::MAX);
                p.cfs(&s.topics.cfs, &ancient).unwrap();
                p.cfs(&s.topics.cfs, &far).unwrap();
                p.cfs(&s.topics.cfs, &shots_fired("INC-OK", 1, Status::New)).unwrap();
            });
            svc.wait_handled(3);
            let stats = svc.stop();
            assert_eq!(stats.dead_letters, 2);
        });
        assert_eq!(cameras_of(&commands(&settings), "INC-OK", Action::Start), set(&["cam-0"]));
        let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, false, Duration::from_secs(30)).unwrap();
        let reasons: Vec<String> =
            dlq.iter().map(|m| String::from_utf8_lossy(m.header(H_REASON).unwrap()).into_owned()).collect();
        assert_eq!(reasons, ["timestamp_out_of_range", "timestamp_out_of_range"]);
    }

    fn heartbeats_change_liveness_only_and_stale_unknown_or_bad_ones_change_nothing(b: &Broker) {
        let settings = b.settings(1);
        let cfg = config(&settings);
        let status = |id: &str, online: bool, at: i64| CameraStatus { camera_id: id.into(), online, last_seen_ms: at };
        publish(&settings, |p, s| {
            for (i, d) in [30.0, 60.0].into_iter().enumerate() {
                let mut c = camera(&format!("cam-{i}"), d);
                c.updated_at = 1_000;
                p.camera(&s.topics.registry, &c).unwrap();
            }
            // cam-0 goes offline; cam-1's heartbeat is older than its registry record (ignored); a heartbeat
            // for a camera the registry does not hold; one that is not a CameraStatus.
            p.status(&s.topics.status, &status("cam-0", false, 2_000)).unwrap();
            p.status(&s.topics.status, &status("cam-1", false, 500)).unwrap();
            p.status(&s.topics.status, &status("cam-9", true, 2_000)).unwrap();
            p.send(&trigger_kafka::OutRecord::keyed(&s.topics.status, b"cam-1", Some(b"\xff\xff".to_vec()))).unwrap();
        });
        // One event, decided once it is in the audit trail.
        let run = |incident: &str| {
            let (health, stop) = (Health::default(), AtomicBool::new(false));
            std::thread::scope(|s| {
                let svc = start(s, &cfg, &health, &stop);
                publish(&settings, |p, s| p.cfs(&s.topics.cfs, &shots_fired(incident, 1, Status::New)).unwrap());
                let (want, t) = (incident_ref(incident), Instant::now());
                while !audit(&settings).iter().any(|a| a.incident_ref == want) {
                    assert!(t.elapsed() < Duration::from_secs(60), "{incident} was not decided");
                    std::thread::sleep(Duration::from_millis(50));
                }
                svc.stop()
            })
        };
        let stats = run("WHILE-OFF");
        assert_eq!((stats.registry.status, stats.registry.status_ignored, stats.registry.bad), (1, 2, 1));
        // Back online: a restart reads the status topic to its end again.
        publish(&settings, |p, s| p.status(&s.topics.status, &status("cam-0", true, 3_000)).unwrap());
        run("BACK-ON");
        let cmds = commands(&settings);
        assert_eq!(cameras_of(&cmds, "WHILE-OFF", Action::Start), set(&["cam-1"]), "cam-0 offline, cam-1 kept");
        assert_eq!(cameras_of(&cmds, "BACK-ON", Action::Start), set(&["cam-0", "cam-1"]));
        let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, false, Duration::from_secs(30)).unwrap();
        let from: Vec<&[u8]> = dlq.iter().filter_map(|m| m.header(H_TOPIC)).collect();
        assert!(from.contains(&settings.topics.status.as_bytes()), "the bad heartbeat is dead-lettered from its topic");
    }

    fn an_opt_out_applies_to_the_very_next_event_even_under_load(b: &Broker) {
        let settings = b.settings(3);
        let cfg = config(&settings);
        publish(&settings, |p, s| {
            for (i, d) in [30.0, 60.0, 90.0].into_iter().enumerate() {
                p.camera(&s.topics.registry, &camera(&format!("cam-{i}"), d)).unwrap();
            }
        });
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            publish(&settings, |p, s| p.cfs(&s.topics.cfs, &shots_fired("BEFORE", 1, Status::New)).unwrap());
            svc.wait_handled(1);
            // cam-0 opts out (tombstone); cam-1 narrows its consent to burglary only. Both acknowledged before
            // any later event is produced.
            publish(&settings, |p, s| {
                p.remove_camera(&s.topics.registry, "cam-0").unwrap();
                let mut narrowed = camera("cam-1", 60.0);
                narrowed.consent.categories = [Category::Burglary].into_iter().collect();
                p.camera(&s.topics.registry, &narrowed).unwrap();
            });
            // A burst of events right after: none of them may command cam-0, nor cam-1 for shots fired.
            publish(&settings, |p, s| {
                for i in 0..100 {
                    p.cfs(&s.topics.cfs, &shots_fired(&format!("AFTER-{i}"), 1, Status::New)).unwrap();
                }
            });
            svc.wait_handled(101);
            svc.stop();
        });
        let cmds = commands(&settings);
        assert_eq!(cameras_of(&cmds, "BEFORE", Action::Start), set(&["cam-0", "cam-1", "cam-2"]));
        for i in 0..100 {
            assert_eq!(cameras_of(&cmds, &format!("AFTER-{i}"), Action::Start), set(&["cam-2"]), "event {i}");
        }
    }

    fn a_batch_that_cannot_touch_a_camera_takes_no_registry_round_trip_and_an_opt_out_still_applies(b: &Broker) {
        let settings = b.settings(1);
        let cfg = config(&settings);
        publish(&settings, |p, s| {
            p.camera(&s.topics.registry, &camera("cam-0", 30.0)).unwrap();
            p.camera(&s.topics.registry, &camera("cam-1", 60.0)).unwrap();
        });
        // A routine call (escort / convoy): not a trigger type, so it can start no camera.
        let routine = |incident: &str| {
            let mut ev = shots_fired(incident, 1, Status::New);
            (ev.call_type_code, ev.call_type_text) = ("14".into(), "ESCORT / CONVOY".into());
            ev
        };
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        let stats = std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            for i in 0..10 {
                publish(&settings, |p, s| p.cfs(&s.topics.cfs, &routine(&format!("ROUTINE-{i}"))).unwrap());
                svc.wait_handled(i + 1);
            }
            // cam-0 opts out; right after, a routine call and a shooting: the shooting must not command cam-0.
            publish(&settings, |p, s| p.remove_camera(&s.topics.registry, "cam-0").unwrap());
            publish(&settings, |p, s| {
                p.cfs(&s.topics.cfs, &routine("ROUTINE-AFTER")).unwrap();
                p.cfs(&s.topics.cfs, &shots_fired("AFTER", 1, Status::New)).unwrap();
            });
            svc.wait_handled(12);
            svc.stop()
        });
        assert!(stats.registry_round_trips.skipped >= 10, "one-routine-call batches skip it: {stats:?}");
        assert!(stats.registry_round_trips.taken >= 1, "the shooting's batch takes it: {stats:?}");
        let cmds = commands(&settings);
        assert_eq!(cameras_of(&cmds, "AFTER", Action::Start), set(&["cam-1"]));
        assert_eq!(cmds.len(), 1, "routine calls command nothing: {cmds:?}");
    }

    fn two_instances_one_decides_the_standby_takes_over_when_it_stops_and_every_event_is_decided(b: &Broker) {
        if common::fast_tier_skips("a fault test (a failover)") {
            return;
        }
        let settings = b.settings(4);
        let cfg = config(&settings);
        publish(&settings, |p, s| p.camera(&s.topics.registry, &camera("cam-0", 50.0)).unwrap());
        let (h1, h2) = (Health::default(), Health::default());
        let (stop1, stop2) = (AtomicBool::new(false), AtomicBool::new(false));
        let n = 200;
        let send = |from: u64, to: u64| {
            let mut p = Publisher::new(&settings).unwrap();
            for i in from..to {
                p.cfs(&settings.topics.cfs, &shots_fired(&format!("R-{i}"), 1, Status::New)).unwrap();
                p.wait().unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let (s1, s2) = std::thread::scope(|s| {
            let first = start(s, &cfg, &h1, &stop1);
            let t = Instant::now();
            while h1.assigned_partitions.load(Relaxed) == 0 {
                assert!(t.elapsed() < Duration::from_secs(60), "the first instance never decided");
                std::thread::sleep(Duration::from_millis(10));
            }
            // A second instance joins: one of the two decides, the other stands by (never both at once).
            let second = start(s, &cfg, &h2, &stop2);
            send(0, n / 2);
            let t = Instant::now();
            while h1.handled.load(Relaxed) + h2.handled.load(Relaxed) < n / 2 {
                let both = h1.assigned_partitions.load(Relaxed) > 0 && h2.assigned_partitions.load(Relaxed) > 0;
                assert!(!both, "two deciders");
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "not every event handled: {:?} / {:?}",
                    h1.readiness(trigger_kafka::wall_ms()),
                    h2.readiness(trigger_kafka::wall_ms())
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            // The decider stops: the standby takes every partition over and decides the rest.
            // The decider is the one that decided the first half (its assignment alone can still show the
            // partitions it is handing over when the second instance took the lead).
            let first_decides = h1.handled.load(Relaxed) > h2.handled.load(Relaxed);
            let (stopped, other) = if first_decides { (first, second) } else { (second, first) };
            let s_stopped = stopped.stop();
            send(n / 2, n);
            let t = Instant::now();
            while h1.handled.load(Relaxed) + h2.handled.load(Relaxed) < n {
                assert!(t.elapsed() < Duration::from_secs(60), "not every event handled");
                std::thread::sleep(Duration::from_millis(10));
            }
            (s_stopped, other.stop())
        });
        assert!(s1.events > 0 && s2.events > 0, "both decided in turn: {:?} {:?}", s1.tally, s2.tally);
        let decided: BTreeMap<String, usize> = audit(&settings).into_iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.incident_ref).or_default() += 1;
            m
        });
        for i in 0..n {
            assert!(decided.contains_key(&incident_ref(&format!("R-{i}"))), "R-{i} was not decided");
        }
    }

    fn exactly_once_through_a_handover_decides_every_revision_once_and_commands_nothing_twice(b: &Broker) {
        if common::fast_tier_skips("a fault test (a handover)") {
            return;
        }
        let mut settings = b.settings(4);
        settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
        let cfg = config(&settings);
        publish(&settings, |p, s| {
            for (i, d) in [30.0, 60.0].into_iter().enumerate() {
                p.camera(&s.topics.registry, &camera(&format!("cam-{i}"), d)).unwrap();
            }
        });
        let (h1, h2) = (Health::default(), Health::default());
        let (stop1, stop2) = (AtomicBool::new(false), AtomicBool::new(false));
        let incidents = 40;
        let wait_for = |what: &str, f: &dyn Fn() -> bool| {
            let t = Instant::now();
            while !f() {
                assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let send = |rev: u32, status: Status| {
            let mut p = Publisher::new(&settings).unwrap();
            for i in 0..incidents {
                p.cfs(&settings.topics.cfs, &shots_fired(&format!("X-{i}"), rev, status)).unwrap();
            }
            p.wait().unwrap();
        };
        let (s1, s2) = std::thread::scope(|s| {
            // Every incident opens on the first instance, the decider.
            let first = start(s, &cfg, &h1, &stop1);
            wait_for("the first instance decides", &|| h1.assigned_partitions.load(Relaxed) == 4);
            let second = start(s, &cfg, &h2, &stop2);
            send(1, Status::New);
            wait_for("revision 1 decided", &|| h1.handled.load(Relaxed) == incidents);
            // The decider stops: the standby takes over every partition with the open incidents' state from the
            // changelog, and decides their later revisions.
            let s1 = first.stop();
            wait_for("the standby decides", &|| h2.assigned_partitions.load(Relaxed) == 4);
            send(2, Status::Dispatched);
            send(3, Status::Closed);
            // Re-read events (see below) count as handled too: wait for the outcome instead, every camera stopped.
            wait_for("every incident closed", &|| {
                committed_commands(&settings).iter().filter(|c| c.action == Action::Stop).count() >= 2 * incidents as usize
            });
            std::thread::sleep(Duration::from_millis(300)); // anything still in flight would show as a duplicate
            (s1, second.stop())
        });
        assert!(s1.events > 0 && s2.events > 0, "both instances decided events");
        // librdkafka's mock cluster accepts TxnOffsetCommit but does not store the offsets (and writes no
        // transaction markers), so after the handover the new decider re-reads the partitions from the start.
        // The incident state restored from the changelog refuses the re-read revisions as duplicates: they
        // command nothing, which is what this test checks below. On Apache Kafka the offsets commit with the
        // transaction and nothing is re-read.
        for st in [&s1, &s2] {
            assert!(st.rejects.keys().all(|r| *r == "duplicate_revision"), "{:?}", st.rejects);
        }
        let cmds = committed_commands(&settings);
        let mut seen: BTreeMap<(String, String, Action), usize> = BTreeMap::new();
        for c in &cmds {
            *seen.entry((c.incident_ref.clone(), c.camera_id.clone(), c.action)).or_default() += 1;
        }
        for i in 0..incidents {
            let r = incident_ref(&format!("X-{i}"));
            for cam in ["cam-0", "cam-1"] {
                for a in [Action::Start, Action::Stop] {
                    assert_eq!(
                        seen.get(&(r.clone(), cam.to_string(), a)),
                        Some(&1),
                        "X-{i} {cam} {a:?}; instance 1 {:?} {:?}, instance 2 {:?} {:?}",
                        s1.decisions,
                        s1.rejects,
                        s2.decisions,
                        s2.rejects
                    );
                }
            }
        }
        assert_eq!(cmds.len(), incidents as usize * 4, "exactly the expected commands");
    }

    fn telemetry_endpoints_and_the_cad_silence_watchdog(b: &Broker) {
        let settings = b.settings(1);
        let mut cfg = config(&settings);
        cfg.service.cad_silence_s = 1;
        publish(&settings, |p, s| p.camera(&s.topics.registry, &camera("cam-0", 50.0)).unwrap());
        let health = std::sync::Arc::new(Health::default());
        let addr = dispatch_trigger::runtime::spawn_http("127.0.0.1:0", health.clone()).unwrap().unwrap();
        assert_eq!(http_get(addr, "/healthz").0, 200);
        assert_eq!(http_get(addr, "/readyz").0, 503, "not ready before the registry is read");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            // Ready once the group has assigned it its partition; the gauge says the same at every scrape.
            let t = Instant::now();
            while http_get(addr, "/readyz").0 != 200 {
                assert!(t.elapsed() < Duration::from_secs(30), "not ready: {}", http_get(addr, "/readyz").1);
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(http_get(addr, "/metrics").1.contains("dispatch_trigger_ready 1"));
            // No CFS for longer than cad_silence_s: flagged and exported.
            let t = Instant::now();
            while !health.cad_silent.load(Relaxed) {
                assert!(t.elapsed() < Duration::from_secs(10), "the watchdog did not fire");
                std::thread::sleep(Duration::from_millis(20));
            }
            // The Prometheus recorder is process-wide and the other tests of this file run services at the same
            // time: values are checked on this service's health, names on /metrics.
            assert!(http_get(addr, "/metrics").1.contains("dispatch_trigger_cad_silent "));
            let mut bad = shots_fired("M-1", 1, Status::New);
            bad.location = None;
            publish(&settings, |p, s| {
                p.cfs(&s.topics.cfs, &shots_fired("M-0", 1, Status::New)).unwrap();
                p.cfs(&s.topics.cfs, &bad).unwrap();
            });
            svc.wait_handled(2);
            assert!(!health.cad_silent.load(Relaxed), "events arrived: no longer silent");
            let metrics = http_get(addr, "/metrics").1;
            for want in [
                "dispatch_trigger_cad_silent ",
                "dispatch_trigger_decisions_total{outcome=\"triggered\"}",
                "dispatch_trigger_rejects_total{reason=\"missing_location\"}",
                "dispatch_trigger_commands_total{action=\"start\"}",
                "dispatch_trigger_stage_seconds_bucket{stage=\"end_to_end\"",
                "dispatch_trigger_stage_seconds_bucket{stage=\"decide\"",
                "dispatch_trigger_cameras ",
            ] {
                assert!(metrics.contains(want), "{want} missing from /metrics:\n{metrics}");
            }
            svc.stop();
        });
        assert_eq!(http_get(addr, "/readyz").0, 503, "not ready once stopped");
    }

    fn redacted_dead_letters_keep_only_the_contract_fields_and_a_digest(b: &Broker) {
        use trigger_kafka::service::{H_ORIGINAL_BYTES, H_ORIGINAL_SHA256};
        let settings = b.settings(1);
        let mut cfg = config(&settings);
        cfg.service.dead_letter_payload = trigger_kafka::DeadLetterPayload::Redacted;
        let secret = "Jane Roe 408-555-0199";
        // A CallForService refused for its location, with an extra field a producer added (field 99).
        let mut ev = shots_fired("R-1", 1, Status::New);
        ev.location = Some(Location { lat: 0.0, lon: 0.0, uncertainty_m: 0.0 });
        let mut with_extra = trigger_cad::pb::to_pb(&ev).encode_to_vec();
        prost::encoding::string::encode(99, &secret.to_string(), &mut with_extra);
        let csv_row = format!("24-0001,example-pd,459,,,{secret},neighbour saw two men");
        publish(&settings, |p, s| {
            p.camera(&s.topics.registry, &camera("cam-0", 50.0)).unwrap();
            p.raw(&s.topics.registry, b"cam-1", format!("\x08\x01{secret}").as_bytes()).unwrap();
        });
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            publish(&settings, |p, s| {
                p.raw(&s.topics.cfs, b"R-1", &with_extra).unwrap();
                p.raw(&s.topics.cfs, b"row 2", csv_row.as_bytes()).unwrap();
            });
            svc.wait_handled(2);
            svc.stop();
        });
        let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, false, Duration::from_secs(30)).unwrap();
        assert_eq!(dlq.len(), 3);
        for r in &dlq {
            let payload = r.payload.clone().unwrap_or_default();
            assert!(!String::from_utf8_lossy(&payload).contains("Jane Roe"), "redacted: {:?}", r.header(H_REASON));
            assert_eq!(r.header(H_ORIGINAL_SHA256).map(<[u8]>::len), Some(64));
            let original_len: usize = String::from_utf8_lossy(r.header(H_ORIGINAL_BYTES).unwrap()).parse().unwrap();
            match String::from_utf8_lossy(r.header(H_REASON).unwrap()).as_ref() {
                "null_island" => {
                    assert_eq!(original_len, with_extra.len());
                    let kept = pb::CallForService::decode(payload.as_slice()).unwrap();
                    assert_eq!(kept, trigger_cad::pb::to_pb(&ev), "the contract's fields are kept, the extra one is not");
                }
                "invalid_camera_record" | "malformed_protobuf" => assert!(payload.is_empty(), "no bytes kept"),
                other => panic!("unexpected dead letter {other}"),
            }
        }
    }

    fn a_break_glass_request_on_the_cfs_topic_widens_its_incident_and_is_audited(b: &Broker) {
        let settings = b.settings(2);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&settings);
        cfg.policy = common::policy_with_break_glass_keys(dir.path());
        // Ten consenting cameras within 100 m: the shipped k-cap (8) leaves two out.
        publish(&settings, |p, s| {
            for i in 0..10 {
                p.camera(&s.topics.registry, &camera(&format!("cam-{i}"), 5.0 + 9.0 * i as f64)).unwrap();
            }
        });
        let (health, stop) = (Health::default(), AtomicBool::new(false));
        let expires = common::now_ms() + 600_000;
        std::thread::scope(|s| {
            let svc = start(s, &cfg, &health, &stop);
            publish(&settings, |p, s| {
                p.cfs(&s.topics.cfs, &shots_fired("PLAIN", 1, Status::New)).unwrap();
                // One signature only: refused and audited; then both: granted, then the call itself.
                p.break_glass(&s.topics.cfs, &common::signed_break_glass("WIDE", 300.0, 12, expires, &[("officer", 1)]))
                    .unwrap();
                let both = common::signed_break_glass("WIDE", 300.0, 12, expires, &[("officer", 1), ("sup", 2)]);
                p.break_glass(&s.topics.cfs, &both).unwrap();
                p.cfs(&s.topics.cfs, &shots_fired("WIDE", 1, Status::New)).unwrap();
                p.raw(&s.topics.cfs, b"nashville-mnpd/X", b"{not json").unwrap();
            });
            // The last record has no break-glass header: a malformed call, dead-lettered.
            svc.wait_handled(5);
            svc.stop();
        });
        let cmds = commands(&settings);
        assert_eq!(cameras_of(&cmds, "PLAIN", Action::Start).len(), 8, "the usual k-cap");
        assert_eq!(cameras_of(&cmds, "WIDE", Action::Start).len(), 10, "the override's k-cap: every consenting camera");
        let outcomes: Vec<(String, bool)> = audit(&settings).into_iter().map(|a| (a.outcome, a.break_glass)).collect();
        assert!(outcomes.contains(&("break_glass_refused".into(), false)), "{outcomes:?}");
        assert!(outcomes.contains(&("break_glass_granted".into(), true)));
        assert!(outcomes.contains(&("triggered".into(), true)), "the call was decided under the override");
        let notices = inspect::read_topic(&settings, &settings.topics.notices, false, Duration::from_secs(30)).unwrap();
        let flagged =
            notices.iter().filter(|n| pb::OwnerNotice::decode(n.payload.as_deref().unwrap()).unwrap().break_glass);
        assert_eq!(flagged.count(), 10, "owners are told their camera was started under break-glass");
    }
}
