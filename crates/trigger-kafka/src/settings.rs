//! Kafka settings: topics, delivery mode, security, and raw librdkafka properties checked for clashes.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::topics::Topics;

/// How outputs and consumer offsets relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// An event's offset is stored only after every output it caused is acknowledged by the brokers.
    #[default]
    AtLeastOnce,
    /// Outputs, incident-state changelog and consumer offsets of each batch in one Kafka transaction.
    ExactlyOnce,
}

pub use trigger_core::Secret;

/// TLS and SASL. Secrets may come from the environment (`DT_KAFKA__SECURITY__SASL_PASSWORD`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// plaintext | ssl | sasl_plaintext | sasl_ssl
    pub protocol: Option<String>,
    pub ssl_ca_location: Option<String>,
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    /// PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub delivery: Delivery,
    /// Exactly-once: the decider's transactional.id, the same on every instance of the deployment, so whichever
    /// instance takes the decider's place fences the one before it at the broker (default:
    /// `<group_id>.decider`).
    pub transactional_id: Option<String>,
    pub topics: Topics,
    pub security: Security,
    /// Raw librdkafka properties for every client (after the low-latency defaults).
    pub client: BTreeMap<String, String>,
    /// Raw librdkafka properties for the consumers only.
    pub consumer: BTreeMap<String, String>,
    /// Raw librdkafka properties for the producer only.
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "dispatch-trigger".into(),
            delivery: Delivery::default(),
            transactional_id: None,
            topics: Topics::default(),
            security: Security::default(),
            client: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// Which client a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The CFS consumer (consumer group, manual offset store).
    CfsConsumer,
    /// The registry follower (no group semantics: assigned every partition, from the beginning).
    RegistryFollower,
    /// The leadership group's member (`<group_id>.leader`: who decides; see [`crate::leader`]).
    Leadership,
    /// The output producer (transactional in exactly-once mode).
    Producer,
    /// An idempotent producer that is never transactional: for records that belong to no CFS transaction
    /// (dead letters of bad registry records in exactly-once mode).
    SideProducer,
}

/// Properties the service sets itself because its delivery guarantees depend on them.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("group.id", "kafka.group_id"),
    ("enable.auto.offset.store", "the delivery mode (offsets are stored only after outputs are acknowledged)"),
    ("enable.auto.commit", "the delivery mode"),
    ("enable.idempotence", "the delivery mode (the producer is always idempotent)"),
    ("acks", "the delivery mode (acks=all)"),
    ("isolation.level", "the delivery mode"),
    ("transactional.id", "the delivery mode"),
    ("auto.offset.reset", "the service (the registry is read from the beginning; CFS from the earliest unread)"),
    ("enable.partition.eof", "the registry follower"),
    ("security.protocol", "kafka.security.protocol"),
    ("sasl.mechanism", "kafka.security.sasl_mechanism"),
    ("sasl.username", "kafka.security.sasl_username"),
    ("sasl.password", "kafka.security.sasl_password"),
    ("ssl.ca.location", "kafka.security.ssl_ca_location"),
    ("ssl.certificate.location", "kafka.security.ssl_certificate_location"),
    ("ssl.key.location", "kafka.security.ssl_key_location"),
];

impl KafkaSettings {
    /// Every problem at once: empty names, clashing raw properties, inconsistent security.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            errs.push("kafka.bootstrap_servers is empty".to_string());
        }
        if self.group_id.trim().is_empty() {
            errs.push("kafka.group_id is empty".to_string());
        }
        let names = self.topics.named();
        for (i, (k, v)) in names.iter().enumerate() {
            if v.trim().is_empty() {
                errs.push(format!("kafka.topics.{k} is empty"));
            }
            if let Some((k2, _)) = names[..i].iter().find(|(_, v2)| v2 == v) {
                errs.push(format!("kafka.topics.{k} and kafka.topics.{k2} are the same topic {v:?}"));
            }
        }
        for (section, map) in [("client", &self.client), ("consumer", &self.consumer), ("producer", &self.producer)] {
            for key in map.keys() {
                if let Some((_, owner)) = OWNED.iter().find(|(k, _)| k == key) {
                    errs.push(format!("kafka.{section}.{key:?} cannot be set as a raw property: it is set by {owner}"));
                }
            }
        }
        if self.transactional_id.as_deref().is_some_and(|t| t.trim().is_empty()) {
            errs.push("kafka.transactional_id is empty".to_string());
        }
        if self.transactional_id.is_some() && self.delivery != Delivery::ExactlyOnce {
            errs.push("kafka.transactional_id is set but kafka.delivery is not exactly_once".to_string());
        }
        let s = &self.security;
        let protocol = s.protocol.as_deref().unwrap_or("plaintext").to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            errs.push(format!(
                "kafka.security.protocol {:?}: expected plaintext, ssl, sasl_plaintext or sasl_ssl",
                protocol
            ));
        }
        let sasl = protocol.starts_with("sasl");
        if sasl && (s.sasl_username.is_none() || s.sasl_password.is_none()) {
            errs.push(format!("kafka.security.protocol {protocol} needs sasl_username and sasl_password"));
        }
        if let Some(m) = &s.sasl_mechanism {
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
                errs.push(format!(
                    "kafka.security.sasl_mechanism {m:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ));
            }
            if !sasl {
                errs.push("kafka.security.sasl_mechanism is set but the protocol is not sasl_*".to_string());
            }
        }
        errs
    }

    /// The transactional.id of this instance (exactly-once mode).
    pub fn transactional_id(&self) -> String {
        self.transactional_id.clone().unwrap_or_else(|| format!("{}.decider", self.group_id))
    }

    /// The librdkafka configuration for one client: low-latency defaults, then the raw properties, then what
    /// the service owns (bootstrap, security, and what the delivery guarantees depend on).
    pub fn client_config(&self, role: Role) -> ClientConfig {
        let mut c = low_latency_defaults(role);
        for (k, v) in &self.client {
            c.set(k, v);
        }
        let raw = if matches!(role, Role::Producer | Role::SideProducer) { &self.producer } else { &self.consumer };
        for (k, v) in raw {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.bootstrap_servers);
        self.security.apply(&mut c);
        self.owned(role, &mut c);
        c
    }

    /// What the service sets for each role because its guarantees depend on it.
    fn owned(&self, role: Role, c: &mut ClientConfig) {
        match role {
            Role::CfsConsumer => {
                c.set("group.id", &self.group_id);
                // Exactly-once commits offsets inside each transaction, never on its own.
                c.set("enable.auto.commit", if self.delivery == Delivery::AtLeastOnce { "true" } else { "false" });
                c.set("enable.auto.offset.store", "false");
                c.set("auto.offset.reset", "earliest");
                c.set("isolation.level", "read_committed");
            }
            Role::Leadership => {
                c.set("group.id", format!("{}.leader", self.group_id));
                // Partition 0, the leadership, stays with its holder when standbys join or leave.
                c.set("partition.assignment.strategy", "cooperative-sticky");
                c.set("enable.auto.commit", "false");
                c.set("enable.auto.offset.store", "false");
                c.set("auto.offset.reset", "latest");
            }
            Role::RegistryFollower => {
                // librdkafka needs a group.id to create a consumer; the follower never joins it (assign, not
                // subscribe) and never commits.
                c.set("group.id", format!("{}.registry-follower", self.group_id));
                c.set("enable.auto.commit", "false");
                c.set("enable.auto.offset.store", "false");
                c.set("auto.offset.reset", "earliest");
                c.set("enable.partition.eof", "true");
            }
            Role::Producer | Role::SideProducer => {
                c.set("enable.idempotence", "true");
                c.set("acks", "all");
                if self.delivery == Delivery::ExactlyOnce && role == Role::Producer {
                    c.set("transactional.id", self.transactional_id());
                    // A transaction begun while the coordinator still writes the last one's markers is told
                    // CONCURRENT_TRANSACTIONS and retried after this back-off (librdkafka's default: 100 ms);
                    // back-to-back transactions wait it out, so it is kept at the Java client's 20 ms.
                    c.set("retry.backoff.ms", "20");
                }
            }
        }
    }
}

/// Low latency by default: no batching delay, Nagle off, short fetch waits.
fn low_latency_defaults(role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("socket.nagle.disable", "true");
    c.set("client.id", "dispatch-trigger");
    match role {
        Role::Producer | Role::SideProducer => {
            c.set("linger.ms", "0");
            c.set("compression.type", "none");
        }
        Role::Leadership => {}
        Role::CfsConsumer | Role::RegistryFollower => {
            c.set("fetch.wait.max.ms", "10");
            c.set("fetch.error.backoff.ms", "50");
            // When the local queue is over its threshold (queued.min.messages), librdkafka stops fetching for
            // this long (default 1 s), and a reader slower than the network (the registry's decode + apply at
            // start-up) then drains the queue and waits, hundreds of ms at a time: start-up took 3-6x a bare
            // consumer's time mostly in those waits.
            c.set("fetch.queue.backoff.ms", "10");
            // At-least-once: stored offsets are committed every second, so a crash re-decides at most
            // about a second of events (librdkafka's default is five).
            c.set("auto.commit.interval.ms", "1000");
        }
    }
    if role == Role::Leadership {
        // A survivor hears of a rebalance at its next heartbeat: failover waits the session timeout, then up
        // to one heartbeat interval.
        c.set("session.timeout.ms", "6000");
        c.set("heartbeat.interval.ms", "500");
    }
    if role == Role::CfsConsumer {
        // Failover inside the latency budget: the group notices a killed instance after session.timeout.ms
        // (librdkafka's default 45 s; 6 s is the brokers' default floor, group.min.session.timeout.ms), and a
        // survivor hears of the rebalance at its next heartbeat.
        c.set("session.timeout.ms", "6000");
        c.set("heartbeat.interval.ms", "1000");
    }
    c
}

impl Security {
    /// TLS and SASL settings into a client configuration (the password from its [`Secret`]).
    fn apply(&self, c: &mut ClientConfig) {
        for (k, v) in [
            ("security.protocol", &self.protocol),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
        ] {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        if let Some(p) = &self.sasl_password {
            c.set("sasl.password", p.expose());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_low_latency() {
        let s = KafkaSettings::default();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let p = s.client_config(Role::Producer);
        assert_eq!(p.get("linger.ms"), Some("0"));
        assert_eq!(p.get("socket.nagle.disable"), Some("true"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let c = s.client_config(Role::CfsConsumer);
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("10"));
    }

    #[test]
    fn raw_properties_pass_through_but_cannot_override_guarantees() {
        let mut s = KafkaSettings::default();
        s.client.insert("fetch.wait.max.ms".into(), "50".into());
        s.producer.insert("linger.ms".into(), "2".into());
        assert!(s.validate().is_empty());
        assert_eq!(s.client_config(Role::CfsConsumer).get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(s.client_config(Role::Producer).get("linger.ms"), Some("2"));

        s.consumer.insert("enable.auto.offset.store".into(), "true".into());
        s.producer.insert("acks".into(), "1".into());
        s.topics.audit = s.topics.commands.clone();
        s.security.protocol = Some("sasl_ssl".into());
        s.security.sasl_mechanism = Some("SCRAM-SHA-1".into());
        let errs = s.validate();
        assert_eq!(errs.len(), 5, "every problem at once: {errs:#?}");
        assert!(errs.iter().any(|e| e.contains("enable.auto.offset.store")));
        assert!(errs.iter().any(|e| e.contains("\"acks\"")));
        assert!(errs.iter().any(|e| e.contains("same topic")));
        assert!(errs.iter().any(|e| e.contains("needs sasl_username")));
        assert!(errs.iter().any(|e| e.contains("SCRAM-SHA-1")));
    }

    #[test]
    fn scram_over_tls_is_passed_to_librdkafka() {
        let s = KafkaSettings {
            security: Security {
                protocol: Some("sasl_ssl".into()),
                ssl_ca_location: Some("/etc/ssl/ca.pem".into()),
                sasl_mechanism: Some("SCRAM-SHA-512".into()),
                sasl_username: Some("svc".into()),
                sasl_password: Some(Secret::new("secret")),
                ..Security::default()
            },
            ..KafkaSettings::default()
        };
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let c = s.client_config(Role::Producer);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ssl/ca.pem"));
        assert_eq!(c.get("sasl.password"), Some("secret"));
    }

    #[test]
    fn a_password_never_shows_in_debug_or_serialised_settings() {
        let mut s = KafkaSettings::default();
        s.security.sasl_password = Some(Secret::new("hunter2-pw"));
        let shown = [format!("{s:?}"), format!("{s:#?}"), serde_json::to_string(&s).unwrap()];
        for text in shown {
            assert!(!text.contains("hunter2-pw") && text.contains("<redacted>"), "{text}");
        }
        let back: Security = serde_json::from_str(r#"{"sasl_password": "hunter2-pw"}"#).unwrap();
        assert_eq!(back.sasl_password.unwrap().expose(), "hunter2-pw");
    }
}
