//! Kafka-facing tools: `cameras publish`, `replay --to-kafka`, `break-glass send`, and `demo` (the whole
//! Kafka path on an in-process broker); the pieces the benchmark tools share with them.

use anyhow::Result;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_cad::pacing::{event_time_order, Pace, Pacer};
use trigger_cad::Decoded;
use trigger_core::{CallForService, CameraRecord};
use trigger_kafka::{KafkaSettings, Publisher};

use trigger_kafka::wall_ms;

/// The event as if it left the CAD now, keeping its recorded received -> emitted gap (the service refuses
/// events that waited longer than `max_lag_s`, so a recorded log replayed later must be rebased).
pub fn leaving_now(ev: &CallForService) -> CallForService {
    let now = wall_ms();
    let gap = ev.emitted_at.saturating_sub(ev.received_at).max(0);
    CallForService { received_at: now.saturating_sub(gap), emitted_at: now, ..ev.clone() }
}

/// The service configuration for an in-process run against `settings`: the service section (and log)
/// honour DT_* variables, as `serve` does; no HTTP endpoint.
pub fn embedded_service_config(
    settings: &KafkaSettings,
    policy: &std::path::Path,
) -> Result<crate::serve::ServeConfig> {
    let mut cfg = crate::serve::ServeConfig::load(None)?;
    cfg.policy = policy.to_path_buf();
    cfg.kafka = settings.clone();
    cfg.http.listen = String::new();
    Ok(cfg)
}

/// A benchmark's own topics deleted once it has measured; a failure is only a warning (the figures stand).
pub fn delete_topics_or_warn(settings: &KafkaSettings, topics: &[&str]) {
    if let Err(e) = trigger_kafka::admin::delete_topics(settings, topics) {
        eprintln!("warning: this run's topics are left on the broker: {e}");
    }
}

/// The stop flag of in-process runs that are not stopped by a signal (demo, benchmarks).
pub static NOT_STOPPED: AtomicBool = AtomicBool::new(false);

/// Wait for a tool's records: through a broker outage of any length, until every one is acknowledged or
/// `stop` is set (SIGTERM / SIGINT), saying every 10 s how many are still waiting. The error names every
/// record that was not delivered.
pub fn delivered(p: &mut Publisher, stop: &AtomicBool, what: &str) -> Result<usize> {
    p.wait_until(stop, Duration::from_secs(10), |n| {
        eprintln!("{what}: {n} records not acknowledged yet (are the brokers reachable?); retrying until they are, or until stopped")
    })
    .map_err(|u| anyhow::anyhow!("{what}: {u}"))
}

/// Publish a camera layout into the registry topic; returns how many were acknowledged.
pub fn publish_cameras(settings: &KafkaSettings, cams: &[CameraRecord], stop: &AtomicBool) -> Result<usize> {
    let mut p = Publisher::new(settings)?;
    for c in cams {
        p.camera(&settings.topics.registry, c)?;
    }
    delivered(&mut p, stop, "publishing cameras")
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
    // Records produced before the producer has its id would wait for it, and their latency would say so.
    p.settle();
    event_time_order(&mut decoded.events);
    let topic = &settings.topics.cfs;
    let mut pacer = Pacer::new(pace);
    let started = Instant::now();
    let mut report = SendReport::default();
    let mut rejects = decoded.rejects.iter();
    let bar = crate::progress_bar(decoded.events.len() as u64, "events sent");
    for (i, de) in decoded.events.iter().enumerate() {
        if stop.load(Relaxed) {
            break;
        }
        crate::runtime::sleep_unless(pacer.wait_before(de.event.emitted_at, started.elapsed()), stop);
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
            report.bad_records += send_rejects(&mut p, topic, rejects.by_ref().take(1))?;
        }
        if i % 64 == 0 {
            bar.set_position(i as u64);
        }
    }
    if include_rejects {
        report.bad_records += send_rejects(&mut p, topic, rejects)?;
    }
    bar.finish_and_clear();
    let acknowledged = delivered(&mut p, stop, "producing the CAD log");
    let never_sent = decoded.events.len() as u64 - report.events;
    sent_in_full(acknowledged, never_sent, decoded.events.len()).map(|()| {
        report.seconds = started.elapsed().as_secs_f64();
        report
    })
}

/// Refused input records, each sent as its original bytes; returns how many.
fn send_rejects<'r>(
    p: &mut Publisher,
    topic: &str,
    rejects: impl Iterator<Item = &'r trigger_cad::Rejected>,
) -> Result<u64> {
    let mut n = 0;
    for r in rejects {
        p.raw(topic, r.position.as_bytes(), &r.original)?;
        n += 1;
    }
    Ok(n)
}

/// A CAD log's send, told as it ended: every event acknowledged, or what was not (named by the publisher) and
/// how many were never sent (a stop).
fn sent_in_full(acknowledged: Result<usize>, never_sent: u64, events: usize) -> Result<()> {
    match acknowledged {
        Err(e) if never_sent > 0 => Err(e.context(format!("stopped: {never_sent} more events were never sent"))),
        Err(e) => Err(e),
        Ok(_) if never_sent > 0 => {
            anyhow::bail!("stopped: {never_sent} of {events} events were never sent (every one sent was acknowledged)")
        }
        Ok(_) => Ok(()),
    }
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

pub mod bridged;
mod demo;

pub use demo::{demo, sign_with_a_demo_key, DemoOptions, DemoSummary};
