//! The produce-error rule, in one place: which errors of a produce are worth waiting out (retriable), which
//! are a fault of configuration or of the record (permanent), and which lose the producer's idempotence state
//! (fatal). The sink ([`crate::sink`]) applies it; its module documentation says what each class does.

use rdkafka::types::RDKafkaErrorCode as Code;

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
