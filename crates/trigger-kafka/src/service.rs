//! The consumer service: CFS in (consumer group, manual offsets), the engine in the middle, commands, audit,
//! owner notices and dead letters out; the camera registry followed live.
//!
//! At-least-once: a batch of polled events is decided, every output is produced, and only when every
//! acknowledgement is in are the batch's offsets stored (librdkafka commits stored offsets in the
//! background, on revocation and at shutdown). Processing happens on the polling thread, so when a rebalance
//! callback runs inside `poll`, the previous batch is already acknowledged and stored: nothing is in flight.
//! A failed delivery is retried with backoff, holding the batch, until it succeeds or the service is asked
//! to stop (then the batch's offsets are not stored, and whoever owns the partition next decides it again;
//! command ids are deterministic, so a camera can drop the duplicate).

use crate::produce::{acked, create_producer, enqueue, OutRecord};
use crate::registry::{Applied, BadRegistryRecord, RegistryFollower};
use crate::settings::{Delivery, KafkaSettings, Role};
use crate::{codec, KafkaError};
use hdrhistogram::Histogram;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::producer::Producer as _;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use trigger_cad::DecodeOptions;
use trigger_core::{Action, Engine, IncidentSnapshot, Outcome, Reject, RejectReason};
use trigger_index::{CameraIndex, SpatialBackend};
use trigger_proto::v1 as pb;

/// Header that marks a record on the CFS topic as a break-glass request (JSON) rather than a call.
pub const H_KIND: &str = "dt.kind";
pub const KIND_BREAK_GLASS: &[u8] = b"break-glass";

fn is_break_glass(m: &OwnedMessage) -> bool {
    use rdkafka::message::Headers;
    m.headers().is_some_and(|h| h.iter().any(|x| x.key == H_KIND && x.value == Some(KIND_BREAK_GLASS)))
}

/// The last offset of each topic-partition in a batch.
fn last_offsets(batch: &[OwnedMessage]) -> HashMap<(&str, i32), i64> {
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let o = last.entry((m.topic(), m.partition())).or_insert(m.offset());
        *o = (*o).max(m.offset());
    }
    last
}

/// Dead-letter headers: why the record was refused and where it came from. The payload is the original bytes.
pub const H_REASON: &str = "dt.reject.reason";
pub const H_DETAIL: &str = "dt.reject.detail";
/// On a registry dead letter: the named camera problem (`zero_daily_cap`, `invalid_coordinates`, ...).
pub const H_CAMERA_PROBLEM: &str = "dt.reject.camera_problem";
pub const H_TOPIC: &str = "dt.source.topic";
pub const H_PARTITION: &str = "dt.source.partition";
pub const H_OFFSET: &str = "dt.source.offset";
/// With a redacted or digest payload: SHA-256 (hex) and length of the original bytes.
pub const H_ORIGINAL_SHA256: &str = "dt.original.sha256";
pub const H_ORIGINAL_BYTES: &str = "dt.original.bytes";
/// Set on a dead letter whose original bytes were left out because they would not fit in one record.
pub const H_PAYLOAD_DROPPED: &str = "dt.payload.dropped";

/// The largest dead letter (payload, key and headers) the service produces by default: below librdkafka's
/// default `message.max.bytes` (1,000,000) and Kafka's default topic limit (1,048,588), with room for the
/// record's own framing. A refused record too large to fit keeps its digest headers instead of its bytes.
pub const DEAD_LETTER_MAX_BYTES: usize = 900_000;

/// What a dead letter carries of the refused record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPayload {
    /// The original bytes (to inspect and replay them). They may hold whatever a producer put there.
    #[default]
    Original,
    /// Only the fields of the `CallForService` contract, re-encoded (anything else a producer added is
    /// dropped); a record that is not a `CallForService` at all keeps no bytes. Digest headers either way.
    Redacted,
    /// No bytes: only the digest headers (a record can still be matched against the source's own copy).
    Digest,
}

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Most events decided per batch (one produce-acknowledge round per batch).
    pub max_batch: usize,
    /// How long one poll waits for the first event of a batch.
    pub poll_timeout: Duration,
    pub max_message_bytes: usize,
    /// How long start-up may take to read the registry to its end before it gives up.
    pub registry_bootstrap_timeout: Duration,
    /// Before each batch, read the registry to the end offsets it has at that moment (one ListOffsets round
    /// trip), so an opt-out acknowledged before an event was polled applies to that event. Waits at most this
    /// long; `None`: apply only what has already arrived (lower latency, consent changes lag by a fetch).
    pub registry_sync_timeout: Option<Duration>,
    /// No CFS for this long is logged and exported (`dispatch_trigger_cad_silent`).
    pub cad_silence: Duration,
    /// Longest pause between delivery retries.
    pub retry_backoff_max: Duration,
    pub dead_letter_payload: DeadLetterPayload,
    /// The largest dead letter (payload + key + headers); a larger one keeps only its digest headers.
    pub dead_letter_max_bytes: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            poll_timeout: Duration::from_millis(100),
            max_message_bytes: trigger_cad::DEFAULT_MAX_MESSAGE_BYTES,
            registry_bootstrap_timeout: Duration::from_secs(120),
            registry_sync_timeout: Some(Duration::from_secs(2)),
            cad_silence: Duration::from_secs(600),
            retry_backoff_max: Duration::from_secs(5),
            dead_letter_payload: DeadLetterPayload::Original,
            dead_letter_max_bytes: DEAD_LETTER_MAX_BYTES,
        }
    }
}

/// What the health endpoints and the demo read while the service runs.
#[derive(Debug, Default)]
pub struct Health {
    /// The registry has been read to its end at start-up and the CFS consumer is subscribed.
    pub ready: AtomicBool,
    /// CFS partitions currently assigned to this instance by the consumer group.
    pub assigned_partitions: AtomicI64,
    /// Events taken from the CFS topic and fully handled (outputs acknowledged, offsets stored).
    pub handled: AtomicU64,
    /// Wall clock of the last CFS event, Unix ms (0: none yet).
    pub last_cfs_ms: AtomicI64,
    pub cad_silent: AtomicBool,
    /// Only records produced at or after this instant (Unix ms) are counted in `RunStats::end_to_end_us`
    /// (benchmarks leave their warm-up out).
    pub measure_from_ms: AtomicI64,
}

/// Counts and latencies of one run, returned when the service stops.
#[derive(Debug, Clone)]
pub struct RunStats {
    pub events: u64,
    pub decisions: HashMap<&'static str, u64>,
    pub rejects: HashMap<&'static str, u64>,
    pub start_commands: u64,
    pub stop_commands: u64,
    pub owner_notices: u64,
    pub dead_letters: u64,
    pub registry: Applied,
    pub delivery_retries: u64,
    /// CFS record timestamp (when it was produced) -> every output acknowledged, microseconds.
    pub end_to_end_us: Histogram<u64>,
    /// Wall-clock time of `Engine::decide`, microseconds.
    pub decide_us: Histogram<u64>,
}

impl Default for RunStats {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self {
            events: 0,
            decisions: HashMap::new(),
            rejects: HashMap::new(),
            start_commands: 0,
            stop_commands: 0,
            owner_notices: 0,
            dead_letters: 0,
            registry: Applied::default(),
            delivery_retries: 0,
            end_to_end_us: h(),
            decide_us: h(),
        }
    }
}

/// A rebalance seen by the consumer, handled by the service loop right after the poll that ran it.
#[derive(Debug)]
enum Rebalanced {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Records rebalances for the service loop. At-least-once: commits stored offsets before partitions are
/// taken away, so the next owner starts after what this instance has finished (nothing is in flight when
/// the callback runs: see the module docs). Exactly-once: offsets only move inside transactions.
struct CfsContext {
    delivery: Delivery,
    assigned: Arc<AtomicI64>,
    events: Mutex<Vec<Rebalanced>>,
}

impl CfsContext {
    fn take_events(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.events.lock().expect("not poisoned"))
    }
    fn has_events(&self) -> bool {
        !self.events.lock().expect("not poisoned").is_empty()
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for CfsContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::log_client_error("cfs-consumer", error, reason);
    }
}

impl ConsumerContext for CfsContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions_of(tpl), "partitions revoked");
                if self.delivery == Delivery::AtLeastOnce {
                    commit(consumer);
                }
                self.assigned.store(0, Relaxed);
                self.events.lock().expect("not poisoned").push(Rebalanced::Revoked(partitions_of(tpl)));
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = ?partitions_of(tpl), "partitions assigned");
            self.assigned.store(tpl.count() as i64, Relaxed);
            self.events.lock().expect("not poisoned").push(Rebalanced::Assigned(partitions_of(tpl)));
        }
    }
}

fn commit(consumer: &BaseConsumer<CfsContext>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed (the events will be decided again)"),
    }
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn wall_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn stage(name: &'static str, seconds: f64) {
    metrics::histogram!("dispatch_trigger_stage_seconds", "stage" => name).record(seconds.max(0.0));
}

/// What a dead letter keeps of `original` under `mode` (adding the digest headers when it is not all of it).
/// `cfs`: the record is meant to be a `CallForService`, whose contract fields a redacted letter keeps.
fn kept_bytes(
    original: &[u8],
    mode: DeadLetterPayload,
    cfs: bool,
    headers: &mut Vec<(&'static str, Vec<u8>)>,
) -> Vec<u8> {
    if mode == DeadLetterPayload::Original {
        return original.to_vec();
    }
    use sha2::Digest as _;
    headers.push((H_ORIGINAL_SHA256, hex::encode(sha2::Sha256::digest(original)).into_bytes()));
    headers.push((H_ORIGINAL_BYTES, original.len().to_string().into_bytes()));
    match pb::CallForService::decode(original) {
        // prost keeps only the contract's fields: anything else is gone once re-encoded.
        Ok(m) if cfs && mode == DeadLetterPayload::Redacted => m.encode_to_vec(),
        _ => Vec::new(),
    }
}

/// The rule for dead letters that cannot fit: when payload, key and headers together exceed `max_bytes`, the
/// payload is dropped, the digest headers (`dt.original.sha256`, `dt.original.bytes`) are kept, and
/// `dt.payload.dropped: too_large` says why. A refused record never becomes a record Kafka refuses.
fn fit(
    payload: Vec<u8>,
    original: &[u8],
    key: &[u8],
    headers: &mut Vec<(&'static str, Vec<u8>)>,
    max_bytes: usize,
) -> Vec<u8> {
    let size = |h: &Vec<(&'static str, Vec<u8>)>| h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if payload.len() + key.len() + size(headers) <= max_bytes {
        return payload;
    }
    if !headers.iter().any(|(k, _)| *k == H_ORIGINAL_SHA256) {
        use sha2::Digest as _;
        headers.push((H_ORIGINAL_SHA256, hex::encode(sha2::Sha256::digest(original)).into_bytes()));
        headers.push((H_ORIGINAL_BYTES, original.len().to_string().into_bytes()));
    }
    headers.push((H_PAYLOAD_DROPPED, b"too_large".to_vec()));
    // The detail is ours and short, but bound it too so headers alone can never exceed the limit.
    for (k, v) in headers.iter_mut() {
        if *k == H_DETAIL {
            v.truncate(1024);
        }
    }
    Vec::new()
}

/// The dead-letter record for a refused input: original key, the payload as `mode` says (and as [`fit`]
/// allows), reason and origin in headers.
pub fn dead_letter(
    topic: &str,
    m: &OwnedMessage,
    reason: &str,
    detail: &str,
    mode: DeadLetterPayload,
    max_bytes: usize,
) -> OutRecord {
    let original = m.payload().unwrap_or_default();
    let mut headers = vec![
        (H_REASON, reason.as_bytes().to_vec()),
        (H_DETAIL, detail.as_bytes().to_vec()),
        (H_TOPIC, m.topic().as_bytes().to_vec()),
        (H_PARTITION, m.partition().to_string().into_bytes()),
        (H_OFFSET, m.offset().to_string().into_bytes()),
    ];
    let key = m.key().unwrap_or_default().to_vec();
    let payload = kept_bytes(original, mode, true, &mut headers);
    let payload = fit(payload, original, &key, &mut headers, max_bytes);
    OutRecord { topic: topic.to_string(), partition: None, key, payload: Some(payload), headers }
}

pub struct Service<'a, B> {
    settings: KafkaSettings,
    opts: ServiceOptions,
    engine: &'a mut Engine,
    index: &'a mut CameraIndex<B>,
    health: &'a Health,
    stats: RunStats,
    /// Which CFS partition each incident in the engine's state came from (to forget it on revocation).
    incident_partition: HashMap<(String, String), i32>,
    /// One audit hash chain per CFS partition, written to the audit partition of the same number; resumed
    /// from that partition's last record when first needed.
    chains: HashMap<i32, trigger_audit::Chain>,
}

impl<'a, B: SpatialBackend> Service<'a, B> {
    pub fn new(
        settings: KafkaSettings,
        opts: ServiceOptions,
        engine: &'a mut Engine,
        index: &'a mut CameraIndex<B>,
        health: &'a Health,
    ) -> Self {
        Self {
            settings,
            opts,
            engine,
            index,
            health,
            stats: RunStats::default(),
            incident_partition: HashMap::new(),
            chains: HashMap::new(),
        }
    }

    /// Run until `shutdown` is set: finish the batch in hand, commit, return the run's counts.
    pub fn run(mut self, shutdown: &AtomicBool) -> Result<RunStats, KafkaError> {
        let errs = self.settings.validate();
        if !errs.is_empty() {
            return Err(KafkaError::Config(errs));
        }
        let eos = self.settings.delivery == Delivery::ExactlyOnce;
        let producer = create_producer(&self.settings)?;
        self.check_audit_partitions()?;
        if eos {
            self.check_co_partitioned()?;
            // Fences an earlier instance with the same transactional.id and aborts what it left open.
            producer.init_transactions(Duration::from_secs(60))?;
        }
        // Learn every output topic's metadata now, so the first record to each does not wait for it.
        let t = &self.settings.topics;
        for topic in [&t.commands, &t.audit, &t.notices, &t.dead_letter] {
            if let Err(e) = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)) {
                tracing::warn!(topic = %topic, error = %e, "no metadata for an output topic yet");
            }
        }
        // Registry dead letters belong to no CFS transaction: in exactly-once mode a record produced outside a
        // transaction on the transactional producer is refused ("erroneous state"), and since the registry is
        // re-read from its start, one bad camera would stop every instance at every start. They go through a
        // producer of their own (duplicates across restarts carry the same source partition and offset).
        let side =
            if eos { Some(self.settings.client_config(Role::SideProducer).create::<FutureProducer>()?) } else { None };
        let dlq = side.as_ref().unwrap_or(&producer);
        let mut registry = RegistryFollower::new(&self.settings)?;
        if !self.bootstrap_registry(&mut registry, dlq, shutdown)? {
            return Ok(self.stats);
        }
        let assigned = Arc::new(AtomicI64::new(0));
        let consumer: BaseConsumer<CfsContext> =
            self.settings.client_config(Role::CfsConsumer).create_with_context(CfsContext {
                delivery: self.settings.delivery,
                assigned: assigned.clone(),
                events: Mutex::new(Vec::new()),
            })?;
        consumer.subscribe(&[&self.settings.topics.cfs])?;
        self.health.ready.store(true, Relaxed);
        metrics::gauge!("dispatch_trigger_ready").set(1.0);
        tracing::info!(
            cameras = self.index.len(),
            topic = %self.settings.topics.cfs,
            group = %self.settings.group_id,
            delivery = ?self.settings.delivery,
            "ready: registry caught up, consuming calls for service"
        );

        let mut last_cfs = Instant::now();
        let mut last_prune = Instant::now();
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(self.opts.max_batch);
        while !shutdown.load(Relaxed) {
            batch.clear();
            let mut timeout = self.opts.poll_timeout;
            while batch.len() < self.opts.max_batch && !consumer.context().has_events() {
                match consumer.poll(timeout) {
                    None => break,
                    Some(Ok(m)) => batch.push(m.detach()),
                    Some(Err(e)) => {
                        metrics::counter!("dispatch_trigger_consumer_errors_total").increment(1);
                        tracing::warn!(error = %e, "CFS consumer error (librdkafka retries)");
                    }
                }
                timeout = Duration::ZERO;
            }
            for e in consumer.context().take_events() {
                match e {
                    // Events of revoked partitions are not decided here: their new owner decides them.
                    Rebalanced::Revoked(parts) => {
                        batch.retain(|m| !parts.contains(&m.partition()));
                        self.forget_partitions(&parts);
                        self.chains.retain(|p, _| !parts.contains(p));
                    }
                    Rebalanced::Assigned(parts) if eos => self.restore_partitions(&parts)?,
                    Rebalanced::Assigned(_) => {}
                }
            }
            self.health.assigned_partitions.store(assigned.load(Relaxed), Relaxed);
            self.watchdog(&mut last_cfs, !batch.is_empty());
            if last_prune.elapsed() > Duration::from_secs(60) {
                let engine = &*self.engine;
                self.incident_partition.retain(|(a, i), _| engine.snapshot_incident(a, i).is_some());
                last_prune = Instant::now();
            }
            if batch.is_empty() {
                self.apply_registry(&mut registry, dlq, None)?;
                continue;
            }
            let t0 = Instant::now();
            self.apply_registry(&mut registry, dlq, self.opts.registry_sync_timeout)?;
            let t1 = Instant::now();
            let (out, decoded) = self.decide_batch(&batch)?;
            let sent = Instant::now();
            if eos {
                self.commit_transaction(&producer, &consumer, &batch, &out)?;
            } else {
                if !self.deliver(&producer, &out, shutdown)? {
                    break;
                }
                for ((topic, partition), offset) in last_offsets(&batch) {
                    if let Err(e) = consumer.store_offset(topic, partition, offset) {
                        // The partition was taken away meanwhile: its new owner decides these events again.
                        tracing::warn!(error = %e, topic, partition, "offset not stored");
                    }
                }
            }
            stage("produce_ack", sent.elapsed().as_secs_f64());
            self.record_latencies(&batch, &decoded);
            self.health.handled.fetch_add(batch.len() as u64, Relaxed);
            tracing::debug!(
                events = batch.len(),
                registry_sync_us = (t1 - t0).as_micros() as u64,
                decide_and_deliver_us = t1.elapsed().as_micros() as u64,
                "batch"
            );
        }
        tracing::info!("stopping: committing offsets");
        if !eos {
            commit(&consumer);
        }
        consumer.unsubscribe();
        self.health.ready.store(false, Relaxed);
        metrics::gauge!("dispatch_trigger_ready").set(0.0);
        Ok(self.stats)
    }

    /// The audit chain of CFS partition p is written to audit partition p.
    fn check_audit_partitions(&self) -> Result<(), KafkaError> {
        let t = &self.settings.topics;
        let cfs = crate::inspect::partition_count(&self.settings, &t.cfs)?;
        let audit = crate::inspect::partition_count(&self.settings, &t.audit)?;
        if audit < cfs {
            return Err(KafkaError::Setup(format!(
                "the audit topic {:?} needs at least as many partitions as {:?} (has {audit}, needs {cfs})",
                t.audit, t.cfs
            )));
        }
        Ok(())
    }

    /// The audit chain of a CFS partition, resumed from the last record of its audit partition.
    fn chain(&mut self, partition: i32) -> Result<&mut trigger_audit::Chain, KafkaError> {
        if !self.chains.contains_key(&partition) {
            let eos = self.settings.delivery == Delivery::ExactlyOnce;
            let last = crate::inspect::last_record(&self.settings, &self.settings.topics.audit, partition, eos)?;
            let head = match last.and_then(|r| r.payload) {
                Some(bytes) => {
                    pb::ActivationRecord::decode(bytes.as_slice())
                        .map_err(|e| {
                            KafkaError::Setup(format!("audit partition {partition}: unreadable last record: {e}"))
                        })?
                        .hash
                }
                None => trigger_audit::GENESIS.to_string(),
            };
            tracing::info!(partition, head = %head, "audit chain resumed");
            self.chains.insert(partition, trigger_audit::Chain::resume(head));
        }
        Ok(self.chains.get_mut(&partition).expect("inserted"))
    }

    /// Exactly-once needs the changelog partitioned as the CFS topic: state is written to the partition of
    /// the event that changed it, and restored with that partition.
    fn check_co_partitioned(&self) -> Result<(), KafkaError> {
        let t = &self.settings.topics;
        let cfs = crate::inspect::partition_count(&self.settings, &t.cfs)?;
        let log = crate::inspect::partition_count(&self.settings, &t.changelog)?;
        if cfs == 0 || cfs != log {
            return Err(KafkaError::Setup(format!(
                "exactly-once needs the changelog {:?} with as many partitions as {:?} (has {log}, needs {cfs})",
                t.changelog, t.cfs
            )));
        }
        Ok(())
    }

    fn forget_partitions(&mut self, parts: &[i32]) {
        let engine = &mut *self.engine;
        self.incident_partition.retain(|(a, i), p| {
            let gone = parts.contains(p);
            if gone {
                engine.forget_incident(a, i);
            }
            !gone
        });
    }

    /// Take over the incident state of newly assigned partitions from the changelog (committed records only).
    fn restore_partitions(&mut self, parts: &[i32]) -> Result<(), KafkaError> {
        let t = Instant::now();
        let topic = self.settings.topics.changelog.clone();
        let records = crate::inspect::read_partitions(&self.settings, &topic, parts, true, Duration::from_secs(120))?;
        let mut restored = 0usize;
        for r in records {
            match r.payload.as_deref().map(serde_json::from_slice::<IncidentSnapshot>) {
                Some(Ok(snap)) => {
                    self.incident_partition.insert((snap.agency_id.clone(), snap.incident_id.clone()), r.partition);
                    self.engine.restore_incident(snap);
                    restored += 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "unreadable incident state")
                }
                None => {
                    let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
                    if let Some((a, i)) = key.split_once('/') {
                        self.engine.forget_incident(a, i);
                    }
                }
            }
        }
        tracing::info!(partitions = ?parts, records = restored, seconds = t.elapsed().as_secs_f64(), "incident state restored");
        Ok(())
    }

    /// One transaction: the batch's outputs and state changes, and the consumer offsets after it.
    fn commit_transaction(
        &mut self,
        producer: &FutureProducer,
        consumer: &BaseConsumer<CfsContext>,
        batch: &[OwnedMessage],
        out: &[OutRecord],
    ) -> Result<(), KafkaError> {
        let result = (|| {
            producer.begin_transaction()?;
            for r in out {
                // The commit waits for every delivery; a failed one fails the commit.
                drop(enqueue(producer, r)?);
            }
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in last_offsets(batch) {
                tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
            }
            let group = consumer
                .group_metadata()
                .ok_or_else(|| KafkaError::Setup("the consumer has no group metadata".into()))?;
            producer.send_offsets_to_transaction(&tpl, &group, Duration::from_secs(30))?;
            producer.commit_transaction(Duration::from_secs(60))?;
            Ok::<(), KafkaError>(())
        })();
        if let Err(e) = &result {
            // The engine has already taken the batch into its state: the only consistent way on is to
            // abort and stop; a restart restores state from the changelog and re-reads the batch.
            tracing::error!(error = %e, "transaction failed: aborting and stopping");
            if let Err(abort) = producer.abort_transaction(Duration::from_secs(30)) {
                tracing::error!(error = %abort, "abort failed");
            }
        }
        result
    }

    /// Read the registry to the end offsets it has now. Returns false when asked to stop first.
    fn bootstrap_registry(
        &mut self,
        registry: &mut RegistryFollower,
        producer: &FutureProducer,
        shutdown: &AtomicBool,
    ) -> Result<bool, KafkaError> {
        let started = Instant::now();
        let target = registry.end_offsets(Duration::from_secs(30))?;
        let total: i64 = target.values().sum();
        tracing::info!(topic = %self.settings.topics.registry, records = total, "reading the camera registry");
        let mut bad = Vec::new();
        loop {
            let step = Instant::now() + Duration::from_secs(1);
            let mut applied = Applied::default();
            let done = registry.catch_up(self.index, &target, step, &mut applied, &mut bad)?;
            self.count_registry(applied);
            self.dead_letter_registry(producer, &mut bad)?;
            if done {
                tracing::info!(
                    cameras = self.index.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "camera registry loaded"
                );
                return Ok(true);
            }
            if shutdown.load(Relaxed) {
                return Ok(false);
            }
            if started.elapsed() > self.opts.registry_bootstrap_timeout {
                return Err(KafkaError::Setup(format!(
                    "the camera registry ({}) was not read to its end within {:?}",
                    self.settings.topics.registry, self.opts.registry_bootstrap_timeout
                )));
            }
            tracing::info!(cameras = self.index.len(), "still reading the camera registry");
        }
    }

    fn apply_registry(
        &mut self,
        registry: &mut RegistryFollower,
        producer: &FutureProducer,
        sync: Option<Duration>,
    ) -> Result<(), KafkaError> {
        let mut applied = Applied::default();
        let mut bad = Vec::new();
        match sync {
            None => registry.drain(self.index, &mut applied, &mut bad)?,
            Some(wait) => {
                let caught_up = match registry.end_offsets(wait) {
                    Ok(target) => {
                        registry.catch_up(self.index, &target, Instant::now() + wait, &mut applied, &mut bad)?
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registry end offsets unavailable");
                        false
                    }
                };
                if !caught_up {
                    registry.drain(self.index, &mut applied, &mut bad)?;
                    metrics::counter!("dispatch_trigger_registry_sync_timeouts_total").increment(1);
                    tracing::warn!("registry not confirmed current before a batch (deciding with what has arrived)");
                }
            }
        }
        self.count_registry(applied);
        self.dead_letter_registry(producer, &mut bad)
    }

    fn count_registry(&mut self, a: Applied) {
        let r = &mut self.stats.registry;
        (r.upserts, r.removals, r.bad) = (r.upserts + a.upserts, r.removals + a.removals, r.bad + a.bad);
        for (kind, n) in [("upsert", a.upserts), ("removal", a.removals), ("bad", a.bad)] {
            if n > 0 {
                metrics::counter!("dispatch_trigger_registry_updates_total", "kind" => kind).increment(n);
            }
        }
        metrics::gauge!("dispatch_trigger_cameras").set(self.index.len() as f64);
    }

    fn dead_letter_registry(
        &mut self,
        producer: &FutureProducer,
        bad: &mut Vec<BadRegistryRecord>,
    ) -> Result<(), KafkaError> {
        if bad.is_empty() {
            return Ok(());
        }
        let topic = &self.settings.topics;
        let records: Vec<OutRecord> = bad
            .drain(..)
            .map(|b| {
                tracing::warn!(
                    partition = b.partition,
                    offset = b.offset,
                    reason = b.reason,
                    detail = %b.detail,
                    "bad registry record: dead-lettered, the camera is not in the index"
                );
                metrics::counter!("dispatch_trigger_registry_rejects_total", "reason" => b.reason).increment(1);
                let mut headers = vec![
                    (H_REASON, b"invalid_camera_record".to_vec()),
                    (H_CAMERA_PROBLEM, b.reason.as_bytes().to_vec()),
                    (H_DETAIL, b.detail.into_bytes()),
                    (H_TOPIC, topic.registry.as_bytes().to_vec()),
                    (H_PARTITION, b.partition.to_string().into_bytes()),
                    (H_OFFSET, b.offset.to_string().into_bytes()),
                ];
                // A registry record holds an owner's home location: redacted letters keep none of it.
                let payload = kept_bytes(&b.payload, self.opts.dead_letter_payload, false, &mut headers);
                let key = b.key.clone().unwrap_or_default();
                let payload = fit(payload, &b.payload, &key, &mut headers, self.opts.dead_letter_max_bytes);
                OutRecord { topic: topic.dead_letter.clone(), partition: None, key, payload: Some(payload), headers }
            })
            .collect();
        self.stats.dead_letters += records.len() as u64;
        metrics::counter!("dispatch_trigger_dead_letters_total", "source" => "registry")
            .increment(records.len() as u64);
        self.deliver(producer, &records, &AtomicBool::new(false)).map(|_| ())
    }

    fn watchdog(&self, last_cfs: &mut Instant, got: bool) {
        if got {
            *last_cfs = Instant::now();
            self.health.last_cfs_ms.store(wall_ms(), Relaxed);
            if self.health.cad_silent.swap(false, Relaxed) {
                tracing::info!("calls for service are arriving again");
                metrics::gauge!("dispatch_trigger_cad_silent").set(0.0);
            }
        } else if last_cfs.elapsed() >= self.opts.cad_silence && !self.health.cad_silent.swap(true, Relaxed) {
            tracing::warn!(
                silent_s = last_cfs.elapsed().as_secs(),
                topic = %self.settings.topics.cfs,
                "no call for service received: is the CAD feed down?"
            );
            metrics::gauge!("dispatch_trigger_cad_silent").set(1.0);
        }
        metrics::gauge!("dispatch_trigger_seconds_since_last_cfs").set(last_cfs.elapsed().as_secs_f64());
    }

    /// Decide a batch: the records to produce (and, exactly-once, the incident-state changes), and the
    /// decoded events.
    #[allow(clippy::type_complexity)]
    fn decide_batch(
        &mut self,
        batch: &[OwnedMessage],
    ) -> Result<(Vec<OutRecord>, Vec<Result<trigger_core::CallForService, Reject>>), KafkaError> {
        let polled_ms = wall_ms();
        let opts = DecodeOptions { max_message_bytes: self.opts.max_message_bytes, agency_id: None };
        let decoded: Vec<Result<trigger_core::CallForService, Reject>> =
            batch.iter().map(|m| trigger_cad::pb::decode_one(m.payload().unwrap_or_default(), &opts)).collect();

        // Under backlog, higher-priority incidents first. Records with the same key (an incident's revisions,
        // and any break-glass request for it) share the priority of the highest among them and keep their
        // order: the sort is stable.
        let mut key_priority: HashMap<&[u8], u8> = HashMap::new();
        for (m, ev) in batch.iter().zip(&decoded) {
            if let Ok(ev) = ev {
                let p = self.engine.policy().priority_of_event(ev);
                let e = key_priority.entry(m.key().unwrap_or_default()).or_default();
                *e = (*e).max(p);
            }
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| {
            std::cmp::Reverse(key_priority.get(batch[i].key().unwrap_or_default()).copied().unwrap_or(0))
        });

        let topics = self.settings.topics.clone();
        let eos = self.settings.delivery == Delivery::ExactlyOnce;
        let mut out = Vec::new();
        for i in order {
            let m = &batch[i];
            self.stats.events += 1;
            metrics::counter!("dispatch_trigger_events_total").increment(1);
            // A break-glass request travels on the CFS topic, keyed like the incident it is for, so it lands on
            // the incident's partition, in order with its revisions (and in its transaction, exactly-once).
            let (result, incident) = if is_break_glass(m) {
                match serde_json::from_slice::<trigger_core::BreakGlassRequest>(m.payload().unwrap_or_default()) {
                    Ok(req) => {
                        let record = self.engine.break_glass(&req, wall_ms());
                        let d = trigger_core::Decision { record, commands: vec![], notices: vec![] };
                        (Ok(d), Some((req.agency_id, req.incident_id)))
                    }
                    Err(e) => {
                        (Err(Reject::new(RejectReason::MalformedJson, format!("break-glass request: {e}"))), None)
                    }
                }
            } else {
                let incident = decoded[i].as_ref().ok().map(|ev| (ev.agency_id.clone(), ev.incident_id.clone()));
                let result = decoded[i].as_ref().map_err(Clone::clone).and_then(|ev| {
                    stage("cad_to_poll", polled_ms.saturating_sub(ev.emitted_at) as f64 / 1e3);
                    let t = Instant::now();
                    let d = self.engine.decide(ev, &*self.index, wall_ms());
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    stage("decide", us / 1e6);
                    let _ = self.stats.decide_us.record(us.ceil() as u64);
                    d
                });
                (result, incident)
            };
            match result {
                Err(r) => {
                    *self.stats.rejects.entry(r.reason.as_str()).or_default() += 1;
                    self.stats.dead_letters += 1;
                    metrics::counter!("dispatch_trigger_rejects_total", "reason" => r.reason.as_str()).increment(1);
                    metrics::counter!("dispatch_trigger_dead_letters_total", "source" => "cfs").increment(1);
                    tracing::debug!(
                        reason = r.reason.as_str(),
                        partition = m.partition(),
                        offset = m.offset(),
                        "refused"
                    );
                    let mode = self.opts.dead_letter_payload;
                    let max = self.opts.dead_letter_max_bytes;
                    out.push(dead_letter(&topics.dead_letter, m, r.reason.as_str(), &r.detail, mode, max));
                }
                Ok(d) => {
                    let rec = &d.record;
                    *self.stats.decisions.entry(rec.outcome.as_str()).or_default() += 1;
                    metrics::counter!("dispatch_trigger_decisions_total", "outcome" => rec.outcome.as_str())
                        .increment(1);
                    match rec.outcome {
                        Outcome::RefusedStale => metrics::counter!("dispatch_trigger_refused_stale_total").increment(1),
                        Outcome::OutsideIncidentWindow => {
                            metrics::counter!("dispatch_trigger_outside_incident_window_total").increment(1)
                        }
                        _ => {}
                    }
                    for x in &rec.excluded {
                        metrics::counter!("dispatch_trigger_exclusions_total", "reason" => x.reason.as_str())
                            .increment(1);
                    }
                    for c in &d.commands {
                        match c.action {
                            Action::Start => self.stats.start_commands += 1,
                            Action::Stop => self.stats.stop_commands += 1,
                        }
                        metrics::counter!("dispatch_trigger_commands_total", "action" => c.action.as_str())
                            .increment(1);
                        out.push(OutRecord::keyed(
                            &topics.commands,
                            c.camera_id.as_bytes(),
                            Some(codec::command(c).encode_to_vec()),
                        ));
                    }
                    let sealed = self.chain(m.partition())?.seal(codec::activation(rec));
                    out.push(OutRecord {
                        topic: topics.audit.clone(),
                        partition: Some(m.partition()),
                        key: rec.incident_ref.clone().into_bytes(),
                        payload: Some(sealed.encode_to_vec()),
                        headers: vec![],
                    });
                    self.stats.owner_notices += d.notices.len() as u64;
                    metrics::counter!("dispatch_trigger_owner_notices_total").increment(d.notices.len() as u64);
                    for n in &d.notices {
                        out.push(OutRecord::keyed(
                            &topics.notices,
                            n.owner_ref.as_bytes(),
                            Some(codec::notice(n).encode_to_vec()),
                        ));
                    }
                    if let Some(key) = incident {
                        let snap = self.engine.snapshot_incident(&key.0, &key.1);
                        if eos {
                            out.push(OutRecord {
                                topic: topics.changelog.clone(),
                                partition: Some(m.partition()),
                                key: format!("{}/{}", key.0, key.1).into_bytes(),
                                payload: snap.map(|s| serde_json::to_vec(&s).expect("serialisable")),
                                headers: vec![],
                            });
                        }
                        self.incident_partition.insert(key, m.partition());
                    }
                }
            }
        }
        metrics::gauge!("dispatch_trigger_incidents_in_state").set(self.engine.incidents_in_state() as f64);
        Ok((out, decoded))
    }

    fn record_latencies(&mut self, batch: &[OwnedMessage], decoded: &[Result<trigger_core::CallForService, Reject>]) {
        let (acked_ms, acked_us) = (wall_ms(), wall_us());
        let from = self.health.measure_from_ms.load(Relaxed);
        for (m, ev) in batch.iter().zip(decoded) {
            if let Some(ts) = m.timestamp().to_millis() {
                let us = acked_us.saturating_sub(ts.saturating_mul(1000)).max(0);
                stage("end_to_end", us as f64 / 1e6);
                if ts >= from {
                    let _ = self.stats.end_to_end_us.record(us.max(1) as u64);
                }
            }
            if let Ok(ev) = ev {
                stage("cad_emitted_to_ack", acked_ms.saturating_sub(ev.emitted_at) as f64 / 1e3);
            }
        }
    }

    /// Produce every record and wait for every acknowledgement, retrying failures with backoff.
    /// Returns false if asked to stop while some records were still unacknowledged.
    fn deliver(
        &mut self,
        producer: &FutureProducer,
        records: &[OutRecord],
        shutdown: &AtomicBool,
    ) -> Result<bool, KafkaError> {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            let futures = pending
                .iter()
                .map(|&i| enqueue(producer, &records[i]).map(|f| (i, f)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut failed = Vec::new();
            for (i, f) in futures {
                if let Err(e) = acked(f) {
                    tracing::warn!(error = %e, topic = %records[i].topic, "delivery failed; will retry");
                    failed.push(i);
                }
            }
            if failed.is_empty() {
                return Ok(true);
            }
            if shutdown.load(Relaxed) {
                return Ok(false);
            }
            self.stats.delivery_retries += failed.len() as u64;
            metrics::counter!("dispatch_trigger_delivery_retries_total").increment(failed.len() as u64);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.opts.retry_backoff_max);
            pending = failed;
        }
    }
}
