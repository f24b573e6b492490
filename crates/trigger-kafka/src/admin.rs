//! Creating the service's topics with the right shapes: the registry, the camera status and the changelog compacted, the
//! changelog with as many partitions as the CFS topic, dead letters with a bounded retention.

use crate::settings::{KafkaSettings, Role, Topics};
use crate::KafkaError;
use futures_executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// An admin client with the service's connection and security settings. It is a plain client: none of the
/// producer-only properties.
pub(crate) fn admin_client(settings: &KafkaSettings) -> Result<AdminClient<crate::Ctx>, KafkaError> {
    let mut cfg = settings.client_config(Role::Producer);
    for k in ["linger.ms", "compression.type", "enable.idempotence", "acks", "transactional.id"] {
        cfg.remove(k);
    }
    Ok(cfg.create_with_context(crate::Ctx("admin"))?)
}

/// Dead letters keep original bytes, which may hold caller data: seven days, no longer.
pub const DEAD_LETTER_RETENTION_MS: &str = "604800000";

/// The audit trail is the public record: kept forever unless the operator decides otherwise (`audit redact`
/// drops per-camera detail while the chain still verifies; the topic's own retention removes whole records).
/// Explicit, because a cluster's default retention (often 7 days) would silently expire it.
pub const AUDIT_RETENTION_MS: i64 = -1;

/// How many partitions each topic gets, and how long the audit trail is kept ([`create_topics_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLayout {
    /// The CFS topic's, and so the audit, dead-letter and changelog topics' (the audit chain of CFS partition
    /// p is audit partition p; exactly-once needs the changelog partitioned as the CFS topic).
    pub partitions: i32,
    /// The commands' and owner notices' (`None`: as many as `partitions`). An event that starts cameras
    /// writes a command and a notice per camera, keyed by camera and by owner, and librdkafka sends one
    /// produce request per partition: fewer partitions here, fewer requests for that event to wait on
    /// (BENCHMARKS.md). They carry a few records a second at national scale.
    pub fanout_partitions: Option<i32>,
    /// The registry's and the status topic's.
    pub registry_partitions: i32,
    pub replication: i32,
    /// The audit topic's `retention.ms` (-1: forever).
    pub audit_retention_ms: i64,
}

impl TopicLayout {
    /// Commands and notices partitioned like the CFS topic, the audit trail kept forever.
    pub fn new(partitions: i32, registry_partitions: i32, replication: i32) -> Self {
        Self {
            partitions,
            fanout_partitions: None,
            registry_partitions,
            replication,
            audit_retention_ms: AUDIT_RETENTION_MS,
        }
    }

    /// The commands' and owner notices' partition count.
    pub fn fanout(&self) -> i32 {
        self.fanout_partitions.unwrap_or(self.partitions)
    }
}

/// Create every topic the service uses (existing ones are left as they are). `partitions` is the CFS topic's
/// (and its outputs'); the registry and the status topic get `registry_partitions`. The audit topic keeps its records forever.
pub fn create_topics(
    settings: &KafkaSettings,
    topics: &Topics,
    partitions: i32,
    registry_partitions: i32,
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    create_topics_with(settings, topics, &TopicLayout::new(partitions, registry_partitions, replication))
}

/// [`create_topics`] with every count and the audit retention given. Returns the topics it created.
pub fn create_topics_with(
    settings: &KafkaSettings,
    topics: &Topics,
    layout: &TopicLayout,
) -> Result<Vec<String>, KafkaError> {
    let admin = admin_client(settings)?;
    let topic = |name, n| NewTopic::new(name, n, TopicReplication::Fixed(layout.replication));
    let audit_retention = layout.audit_retention_ms.to_string();
    let (partitions, registry_partitions) = (layout.partitions, layout.registry_partitions);
    let fanout = layout.fanout();
    let specs: Vec<NewTopic> = vec![
        topic(&topics.cfs, partitions),
        topic(&topics.registry, registry_partitions).set("cleanup.policy", "compact"),
        topic(&topics.status, registry_partitions).set("cleanup.policy", "compact"),
        topic(&topics.commands, fanout),
        topic(&topics.audit, partitions).set("retention.ms", &audit_retention),
        topic(&topics.notices, fanout),
        topic(&topics.dead_letter, partitions).set("retention.ms", DEAD_LETTER_RETENTION_MS),
        topic(&topics.changelog, partitions).set("cleanup.policy", "compact"),
        topic(&topics.leader, 1),
        topic(&topics.watermark, 1).set("cleanup.policy", "compact"),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics(specs.iter(), &opts))?;
    let mut created = Vec::new();
    let mut errs = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => errs.push((name, code)),
        }
    }
    match errs.first() {
        None => Ok(created),
        Some(&(_, code)) => {
            let names: Vec<String> = errs.iter().map(|(n, c)| format!("{n}: {c}")).collect();
            Err(KafkaError::Admin { what: format!("creating topics ({})", names.join("; ")), code })
        }
    }
}

/// Create one plain topic (a benchmark's relay output, for instance); an existing one is left as it is.
pub fn create_topic(settings: &KafkaSettings, name: &str, partitions: i32) -> Result<(), KafkaError> {
    let admin = admin_client(settings)?;
    let spec = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.create_topics([&spec], &opts))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(KafkaError::Admin { what: format!("creating {name}"), code }),
        }
    }
    Ok(())
}

/// Delete topics (a benchmark's own, once measured): a broker keeping every run's topics slows down, and so
/// would the runs after. Topics already gone are not an error.
pub fn delete_topics(settings: &KafkaSettings, names: &[&str]) -> Result<(), KafkaError> {
    let admin = admin_client(settings)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut errs = Vec::new();
    for r in block_on(admin.delete_topics(names, &opts))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => errs.push((name, code)),
        }
    }
    match errs.first() {
        None => Ok(()),
        Some(&(_, code)) => {
            let names: Vec<String> = errs.iter().map(|(n, c)| format!("{n}: {c}")).collect();
            Err(KafkaError::Admin { what: format!("deleting topics ({})", names.join("; ")), code })
        }
    }
}

/// Set one configuration entry of a topic (incremental: the topic's other settings are left as they are).
pub fn set_topic_config(settings: &KafkaSettings, topic: &str, key: &str, value: &str) -> Result<(), KafkaError> {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let admin = admin_client(settings)?;
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in block_on(admin.alter_configs([&change], &opts))? {
        if let Err((_, code)) = r {
            return Err(KafkaError::Admin { what: format!("setting {key}={value} on {topic}"), code });
        }
    }
    Ok(())
}
