//! Creating the service's topics with the right shapes: the registry and the changelog compacted, the
//! changelog with as many partitions as the CFS topic, dead letters with a bounded retention.

use crate::settings::{KafkaSettings, Role, Topics};
use crate::KafkaError;
use futures_executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Dead letters keep original bytes, which may hold caller data: seven days, no longer.
pub const DEAD_LETTER_RETENTION_MS: &str = "604800000";

/// Create every topic the service uses (existing ones are left as they are). `partitions` is the CFS topic's
/// (and its outputs'); the registry gets `registry_partitions`.
pub fn create_topics(
    settings: &KafkaSettings,
    topics: &Topics,
    partitions: i32,
    registry_partitions: i32,
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    let mut cfg = settings.client_config(Role::Producer);
    // An admin client is a plain client: no producer-only properties.
    for k in ["linger.ms", "compression.type", "enable.idempotence", "acks", "transactional.id"] {
        cfg.remove(k);
    }
    let admin: AdminClient<crate::Ctx> = cfg.create_with_context(crate::Ctx("admin"))?;
    let topic = |name, n| NewTopic::new(name, n, TopicReplication::Fixed(replication));
    let specs: Vec<NewTopic> = vec![
        topic(&topics.cfs, partitions),
        topic(&topics.registry, registry_partitions).set("cleanup.policy", "compact"),
        topic(&topics.commands, partitions),
        topic(&topics.audit, partitions),
        topic(&topics.notices, partitions),
        topic(&topics.dead_letter, partitions).set("retention.ms", DEAD_LETTER_RETENTION_MS),
        topic(&topics.changelog, partitions).set("cleanup.policy", "compact"),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics(specs.iter(), &opts))?;
    let mut created = Vec::new();
    let mut errs = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => errs.push(format!("{name}: {code}")),
        }
    }
    if errs.is_empty() {
        Ok(created)
    } else {
        Err(KafkaError::Setup(format!("creating topics: {}", errs.join("; "))))
    }
}
