//! The bridge's side of the commands topic: a consumer in the bridge's own group (`read_committed`, so an
//! exactly-once engine's aborted commands are never seen), offsets stored only for records the bridge
//! finished with and committed every second, on revocation and at shutdown. A crash re-reads at most the
//! records after the last commit; the bridge's journal skips the ones it already finished.

use crate::settings::{KafkaSettings, Role};
use crate::{Health, KafkaError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// One record of the commands topic.
#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's bytes (empty for a tombstone).
    pub payload: Vec<u8>,
}

pub struct CommandFeed {
    consumer: BaseConsumer<crate::Ctx>,
}

impl std::fmt::Debug for CommandFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandFeed").finish_non_exhaustive()
    }
}

impl CommandFeed {
    /// Subscribe `settings.group_id` to `settings.topics.commands` (the connection is checked first: a wrong
    /// password or certificate fails here, with the broker's reason).
    pub fn open(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        crate::connect::check_connection(settings, Duration::from_secs(30))?;
        // Offsets are committed in the background once stored, whatever delivery mode the settings name.
        let settings = KafkaSettings { delivery: crate::Delivery::AtLeastOnce, ..settings.clone() };
        let consumer: BaseConsumer<crate::Ctx> =
            settings.client_config(Role::CfsConsumer).create_with_context(crate::Ctx("bridge"))?;
        consumer.subscribe(&[&settings.topics.commands])?;
        Ok(Self { consumer })
    }

    /// The next record, if one comes within `timeout`; consumer errors are logged and skipped (librdkafka
    /// recovers from them). Updates `health` (assigned partitions, broker answers).
    pub fn poll(&self, timeout: Duration, health: &Health) -> Option<CommandRecord> {
        let got = match self.consumer.poll(timeout) {
            None => None,
            Some(Ok(m)) => Some(CommandRecord {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "commands consumer error");
                None
            }
        };
        if let Ok(a) = self.consumer.assignment() {
            health.assigned_partitions.store(a.count() as i64, Relaxed);
        }
        got
    }

    /// The bridge finished with `m`: its offset may be committed.
    pub fn done(&self, r: &CommandRecord) -> Result<(), KafkaError> {
        Ok(self.consumer.store_offset(&r.topic, r.partition, r.offset)?)
    }

    /// Commit what was stored (at shutdown).
    pub fn close(self) -> Result<(), KafkaError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
