//! Committing a plan to Kafka. A plan (see [`crate::plan`]) is the batch's output records, computed without
//! I/O; a sink makes it durable:
//!
//! - at-least-once ([`Delivering::deliver`]): produce every record, wait for every acknowledgement, retry what
//!   failed; the caller stores the batch's offsets only after that;
//! - exactly-once ([`commit_transaction`]): the records and the consumer offsets after the batch in one
//!   transaction.
//!
//! **The rule for produce errors** ([`classify`]): an error is *retriable* when waiting can make it go away
//! (broker unreachable or moving, timeouts, too few in-sync replicas, throttling, a full queue, a topic that
//! is still being created); those are retried with backoff (up to `retry_backoff_max`) for as long as they
//! last, and given up only when the service is asked to stop (the batch's offsets are then not stored). Every
//! other error is *permanent* (authorisation, a record too large, an invalid record, anything unknown): it is
//! named and counted (`dispatch_trigger_produce_errors_total{class, code}`), retried a bounded number of
//! times (`permanent_attempts`: an ACL or topic setting being fixed), then the service stops with
//! [`KafkaError::Delivery`] — the batch's offsets not stored, so nothing is lost, and the error says what to
//! fix. A *fatal* producer error (librdkafka's idempotence state is lost) replaces the producer and retries.
//!
//! **Order.** The at-least-once producer runs with `enable.gapless.guarantee`: when a record fails, librdkafka
//! does not deliver the records after it in the same partition (it raises a fatal error instead), so what
//! failed is always the tail of each partition, and it is sent again in its original order. Without this, a
//! permanent error on audit record 0 let records 1..9 land, and the retry put record 0 after them: the
//! partition's hash chain no longer verified.

use crate::batch::last_offsets;
use crate::options::{RetryPolicy, ServiceOptions};
use crate::produce::{acked, enqueue};
use crate::records::{InRecord, OutRecord};
use crate::settings::Delivery;
use crate::settings::{KafkaSettings, Role};
use crate::telemetry;
use crate::KafkaError;
use crate::Producer as FutureProducer;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{Producer as _, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub use crate::produce_rule::{classify, ErrorClass};

fn code_of(e: &KafkaError) -> Code {
    match e {
        KafkaError::Kafka(k) => k.rdkafka_error_code().unwrap_or(Code::Fail),
        _ => Code::Fail,
    }
}

/// The at-least-once sink: one idempotent, gapless producer that is replaced after a fatal error.
pub struct Delivering {
    settings: KafkaSettings,
    role: Role,
    producer: FutureProducer,
    retry: RetryPolicy,
    /// Partitions this producer has written to (see [`Delivering::hold_unproven`]).
    proven: HashMap<String, HashSet<i32>>,
    /// Records sent again after a failure, over the sink's life.
    pub retries: u64,
}

impl std::fmt::Debug for Delivering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivering")
            .field("role", &self.role)
            .field("retry", &self.retry)
            .field("proven", &self.proven)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Delivering {
    pub fn new(settings: &KafkaSettings, role: Role, retry: RetryPolicy) -> Result<Self, KafkaError> {
        let producer = Self::create(settings, role)?;
        Ok(Self { settings: settings.clone(), role, producer, retry, proven: HashMap::new(), retries: 0 })
    }

    fn create(settings: &KafkaSettings, role: Role) -> Result<FutureProducer, KafkaError> {
        let mut config = settings.client_config(role);
        config.set("enable.gapless.guarantee", "true");
        Ok(config.create_with_context(crate::Ctx("producer"))?)
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Produce every record and wait for every acknowledgement, retrying by the rule in the module docs.
    /// Ok(false): `stop` said so (the service stopping, or no longer the decider) while some records were still
    /// unacknowledged.
    pub fn deliver(&mut self, records: &[OutRecord], stop: &dyn Fn() -> bool) -> Result<bool, KafkaError> {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = Duration::from_millis(100);
        let mut permanent_rounds = 0;
        loop {
            let (now, mut held) = self.hold_unproven(records, &pending);
            let mut failed = self.send_round(records, &now);
            for &i in &now {
                if let (Some(p), false) = (records[i].partition, failed.iter().any(|(f, _)| *f == i)) {
                    if let Some(ps) = self.proven.get_mut(&records[i].topic) {
                        ps.insert(p);
                    } else {
                        self.proven.insert(records[i].topic.clone(), HashSet::from([p]));
                    }
                }
            }
            if failed.is_empty() {
                if held.is_empty() {
                    return Ok(true);
                }
                pending = held;
                continue;
            }
            failed.sort_by_key(|(i, _)| *i);
            let worst = self.note_failures(records, &failed)?;
            if worst == ErrorClass::Permanent {
                permanent_rounds += 1;
                if permanent_rounds >= self.retry.permanent_attempts {
                    let (i, code) = *failed.iter().find(|(_, c)| classify(*c) == ErrorClass::Permanent).expect("one");
                    let topic = records[i].topic.clone();
                    return Err(KafkaError::Delivery { topic, code, attempts: permanent_rounds });
                }
            }
            if stop() {
                return Ok(false);
            }
            self.retries += failed.len() as u64;
            telemetry::delivery_retries(failed.len());
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.retry.backoff_max);
            held.extend(failed.into_iter().map(|(i, _)| i));
            held.sort_unstable();
            pending = held;
        }
    }

    /// A producer's first record to a partition goes alone: the broker accepts any sequence number from a
    /// producer it has no state for, so if that first record failed, the ones sent behind it would land
    /// ahead of its retry. Returns the records to send now and the ones held for the next round.
    fn hold_unproven(&self, records: &[OutRecord], pending: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut first: HashSet<(&str, i32)> = HashSet::new();
        pending.iter().partition(|&&i| match records[i].partition {
            Some(p) if !self.proven.get(&records[i].topic).is_some_and(|ps| ps.contains(&p)) => {
                first.insert((&records[i].topic, p))
            }
            _ => true,
        })
    }

    /// Count and log each failure; replace the producer after a fatal error. Returns the worst class seen.
    fn note_failures(&mut self, records: &[OutRecord], failed: &[(usize, Code)]) -> Result<ErrorClass, KafkaError> {
        let mut worst = ErrorClass::Retriable;
        for &(i, code) in failed {
            let class = classify(code);
            telemetry::produce_error(&records[i].topic, code, class);
            worst = match (worst, class) {
                (ErrorClass::Permanent, _) | (_, ErrorClass::Permanent) => ErrorClass::Permanent,
                (ErrorClass::Fatal, _) | (_, ErrorClass::Fatal) => ErrorClass::Fatal,
                _ => ErrorClass::Retriable,
            };
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(code = ?code, %reason, "fatal producer error: replacing the producer");
            self.producer = Self::create(&self.settings, self.role)?;
            self.proven.clear();
        }
        Ok(worst)
    }

    /// One round: enqueue every pending record in order and collect what failed, with its error. After a
    /// record of a topic is refused at enqueue, the later records of that topic are not sent this round (they
    /// would land ahead of it).
    fn send_round(&self, records: &[OutRecord], pending: &[usize]) -> Vec<(usize, Code)> {
        let mut failed = Vec::new();
        let mut refused: HashSet<&str> = HashSet::new();
        let mut futures = Vec::with_capacity(pending.len());
        for &i in pending {
            let r = &records[i];
            if let Some(code) = refused.contains(r.topic.as_str()).then_some(Code::Retry) {
                failed.push((i, code));
                continue;
            }
            match enqueue(&self.producer, r) {
                Ok(f) => futures.push((i, f)),
                Err(e) => {
                    refused.insert(&r.topic);
                    failed.push((i, code_of(&e)));
                }
            }
        }
        for (i, f) in futures {
            if let Err(e) = acked(f) {
                failed.push((i, code_of(&e)));
                // After a fatal error nothing more will be delivered: fail what is still queued or in flight
                // now rather than at its message timeout.
                if self.producer.client().fatal_error().is_some() {
                    self.producer.purge(PurgeConfig::default().queue().inflight());
                }
            }
        }
        failed
    }
}

/// Where a plan goes: at-least-once, one delivering producer; exactly-once, the transactional producer (only
/// while leading: creating it fences whoever led before), and a delivering one for what belongs to no CFS
/// transaction (dead letters of bad registry records: on the transactional producer outside a transaction
/// librdkafka refuses them, and since the registry is re-read from its start, one bad camera would stop every
/// instance at every start).
pub(crate) enum Sink {
    AtLeastOnce(Delivering),
    ExactlyOnce { producer: Option<FutureProducer>, side: Delivering },
}

impl Sink {
    pub(crate) fn new(settings: &KafkaSettings, opts: &ServiceOptions) -> Result<Self, KafkaError> {
        Ok(match settings.delivery {
            Delivery::AtLeastOnce => Sink::AtLeastOnce(Delivering::new(settings, Role::Producer, opts.retry())?),
            Delivery::ExactlyOnce => {
                Sink::ExactlyOnce { producer: None, side: Delivering::new(settings, Role::SideProducer, opts.retry())? }
            }
        })
    }

    /// Ready to write as the decider: exactly-once, the transactional producer, whose initialisation fences
    /// the previous decider's producer and aborts what it left open.
    pub(crate) fn lead(&mut self, settings: &KafkaSettings) -> Result<(), KafkaError> {
        if let Sink::ExactlyOnce { producer, .. } = self {
            let p: FutureProducer =
                settings.client_config(Role::Producer).create_with_context(crate::Ctx("transactional-producer"))?;
            p.init_transactions(Duration::from_secs(60))?;
            *producer = Some(p);
        }
        // Learn every output topic's metadata now, so the first record to each does not wait for it.
        let client = self.producer().client();
        for topic in settings.topics.outputs() {
            if let Err(e) = client.fetch_metadata(Some(topic), Duration::from_secs(10)) {
                tracing::warn!(topic = %topic, error = %e, "no metadata for an output topic yet");
            }
        }
        Ok(())
    }

    pub(crate) fn step_down(&mut self) {
        if let Sink::ExactlyOnce { producer, .. } = self {
            *producer = None;
        }
    }

    /// The producer of the batch outputs.
    pub(crate) fn producer(&self) -> &FutureProducer {
        match self {
            Sink::AtLeastOnce(d) => d.producer(),
            Sink::ExactlyOnce { producer: Some(p), .. } => p,
            Sink::ExactlyOnce { side, .. } => side.producer(),
        }
    }

    /// Where records outside any batch (registry dead letters) are delivered.
    pub(crate) fn side(&mut self) -> &mut Delivering {
        match self {
            Sink::AtLeastOnce(d) => d,
            Sink::ExactlyOnce { side, .. } => side,
        }
    }

    /// Records produced again after a failed attempt. In exactly-once mode this counts the side producer's
    /// (registry dead letters) only: librdkafka retries inside a transaction on its own, and a transaction
    /// that fails is aborted and stops the service (its batch is decided again by whoever restarts).
    pub(crate) fn retries(&self) -> u64 {
        match self {
            Sink::AtLeastOnce(d) => d.retries,
            Sink::ExactlyOnce { side, .. } => side.retries,
        }
    }

    /// Commit a batch's plan, and with it the batch: exactly-once, its records and the offsets after the batch
    /// in one transaction; at-least-once, its records produced and every one acknowledged (the incident-state
    /// records after the outputs they stand for), then the batch's offsets stored. Ok(false): `stop` said so
    /// before every record was acknowledged (the offsets were not stored).
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        records: &mut [OutRecord],
        batch: &[InRecord],
        consumer: &BaseConsumer<C>,
        stop: &dyn Fn() -> bool,
    ) -> Result<bool, KafkaError> {
        match self {
            Sink::ExactlyOnce { producer, .. } => {
                let producer =
                    producer.as_ref().ok_or_else(|| KafkaError::Internal("deciding without a producer".into()))?;
                let mut tpl = TopicPartitionList::new();
                for ((topic, partition), offset) in last_offsets(batch) {
                    tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
                }
                commit_transaction(producer, consumer, records, &tpl)?;
            }
            Sink::AtLeastOnce(delivering) => {
                // Incident state after the outputs it stands for: a restart never restores a decision whose
                // commands or audit record were not acknowledged (it decides the event again instead).
                let changelog = delivering.settings.topics.changelog.clone();
                records.sort_by_key(|r| r.topic == changelog);
                let (outputs, state) = records.split_at(records.partition_point(|r| r.topic != changelog));
                if !delivering.deliver(outputs, stop)? || (!state.is_empty() && !delivering.deliver(state, stop)?) {
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
        Ok(true)
    }
}

/// The exactly-once sink: the records and the consumer offsets after the batch (`offsets`, next offset to
/// read per partition) in one transaction. On failure the transaction is aborted and the error returned: the
/// engine has already taken the batch into its state, so the only consistent way on is to stop; a restart
/// restores state from the changelog and reads the batch again.
pub fn commit_transaction<C: ConsumerContext>(
    producer: &FutureProducer,
    consumer: &BaseConsumer<C>,
    records: &[OutRecord],
    offsets: &TopicPartitionList,
) -> Result<(), KafkaError> {
    transaction(producer, records.iter(), |producer| {
        let group = consumer
            .group_metadata()
            .ok_or_else(|| KafkaError::Internal("the CFS consumer has no group metadata".into()))?;
        Ok(producer.send_offsets_to_transaction(offsets, &group, Duration::from_secs(30))?)
    })
}

/// `records` in one transaction of their own (no consumer offsets: a source that is not a consumer, such as
/// `ingest`, keeps its position in the records themselves). On failure the transaction is aborted.
pub fn produce_transaction<'r>(
    producer: &FutureProducer,
    records: impl Iterator<Item = &'r OutRecord>,
) -> Result<(), KafkaError> {
    transaction(producer, records, |_| Ok(()))
}

/// How long a transaction's records and commit may take before it is aborted.
const COMMIT_WITHIN: Duration = Duration::from_secs(60);

/// Until librdkafka holds nothing of the transaction unacknowledged (or `deadline`). rust-rdkafka's
/// `commit_transaction` flushes first, and its flush, while anything is in flight, polls the producer's queue
/// for 100 ms at a time; the delivery reports go to the producer's own polling thread instead, so each commit
/// waited ~100 ms for nothing. Waiting here (the reports arrive within a round trip) leaves that flush nothing
/// to wait for. A delivery that fails fails the commit, as before.
fn acknowledged(producer: &FutureProducer, deadline: std::time::Instant) {
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Begin, enqueue `records`, `before_commit`, commit; abort on any failure and return it.
fn transaction<'r>(
    producer: &FutureProducer,
    records: impl Iterator<Item = &'r OutRecord>,
    before_commit: impl FnOnce(&FutureProducer) -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    let result = (|| {
        producer.begin_transaction()?;
        for r in records {
            // The commit waits for every delivery; a failed one fails the commit.
            drop(enqueue(producer, r)?);
        }
        before_commit(producer)?;
        let deadline = std::time::Instant::now() + COMMIT_WITHIN;
        acknowledged(producer, deadline);
        let left = deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_secs(1));
        producer.commit_transaction(left)?;
        Ok::<(), KafkaError>(())
    })();
    if let Err(e) = &result {
        tracing::error!(error = %e, "transaction failed: aborting and stopping");
        if let Err(abort) = producer.abort_transaction(Duration::from_secs(30)) {
            tracing::error!(error = %abort, "abort failed");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedCluster;
    use crate::settings::Topics;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    #[test]
    fn the_rule_names_every_class() {
        assert_eq!(classify(Code::TopicAuthorizationFailed), ErrorClass::Permanent);
        assert_eq!(classify(Code::MessageSizeTooLarge), ErrorClass::Permanent);
        assert_eq!(classify(Code::InvalidRecord), ErrorClass::Permanent);
        assert_eq!(classify(Code::NotEnoughReplicas), ErrorClass::Retriable);
        assert_eq!(classify(Code::AllBrokersDown), ErrorClass::Retriable);
        assert_eq!(classify(Code::MessageTimedOut), ErrorClass::Retriable);
        assert_eq!(classify(Code::GaplessGuarantee), ErrorClass::Fatal);
    }

    fn setup() -> (EmbeddedCluster, KafkaSettings) {
        let cluster = EmbeddedCluster::start(1).expect("mock cluster");
        let topics = Topics::default();
        cluster.create_topics(&topics, 1).expect("topics");
        let settings = KafkaSettings { bootstrap_servers: cluster.bootstrap_servers(), topics, ..Default::default() };
        (cluster, settings)
    }

    /// A permanent error that does not go away is named, and not retried forever.
    #[test]
    fn a_lasting_permanent_error_stops_with_its_name() {
        let (cluster, settings) = setup();
        let records: Vec<OutRecord> =
            (0..3).map(|i| OutRecord::keyed(&settings.topics.audit, format!("k{i}"), Some(vec![1]))).collect();
        let retry = RetryPolicy { backoff_max: Duration::from_millis(100), permanent_attempts: 2 };
        let mut sink = Delivering::new(&settings, Role::Producer, retry).expect("sink");
        sink.deliver(&[], &|| false).expect("nothing to deliver");
        cluster.mock().request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 64],
        );
        match sink.deliver(&records, &|| false) {
            Err(KafkaError::Delivery { topic, code, attempts }) => {
                assert_eq!(topic, settings.topics.audit);
                assert_eq!(code, Code::TopicAuthorizationFailed);
                assert_eq!(attempts, 2);
            }
            other => panic!("expected a named permanent delivery error, got {other:?}"),
        }
    }
}
