//! A bare consume -> produce relay: the baseline the service is measured against. Same client settings,
//! same batching and the same at-least-once discipline (produce, wait for acknowledgements, store offsets),
//! but no decoding, no registry and no engine: every record is copied as it is to one output topic.

use crate::options::{Health, ServiceOptions};
use crate::produce::{acked, create_producer, enqueue};
use crate::records::OutRecord;
use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Relay `settings.topics.cfs` to `output` until `shutdown`; returns record timestamp -> acknowledged,
/// microseconds (the service's end-to-end measure).
pub fn run_relay(
    settings: &KafkaSettings,
    output: &str,
    opts: &ServiceOptions,
    health: &Health,
    shutdown: &AtomicBool,
) -> Result<Histogram<u64>, KafkaError> {
    let producer = create_producer(settings)?;
    let consumer: BaseConsumer<crate::Ctx> =
        settings.client_config(Role::CfsConsumer).create_with_context(crate::Ctx("relay"))?;
    consumer.subscribe(&[&settings.topics.cfs])?;
    health.ready.store(true, Relaxed);
    let mut e2e = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    while !shutdown.load(Relaxed) {
        let mut batch = Vec::new();
        let mut timeout = opts.poll_timeout();
        while batch.len() < opts.max_batch {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => tracing::warn!(error = %e, "relay consumer error"),
            }
            timeout = Duration::ZERO;
        }
        if let Ok(a) = consumer.assignment() {
            health.assigned_partitions.store(a.count() as i64, Relaxed);
        }
        if batch.is_empty() {
            continue;
        }
        let polled = (crate::wall_us(), Instant::now());
        let futures = batch
            .iter()
            .map(|m| {
                let r = OutRecord::keyed(output, m.key().unwrap_or_default(), m.payload().map(<[u8]>::to_vec));
                enqueue(&producer, &r)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sent = Instant::now();
        for f in futures {
            acked(f)?;
        }
        let now_us = crate::wall_us();
        // The engine's `batch` line, for benches/batch_breakdown.py: the relay has no registry sync.
        tracing::debug!(
            events = batch.len(),
            records = batch.len(),
            age_at_poll_us = batch[0].timestamp().to_millis().map_or(0, |ms| (polled.0 - ms * 1000).max(0)),
            registry_sync_us = 0,
            plan_us = (sent - polled.1).as_micros() as u64,
            ack_us = sent.elapsed().as_micros() as u64,
            "relay batch"
        );
        let mut last: HashMap<i32, i64> = HashMap::new();
        for m in &batch {
            if let Some(ts) = m.timestamp().to_millis().filter(|ts| *ts >= health.measure_from_ms.load(Relaxed)) {
                let _ = e2e.record(now_us.saturating_sub(ts.saturating_mul(1000)).max(1) as u64);
            }
            let o = last.entry(m.partition()).or_insert(m.offset());
            *o = (*o).max(m.offset());
        }
        for (p, o) in last {
            consumer.store_offset(&settings.topics.cfs, p, o)?;
        }
        health.handled.fetch_add(batch.len() as u64, Relaxed);
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    Ok(e2e)
}
