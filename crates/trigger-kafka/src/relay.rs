//! A bare consume -> produce relay: the baseline the service is measured against. Same client settings,
//! same batching ([`crate::batch`]) and the same at-least-once discipline (produce, wait for
//! acknowledgements, store offsets), but no decoding, no registry and no engine: every record is copied as
//! it is to one output topic.

use crate::batch::{last_offsets, BatchObserver, Marks};
use crate::options::{Health, ServiceOptions};
use crate::produce::{acked, create_producer, enqueue};
use crate::records::OutRecord;
use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

/// Relay `settings.topics.cfs` to `output` until `shutdown`, telling `observer` of every batch.
pub fn run_relay(
    settings: &KafkaSettings,
    output: &str,
    opts: &ServiceOptions,
    health: &Health,
    shutdown: &AtomicBool,
    observer: &BatchObserver<'_>,
) -> Result<(), KafkaError> {
    let producer = create_producer(settings)?;
    let consumer: BaseConsumer<crate::Ctx> =
        settings.client_config(Role::CfsConsumer).create_with_context(crate::Ctx("relay"))?;
    consumer.subscribe(&[&settings.topics.cfs])?;
    health.ready.store(true, Relaxed);
    let mut batch = Vec::with_capacity(opts.max_batch);
    while !shutdown.load(Relaxed) {
        crate::batch::poll(&consumer, opts, &mut batch, |e| tracing::warn!(error = %e, "relay consumer error"));
        if let Ok(a) = consumer.assignment() {
            health.assigned_partitions.store(a.count() as i64, Relaxed);
        }
        if batch.is_empty() {
            continue;
        }
        let polled = Instant::now();
        let futures = batch
            .iter()
            .map(|m| {
                let r = OutRecord::keyed(output, m.key(), m.payload.clone());
                enqueue(&producer, &r)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // No registry to bring up to date: the sync took no time.
        let marks = Marks { synced: polled, planned: polled, sent: Instant::now() };
        for f in futures {
            acked(f)?;
        }
        for ((topic, partition), offset) in last_offsets(&batch) {
            consumer.store_offset(topic, partition, offset)?;
        }
        health.handled.fetch_add(batch.len() as u64, Relaxed);
        observer(&marks.timing(&batch, batch.len()));
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    Ok(())
}
