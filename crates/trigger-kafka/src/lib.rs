//! trigger-kafka: the only crate that links librdkafka. A batch of calls for service goes source → decode →
//! decide → plan → sink, each in a module of its own:
//!
//! - [`service`]: the consumer loop (CFS through a consumer group with manual offset storage, the registry
//!   followed live, partitions taken over at assignment); at-least-once or exactly-once
//!   ([`settings::Delivery`]).
//! - [`plan`]: a batch of plain records ([`InRecord`]) decided and turned into its output records, without I/O.
//! - [`sink`]: committing a plan in either delivery mode (`Sink::commit`; at-least-once: produce and await
//!   every acknowledgement, by the documented produce-error rule, then store the offsets; exactly-once: one
//!   transaction with the consumer offsets).
//! - [`records`]: output records, keys, header names, dead-letter rules.
//! - [`telemetry`]: every metric and its log line, as typed events.
//! - [`options`]: the `[service]` settings, health (readiness), run statistics.
//! - [`registry`]: the camera registry follower (whole compacted topic from the beginning, outside the group).
//! - [`produce`]: enqueue and acknowledgement, publishers for tools and tests.
//! - [`produce_rule`]: which produce errors are retriable, permanent or fatal.
//! - [`connect`]: the start-up connection check (the broker's reason for a refused connection).
//! - [`batch`]: one batch as a loop takes it (polled, its offsets, what it cost as a typed event).
//! - [`relay`]: a bare consume -> produce relay, the baseline the service is benchmarked against.
//! - [`admin`]: creating the service's topics (compacted registry and changelog, bounded dead-letter
//!   retention, the audit kept forever), topic configuration.
//! - [`codec`]: domain types to and from the protobuf contracts.
//! - [`settings`]: topics, security, low-latency client defaults, raw librdkafka properties with clash checks.
//! - [`ingest`]: where a live CAD source writes its records and, with them, its watermark.
//! - [`inspect`]: reading topics back (counts, whole-topic reads) for tools, the demo and tests.
//! - [`embedded`]: librdkafka's in-process mock cluster (real protocol on localhost) for demos and tests.

pub mod admin;
pub mod batch;
pub mod codec;
pub mod command_feed;
pub mod connect;
pub mod embedded;
pub mod ingest;
pub mod inspect;
pub mod leader;
pub mod options;
pub mod plan;
pub mod produce;
pub mod produce_rule;
pub mod records;
pub mod registry;
pub mod relay;
pub mod service;
pub mod settings;
pub mod sink;
pub mod telemetry;
pub mod topics;

pub use batch::{BatchObserver, BatchTiming};
pub use embedded::EmbeddedCluster;
pub use produce::{Publisher, Undelivered};
pub use records::{InRecord, OutRecord};
pub use service::{DeadLetterPayload, Health, RoundTrips, RunStats, Service, ServiceOptions};
pub use settings::{Delivery, KafkaSettings, Secret, Security, Topics};

/// Errors of the Kafka layer, by whose fault and whether retrying helps.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The configuration is wrong: fix it, retrying will not help.
    #[error("invalid Kafka settings:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    /// The cluster could not be reached or refused this client (wrong password, untrusted certificate,
    /// nothing listening): `cause` is the broker's or the TLS library's own reason.
    #[error("cannot connect to Kafka at {bootstrap}: {cause}")]
    Connect { bootstrap: String, cause: String },
    /// The deployment's topics do not fit the service (missing, or with the wrong partition count): fix the
    /// topics (`dispatch-trigger topics create` makes them right).
    #[error("{0}")]
    Setup(String),
    /// The cluster refused an administrative request (creating, deleting or configuring topics): `code` is its
    /// reason; whose fault it is follows from it (an authorisation refusal is the configuration's, a timeout
    /// the cluster's).
    #[error("{what}: {code} ({code:?})")]
    Admin { what: String, code: rdkafka::types::RDKafkaErrorCode },
    /// A produce error the rule in [`sink`] calls permanent, still there after its bounded retries: fix
    /// what it names (an ACL, a topic's size limit); the batch's offsets were not stored.
    #[error("permanent produce error on topic {topic:?}: {code} ({code:?}), after {attempts} attempts")]
    Delivery { topic: String, code: rdkafka::types::RDKafkaErrorCode, attempts: u32 },
    /// The brokers did not answer in time (while reading a topic back, for instance).
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: String, after: std::time::Duration },
    /// The last record of an audit partition (the chain head to continue from) is not an audit record:
    /// something other than this service wrote to the audit topic.
    #[error("audit partition {partition}: the last record is not an audit record ({error}); nothing is appended to a chain that cannot be continued")]
    AuditTail { partition: i32, error: String },
    /// A broken invariant of the service itself: a bug to report.
    #[error("internal error: {0}")]
    Internal(String),
    /// librdkafka reported an error.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// The wall clock, Unix milliseconds (0 before 1970).
pub fn wall_ms() -> i64 {
    wall_us() / 1000
}

/// The wall clock, Unix microseconds (0 before 1970).
pub fn wall_us() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Whose fault an error is (arroyo's model): what an operator reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The configuration or the user's input: fix it; retrying does not help.
    Config,
    /// An external system (the brokers, a topic's content, a file): it may pass.
    External,
    /// This service: a bug.
    Internal,
}

impl KafkaError {
    pub fn fault(&self) -> Fault {
        match self {
            KafkaError::Config(_) | KafkaError::Setup(_) | KafkaError::Delivery { .. } => Fault::Config,
            KafkaError::Admin { code, .. } if produce_rule::classify(*code) == produce_rule::ErrorClass::Retriable => {
                Fault::External
            }
            KafkaError::Admin { .. } => Fault::Config,
            KafkaError::Connect { .. } | KafkaError::Timeout { .. } | KafkaError::AuditTail { .. } => Fault::External,
            KafkaError::Kafka(_) => Fault::External,
            KafkaError::Internal(_) => Fault::Internal,
        }
    }

    /// Whether the same call may succeed later without anything being changed (the caller's retry hint;
    /// produce errors have their own finer rule, [`produce_rule::classify`]).
    pub fn retriable(&self) -> bool {
        match self {
            KafkaError::Connect { .. } | KafkaError::Timeout { .. } => true,
            KafkaError::Admin { code, .. } => produce_rule::classify(*code) == produce_rule::ErrorClass::Retriable,
            KafkaError::Kafka(e) => {
                e.rdkafka_error_code().is_some_and(|c| produce_rule::classify(c) == produce_rule::ErrorClass::Retriable)
            }
            _ => false,
        }
    }
}

/// librdkafka's client-level errors, through `tracing`. End-of-partition is expected (the registry follower
/// asks for it) and transport errors are retried by librdkafka: both are below error level.
pub(crate) fn log_client_error(client: &str, error: rdkafka::error::KafkaError, reason: &str) {
    use rdkafka::error::KafkaError as E;
    match error {
        E::PartitionEOF(_) | E::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
            tracing::trace!(client, %reason, "end of partition")
        }
        E::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        | E::Global(rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure) => {
            tracing::warn!(client, %error, %reason, "broker connection lost; librdkafka reconnects")
        }
        _ => tracing::error!(client, %error, %reason, "librdkafka error"),
    }
}

/// The client context of every client of this crate: librdkafka's errors to `tracing` (see [`log_client_error`]),
/// named by the client (`cfs-consumer`, `producer`).
#[derive(Debug, Clone, Copy)]
pub struct Ctx(pub &'static str);
impl rdkafka::ClientContext for Ctx {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        log_client_error(self.0, error, reason);
    }

    /// librdkafka's log, as rdkafka's default context writes it, less the one warning about a setting this
    /// crate makes on purpose: `enable.gapless.guarantee` (flagged experimental) keeps a failed record the tail
    /// of its partition, which the at-least-once sink's order depends on (`sink`'s module documentation).
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "CONFWARN" && log_message.contains("enable.gapless.guarantee") {
            tracing::debug!(client = self.0, fac, "librdkafka: {log_message}");
            return;
        }
        rdkafka::client::DefaultClientContext.log(level, fac, log_message);
    }
}

/// Every producer of this crate: its errors and log through [`Ctx`].
pub type Producer = rdkafka::producer::FutureProducer<Ctx>;
impl rdkafka::consumer::ConsumerContext for Ctx {}
impl rdkafka::producer::ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn errors_say_whose_fault_and_whether_to_retry() {
        let refused = KafkaError::Connect { bootstrap: "b:9093".into(), cause: "SASL authentication error".into() };
        assert_eq!((refused.fault(), refused.retriable()), (Fault::External, true));
        let config = KafkaError::Config(vec!["kafka.group_id is empty".into()]);
        assert_eq!((config.fault(), config.retriable()), (Fault::Config, false));
        let permanent = KafkaError::Delivery {
            topic: "t".into(),
            code: rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed,
            attempts: 3,
        };
        assert_eq!((permanent.fault(), permanent.retriable()), (Fault::Config, false));
        use rdkafka::types::RDKafkaErrorCode as Code;
        let refused = KafkaError::Admin { what: "creating topics".into(), code: Code::TopicAuthorizationFailed };
        assert_eq!((refused.fault(), refused.retriable()), (Fault::Config, false));
        let slow = KafkaError::Admin { what: "creating topics".into(), code: Code::RequestTimedOut };
        assert_eq!((slow.fault(), slow.retriable()), (Fault::External, true));
        let registry =
            KafkaError::Timeout { what: "reading the camera registry".into(), after: Duration::from_secs(1) };
        assert_eq!((registry.fault(), registry.retriable()), (Fault::External, true));
        let transient = KafkaError::Kafka(rdkafka::error::KafkaError::MessageProduction(
            rdkafka::types::RDKafkaErrorCode::NotEnoughReplicas,
        ));
        assert!(transient.retriable());
        assert_eq!(KafkaError::Internal("x".into()).fault(), Fault::Internal);
    }
}
