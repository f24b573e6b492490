//! Reading topics back, for tools, the demo and tests: record counts and whole-topic reads.

use crate::settings::{KafkaSettings, Role};
use crate::KafkaError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn partitions(c: &BaseConsumer<crate::Ctx>, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect())
}

fn reader(settings: &KafkaSettings, read_committed: bool) -> Result<BaseConsumer<crate::Ctx>, KafkaError> {
    let mut cfg = settings.client_config(Role::RegistryFollower);
    cfg.set("group.id", format!("{}.inspect", settings.group_id));
    cfg.set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" });
    Ok(cfg.create_with_context(crate::Ctx("inspect"))?)
}

/// A bare consumer's read of a whole topic (the registry follower's client settings, every partition from the
/// beginning to its end, payloads touched, nothing decoded): the baseline of `dispatch-trigger-bench bootstrap`. Returns
/// (records, payload bytes).
pub fn read_to_end_bare(settings: &KafkaSettings, topic: &str, timeout: Duration) -> Result<(u64, u64), KafkaError> {
    let c: BaseConsumer<crate::Ctx> =
        settings.client_config(Role::RegistryFollower).create_with_context(crate::Ctx("bare-reader"))?;
    let parts = partitions(&c, topic)?;
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let (mut records, mut bytes, mut touched, mut ended) = (0u64, 0u64, 0u8, HashSet::new());
    let by = Instant::now() + timeout;
    while ended.len() < parts.len() {
        if Instant::now() > by {
            return Err(KafkaError::Timeout { what: format!("reading {topic} to its end"), after: timeout });
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                let p = m.payload().unwrap_or_default();
                bytes += p.len() as u64;
                touched ^= p.last().copied().unwrap_or(0);
            }
            Some(Err(RdError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    std::hint::black_box(touched);
    Ok((records, bytes))
}

/// Records on a topic now (high minus low watermark, summed over partitions).
pub fn topic_record_count(settings: &KafkaSettings, topic: &str) -> Result<i64, KafkaError> {
    let c = reader(settings, false)?;
    let mut n = 0;
    for p in partitions(&c, topic)? {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        n += hi - lo;
    }
    Ok(n)
}

/// A record read back, in plain types.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    /// None: a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }
}

/// Every record of `topic`, from the beginning to the end offsets it has when called (read_committed:
/// records of aborted or open transactions are skipped). Gives up after `timeout`.
pub fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
    read_committed: bool,
    timeout: Duration,
) -> Result<Vec<Record>, KafkaError> {
    let c = reader(settings, read_committed)?;
    let parts = partitions(&c, topic)?;
    read(&c, topic, &parts, Offset::Beginning, timeout)
}

/// Every record of some partitions of `topic`, as [`read_topic`] does for all of them.
pub fn read_partitions(
    settings: &KafkaSettings,
    topic: &str,
    parts: &[i32],
    read_committed: bool,
    timeout: Duration,
) -> Result<Vec<Record>, KafkaError> {
    read(&reader(settings, read_committed)?, topic, parts, Offset::Beginning, timeout)
}

/// Every record of `topic` written at or after `since_ms` (Unix ms, by record timestamp), to the end offsets
/// it has when called.
pub fn read_topic_since(
    settings: &KafkaSettings,
    topic: &str,
    since_ms: i64,
    read_committed: bool,
    timeout: Duration,
) -> Result<Vec<Record>, KafkaError> {
    let c = reader(settings, read_committed)?;
    let mut ask = TopicPartitionList::new();
    for p in partitions(&c, topic)? {
        ask.add_partition_offset(topic, p, Offset::Offset(since_ms))?;
    }
    let found = c.offsets_for_times(ask, Duration::from_secs(10))?;
    let mut out = Vec::new();
    for e in found.elements() {
        // A partition the broker could not look up is an error, never an empty partition: what a takeover
        // reads here (the commands already sent) is what keeps a camera within its owner's cap.
        e.error()?;
        match e.offset() {
            Offset::Offset(from) => out.extend(
                read(&c, topic, &[e.partition()], Offset::Offset(from), timeout)?
                    .into_iter()
                    .filter(|r| r.offset >= from),
            ),
            // No record that recent in this partition: the broker answers the end.
            Offset::End => {}
            other => {
                return Err(KafkaError::Internal(format!(
                    "{topic} partition {}: the broker answered {other:?} for a time",
                    e.partition()
                )))
            }
        }
    }
    Ok(out)
}

/// Partition count of a topic (0: no such topic).
pub fn partition_count(settings: &KafkaSettings, topic: &str) -> Result<usize, KafkaError> {
    Ok(partitions(&reader(settings, false)?, topic)?.len())
}

fn read(
    c: &BaseConsumer<crate::Ctx>,
    topic: &str,
    parts: &[i32],
    from: Offset,
    timeout: Duration,
) -> Result<Vec<Record>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    let mut open: HashSet<i32> = HashSet::new();
    for p in parts {
        let (lo, hi) = c.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        if hi > lo {
            open.insert(*p);
        }
        tpl.add_partition_offset(topic, *p, from)?;
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::Timeout { what: format!("reading {topic} to its end"), after: timeout });
        }
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter().map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec).unwrap_or_default())).collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(RdError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => tracing::debug!(error = %e, topic, "read"),
        }
    }
    Ok(out)
}

/// The last record of one partition (None: the partition is empty).
pub fn last_record(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    read_committed: bool,
) -> Result<Option<Record>, KafkaError> {
    let c = reader(settings, read_committed)?;
    let (lo, hi) = c.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
    if hi <= lo {
        return Ok(None);
    }
    // Control records (transaction markers) take offsets too: step back until a data record is found.
    let mut from = hi - 1;
    loop {
        let recs = read(&c, topic, &[partition], Offset::Offset(from), Duration::from_secs(30))?;
        if let Some(last) = recs.into_iter().rfind(|r| r.offset >= from) {
            return Ok(Some(last));
        }
        if from == lo {
            return Ok(None);
        }
        from = (from - 8).max(lo);
    }
}

/// A topic's configuration as the broker reports it (DescribeConfigs), entry name -> value.
pub fn topic_config(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<std::collections::BTreeMap<String, String>, KafkaError> {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let admin = crate::admin::admin_client(settings)?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let res = futures_executor::block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts))?;
    let mut out = std::collections::BTreeMap::new();
    for r in res {
        let r = r.map_err(|code| KafkaError::Admin { what: format!("describing {topic}"), code })?;
        for e in r.entries {
            out.insert(e.name, e.value.unwrap_or_default());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedCluster;
    use crate::settings::Topics;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    /// A time lookup the broker refuses is an error: never read as a topic with nothing that recent (a takeover
    /// would go on without the commands already sent). librdkafka reports every refusal injected here for the
    /// whole request; the per-partition check in `read_topic_since` covers one it reports per partition.
    #[test]
    fn a_time_lookup_the_broker_refuses_is_an_error_not_an_empty_topic() {
        let cluster = EmbeddedCluster::start(1).expect("mock cluster");
        let topics = Topics::default();
        cluster.create_topics(&topics, 1).expect("topics");
        let settings = KafkaSettings { bootstrap_servers: cluster.bootstrap_servers(), topics, ..Default::default() };
        let mut p = crate::Publisher::new(&settings).expect("publisher");
        p.raw(&settings.topics.commands, b"k", b"a command").expect("enqueued");
        p.wait().expect("acknowledged");
        let since = crate::wall_ms() - 60_000;
        // (The mock cluster answers a time lookup with the end: what it reads here is no evidence either way.)
        let found = read_topic_since(&settings, &settings.topics.commands, since, false, Duration::from_secs(30));
        assert!(found.is_ok(), "{found:?}");
        cluster.mock().request_errors(
            RDKafkaApiKey::ListOffsets,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 8],
        );
        let refused = read_topic_since(&settings, &settings.topics.commands, since, false, Duration::from_secs(30));
        assert!(refused.is_err(), "a refused lookup read as nothing: {refused:?}");
    }
}
