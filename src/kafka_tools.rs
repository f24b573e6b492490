//! Kafka-facing tools: `cameras publish`, `replay --to-kafka`, and `demo` (the whole Kafka path on an
//! in-process broker).

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_cad::replay::{event_time_order, Pace, Pacer};
use trigger_cad::Decoded;
use trigger_core::{CallForService, CameraRecord};
use trigger_kafka::{EmbeddedCluster, Health, KafkaSettings, Publisher, RunStats};

use trigger_kafka::wall_ms;

/// Sleep for `wait` (which may be very long: a tiny `--speed` over far-apart events), waking early when asked
/// to stop.
fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) {
    let until = Instant::now().checked_add(wait);
    while !stop.load(Relaxed) {
        let left = until.map_or(Duration::from_millis(200), |u| u.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}

/// The event as if it left the CAD now, keeping its recorded received -> emitted gap (the service refuses
/// events that waited longer than `max_lag_s`, so a recorded log replayed later must be rebased).
fn leaving_now(ev: &CallForService) -> CallForService {
    let now = wall_ms();
    let gap = ev.emitted_at.saturating_sub(ev.received_at).max(0);
    CallForService { received_at: now.saturating_sub(gap), emitted_at: now, ..ev.clone() }
}

/// The service configuration for an in-process run against `settings`: the service section (and log)
/// honour DT_* variables, as `serve` does; no HTTP endpoint.
fn embedded_service_config(settings: &KafkaSettings, policy: &std::path::Path) -> Result<crate::serve::ServeConfig> {
    let mut cfg = crate::serve::ServeConfig::load(None)?;
    cfg.policy = policy.to_path_buf();
    cfg.kafka = settings.clone();
    cfg.http.listen = String::new();
    Ok(cfg)
}

/// Publish a camera layout into the registry topic; returns how many were acknowledged.
pub fn publish_cameras(settings: &KafkaSettings, cams: &[CameraRecord]) -> Result<usize> {
    let mut p = Publisher::new(settings)?;
    for c in cams {
        p.camera(&settings.topics.registry, c)?;
    }
    p.wait().context("publishing cameras")
}

/// How `send_cad_log` treats event times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// As recorded (a service would refuse old events as stale).
    Recorded,
    /// Each event leaves "now": emitted_at = send time, received_at keeps its recorded distance before it.
    Rebased,
}

#[derive(Debug, Default, Serialize)]
pub struct SendReport {
    pub events: u64,
    /// Records the decoder refused, sent as their original bytes (`include_rejects`).
    pub bad_records: u64,
    pub seconds: f64,
}

/// Produce a decoded CAD log into the CFS topic in event-time order, as protobuf, at `pace`.
/// With `include_rejects`, each refused input record is sent too, as its original bytes, where it stood in
/// the log (the service dead-letters it).
pub fn send_cad_log(
    settings: &KafkaSettings,
    mut decoded: Decoded,
    pace: Pace,
    times: Times,
    include_rejects: bool,
    stop: &AtomicBool,
) -> Result<SendReport> {
    let mut p = Publisher::new(settings)?;
    event_time_order(&mut decoded.events);
    let topic = &settings.topics.cfs;
    let mut pacer = Pacer::new(pace);
    let started = Instant::now();
    let mut report = SendReport::default();
    let mut rejects = decoded.rejects.iter().peekable();
    let bar = crate::progress_bar(decoded.events.len() as u64, "events sent");
    for (i, de) in decoded.events.iter().enumerate() {
        if stop.load(Relaxed) {
            break;
        }
        sleep_unless_stopped(pacer.wait_before(de.event.emitted_at, started.elapsed()), stop);
        if stop.load(Relaxed) {
            break;
        }
        match times {
            Times::Rebased => p.cfs(topic, &leaving_now(&de.event))?,
            Times::Recorded => p.cfs(topic, &de.event)?,
        }
        report.events += 1;
        // Spread the bad records through the stream, so good events surround them.
        if include_rejects && (i % 8 == 7) {
            if let Some(r) = rejects.next() {
                p.raw(topic, r.position.as_bytes(), &r.original)?;
                report.bad_records += 1;
            }
        }
        if i % 64 == 0 {
            bar.set_position(i as u64);
        }
    }
    if include_rejects {
        for r in rejects {
            p.raw(topic, r.position.as_bytes(), &r.original)?;
            report.bad_records += 1;
        }
    }
    bar.finish_and_clear();
    p.wait().context("producing the CAD log")?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds, in `scale` units (1e3: milliseconds).
    pub fn of(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Option<Self> {
        (!h.is_empty()).then(|| {
            let q = |x: f64| (h.value_at_quantile(x) as f64 / scale * 1000.0).round() / 1000.0;
            Self {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: (h.max() as f64 / scale * 1000.0).round() / 1000.0,
            }
        })
    }
}

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
    /// CFS produced -> every output acknowledged, milliseconds.
    pub end_to_end_ms: Option<Percentiles>,
    /// Engine::decide, microseconds.
    pub decide_us: Option<Percentiles>,
}

pub struct DemoOptions {
    pub cameras: Vec<CameraRecord>,
    pub decoded: Decoded,
    pub cad_log: String,
    pub pace: Pace,
    pub partitions: i32,
    pub policy: std::path::PathBuf,
}

/// The whole Kafka path with zero setup: an in-process broker, the registry published, the service running
/// on a thread, the CAD log produced into it, then the service stopped the way SIGTERM stops it.
pub fn demo(o: DemoOptions) -> Result<DemoSummary> {
    let cluster = EmbeddedCluster::start(1)?;
    let mut settings = KafkaSettings { bootstrap_servers: cluster.bootstrap_servers(), ..KafkaSettings::default() };
    settings.group_id = "dispatch-trigger-demo".into();
    cluster.create_topics(&settings.topics, o.partitions)?;
    eprintln!("embedded broker at {} ({} partitions)", settings.bootstrap_servers, o.partitions);

    let published = publish_cameras(&settings, &o.cameras)?;
    eprintln!("published {published} cameras to {}", settings.topics.registry);

    let cfg = embedded_service_config(&settings, &o.policy)?;
    let health = Health::default();
    let stop = AtomicBool::new(false);
    let (sent, stats) = std::thread::scope(|s| -> Result<(SendReport, RunStats)> {
        let service = s.spawn(|| crate::serve::run(&cfg, &health, &stop));
        let ready_by = Instant::now() + Duration::from_secs(60);
        // Ready (registry loaded) and holding partitions (the consumer group has formed).
        while !health.ready.load(Relaxed) || health.assigned_partitions.load(Relaxed) == 0 {
            if service.is_finished() || Instant::now() > ready_by {
                stop.store(true, Relaxed);
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
        eprintln!("service ready: replaying {} into {}", o.cad_log, settings.topics.cfs);
        let sent = send_cad_log(&settings, o.decoded, o.pace, Times::Rebased, true, &AtomicBool::new(false));
        let expected = sent.as_ref().map_or(0, |r| r.events + r.bad_records);
        let done_by = Instant::now() + Duration::from_secs(120);
        while health.handled.load(Relaxed) < expected && Instant::now() < done_by && !service.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Relaxed);
        let stats = service.join().expect("service thread")?;
        Ok((sent?, stats))
    })?;

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
        broker: "embedded (librdkafka mock cluster, real Kafka protocol on localhost)".into(),
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
        end_to_end_ms: Percentiles::of(&stats.end_to_end_us, 1e3),
        decide_us: Percentiles::of(&stats.decide_us, 1.0),
    })
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

/// What `bench-kafka` measures with.
pub struct BenchOptions {
    pub rates: Vec<f64>,
    pub seconds: f64,
    /// Events in the as-fast-as-possible run that measures the highest sustained rate.
    pub max_events: usize,
    pub partitions: i32,
    pub cameras: Vec<CameraRecord>,
    /// Real CAD events, cycled (with a new incident id each cycle) as long as a run needs.
    pub events: Vec<CallForService>,
    pub policy: std::path::PathBuf,
    /// An external cluster (Apache Kafka) instead of the in-process mock cluster.
    pub bootstrap: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub processor: &'static str,
    /// Offered rate, events/s ("max": as fast as the generator goes).
    pub offered: String,
    pub events: u64,
    /// Events handled per second, first send to last acknowledgement.
    pub achieved_per_s: f64,
    /// CFS record timestamp -> every output acknowledged, milliseconds.
    pub end_to_end_ms: Option<Percentiles>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Processor {
    Relay,
    Engine,
}

/// A bare consume -> produce relay and the engine, on one in-process broker, at fixed rates and flat out.
/// Where the benchmark runs: the in-process mock cluster, or an external broker (Apache Kafka).
enum Target {
    Embedded(EmbeddedCluster),
    External(String),
}

impl Target {
    fn bootstrap(&self) -> String {
        match self {
            Target::Embedded(c) => c.bootstrap_servers(),
            Target::External(b) => b.clone(),
        }
    }
}

pub fn bench_kafka(o: &BenchOptions) -> Result<Vec<BenchRow>> {
    let cluster = match &o.bootstrap {
        Some(b) => Target::External(b.clone()),
        None => Target::Embedded(EmbeddedCluster::start(1)?),
    };
    let mut rows = Vec::new();
    let mut runs: Vec<(Option<f64>, Processor)> = Vec::new();
    for r in &o.rates {
        runs.push((Some(*r), Processor::Relay));
        runs.push((Some(*r), Processor::Engine));
    }
    runs.push((None, Processor::Relay));
    runs.push((None, Processor::Engine));
    for (i, (rate, p)) in runs.into_iter().enumerate() {
        let n = rate.map_or(o.max_events, |r| (r * o.seconds).round() as usize);
        let row = measure(&cluster, i, p, rate, n, o)?;
        eprintln!(
            "{:>6} {:>8}: {} events, {:.0}/s, p99 {:?} ms",
            row.processor,
            row.offered,
            row.events,
            row.achieved_per_s,
            row.end_to_end_ms.as_ref().map(|x| x.p99)
        );
        rows.push(row);
    }
    Ok(rows)
}

fn measure(
    cluster: &Target,
    run: usize,
    p: Processor,
    rate: Option<f64>,
    n: usize,
    o: &BenchOptions,
) -> Result<BenchRow> {
    // Names of their own on a shared external broker.
    let label = format!("bench{run}-{}", wall_ms());
    let t = |what: &str| format!("{label}.{what}");
    let settings = KafkaSettings {
        bootstrap_servers: cluster.bootstrap(),
        group_id: label.clone(),
        topics: trigger_kafka::Topics {
            cfs: t("cfs"),
            registry: t("registry"),
            commands: t("commands"),
            audit: t("audit"),
            notices: t("notices"),
            dead_letter: t("dlq"),
            changelog: t("changelog"),
        },
        ..KafkaSettings::default()
    };
    match cluster {
        Target::Embedded(c) => {
            c.create_topics(&settings.topics, o.partitions)?;
            c.mock().create_topic(&t("relayed"), o.partitions, 1)?;
        }
        Target::External(_) => {
            trigger_kafka::admin::create_topics(&settings, &settings.topics, o.partitions, 1, 1)?;
            trigger_kafka::admin::create_topic(&settings, &t("relayed"), o.partitions)?;
        }
    }
    if p == Processor::Engine {
        publish_cameras(&settings, &o.cameras)?;
    }
    let cfg = embedded_service_config(&settings, &o.policy)?;
    let health = Health::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<BenchRow> {
        let worker = s.spawn(|| -> Result<hdrhistogram::Histogram<u64>> {
            Ok(match p {
                Processor::Relay => {
                    trigger_kafka::relay::run_relay(&settings, &t("relayed"), &cfg.service.options(), &health, &stop)?
                }
                Processor::Engine => crate::serve::run(&cfg, &health, &stop)?.end_to_end_us,
            })
        });
        let by = Instant::now() + Duration::from_secs(60);
        while !health.ready.load(Relaxed) || health.assigned_partitions.load(Relaxed) == 0 {
            anyhow::ensure!(!worker.is_finished() && Instant::now() < by, "the {label} processor did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Warm-up, left out of the figures: the first records to each topic wait for metadata, the first
        // fetches for offsets.
        let mut publisher = Publisher::new(&settings)?;
        const WARM_UP: usize = 100;
        let send = |publisher: &mut Publisher, k: usize| -> Result<()> {
            let mut ev = leaving_now(&o.events[k % o.events.len()]);
            ev.incident_id = format!("{}#{}", ev.incident_id, k / o.events.len());
            Ok(publisher.cfs(&settings.topics.cfs, &ev)?)
        };
        for k in 0..WARM_UP {
            send(&mut publisher, n + k)?;
            std::thread::sleep(Duration::from_millis(5));
        }
        publisher.wait()?;
        while health.handled.load(Relaxed) < WARM_UP as u64 {
            anyhow::ensure!(!worker.is_finished() && Instant::now() < by, "the {label} processor did not warm up");
            std::thread::sleep(Duration::from_millis(5));
        }
        health.measure_from_ms.store(wall_ms(), Relaxed);
        let mut pacer = Pacer::new(rate.map_or(Pace::AsFastAsPossible, Pace::Rate));
        let started = Instant::now();
        for k in 0..n {
            let wait = pacer.wait_before(0, started.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            send(&mut publisher, k)?;
            if k % 1024 == 1023 {
                publisher.wait()?;
            }
        }
        publisher.wait()?;
        let by = Instant::now() + Duration::from_secs(300);
        let total = (n + WARM_UP) as u64;
        while health.handled.load(Relaxed) < total && Instant::now() < by && !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        let h = worker.join().expect("processor thread")?;
        Ok(BenchRow {
            processor: if p == Processor::Relay { "relay" } else { "engine" },
            offered: rate.map_or("max".into(), |r| format!("{r}")),
            events: health.handled.load(Relaxed) - WARM_UP as u64,
            achieved_per_s: ((health.handled.load(Relaxed) - WARM_UP as u64) as f64 / elapsed).round(),
            end_to_end_ms: Percentiles::of(&h, 1e3),
        })
    })
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
