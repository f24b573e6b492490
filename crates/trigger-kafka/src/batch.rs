//! One batch of CFS records as a consuming loop takes it (the service's and the relay's alike): polled, its
//! last offsets, and what it cost, as a typed event for an observer.

use crate::options::ServiceOptions;
use crate::records::InRecord;
use rdkafka::consumer::BaseConsumer;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Up to `max_batch` records: waits `poll_timeout` for the first, then takes what is already there. Consumer
/// errors go to `on_error` (the loop counts them; librdkafka recovers on its own).
pub(crate) fn poll(
    consumer: &BaseConsumer<crate::Ctx>,
    opts: &ServiceOptions,
    batch: &mut Vec<InRecord>,
    on_error: impl Fn(&rdkafka::error::KafkaError),
) {
    batch.clear();
    let mut timeout = opts.poll_timeout();
    while batch.len() < opts.max_batch {
        match consumer.poll(timeout) {
            None => break,
            Some(Ok(m)) => batch.push(InRecord::of(&m)),
            Some(Err(e)) => on_error(&e),
        }
        timeout = Duration::ZERO;
    }
}

/// The last offset of each topic-partition in a batch.
pub(crate) fn last_offsets(batch: &[InRecord]) -> HashMap<(&str, i32), i64> {
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let o = last.entry((m.topic.as_str(), m.partition)).or_insert(m.offset);
        *o = (*o).max(m.offset);
    }
    last
}

/// What one batch cost, from the moment its first record was produced to every output acknowledged: the
/// parts the stage histograms (`dispatch_trigger_stage_seconds`) sum over, per batch, for an observer that
/// wants them together (a benchmark splitting the end-to-end time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTiming {
    /// Events in the batch.
    pub events: usize,
    /// Output records the batch wrote.
    pub records: usize,
    /// Each event's record timestamp (when the CAD side produced it), Unix ms; None where the record has none.
    pub produced_ms: Vec<Option<i64>>,
    /// When every output was acknowledged, Unix µs.
    pub acknowledged_us: i64,
    /// The first event's age when the batch was polled (record timestamp -> the registry sync began).
    pub age_at_poll_us: u64,
    /// Bringing the camera registry up to date before deciding (0 for a loop without a registry).
    pub registry_sync_us: u64,
    /// Deciding and planning the outputs (the relay: enqueueing its copies).
    pub plan_us: u64,
    /// Producing the outputs until every one was acknowledged.
    pub ack_us: u64,
}

/// Told of every batch a loop handled.
pub type BatchObserver<'a> = dyn Fn(&BatchTiming) + Send + Sync + 'a;

/// The instants a loop took a batch through.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marks {
    /// The registry sync began (the batch was polled).
    pub(crate) synced: Instant,
    /// Deciding began.
    pub(crate) planned: Instant,
    /// The outputs were handed to the producer.
    pub(crate) sent: Instant,
}

impl Marks {
    /// A batch's timing, measured now (every output acknowledged).
    pub(crate) fn timing(&self, batch: &[InRecord], records: usize) -> BatchTiming {
        let acknowledged_us = crate::wall_us();
        let us = |d: Duration| d.as_micros() as u64;
        let produced_ms: Vec<Option<i64>> = batch.iter().map(|m| m.timestamp_ms).collect();
        let since_sync = us(self.synced.elapsed()) as i64;
        let age_at_poll_us =
            produced_ms.first().copied().flatten().map_or(0, |ms| (acknowledged_us - ms * 1000 - since_sync).max(0));
        BatchTiming {
            events: batch.len(),
            records,
            produced_ms,
            acknowledged_us,
            age_at_poll_us: age_at_poll_us as u64,
            registry_sync_us: us(self.planned - self.synced),
            plan_us: us(self.sent - self.planned),
            ack_us: us(self.sent.elapsed()),
        }
    }
}
