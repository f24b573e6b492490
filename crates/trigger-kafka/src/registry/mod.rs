//! The camera registry follower: every instance reads the whole compacted registry topic from the beginning,
//! outside the consumer group, and keeps following it. The index it feeds is what the engine decides with.
//! The same follower reads the camera status topic (heartbeats), which can change liveness and nothing else.

mod apply;

pub use apply::{apply, apply_change, apply_ref, decode, Applied, BadRegistryRecord, Change, Feed};

use crate::codec::{self, BadCamera};
use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};
use trigger_core::CameraRef;
use trigger_index::{CameraIndex, SpatialBackend};

/// Records as the loader's reader thread read them: keys and payloads copied into one buffer, so a batch of
/// records costs no allocation; the applier sends each batch back empty to be filled again. (A copy per record
/// made the two threads free each other's allocations: glibc's arena lock then held the applier back about half
/// of its time.) The reader also decodes the common registry record, so the applier only applies it.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    reads: Vec<Read>,
}

/// One record of a [`Batch`]: where its key and payload are in the batch's bytes (None: absent).
struct Read {
    partition: i32,
    offset: i64,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
    /// A registry record the reader decoded, its key its camera id; None: the applier decodes it (a
    /// tombstone, a status record, or anything the copy-free reader leaves to prost, errors included).
    camera: Option<Decoded>,
}

/// A decoded camera whose strings are ranges of the batch's bytes (`fields`' own strings are empty).
struct Decoded {
    id: Range<usize>,
    owner: Range<usize>,
    fields: CameraRef<'static>,
}

/// How it was read: the camera, decoded, or the key and payload to decode.
enum Record<'a> {
    Camera(CameraRef<'a>),
    Raw(Option<&'a [u8]>, Option<&'a [u8]>),
}

impl Batch {
    /// A batch is full at this many records or bytes (registry records are ~150 bytes; a few near the 1 MB
    /// limit must not make a batch, and the 16 the channel holds, a gigabyte).
    const RECORDS: usize = 1024;
    const BYTES: usize = 1 << 20;

    fn push(&mut self, feed: Feed, partition: i32, offset: i64, key: Option<&[u8]>, payload: Option<&[u8]>) {
        let mut copy = |b: Option<&[u8]>| {
            b.map(|b| {
                self.bytes.extend_from_slice(b);
                self.bytes.len() - b.len()..self.bytes.len()
            })
        };
        let (key, payload) = (copy(key), copy(payload));
        let camera = match (feed, &key, &payload) {
            (Feed::Registry, Some(k), Some(p)) => self.decode(k.clone(), p.clone()),
            _ => None,
        };
        self.reads.push(Read { partition, offset, key, payload, camera });
    }

    fn decode(&self, key: Range<usize>, payload: Range<usize>) -> Option<Decoded> {
        let rec =
            codec::camera_ref_from_pb(&self.bytes[payload]).filter(|r| r.camera_id.as_bytes() == &self.bytes[key])?;
        let at = |s: &str| {
            let start = s.as_ptr().addr() - self.bytes.as_ptr().addr();
            start..start + s.len()
        };
        let fields = CameraRef { camera_id: "", owner_ref: "", ..rec };
        Some(Decoded { id: at(rec.camera_id), owner: at(rec.owner_ref), fields })
    }

    fn full(&self) -> bool {
        self.reads.len() >= Self::RECORDS || self.bytes.len() >= Self::BYTES
    }

    fn text(&self, r: &Range<usize>) -> Option<&str> {
        std::str::from_utf8(&self.bytes[r.clone()]).ok()
    }

    /// A key's or payload's bytes (None: absent).
    fn slice(&self, r: &Option<Range<usize>>) -> Option<&[u8]> {
        r.clone().map(|r| &self.bytes[r])
    }

    fn records(&self) -> impl Iterator<Item = (&Read, Record<'_>)> {
        self.reads.iter().map(move |r| {
            let camera = r.camera.as_ref().and_then(|d| {
                Some(CameraRef { camera_id: self.text(&d.id)?, owner_ref: self.text(&d.owner)?, ..d.fields })
            });
            let record = match camera {
                Some(c) => Record::Camera(c),
                None => Record::Raw(self.slice(&r.key), self.slice(&r.payload)),
            };
            (r, record)
        })
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.reads.clear();
    }
}

/// The loader's reading side: poll up to `target` (or `deadline`), in batches to the applier.
struct Reader<'a> {
    consumer: &'a BaseConsumer<crate::Ctx>,
    feed: Feed,
    topic: &'a str,
    target: &'a HashMap<i32, i64>,
    deadline: Instant,
}

impl Reader<'_> {
    fn caught_up(&self, pos: &HashMap<i32, i64>) -> bool {
        reached(self.target, pos)
    }

    /// Returns whether the target was reached, and the positions read to. Full batches go out on `tx`; empty
    /// ones come back on `empty` (a new one is made only when none has come back yet).
    fn run(
        self,
        mut position: HashMap<i32, i64>,
        tx: SyncSender<Batch>,
        empty: Receiver<Batch>,
    ) -> (bool, HashMap<i32, i64>) {
        let mut batch = Batch::default();
        let (mut done, mut wait, mut polls) = (self.caught_up(&position), Duration::ZERO, 0u32);
        while !done {
            // The clock is read every 256 polls, and after an empty one: while records are queued a poll returns
            // at once, so a stale wait costs nothing, and the deadline is missed by microseconds at most.
            if polls.is_multiple_of(256) {
                let left = self.deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                wait = left.min(Duration::from_millis(100));
            }
            polls = polls.wrapping_add(1);
            match poll_registry(self.consumer, self.topic, wait, &mut position) {
                Polled::Record(m) => {
                    let p = m.partition();
                    batch.push(self.feed, p, m.offset(), m.key(), m.payload());
                    // Only a partition reaching its target can end the read.
                    done = self.target.get(&p).is_some_and(|&t| m.offset() + 1 >= t) && self.caught_up(&position);
                }
                Polled::End => done = self.caught_up(&position),
                Polled::Error => {}
                Polled::Nothing => polls = 0,
            }
            let send = batch.full() || (!batch.reads.is_empty() && done);
            if send && tx.send(std::mem::replace(&mut batch, empty.try_recv().unwrap_or_default())).is_err() {
                break;
            }
        }
        if !batch.reads.is_empty() {
            let _ = tx.send(batch);
        }
        (self.caught_up(&position), position)
    }
}

/// What one poll of a registry or status consumer brought.
enum Polled<'c> {
    /// A record; its partition's position is past it.
    Record(rdkafka::message::BorrowedMessage<'c>),
    /// A partition's end; its position is the end offset.
    End,
    /// A consumer error, logged (librdkafka retries).
    Error,
    Nothing,
}

/// One poll of `consumer` (reading `topic`), `position` kept: the one polling step of the start-up read and of
/// the live follower.
fn poll_registry<'c>(
    consumer: &'c BaseConsumer<crate::Ctx>,
    topic: &str,
    wait: Duration,
    position: &mut HashMap<i32, i64>,
) -> Polled<'c> {
    match consumer.poll(wait) {
        None => Polled::Nothing,
        Some(Ok(m)) => {
            position.insert(m.partition(), m.offset() + 1);
            Polled::Record(m)
        }
        Some(Err(RdError::PartitionEOF(p))) => {
            if let Some(o) = end_position(consumer, topic, p) {
                position.insert(p, o);
            }
            Polled::End
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, topic, "registry consumer error (librdkafka retries)");
            Polled::Error
        }
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

    pub fn feed(&self) -> Feed {
        self.feed
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
        let m = match poll_registry(&self.consumer, &self.topic, timeout, &mut self.position) {
            Polled::Record(m) => m,
            Polled::Nothing => return Ok(false),
            Polled::End | Polled::Error => return Ok(true),
        };
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
        let reader = Reader { consumer: &self.consumer, feed: self.feed, topic: &self.topic, target, deadline };
        let position = self.position.clone();
        let (reached, position) = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(16);
            let (back, empty) = std::sync::mpsc::channel::<Batch>();
            let reading = s.spawn(move || reader.run(position, tx, empty));
            for mut batch in rx {
                for (read, record) in batch.records() {
                    let result = match record {
                        Record::Camera(camera) => apply_ref(index, camera, applied),
                        Record::Raw(key, payload) => {
                            let k = key.map(String::from_utf8_lossy).unwrap_or_default();
                            apply(index, self.feed, &k, payload, applied)
                        }
                    };
                    if let Err(BadCamera { reason, detail }) = result {
                        let key = batch.slice(&read.key).map(<[u8]>::to_vec);
                        let payload = batch.slice(&read.payload).unwrap_or_default().to_vec();
                        let (topic, partition, offset) = (self.topic.clone(), read.partition, read.offset);
                        bad.push(BadRegistryRecord { topic, partition, offset, key, payload, reason, detail });
                    }
                }
                batch.clear();
                let _ = back.send(batch);
            }
            reading.join().expect("registry reader thread")
        });
        self.position = position;
        Ok(reached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::camera_to_pb;
    use crate::produce::Publisher;
    use crate::{EmbeddedCluster, Topics};
    use prost::Message as _;
    use trigger_core::{CameraRecord, Category, Consent, MinuteOfDay, QuietHours};
    use trigger_index::RTreeIndex;

    fn camera(i: usize, owner: usize, radius: f64) -> CameraRecord {
        let quiet = i.is_multiple_of(3).then_some(QuietHours {
            start: MinuteOfDay(22 * 60),
            end: MinuteOfDay(7 * 60),
            time_zone: chrono_tz::America::Chicago,
        });
        CameraRecord {
            camera_id: format!("cam-{i}"),
            owner_ref: format!("owner-{owner}"),
            lat: 36.0 + (i % 97) as f64 * 1e-3,
            lon: -86.8 + (i / 97) as f64 * 1e-3,
            consent: Consent {
                categories: [Category::Burglary, Category::ALL[i % Category::ALL.len()]].into_iter().collect(),
                max_radius_m: radius,
                quiet_hours: quiet,
                daily_cap: 1 + (i % 4) as u32,
                live_stream_allowed: i.is_multiple_of(2),
            },
            online: !i.is_multiple_of(5),
            updated_at: i as i64,
        }
    }

    /// The start-up read (reader thread decoding, applier applying, in loading mode) leaves exactly the index
    /// and the dead letters that applying every record one by one does: later records win, tombstones and
    /// refused updates remove, and every bad record is kept with its original bytes.
    #[test]
    fn the_start_up_read_equals_applying_each_record() {
        let cluster = EmbeddedCluster::start(1).expect("mock cluster");
        let topics = Topics { registry: "registry-load-test".into(), ..Topics::default() };
        cluster.create_topics(&topics, 1).expect("topics");
        let settings = KafkaSettings { bootstrap_servers: cluster.bootstrap_servers(), topics, ..Default::default() };
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let pb = |c: &CameraRecord| Some(camera_to_pb(c).encode_to_vec());
        for i in 0..3000 {
            records.push((format!("cam-{i}").into_bytes(), pb(&camera(i, i / 4, 250.0))));
        }
        for i in (0..3000).step_by(7) {
            records.push((format!("cam-{i}").into_bytes(), pb(&camera(i, i / 3, 400.0))));
            // new owner, consent
        }
        for i in (0..3000).step_by(11) {
            records.push((format!("cam-{i}").into_bytes(), None)); // left the registry
        }
        let mut island = camera(5, 1, 250.0);
        (island.lat, island.lon) = (0.0, 0.0);
        records.extend([
            (b"cam-12".to_vec(), pb(&island)),               // refused: cam-12 must go
            (b"cam-13".to_vec(), pb(&camera(14, 1, 250.0))), // key is not the record's id: cam-13 goes
            (b"cam-15".to_vec(), Some(b"\xff\xfe not protobuf".to_vec())),
            (b"cam-\xff".to_vec(), pb(&camera(16, 1, 250.0))), // a key that is not UTF-8
            (b"cam-3001".to_vec(), pb(&camera(3001, 9, 250.0))),
        ]);
        let mut publisher = Publisher::new(&settings).expect("publisher");
        let topic = settings.topics.registry.clone();
        for (key, payload) in &records {
            match payload {
                Some(p) => publisher.raw(&topic, key, p).expect("send"),
                None => publisher.remove_camera(&topic, std::str::from_utf8(key).expect("utf-8")).expect("send"),
            }
        }
        publisher.wait().expect("acked");

        let (mut expected, mut expected_bad, mut counted) = (RTreeIndex::new(), Vec::new(), Applied::default());
        for (key, payload) in &records {
            let k = String::from_utf8_lossy(key);
            if let Err(e) = apply(&mut expected, Feed::Registry, &k, payload.as_deref(), &mut counted) {
                expected_bad.push((key.clone(), payload.clone().unwrap_or_default(), e.reason));
            }
        }

        let mut follower = RegistryFollower::new(&settings).expect("follower");
        let target = follower.end_offsets(Duration::from_secs(10)).expect("end offsets");
        let (mut index, mut applied, mut bad) = (RTreeIndex::new(), Applied::default(), Vec::new());
        index.start_loading();
        let deadline = Instant::now() + Duration::from_secs(30);
        assert!(follower.load(&mut index, &target, deadline, &mut applied, &mut bad).expect("load"), "read to the end");
        index.finish_loading();

        assert_eq!(applied, counted);
        let got_bad: Vec<_> = bad.into_iter().map(|b| (b.key.unwrap_or_default(), b.payload, b.reason)).collect();
        assert_eq!(got_bad, expected_bad);
        let (mut got, mut want): (Vec<_>, Vec<_>) = (index.iter().collect(), expected.iter().collect());
        got.sort_by(|a, b| a.camera_id.cmp(&b.camera_id));
        want.sort_by(|a, b| a.camera_id.cmp(&b.camera_id));
        assert!(want.len() > 2500 && !want.iter().any(|c| ["cam-11", "cam-12", "cam-13"].contains(&&*c.camera_id)));
        assert_eq!(got, want);
    }
}
