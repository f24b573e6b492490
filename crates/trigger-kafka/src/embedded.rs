//! The embedded broker: librdkafka's mock cluster, in process. It speaks the real Kafka protocol on
//! localhost ports (produce, fetch, consumer groups, offsets, transactions), so every client of the service
//! talks to it exactly as it would to Apache Kafka. For demos and tests; it keeps nothing on disk.

use crate::settings::Topics;
use crate::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct EmbeddedCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCluster").field("bootstrap", &self.cluster.bootstrap_servers()).finish()
    }
}

impl EmbeddedCluster {
    /// Start `brokers` mock brokers.
    pub fn start(brokers: i32) -> Result<Self, KafkaError> {
        Ok(Self { cluster: MockCluster::new(brokers)? })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Create the service's topics: `partitions` for the CFS topic and its outputs, one for the registry.
    pub fn create_topics(&self, topics: &Topics, partitions: i32) -> Result<(), KafkaError> {
        self.create_fanout_topics(topics, partitions, partitions)
    }

    /// [`EmbeddedCluster::create_topics`], with `fanout` partitions for the commands and owner notices (see
    /// [`crate::admin::TopicLayout::fanout_partitions`]).
    pub fn create_fanout_topics(&self, topics: &Topics, partitions: i32, fanout: i32) -> Result<(), KafkaError> {
        for t in topics.all() {
            let n = match t {
                t if t == topics.registry || t == topics.leader || t == topics.watermark => 1,
                t if t == topics.commands || t == topics.notices => fanout,
                _ => partitions,
            };
            self.cluster.create_topic(t, n, 1)?;
        }
        Ok(())
    }

    /// Take a broker down (its connections fail) or bring it back, for outage tests.
    pub fn broker_down(&self, id: i32) -> Result<(), KafkaError> {
        Ok(self.cluster.broker_down(id)?)
    }

    pub fn broker_up(&self, id: i32) -> Result<(), KafkaError> {
        Ok(self.cluster.broker_up(id)?)
    }

    /// The group coordinator forgets its members (their next heartbeats answer UNKNOWN_MEMBER_ID: each consumer's
    /// assignment is lost) and answers the next `refused_joins` JoinGroup requests COORDINATOR_LOAD_IN_PROGRESS,
    /// so no consumer regains its membership until [`EmbeddedCluster::accept_joins`].
    pub fn lose_group_memberships(&self, refused_joins: usize) {
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
        let refused = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; refused_joins];
        self.cluster.request_errors(RDKafkaApiKey::JoinGroup, &refused);
        self.cluster
            .request_errors(RDKafkaApiKey::Heartbeat, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID; 3]);
    }

    /// The coordinator accepts joins again (see [`EmbeddedCluster::lose_group_memberships`]).
    pub fn accept_joins(&self) {
        use rdkafka::types::RDKafkaApiKey;
        self.cluster.clear_request_errors(RDKafkaApiKey::JoinGroup);
        self.cluster.clear_request_errors(RDKafkaApiKey::Heartbeat);
    }

    /// The underlying mock cluster, for fault injection beyond the helpers above.
    pub fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
