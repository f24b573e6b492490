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

use crate::produce::{acked, enqueue};
use crate::records::OutRecord;
use crate::settings::{KafkaSettings, Role};
use crate::telemetry;
use crate::KafkaError;
use crate::Producer as FutureProducer;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{Producer as _, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::TopicPartitionList;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Whether retrying a produce error can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Waiting can make it go away: retried with backoff until it does or the service is asked to stop.
    Retriable,
    /// A fault of configuration or of the record itself: named, counted, retried a bounded number of times.
    Permanent,
    /// The producer's idempotence state is gone: the producer is replaced, then the records are sent again.
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retriable => "retriable",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// The documented rule (module docs): a closed list of retriable errors; everything else is permanent.
pub fn classify(code: Code) -> ErrorClass {
    match code {
        Code::Fatal
        | Code::GaplessGuarantee
        | Code::OutOfOrderSequenceNumber
        | Code::InvalidProducerEpoch
        | Code::UnknownProducerId
        | Code::InvalidProducerIdMapping
        | Code::ProducerFenced => ErrorClass::Fatal,
        Code::BrokerTransportFailure
        | Code::AllBrokersDown
        | Code::Resolve
        | Code::MessageTimedOut
        | Code::OperationTimedOut
        | Code::TimedOutQueue
        | Code::QueueFull
        | Code::UnknownPartition
        | Code::UnknownTopic
        | Code::UnknownTopicOrPartition
        | Code::LeaderNotAvailable
        | Code::NotLeaderForPartition
        | Code::FencedLeaderEpoch
        | Code::UnknownLeaderEpoch
        | Code::RequestTimedOut
        | Code::BrokerNotAvailable
        | Code::ReplicaNotAvailable
        | Code::NetworkException
        | Code::NotEnoughReplicas
        | Code::NotEnoughReplicasAfterAppend
        | Code::KafkaStorageError
        | Code::NotController
        | Code::ThrottlingQuotaExceeded
        | Code::PreferredLeaderNotAvailable
        | Code::Retry
        | Code::PurgeQueue
        | Code::PurgeInflight
        | Code::Interrupted => ErrorClass::Retriable,
        _ => ErrorClass::Permanent,
    }
}

fn code_of(e: &KafkaError) -> Code {
    match e {
        KafkaError::Kafka(k) => k.rdkafka_error_code().unwrap_or(Code::Fail),
        _ => Code::Fail,
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Longest pause between rounds (the first is 100 ms, doubling).
    pub backoff_max: Duration,
    /// Rounds with a permanent error before giving up with [`KafkaError::Delivery`].
    pub permanent_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { backoff_max: Duration::from_secs(5), permanent_attempts: 3 }
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
    let result = (|| {
        producer.begin_transaction()?;
        for r in records {
            // The commit waits for every delivery; a failed one fails the commit.
            drop(enqueue(producer, r)?);
        }
        let group = consumer
            .group_metadata()
            .ok_or_else(|| KafkaError::Internal("the CFS consumer has no group metadata".into()))?;
        producer.send_offsets_to_transaction(offsets, &group, Duration::from_secs(30))?;
        producer.commit_transaction(Duration::from_secs(60))?;
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
