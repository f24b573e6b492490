//! The camera registry follower: every instance reads the whole compacted registry topic from the beginning,
//! outside the consumer group, and keeps following it. The index it feeds is what the engine decides with.
//! The same follower reads the camera status topic (heartbeats), which can change liveness and nothing else.

mod apply;

pub use apply::{apply, apply_change, decode, Applied, BadRegistryRecord, Change, Feed};

use crate::codec::BadCamera;
use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};
use trigger_index::{CameraIndex, SpatialBackend};

/// A record as the loader's reader thread read it (decoding is the applying thread's: polling and copying
/// cost about what decoding and applying do, so the two threads stay busy alike).
struct Read {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// The loader's reading side: poll up to `target` (or `deadline`), in batches to the applier.
struct Reader<'a> {
    consumer: &'a BaseConsumer<crate::Ctx>,
    topic: &'a str,
    target: &'a HashMap<i32, i64>,
    deadline: Instant,
}

impl Reader<'_> {
    fn caught_up(&self, pos: &HashMap<i32, i64>) -> bool {
        reached(self.target, pos)
    }

    /// Returns whether the target was reached, and the positions read to.
    fn run(self, mut position: HashMap<i32, i64>, tx: SyncSender<Vec<Read>>) -> (bool, HashMap<i32, i64>) {
        let mut batch = Vec::with_capacity(1024);
        while !self.caught_up(&position) {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) => {
                    position.insert(m.partition(), m.offset() + 1);
                    let (key, payload) = (m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec));
                    batch.push(Read { partition: m.partition(), offset: m.offset(), key, payload });
                }
                Some(Err(RdError::PartitionEOF(p))) => {
                    if let Some(o) = end_position(self.consumer, self.topic, p) {
                        position.insert(p, o);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = self.topic, "registry consumer error (librdkafka retries)")
                }
                None => {}
            }
            let full = batch.len() >= 1024 || (!batch.is_empty() && self.caught_up(&position));
            if full && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(1024))).is_err() {
                break;
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        (self.caught_up(&position), position)
    }
}

/// Whether every partition's position has reached its target offset.
fn reached(target: &HashMap<i32, i64>, position: &HashMap<i32, i64>) -> bool {
    target.iter().all(|(p, end)| position.get(p).copied().unwrap_or(0) >= *end)
}

/// Where partition `p` of `topic` ends, as the consumer sees it after a partition EOF (compaction and control
/// records leave gaps, so the last offset read + 1 is not enough).
fn end_position<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, p: i32) -> Option<i64> {
    let pos = consumer.position().ok()?;
    pos.elements_for_topic(topic).into_iter().find(|e| e.partition() == p).and_then(|e| match e.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    })
}

pub struct RegistryFollower {
    consumer: BaseConsumer<crate::Ctx>,
    /// A second client that only asks for end offsets: on the follower's own connection the request would
    /// queue behind its fetch long-poll (up to fetch.wait.max.ms).
    offsets: BaseConsumer<crate::Ctx>,
    topic: String,
    feed: Feed,
    partitions: Vec<i32>,
    /// Next offset to read per partition, as far as this follower has applied.
    position: HashMap<i32, i64>,
}

impl std::fmt::Debug for RegistryFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFollower")
            .field("topic", &self.topic)
            .field("feed", &self.feed)
            .field("partitions", &self.partitions)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl RegistryFollower {
    /// The registry follower. The registry topic must exist.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let topic = settings.topics.registry.clone();
        Self::open(settings, Feed::Registry)?
            .ok_or_else(|| KafkaError::Setup(format!("registry topic {topic:?} does not exist or has no partitions")))
    }

    /// The status follower, or None when the deployment has no status topic (liveness then comes from the
    /// registry records alone).
    pub fn status(settings: &KafkaSettings) -> Result<Option<Self>, KafkaError> {
        Self::open(settings, Feed::Status)
    }

    fn open(settings: &KafkaSettings, feed: Feed) -> Result<Option<Self>, KafkaError> {
        let (topic, name) = match feed {
            Feed::Registry => (settings.topics.registry.clone(), "registry-follower"),
            Feed::Status => (settings.topics.status.clone(), "status-follower"),
        };
        let consumer: BaseConsumer<crate::Ctx> =
            settings.client_config(Role::RegistryFollower).create_with_context(crate::Ctx(name))?;
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let offsets =
            settings.client_config(Role::RegistryFollower).create_with_context(crate::Ctx("registry-offsets"))?;
        Ok(Some(Self { consumer, offsets, topic, feed, partitions, position: HashMap::new() }))
    }

    pub fn topic(&self) -> &str {
        &self.topic
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
        reached(target, &self.position)
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
        if let Err(BadCamera { reason, detail }) = apply(index, self.feed, &key, m.payload(), applied) {
            bad.push(BadRegistryRecord {
                topic: self.topic.clone(),
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

    /// At the end of partition `p`: the position is the end offset.
    fn note_end(&mut self, p: i32) {
        if let Some(o) = end_position(&self.consumer, &self.topic, p) {
            self.position.insert(p, o);
        }
    }

    /// [`catch_up`](Self::catch_up) for a read from the beginning (start-up): one thread polls, this one
    /// decodes and applies, so the two overlap. Used with `CameraIndex::start_loading`.
    pub fn load<B: SpatialBackend>(
        &mut self,
        index: &mut CameraIndex<B>,
        target: &HashMap<i32, i64>,
        deadline: Instant,
        applied: &mut Applied,
        bad: &mut Vec<BadRegistryRecord>,
    ) -> Result<bool, KafkaError> {
        let reader = Reader { consumer: &self.consumer, topic: &self.topic, target, deadline };
        let position = self.position.clone();
        let (reached, position) = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Read>>(16);
            let reading = s.spawn(move || reader.run(position, tx));
            for Read { partition, offset, key, payload } in rx.into_iter().flatten() {
                let k = key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                if let Err(BadCamera { reason, detail }) = apply(index, self.feed, &k, payload.as_deref(), applied) {
                    let (topic, payload) = (self.topic.clone(), payload.unwrap_or_default());
                    bad.push(BadRegistryRecord { topic, partition, offset, key, payload, reason, detail });
                }
            }
            reading.join().expect("registry reader thread")
        });
        self.position = position;
        Ok(reached)
    }
}
