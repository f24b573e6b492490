//! The consumer service loop: the registry followed live by every instance, and one decider per deployment
//! ([`crate::leader`]): the instance that leads assigns itself every CFS partition, takes over their state,
//! and takes each batch through decode → decide → plan ([`crate::plan`], no I/O) → sink ([`crate::sink`]).
//! The others are hot standbys.
//!
//! At-least-once: the plan's records are produced and every acknowledgement awaited before the batch's
//! offsets are stored (librdkafka commits stored offsets in the background, and when the leadership is handed
//! on or the service stops). Exactly-once: the records, the incident-state changes and the offsets after the
//! batch in one transaction, on a producer whose transactional id every instance shares.
//! Taking over ([`takeover`]): the audit chain heads, the incident state from the changelog and, at-least-once,
//! the commands already sent (a decider killed between its commands and its state leaves the changelog behind
//! what cameras were told), all before the first event is decided.

mod registry_feed;
mod takeover;

use registry_feed::Feeds;

use crate::leader::{Leadership, Standing};
use crate::plan::Planner;
use crate::records::InRecord;
use crate::settings::{Delivery, KafkaSettings, Role};
use crate::sink::Sink;
use crate::telemetry::{self, stage, Stage};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trigger_core::{CommandSigner, Engine, Reject};
use trigger_index::{CameraIndex, SpatialBackend};

pub use crate::options::{Health, RoundTrips, RunStats, ServiceOptions};
pub use crate::records::{
    dead_letter, DeadLetterPayload, DEAD_LETTER_MAX_BYTES, H_CAMERA_PROBLEM, H_DETAIL, H_KIND, H_OFFSET,
    H_ORIGINAL_BYTES, H_ORIGINAL_SHA256, H_PARTITION, H_PAYLOAD_DROPPED, H_REASON, H_TOPIC, KIND_BREAK_GLASS,
};

use crate::batch::{BatchObserver, Marks};
use crate::{wall_ms, wall_us};

/// What a run reads and writes through.
struct Io {
    sink: Sink,
    registry: Feeds,
    consumer: BaseConsumer<crate::Ctx>,
    leadership: Leadership,
}

/// When the loop last saw a CFS record (the silence watchdog) and last pruned the planner.
struct Clocks {
    last_cfs: Instant,
    last_prune: Instant,
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
    /// The leadership this instance decides under (None: it does not decide).
    epoch: Option<u64>,
    /// Told of every batch handled.
    observer: Option<&'a BatchObserver<'a>>,
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
            epoch: None,
            observer: None,
        }
    }

    /// Tell `observer` what every batch cost ([`crate::batch::BatchTiming`]).
    pub fn observed_by(mut self, observer: &'a BatchObserver<'a>) -> Self {
        self.observer = Some(observer);
        self
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
        let Some(mut io) = self.start(shutdown)? else { return Ok(self.stats) };
        let mut clocks = Clocks { last_cfs: Instant::now(), last_prune: Instant::now() };
        let mut batch: Vec<InRecord> = Vec::with_capacity(self.opts.max_batch);
        while !shutdown.load(Relaxed) && self.turn(&mut io, &mut batch, &mut clocks, shutdown)? {}
        tracing::info!("stopping: committing offsets");
        if self.epoch.is_some() {
            self.step_down(&io.consumer, &mut io.sink, true);
        }
        drop(io.leadership);
        self.health.ready.store(false, Relaxed);
        self.stats.delivery_retries = io.sink.retries();
        Ok(self.stats)
    }

    /// Connect, check the topics, read the registry to its end, join the leadership group. None: asked to stop
    /// before the registry was read.
    fn start(&mut self, shutdown: &AtomicBool) -> Result<Option<Io>, KafkaError> {
        telemetry::register();
        crate::connect::check_connection(&self.settings, Duration::from_secs(30))?;
        self.check_partitions()?;
        let mut sink = Sink::new(&self.settings, &self.opts)?;
        let mut registry = Feeds::open(&self.settings)?;
        if !self.bootstrap_registry(&mut registry, sink.side(), shutdown)? {
            return Ok(None);
        }
        let consumer = self.cfs_consumer()?;
        let leadership = Leadership::start(&self.settings, self.opts.lease())?;
        self.health.broker_grace_ms.store(self.opts.broker_grace().as_millis() as i64, Relaxed);
        self.broker_answered();
        self.health.ready.store(true, Relaxed);
        tracing::info!(
            cameras = self.index.len(),
            topic = %self.settings.topics.cfs,
            group = %self.settings.group_id,
            delivery = ?self.settings.delivery,
            "ready: registry caught up, following the leadership group"
        );
        Ok(Some(Io { sink, registry, consumer, leadership }))
    }

    /// One turn of the loop: follow the leadership; deciding, poll a batch, bring the registry up to date and
    /// decide it under a lease held. False: stop (asked to while a batch was being delivered).
    fn turn(
        &mut self,
        io: &mut Io,
        batch: &mut Vec<InRecord>,
        clocks: &mut Clocks,
        shutdown: &AtomicBool,
    ) -> Result<bool, KafkaError> {
        if !self.follow(&io.leadership, &io.consumer, &mut io.sink)? {
            self.apply_registry(&mut io.registry, io.sink.side(), None)?;
            std::thread::sleep(self.opts.poll_timeout().min(Duration::from_millis(20)));
            return Ok(true);
        }
        crate::batch::poll(&io.consumer, &self.opts, batch, telemetry::consumer_error);
        self.watchdog(&mut clocks.last_cfs, !batch.is_empty());
        if clocks.last_prune.elapsed() > Duration::from_secs(60) {
            self.planner.prune(self.engine);
            clocks.last_prune = Instant::now();
        }
        if batch.is_empty() {
            self.apply_registry(&mut io.registry, io.sink.side(), None)?;
            return Ok(true);
        }
        let decoded = self.planner.decode(batch);
        let synced = Instant::now();
        self.sync_registry(io, batch, &decoded)?;
        if !self.lease_held(io, shutdown)? {
            return Ok(true);
        }
        let epoch = self.epoch.expect("leading");
        let stop = || shutdown.load(Relaxed) || !io.leadership.holds(epoch);
        if self.handle_batch(&mut io.sink, &io.consumer, batch, decoded, synced, &stop)? {
            return Ok(true);
        }
        if shutdown.load(Relaxed) {
            return Ok(false);
        }
        // The leadership went while the batch was being delivered: its offsets were not stored, and the next
        // decider decides it again.
        self.step_down(&io.consumer, &mut io.sink, false);
        Ok(true)
    }

    /// Bring the registry up to date before deciding `batch`. Strict sync costs a round trip; a batch none of
    /// whose events can touch a camera needs none (what has already arrived is applied all the same).
    fn sync_registry(
        &mut self,
        io: &mut Io,
        batch: &[InRecord],
        decoded: &[Result<trigger_core::CallForService, Reject>],
    ) -> Result<(), KafkaError> {
        let sync = self.opts.registry_sync_wait().filter(|_| {
            let needed = Planner::may_use_cameras(self.engine, batch, decoded);
            self.stats.registry_round_trips.count(needed);
            telemetry::registry_round_trip(needed);
            needed
        });
        self.apply_registry(&mut io.registry, io.sink.side(), sync)
    }

    /// The lease, checked once more right before deciding: a batch is decided under a lease held. A lease that
    /// lapsed keeps the batch until it is renewed; a leadership that ended (false) leaves it to the next
    /// decider (its offsets were not stored).
    fn lease_held(&mut self, io: &mut Io, shutdown: &AtomicBool) -> Result<bool, KafkaError> {
        loop {
            if self.follow(&io.leadership, &io.consumer, &mut io.sink)? {
                return Ok(true);
            }
            if self.epoch.is_none() || shutdown.load(Relaxed) {
                return Ok(false);
            }
            self.apply_registry(&mut io.registry, io.sink.side(), None)?;
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let leader = count(&t.leader)?;
        if leader != 1 {
            return Err(KafkaError::Setup(format!(
                "the leadership topic {:?} needs exactly one partition (has {leader}; `dispatch-trigger topics create` makes it)",
                t.leader
            )));
        }
        Ok(())
    }

    /// The CFS consumer: assigned every partition while this instance decides, nothing otherwise. Its
    /// `group.id` is where the offsets are committed; it never joins that group (the leadership group says who
    /// decides).
    fn cfs_consumer(&self) -> Result<BaseConsumer<crate::Ctx>, KafkaError> {
        Ok(self.settings.client_config(Role::CfsConsumer).create_with_context(crate::Ctx("cfs-consumer"))?)
    }

    /// Act on where the leadership stands: take every partition over when this instance was made the decider,
    /// give them up when it no longer is. Returns whether this instance decides now (under a lease held).
    fn follow(
        &mut self,
        leadership: &Leadership,
        consumer: &BaseConsumer<crate::Ctx>,
        sink: &mut Sink,
    ) -> Result<bool, KafkaError> {
        let standing = leadership.standing();
        *self.health.standing.lock().expect("not poisoned") = Some(standing);
        self.health.consumers_recreated.store(leadership.recreated(), Relaxed);
        let deciding = match (standing, self.epoch) {
            (Standing::Leading { epoch }, Some(now)) if epoch == now => true,
            (Standing::Leading { epoch }, _) => {
                if self.epoch.is_some() {
                    self.step_down(consumer, sink, false);
                }
                match self.take_over(consumer, sink, epoch) {
                    Ok(()) => true,
                    // The brokers did not answer (an outage): give everything up and try again while the
                    // leadership lasts.
                    Err(e) if e.fault() == crate::Fault::External && !matches!(e, KafkaError::AuditTail { .. }) => {
                        tracing::warn!(error = %e, "taking over failed; retrying in a second");
                        self.step_down(consumer, sink, false);
                        std::thread::sleep(Duration::from_secs(1));
                        false
                    }
                    Err(e) => return Err(e),
                }
            }
            // Same leadership, lease not renewed in time: hold everything, decide nothing.
            (Standing::Lapsed { epoch }, Some(now)) if epoch == now => false,
            (_, Some(_)) => {
                let handed_over = matches!(standing, Standing::Standby | Standing::Joining);
                self.step_down(consumer, sink, handed_over);
                false
            }
            (_, None) => false,
        };
        let assigned = if deciding { self.cfs_partitions as i64 } else { 0 };
        self.health.assigned_partitions.store(assigned, Relaxed);
        Ok(deciding)
    }

    fn all_partitions(&self) -> Vec<i32> {
        (0..self.cfs_partitions as i32).collect()
    }

    /// Become the decider of every CFS partition: chain heads, incident state (and, at-least-once, the
    /// commands already sent), then the partitions from their committed offsets.
    fn take_over(
        &mut self,
        consumer: &BaseConsumer<crate::Ctx>,
        sink: &mut Sink,
        epoch: u64,
    ) -> Result<(), KafkaError> {
        let t = Instant::now();
        let parts = self.all_partitions();
        sink.lead(&self.settings)?;
        self.resume_chains(&parts)?;
        self.restore_partitions(&parts)?;
        if !self.eos() {
            self.restore_sent()?;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &parts {
            tpl.add_partition_offset(&self.settings.topics.cfs, p, Offset::Stored)?;
        }
        consumer.assign(&tpl)?;
        self.epoch = Some(epoch);
        self.broker_answered();
        tracing::info!(
            epoch,
            partitions = parts.len(),
            seconds = t.elapsed().as_secs_f64(),
            "partitions assigned: deciding every CFS partition"
        );
        Ok(())
    }

    /// Stop deciding: at-least-once, commit what was finished when the leadership was handed over (not when it
    /// was lost: the next decider may already have committed further); give every partition and all state up.
    fn step_down(&mut self, consumer: &BaseConsumer<crate::Ctx>, sink: &mut Sink, handed_over: bool) {
        if !self.eos() && handed_over {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(error = %e, "offset commit failed (the events will be decided again)"),
            }
        }
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassign failed");
        }
        let parts = self.all_partitions();
        self.planner.forget_partitions(self.engine, &parts);
        self.engine.forget_all();
        sink.step_down();
        if handed_over {
            tracing::info!(epoch = ?self.epoch, "partitions revoked: no longer deciding");
        } else {
            tracing::warn!(epoch = ?self.epoch, "partitions revoked: no longer deciding (the leadership was lost)");
        }
        self.epoch = None;
        self.health.assigned_partitions.store(0, Relaxed);
    }

    /// Decide, plan and commit one batch. Returns false when asked to stop before it was acknowledged.
    fn handle_batch(
        &mut self,
        sink: &mut Sink,
        consumer: &BaseConsumer<crate::Ctx>,
        batch: &[InRecord],
        decoded: Vec<Result<trigger_core::CallForService, Reject>>,
        synced: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<bool, KafkaError> {
        let planned = Instant::now();
        let mut plan = self.planner.plan(self.engine, self.index, batch, decoded, &mut self.stats, &wall_ms)?;
        let marks = Marks { synced, planned, sent: Instant::now() };
        if !sink.commit(&mut plan.records, batch, consumer, stop)? {
            return Ok(false);
        }
        self.broker_answered();
        stage(Stage::ProduceAck, marks.sent.elapsed().as_secs_f64());
        self.record_latencies(batch, &plan.decoded);
        self.stats.delivery_retries = sink.retries();
        self.health.handled.fetch_add(batch.len() as u64, Relaxed);
        if let Some(observe) = self.observer {
            observe(&marks.timing(batch, plan.records.len()));
        }
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

    fn record_latencies(&mut self, batch: &[InRecord], decoded: &[Result<trigger_core::CallForService, Reject>]) {
        let (acked_ms, acked_us) = (wall_ms(), wall_us());
        for (m, ev) in batch.iter().zip(decoded) {
            if let Some(ts) = m.timestamp_ms {
                let us = acked_us.saturating_sub(ts.saturating_mul(1000)).max(0);
                stage(Stage::EndToEnd, us as f64 / 1e6);
                let _ = self.stats.end_to_end_us.record(us.max(1) as u64);
            }
            if let Ok(ev) = ev {
                stage(Stage::CadEmittedToAck, acked_ms.saturating_sub(ev.emitted_at) as f64 / 1e3);
            }
        }
    }
}
