//! The camera registry follower: every instance reads the whole compacted registry topic from the beginning,
//! outside the consumer group, and keeps following it. The index it feeds is what the engine decides with.

use crate::codec::{camera_from_pb, BadCamera};
use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use trigger_index::{CameraIndex, SpatialBackend};

/// A registry record that could not be applied.
#[derive(Debug, Clone)]
pub struct BadRegistryRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The named reason (`malformed_protobuf`, `key_mismatch`, or a `CameraProblem` reason).
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub upserts: u64,
    pub removals: u64,
    pub bad: u64,
}

pub struct RegistryFollower {
    consumer: BaseConsumer<crate::Ctx>,
    /// A second client that only asks for end offsets: on the follower's own connection the request would
    /// queue behind its fetch long-poll (up to fetch.wait.max.ms).
    offsets: BaseConsumer<crate::Ctx>,
    topic: String,
    partitions: Vec<i32>,
    /// Next offset to read per partition, as far as this follower has applied.
    position: HashMap<i32, i64>,
}

impl std::fmt::Debug for RegistryFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFollower")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl RegistryFollower {
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer<crate::Ctx> =
            settings.client_config(Role::RegistryFollower).create_with_context(crate::Ctx("registry-follower"))?;
        let topic = settings.topics.registry.clone();
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(KafkaError::Setup(format!("registry topic {topic:?} does not exist or has no partitions")));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let offsets =
            settings.client_config(Role::RegistryFollower).create_with_context(crate::Ctx("registry-offsets"))?;
        Ok(Self { consumer, offsets, topic, partitions, position: HashMap::new() })
    }

    /// The registry's current end offsets (high watermarks): one ListOffsets request per broker.
    pub fn end_offsets(&self, timeout: Duration) -> Result<HashMap<i32, i64>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in &self.partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::End)?;
        }
        let got = self.offsets.offsets_for_times(tpl, timeout)?;
        let mut ends = HashMap::new();
        for e in got.elements_for_topic(&self.topic) {
            match e.offset() {
                Offset::Offset(o) => {
                    ends.insert(e.partition(), o);
                }
                _ => {
                    let (_, high) = self.offsets.fetch_watermarks(&self.topic, e.partition(), timeout)?;
                    ends.insert(e.partition(), high);
                }
            }
        }
        Ok(ends)
    }

    fn caught_up(&self, target: &HashMap<i32, i64>) -> bool {
        target.iter().all(|(p, end)| self.position.get(p).copied().unwrap_or(0) >= *end)
    }

    /// Apply everything up to `target` (end offsets taken before the call), or until `deadline`.
    /// Returns whether the target was reached.
    pub fn catch_up<B: SpatialBackend>(
        &mut self,
        index: &mut CameraIndex<B>,
        target: &HashMap<i32, i64>,
        deadline: Instant,
        applied: &mut Applied,
        bad: &mut Vec<BadRegistryRecord>,
    ) -> Result<bool, KafkaError> {
        while !self.caught_up(target) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.poll_one(index, left.min(Duration::from_millis(100)), applied, bad)?;
        }
        Ok(true)
    }

    /// Apply what has already arrived, without waiting.
    pub fn drain<B: SpatialBackend>(
        &mut self,
        index: &mut CameraIndex<B>,
        applied: &mut Applied,
        bad: &mut Vec<BadRegistryRecord>,
    ) -> Result<(), KafkaError> {
        while self.poll_one(index, Duration::ZERO, applied, bad)? {}
        Ok(())
    }

    /// Returns whether anything was received.
    fn poll_one<B: SpatialBackend>(
        &mut self,
        index: &mut CameraIndex<B>,
        timeout: Duration,
        applied: &mut Applied,
        bad: &mut Vec<BadRegistryRecord>,
    ) -> Result<bool, KafkaError> {
        let Some(r) = self.consumer.poll(timeout) else { return Ok(false) };
        let m = match r {
            Ok(m) => m,
            Err(RdError::PartitionEOF(p)) => {
                self.note_end(p);
                return Ok(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %self.topic, "registry consumer error (librdkafka retries)");
                return Ok(true);
            }
        };
        self.position.insert(m.partition(), m.offset() + 1);
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        let result = match m.payload() {
            // Tombstone: the camera left the registry (removed or opted out).
            None => {
                if index.remove(&key).is_some() {
                    applied.removals += 1;
                }
                Ok(())
            }
            Some(bytes) => camera_from_pb(bytes)
                .and_then(|rec| {
                    if rec.camera_id != key {
                        let detail = format!("key {key:?} is not the record's camera_id {:?}", rec.camera_id);
                        return Err(BadCamera { reason: "key_mismatch", detail });
                    }
                    index.upsert(rec).map_err(|e| BadCamera { reason: e.reason(), detail: e.to_string() })
                })
                .map(|()| applied.upserts += 1),
        };
        if let Err(BadCamera { reason, detail }) = result {
            // An unreadable update must not leave the camera under the consent it was meant to replace.
            index.remove(&key);
            applied.bad += 1;
            bad.push(BadRegistryRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                reason,
                detail,
            });
        }
        Ok(true)
    }

    /// At the end of partition `p`: the position is the end offset (compaction and control records leave gaps).
    fn note_end(&mut self, p: i32) {
        let Ok(pos) = self.consumer.position() else { return };
        for e in pos.elements_for_topic(&self.topic) {
            if let (true, Offset::Offset(o)) = (e.partition() == p, e.offset()) {
                self.position.insert(p, o);
            }
        }
    }
}
