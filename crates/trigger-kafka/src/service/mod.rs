//! The consumer service loop: CFS in (consumer group, manual offsets), the camera registry followed live,
//! and each batch taken through decode → decide → plan ([`crate::plan`], no I/O) → sink ([`crate::sink`]).
//!
//! At-least-once: the plan's records are produced and every acknowledgement awaited before the batch's
//! offsets are stored (librdkafka commits stored offsets in the background, on revocation and at shutdown).
//! Exactly-once: the records, the incident-state changes and the offsets after the batch in one transaction.
//! Processing happens on the polling thread, so when a rebalance callback runs inside `poll`, the previous
//! batch is already committed: nothing is in flight. Newly assigned partitions get their audit chain heads
//! (and, exactly-once, their incident state) before any of their events is planned.

mod registry_feed;
mod takeover;

use registry_feed::Feeds;

use crate::plan::Planner;
use crate::rebalance::{commit, CfsContext, Rebalanced};
use crate::settings::{Delivery, KafkaSettings, Role};
use crate::sink::{commit_transaction, Delivering};
use crate::telemetry::{self, stage, Stage};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trigger_core::{CommandSigner, Engine, Reject};
use trigger_index::{CameraIndex, SpatialBackend};

pub use crate::options::{Health, RoundTrips, RunStats, ServiceOptions};
pub use crate::records::{
    dead_letter, DeadLetterPayload, DEAD_LETTER_MAX_BYTES, H_CAMERA_PROBLEM, H_DETAIL, H_KIND, H_OFFSET,
    H_ORIGINAL_BYTES, H_ORIGINAL_SHA256, H_PARTITION, H_PAYLOAD_DROPPED, H_REASON, H_TOPIC, KIND_BREAK_GLASS,
};

/// The last offset of each topic-partition in a batch.
fn last_offsets(batch: &[OwnedMessage]) -> HashMap<(&str, i32), i64> {
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let o = last.entry((m.topic(), m.partition())).or_insert(m.offset());
        *o = (*o).max(m.offset());
    }
    last
}

use crate::{wall_ms, wall_us};

/// Where a plan goes: at-least-once, one delivering producer; exactly-once, the transactional producer, and
/// a delivering one for what belongs to no CFS transaction (dead letters of bad registry records: on the
/// transactional producer outside a transaction librdkafka refuses them, and since the registry is re-read
/// from its start, one bad camera would stop every instance at every start).
enum Sink {
    AtLeastOnce(Delivering),
    ExactlyOnce { producer: FutureProducer, side: Delivering },
}

impl Sink {
    fn new(settings: &KafkaSettings, opts: &ServiceOptions) -> Result<Self, KafkaError> {
        Ok(match settings.delivery {
            Delivery::AtLeastOnce => Sink::AtLeastOnce(Delivering::new(settings, Role::Producer, opts.retry())?),
            Delivery::ExactlyOnce => {
                let producer: FutureProducer = settings.client_config(Role::Producer).create()?;
                // Fences an earlier instance with the same transactional.id and aborts what it left open.
                producer.init_transactions(Duration::from_secs(60))?;
                let side = Delivering::new(settings, Role::SideProducer, opts.retry())?;
                Sink::ExactlyOnce { producer, side }
            }
        })
    }

    /// The producer of the batch outputs.
    fn producer(&self) -> &FutureProducer {
        match self {
            Sink::AtLeastOnce(d) => d.producer(),
            Sink::ExactlyOnce { producer, .. } => producer,
        }
    }

    /// Where records outside any batch (registry dead letters) are delivered.
    fn side(&mut self) -> &mut Delivering {
        match self {
            Sink::AtLeastOnce(d) => d,
            Sink::ExactlyOnce { side, .. } => side,
        }
    }

    /// Records produced again after a failed attempt. In exactly-once mode this counts the side producer's
    /// (registry dead letters) only: librdkafka retries inside a transaction on its own, and a transaction
    /// that fails is aborted and stops the service (its batch is decided again by whoever restarts).
    fn retries(&self) -> u64 {
        match self {
            Sink::AtLeastOnce(d) => d.retries,
            Sink::ExactlyOnce { side, .. } => side.retries,
        }
    }
}

pub struct Service<'a, B> {
    settings: KafkaSettings,
    opts: ServiceOptions,
    engine: &'a mut Engine,
    index: &'a mut CameraIndex<B>,
    health: &'a Health,
    stats: RunStats,
    planner: Planner,
    /// Partitions of the CFS topic (read at start).
    cfs_partitions: usize,
    /// Since when the consumer has been without its group membership (its assignment lost, not regained).
    lost_since: Option<Instant>,
}

impl<B> std::fmt::Debug for Service<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("settings", &self.settings)
            .field("opts", &self.opts)
            .field("engine", &self.engine)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<'a, B: SpatialBackend> Service<'a, B> {
    pub fn new(
        settings: KafkaSettings,
        opts: ServiceOptions,
        engine: &'a mut Engine,
        index: &'a mut CameraIndex<B>,
        health: &'a Health,
    ) -> Self {
        let changelog = match settings.delivery {
            Delivery::ExactlyOnce => crate::plan::Changelog::EveryDecision,
            Delivery::AtLeastOnce => crate::plan::Changelog::StateChanges,
        };
        let planner = Planner::new(settings.topics.clone(), changelog, opts.dead_letters(), opts.max_message_bytes);
        Self {
            settings,
            opts,
            engine,
            index,
            health,
            stats: RunStats::default(),
            planner,
            cfs_partitions: 0,
            lost_since: None,
        }
    }

    /// Sign every camera command with `signer`.
    pub fn signed_by(mut self, signer: Arc<CommandSigner>) -> Self {
        self.planner.signer = Some(signer);
        self
    }

    fn eos(&self) -> bool {
        self.settings.delivery == Delivery::ExactlyOnce
    }

    /// Run until `shutdown` is set: finish the batch in hand, commit, return the run's counts.
    pub fn run(mut self, shutdown: &AtomicBool) -> Result<RunStats, KafkaError> {
        crate::connect::check_connection(&self.settings, Duration::from_secs(30))?;
        self.check_partitions()?;
        let mut sink = Sink::new(&self.settings, &self.opts)?;
        // Learn every output topic's metadata now, so the first record to each does not wait for it.
        for topic in self.settings.topics.outputs() {
            if let Err(e) = sink.producer().client().fetch_metadata(Some(topic), Duration::from_secs(10)) {
                tracing::warn!(topic = %topic, error = %e, "no metadata for an output topic yet");
            }
        }
        let mut registry = Feeds::open(&self.settings)?;
        if !self.bootstrap_registry(&mut registry, sink.side(), shutdown)? {
            return Ok(self.stats);
        }
        let mut consumer = self.subscribe()?;
        let mut last_cfs = Instant::now();
        let mut last_prune = Instant::now();
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(self.opts.max_batch);
        while !shutdown.load(Relaxed) {
            self.poll_batch(&consumer, &mut batch);
            self.rebalanced(&consumer, &mut batch)?;
            if self.lost_since.is_some_and(|t| t.elapsed() >= self.opts.membership_watchdog()) {
                consumer = self.recreate(consumer)?;
                batch.clear();
                continue;
            }
            self.watchdog(&mut last_cfs, !batch.is_empty());
            if last_prune.elapsed() > Duration::from_secs(60) {
                self.planner.prune(self.engine);
                last_prune = Instant::now();
            }
            if batch.is_empty() {
                self.apply_registry(&mut registry, sink.side(), None)?;
                continue;
            }
            let decoded = self.planner.decode(&batch);
            let synced = Instant::now();
            // Strict sync costs a round trip; a batch none of whose events can touch a camera needs none (what
            // has already arrived is applied all the same).
            let sync = self.opts.registry_sync_wait().filter(|_| {
                let needed = Planner::may_use_cameras(self.engine, &batch, &decoded);
                self.stats.registry_round_trips.count(needed);
                needed
            });
            self.apply_registry(&mut registry, sink.side(), sync)?;
            if !self.handle_batch(&mut sink, &consumer, &batch, decoded, synced, shutdown)? {
                break;
            }
        }
        tracing::info!("stopping: committing offsets");
        if !self.eos() {
            commit(&consumer);
        }
        consumer.unsubscribe();
        self.health.ready.store(false, Relaxed);
        self.stats.delivery_retries = sink.retries();
        Ok(self.stats)
    }

    /// The audit chain of CFS partition p is written to audit partition p; the changelog is partitioned as the
    /// CFS topic (state is written to the partition of the event that changed it, in both delivery modes).
    fn check_partitions(&mut self) -> Result<(), KafkaError> {
        let t = &self.settings.topics;
        let count = |topic: &str| crate::inspect::partition_count(&self.settings, topic);
        let cfs = count(&t.cfs)?;
        self.cfs_partitions = cfs;
        let audit = count(&t.audit)?;
        if audit < cfs {
            return Err(KafkaError::Setup(format!(
                "the audit topic {:?} needs at least as many partitions as {:?} (has {audit}, needs {cfs})",
                t.audit, t.cfs
            )));
        }
        let log = count(&t.changelog)?;
        if cfs == 0 || cfs != log {
            return Err(KafkaError::Setup(format!(
                "the changelog {:?} needs as many partitions as {:?} (has {log}, needs {cfs})",
                t.changelog, t.cfs
            )));
        }
        Ok(())
    }

    /// The membership watchdog: close a consumer that lost its group membership and did not join again within
    /// `membership_watchdog_ms`, and subscribe a new one (librdkafka's own rejoining can wait on a coordinator
    /// that still holds the old member until its session expires).
    fn recreate(&mut self, old: BaseConsumer<CfsContext>) -> Result<BaseConsumer<CfsContext>, KafkaError> {
        tracing::warn!(
            after_ms = self.opts.membership_watchdog_ms,
            "the CFS consumer lost its group membership and did not regain it: creating it anew"
        );
        telemetry::consumer_recreated();
        self.health.consumers_recreated.fetch_add(1, Relaxed);
        drop(old);
        self.lost_since = None;
        self.subscribe()
    }

    fn subscribe(&self) -> Result<BaseConsumer<CfsContext>, KafkaError> {
        let consumer: BaseConsumer<CfsContext> =
            self.settings.client_config(Role::CfsConsumer).create_with_context(CfsContext {
                delivery: self.settings.delivery,
                assigned: Arc::new(AtomicI64::new(0)),
                events: Mutex::new(Vec::new()),
            })?;
        consumer.subscribe(&[&self.settings.topics.cfs])?;
        self.health.broker_grace_ms.store(self.opts.broker_grace().as_millis() as i64, Relaxed);
        self.broker_answered();
        self.health.ready.store(true, Relaxed);
        tracing::info!(
            cameras = self.index.len(),
            topic = %self.settings.topics.cfs,
            group = %self.settings.group_id,
            delivery = ?self.settings.delivery,
            "ready: registry caught up, consuming calls for service"
        );
        Ok(consumer)
    }

    /// Up to `max_batch` events: waits `poll_timeout` for the first, then takes what is already there. Stops
    /// early at a rebalance, so it is handled before any event of a newly assigned partition is planned.
    fn poll_batch(&self, consumer: &BaseConsumer<CfsContext>, batch: &mut Vec<OwnedMessage>) {
        batch.clear();
        let mut timeout = self.opts.poll_timeout();
        while batch.len() < self.opts.max_batch && !consumer.context().has_events() {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => telemetry::consumer_error(&e),
            }
            timeout = Duration::ZERO;
        }
    }

    /// Act on the rebalances the last poll ran. Events of revoked partitions are not decided here: their new
    /// owner decides them. Assigned partitions get their chain heads (and incident state, exactly-once).
    fn rebalanced(
        &mut self,
        consumer: &BaseConsumer<CfsContext>,
        batch: &mut Vec<OwnedMessage>,
    ) -> Result<(), KafkaError> {
        for e in consumer.context().take_events() {
            match e {
                Rebalanced::Revoked { partitions, lost } => {
                    batch.retain(|m| !partitions.contains(&m.partition()));
                    self.planner.forget_partitions(self.engine, &partitions);
                    if lost && self.lost_since.is_none() {
                        self.lost_since = Some(Instant::now());
                    }
                }
                Rebalanced::Assigned(parts) => {
                    // A member again (a standby's assignment is empty).
                    self.lost_since = None;
                    self.resume_chains(&parts)?;
                    self.restore_partitions(&parts)?;
                }
            }
        }
        // Partitions the group handed over without a callback this instance saw (none expected).
        let missing = self.planner.missing_chains(batch.iter().map(|m| m.partition()));
        if !missing.is_empty() {
            self.resume_chains(&missing)?;
        }
        let assigned = consumer.context().assigned.load(Relaxed);
        if self.health.assigned_partitions.swap(assigned, Relaxed) != assigned
            && assigned > 0
            && (assigned as usize) < self.cfs_partitions
        {
            tracing::warn!(
                assigned,
                partitions = self.cfs_partitions,
                "this instance decides some of the CFS partitions, another instance the rest: owners' daily caps \
                 are counted per instance (one CFS partition keeps one decider for all; README, Deploy and capacity)"
            );
        }
        Ok(())
    }

    /// Decide, plan and commit one batch. Returns false when asked to stop before it was acknowledged.
    fn handle_batch(
        &mut self,
        sink: &mut Sink,
        consumer: &BaseConsumer<CfsContext>,
        batch: &[OwnedMessage],
        decoded: Vec<Result<trigger_core::CallForService, Reject>>,
        synced: Instant,
        shutdown: &AtomicBool,
    ) -> Result<bool, KafkaError> {
        let t0 = Instant::now();
        let mut plan = self.planner.plan(self.engine, self.index, batch, decoded, &mut self.stats, &wall_ms)?;
        let sent = Instant::now();
        match sink {
            Sink::ExactlyOnce { producer, .. } => {
                let mut tpl = TopicPartitionList::new();
                for ((topic, partition), offset) in last_offsets(batch) {
                    tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
                }
                commit_transaction(producer, consumer, &plan.records, &tpl)?;
            }
            Sink::AtLeastOnce(delivering) => {
                // Incident state after the outputs it stands for: a restart never restores a decision whose
                // commands or audit record were not acknowledged (it decides the event again instead).
                let changelog = &self.settings.topics.changelog;
                plan.records.sort_by_key(|r| &r.topic == changelog);
                let (outputs, state) = plan.records.split_at(plan.records.partition_point(|r| &r.topic != changelog));
                if !delivering.deliver(outputs, shutdown)?
                    || (!state.is_empty() && !delivering.deliver(state, shutdown)?)
                {
                    return Ok(false);
                }
                for ((topic, partition), offset) in last_offsets(batch) {
                    if let Err(e) = consumer.store_offset(topic, partition, offset) {
                        // The partition was taken away meanwhile: its new owner decides these events again.
                        tracing::warn!(error = %e, topic, partition, "offset not stored");
                    }
                }
            }
        }
        self.broker_answered();
        stage(Stage::ProduceAck, sent.elapsed().as_secs_f64());
        self.record_latencies(batch, &plan.decoded);
        self.stats.delivery_retries = sink.retries();
        self.health.handled.fetch_add(batch.len() as u64, Relaxed);
        // Where a batch's time went (benches/batch_breakdown.py reads these lines): its first event's age when
        // the batch was polled (CFS record timestamp -> the registry sync began), the registry sync, the
        // decision and plan, and the outputs' acknowledgements (one produce request per partition).
        let us = |d: Duration| d.as_micros() as u64;
        let age_at_poll_us = batch
            .first()
            .and_then(|m| m.timestamp().to_millis())
            .map_or(0, |ms| (wall_us() - ms * 1000 - us(synced.elapsed()) as i64).max(0));
        tracing::debug!(
            events = batch.len(),
            records = plan.records.len(),
            age_at_poll_us,
            registry_sync_us = us(t0 - synced),
            plan_us = us(sent - t0),
            ack_us = us(sent.elapsed()),
            "batch"
        );
        Ok(true)
    }

    fn broker_answered(&self) {
        self.health.broker_seen_ms.store(wall_ms(), Relaxed);
    }

    fn watchdog(&self, last_cfs: &mut Instant, got: bool) {
        if got {
            *last_cfs = Instant::now();
            self.health.last_cfs_ms.store(wall_ms(), Relaxed);
            if self.health.cad_silent.swap(false, Relaxed) {
                telemetry::cad_silence(None, &self.settings.topics.cfs);
            }
        } else if last_cfs.elapsed() >= self.opts.cad_silence() && !self.health.cad_silent.swap(true, Relaxed) {
            telemetry::cad_silence(Some(last_cfs.elapsed().as_secs()), &self.settings.topics.cfs);
        }
        telemetry::seconds_since_last_cfs(last_cfs.elapsed().as_secs_f64());
    }

    fn record_latencies(&mut self, batch: &[OwnedMessage], decoded: &[Result<trigger_core::CallForService, Reject>]) {
        let (acked_ms, acked_us) = (wall_ms(), wall_us());
        let from = self.health.measure_from_ms.load(Relaxed);
        for (m, ev) in batch.iter().zip(decoded) {
            if let Some(ts) = m.timestamp().to_millis() {
                let us = acked_us.saturating_sub(ts.saturating_mul(1000)).max(0);
                stage(Stage::EndToEnd, us as f64 / 1e6);
                if ts >= from {
                    let _ = self.stats.end_to_end_us.record(us.max(1) as u64);
                }
            }
            if let Ok(ev) = ev {
                stage(Stage::CadEmittedToAck, acked_ms.saturating_sub(ev.emitted_at) as f64 / 1e3);
            }
        }
    }
}
