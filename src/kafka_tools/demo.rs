//! `demo`: the whole Kafka path on the in-process broker (librdkafka's mock cluster): a generated registry,
//! the service, the bundled CAD sample replayed through it, and the summary read back from the broker.

use super::{embedded_service_config, publish_cameras, send_cad_log, Percentiles, SendReport, Times};
use crate::bridge::BridgeStats;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_cad::pacing::Pace;
use trigger_cad::Decoded;
use trigger_core::CameraRecord;
use trigger_kafka::{EmbeddedCluster, Health, KafkaSettings, RunStats};

#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub broker: String,
    pub cameras_published: usize,
    pub cad_log: String,
    pub sent: SendReport,
    pub events_handled: u64,
    pub decisions: BTreeMap<&'static str, u64>,
    pub rejects: BTreeMap<&'static str, u64>,
    pub start_commands: u64,
    pub stop_commands: u64,
    pub owner_notices: u64,
    pub dead_letters: u64,
    /// Records on each output topic, read back from the broker.
    pub topics: BTreeMap<String, i64>,
    /// Where a topic holds fewer records than the service produced (and had acknowledged), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Batches that confirmed the registry current first (one ListOffsets round trip), and batches that needed
    /// no round trip: none of their events could touch a camera.
    pub registry_round_trips: trigger_kafka::RoundTrips,
    /// CFS produced -> every output acknowledged, milliseconds.
    pub end_to_end_ms: Option<Percentiles>,
    /// Engine::decide, microseconds.
    pub decide_us: Option<Percentiles>,
    /// With --bridge: what the bridge did and the latency to the camera's recorder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<super::bridged::BridgeSummary>,
}

#[derive(Debug)]
pub struct DemoOptions {
    pub cameras: Vec<CameraRecord>,
    pub decoded: Decoded,
    pub cad_log: String,
    pub pace: Pace,
    pub partitions: i32,
    pub policy: std::path::PathBuf,
    /// Also run the bridge, driving an in-process HTTP sink (Frigate's API).
    pub bridge: bool,
    /// With `bridge`: every fourth camera is served by a target that answers 503 to every call.
    pub failing_target: bool,
    /// A cluster to run on instead of the embedded one (topics named for this run).
    pub bootstrap: Option<String>,
}

/// The embedded broker with the default topic names, or `bootstrap` with topics named for this run (so runs
/// never mix); the topics created either way.
fn demo_cluster(bootstrap: Option<&str>, partitions: i32) -> Result<(Option<EmbeddedCluster>, KafkaSettings)> {
    let mut settings = KafkaSettings { group_id: "dispatch-trigger-demo".into(), ..KafkaSettings::default() };
    let Some(b) = bootstrap else {
        let cluster = EmbeddedCluster::start(1)?;
        settings.bootstrap_servers = cluster.bootstrap_servers();
        cluster.create_topics(&settings.topics, partitions)?;
        return Ok((Some(cluster), settings));
    };
    settings.bootstrap_servers = b.to_string();
    let run = format!("demo-{}", trigger_kafka::wall_ms());
    settings.group_id = format!("dispatch-trigger-{run}");
    settings.topics = trigger_kafka::Topics::tagged(&run);
    trigger_kafka::connect::check_connection(&settings, Duration::from_secs(15))?;
    trigger_kafka::admin::create_topics(&settings, &settings.topics, partitions, 1, 1)?;
    Ok((None, settings))
}

/// The whole Kafka path with zero setup: an in-process broker, the registry published, the service running
/// on a thread, the CAD log produced into it, then the service stopped the way SIGTERM stops it.
/// The demo's own command-signing key (made for this run, trusted by its bridge); returns its public half.
pub fn sign_with_a_demo_key(cfg: &mut crate::serve::ServeConfig) -> String {
    let seed: [u8; 32] = rand::random();
    cfg.signing = crate::keys::SigningSection {
        key_id: "demo".into(),
        key: Some(trigger_core::Secret::new(hex::encode(seed))),
        key_file: None,
    };
    trigger_core::CommandSigner::from_seed("demo", seed).public_key_hex()
}

pub fn demo(o: DemoOptions) -> Result<DemoSummary> {
    let (cluster, settings) = demo_cluster(o.bootstrap.as_deref(), o.partitions)?;
    let which = if cluster.is_some() { "embedded broker" } else { "broker" };
    eprintln!("{which} at {} ({} partitions)", settings.bootstrap_servers, o.partitions);

    let published = publish_cameras(&settings, &o.cameras, &super::NOT_STOPPED)?;
    eprintln!("published {published} cameras to {}", settings.topics.registry);

    let mut cfg = embedded_service_config(&settings, &o.policy)?;
    let public = sign_with_a_demo_key(&mut cfg);
    let sink = o.bridge.then(|| super::bridged::Sink::start(false)).transpose()?;
    let failing = o.failing_target.then(|| super::bridged::Sink::start(true)).transpose()?;
    let bridge = sink.as_ref().map(|s| super::bridged::config(&settings, &o.cameras, s, failing.as_ref(), &public));
    let health = Health::default();
    let (sent, stats, bridged) = replay_through_service(&cfg, &health, o.decoded, o.pace, &o.cad_log, bridge.as_ref())?;
    let bridge = match (sink, bridged) {
        (Some(sink), Some(b)) => {
            let engine = trigger_core::Engine::new(crate::config::load_policy(&o.policy)?);
            Some(super::bridged::summary(&settings, &engine, &sink, failing.as_ref(), b)?)
        }
        _ => None,
    };
    let mut topics = BTreeMap::new();
    for t in settings.topics.outputs() {
        topics.insert(t.to_string(), trigger_kafka::inspect::topic_record_count(&settings, t)?);
    }
    let produced = [
        (&settings.topics.commands, stats.start_commands + stats.stop_commands),
        (&settings.topics.audit, stats.decision_count()),
        (&settings.topics.notices, stats.owner_notices),
        (&settings.topics.dead_letter, stats.dead_letters),
    ];
    let notes = eviction_notes(&topics, &produced);
    Ok(DemoSummary {
        broker: match &cluster {
            Some(_) => "embedded (librdkafka mock cluster, real Kafka protocol on localhost)".into(),
            None => settings.bootstrap_servers.clone(),
        },
        cameras_published: published,
        cad_log: o.cad_log,
        sent,
        events_handled: health.handled.load(Relaxed),
        decisions: stats.decisions.clone(),
        rejects: stats.rejects.clone(),
        start_commands: stats.start_commands,
        stop_commands: stats.stop_commands,
        owner_notices: stats.owner_notices,
        dead_letters: stats.dead_letters,
        topics,
        notes,
        registry_round_trips: stats.registry_round_trips,
        end_to_end_ms: Percentiles::of(&stats.end_to_end_us, 1e3),
        decide_us: Percentiles::of(&stats.decide_us, 1.0),
        bridge,
    })
}

/// Run the service (and the bridge) on threads, replay the log into it once it holds partitions, wait until
/// every record sent is handled (and every command reached the bridge), stop them.
fn replay_through_service(
    cfg: &crate::serve::ServeConfig,
    health: &Health,
    decoded: Decoded,
    pace: Pace,
    cad_log: &str,
    bridge: Option<&crate::bridge::BridgeConfig>,
) -> Result<(SendReport, RunStats, Option<BridgeStats>)> {
    let (stop, bridge_stop, bridge_health) = (AtomicBool::new(false), AtomicBool::new(false), Health::default());
    std::thread::scope(|s| -> Result<(SendReport, RunStats, Option<BridgeStats>)> {
        let service = s.spawn(|| crate::serve::run(cfg, health, &stop));
        let bridged = bridge.map(|b| s.spawn(|| crate::bridge::run(b, &bridge_health, &bridge_stop)));
        let ready_by = Instant::now() + Duration::from_secs(60);
        // Ready (registry loaded) and holding partitions (the consumer group has formed).
        while !health.ready.load(Relaxed) || health.assigned_partitions.load(Relaxed) == 0 {
            if service.is_finished() || Instant::now() > ready_by {
                stop.store(true, Relaxed);
                bridge_stop.store(true, Relaxed);
                return match service.join().expect("service thread") {
                    Err(e) => Err(e.context("the service did not start")),
                    Ok(_) => anyhow::bail!("the service did not become ready within 60 s"),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The group has formed; give the consumer a moment to fetch its starting offsets, so the latency
        // reported is the steady state rather than the first fetch after a rebalance.
        std::thread::sleep(Duration::from_secs(1));
        eprintln!("service ready: replaying {cad_log} into {}", cfg.kafka.topics.cfs);
        let sent = send_cad_log(&cfg.kafka, decoded, pace, Times::Rebased, true, &AtomicBool::new(false));
        let expected = sent.as_ref().map_or(0, |r| r.events + r.bad_records);
        wait_until(120, || health.handled.load(Relaxed) >= expected || service.is_finished());
        stop.store(true, Relaxed);
        let stats = service.join().expect("service thread")?;
        let bridged = match bridged {
            None => None,
            Some(b) => {
                let commands = stats.start_commands + stats.stop_commands;
                wait_until(60, || bridge_health.handled.load(Relaxed) >= commands || b.is_finished());
                bridge_stop.store(true, Relaxed);
                Some(b.join().expect("bridge thread")?)
            }
        };
        Ok((sent?, stats, bridged))
    })
}

/// Wait until `done` or `secs` have passed.
fn wait_until(secs: u64, done: impl Fn() -> bool) {
    let by = Instant::now() + Duration::from_secs(secs);
    while !done() && Instant::now() < by {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// librdkafka's mock cluster keeps at most 5 MiB per partition and evicts the oldest records: on a long demo
/// a topic can hold fewer records than the service produced, every one of them acknowledged. Say so, next to
/// the counts, rather than let the difference look like loss.
fn eviction_notes(on_broker: &BTreeMap<String, i64>, produced: &[(&String, u64)]) -> Vec<String> {
    produced
        .iter()
        .filter_map(|(topic, n)| {
            let held = on_broker.get(*topic).copied().unwrap_or(0).max(0) as u64;
            (held < *n).then(|| {
                format!(
                    "{topic}: {n} records produced and acknowledged, {held} still on the broker: the embedded mock                      cluster keeps at most 5 MiB per partition and evicted the oldest {} (Apache Kafka keeps them:                      tests/kafka_delivery.rs counts 20,000 events exactly)",
                    n - held
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_short_of_what_was_produced_is_explained() {
        let (audit, cmds) = ("dispatch.audit.v1".to_string(), "camera.commands.v1".to_string());
        let on_broker = BTreeMap::from([(audit.clone(), 35_600), (cmds.clone(), 120)]);
        let notes = eviction_notes(&on_broker, &[(&audit, 54_600), (&cmds, 120)]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("dispatch.audit.v1: 54600 records produced") && notes[0].contains("19000"));
    }
}
