//! What goes on the wire besides the protobuf contracts, written and read in one place: the output record
//! type, keys (`agency/incident`), header names, and the dead-letter rules (what a dead letter keeps of the
//! refused bytes, and what happens when it would not fit in one record). Pure: no client, no I/O.

use crate::registry::BadRegistryRecord;
use prost::Message as _;
use rdkafka::message::{Headers as _, Message};
use trigger_core::CallForService;
use trigger_proto::v1 as pb;

/// One record read from the CFS topic, in plain terms: everything the planner and the dead-letter rules use
/// of it, copied out of the client's message once, when it is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's timestamp (set by the producer: when the CAD side sent it), Unix ms.
    pub timestamp_ms: Option<i64>,
    /// It carries the header `dt.kind = break-glass`: a break-glass request (JSON), not a call.
    pub break_glass: bool,
}

impl InRecord {
    /// A record of the client's.
    pub fn of(m: &impl Message) -> Self {
        let break_glass =
            m.headers().is_some_and(|h| h.iter().any(|x| x.key == H_KIND && x.value == Some(KIND_BREAK_GLASS)));
        Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            break_glass,
        }
    }

    pub fn key(&self) -> &[u8] {
        self.key.as_deref().unwrap_or_default()
    }

    pub fn payload(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }
}

/// One record to produce. `payload: None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: String,
    /// None: the partitioner chooses by key.
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl OutRecord {
    /// A record partitioned by key, without headers.
    pub fn keyed(topic: &str, key: impl Into<Vec<u8>>, payload: Option<Vec<u8>>) -> Self {
        Self { topic: topic.to_string(), partition: None, key: key.into(), payload, headers: vec![] }
    }

    /// Bytes of payload, key and headers: what counts against Kafka's record size limits.
    pub fn size(&self) -> usize {
        self.payload.as_ref().map_or(0, Vec::len) + self.key.len() + headers_size(&self.headers)
    }
}

fn headers_size(h: &[(&'static str, Vec<u8>)]) -> usize {
    h.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The key of everything about one incident (CFS revisions, break-glass requests, changelog state):
/// `agency/incident`. Every revision of an incident lands on one partition, in order.
pub fn incident_key(agency_id: &str, incident_id: &str) -> Vec<u8> {
    format!("{agency_id}/{incident_id}").into_bytes()
}

/// The inverse of [`incident_key`]: the agency is everything before the first `/`.
pub fn parse_incident_key(key: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(key).ok()?.split_once('/')
}

/// The key of a call for service.
pub fn cfs_key(ev: &CallForService) -> Vec<u8> {
    incident_key(&ev.agency_id, &ev.incident_id)
}

/// Header that marks a record on the CFS topic as a break-glass request (JSON) rather than a call.
pub const H_KIND: &str = "dt.kind";
pub const KIND_BREAK_GLASS: &[u8] = b"break-glass";

/// Dead-letter headers: why the record was refused and where it came from. The payload is the original bytes.
pub const H_REASON: &str = "dt.reject.reason";
pub const H_DETAIL: &str = "dt.reject.detail";
/// On a registry dead letter: the named camera problem (`zero_daily_cap`, `invalid_coordinates`, ...).
pub const H_CAMERA_PROBLEM: &str = "dt.reject.camera_problem";
pub const H_TOPIC: &str = "dt.source.topic";
pub const H_PARTITION: &str = "dt.source.partition";
pub const H_OFFSET: &str = "dt.source.offset";
/// With a redacted or digest payload: SHA-256 (hex) and length of the original bytes.
pub const H_ORIGINAL_SHA256: &str = "dt.original.sha256";
pub const H_ORIGINAL_BYTES: &str = "dt.original.bytes";
/// Set on a dead letter whose original bytes were left out because they would not fit in one record.
pub const H_PAYLOAD_DROPPED: &str = "dt.payload.dropped";

/// The largest dead letter (payload, key and headers) the service produces by default: below librdkafka's
/// default `message.max.bytes` (1,000,000) and Kafka's default topic limit (1,048,588), with room for the
/// record's own framing. A refused record too large to fit keeps its digest headers instead of its bytes.
pub const DEAD_LETTER_MAX_BYTES: usize = 900_000;

/// What a dead letter carries of the refused record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPayload {
    /// The original bytes (to inspect and replay them). They may hold whatever a producer put there.
    #[default]
    Original,
    /// Only the fields of the `CallForService` contract, re-encoded (anything else a producer added is
    /// dropped); a record that is not a `CallForService` at all keeps no bytes. Digest headers either way.
    Redacted,
    /// No bytes: only the digest headers (a record can still be matched against the source's own copy).
    Digest,
}

/// How dead letters are written: payload mode and size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterRule {
    pub payload: DeadLetterPayload,
    pub max_bytes: usize,
}

impl Default for DeadLetterRule {
    fn default() -> Self {
        Self { payload: DeadLetterPayload::Original, max_bytes: DEAD_LETTER_MAX_BYTES }
    }
}

fn push_digest(original: &[u8], headers: &mut Vec<(&'static str, Vec<u8>)>) {
    use sha2::Digest as _;
    headers.push((H_ORIGINAL_SHA256, hex::encode(sha2::Sha256::digest(original)).into_bytes()));
    headers.push((H_ORIGINAL_BYTES, original.len().to_string().into_bytes()));
}

/// What a dead letter keeps of `original` under `mode` (adding the digest headers when it is not all of it).
/// `cfs`: the record is meant to be a `CallForService`, whose contract fields a redacted letter keeps.
fn kept_bytes(
    original: &[u8],
    mode: DeadLetterPayload,
    cfs: bool,
    headers: &mut Vec<(&'static str, Vec<u8>)>,
) -> Vec<u8> {
    if mode == DeadLetterPayload::Original {
        return original.to_vec();
    }
    push_digest(original, headers);
    match pb::CallForService::decode(original) {
        // prost keeps only the contract's fields: anything else is gone once re-encoded.
        Ok(m) if cfs && mode == DeadLetterPayload::Redacted => m.encode_to_vec(),
        _ => Vec::new(),
    }
}

/// The rule for dead letters that cannot fit: when payload, key and headers together exceed `max_bytes`, the
/// payload is dropped, the digest headers (`dt.original.sha256`, `dt.original.bytes`) are kept, and
/// `dt.payload.dropped: too_large` says why. A refused record never becomes a record Kafka refuses.
fn fit(
    payload: Vec<u8>,
    original: &[u8],
    key: &[u8],
    headers: &mut Vec<(&'static str, Vec<u8>)>,
    max_bytes: usize,
) -> Vec<u8> {
    if payload.len() + key.len() + headers_size(headers) <= max_bytes {
        return payload;
    }
    if !headers.iter().any(|(k, _)| *k == H_ORIGINAL_SHA256) {
        push_digest(original, headers);
    }
    headers.push((H_PAYLOAD_DROPPED, b"too_large".to_vec()));
    // The detail is ours and short, but bound it too so headers alone can never exceed the limit.
    for (k, v) in headers.iter_mut() {
        if *k == H_DETAIL {
            v.truncate(1024);
        }
    }
    Vec::new()
}

fn letter(
    topic: &str,
    key: Vec<u8>,
    original: &[u8],
    cfs: bool,
    mut headers: Vec<(&'static str, Vec<u8>)>,
    rule: DeadLetterRule,
) -> OutRecord {
    let payload = kept_bytes(original, rule.payload, cfs, &mut headers);
    let payload = fit(payload, original, &key, &mut headers, rule.max_bytes);
    OutRecord { topic: topic.to_string(), partition: None, key, payload: Some(payload), headers }
}

/// The dead-letter record for a refused CFS-topic record: original key, the payload as the rule says, reason
/// and origin in headers.
pub fn dead_letter(topic: &str, m: &InRecord, reason: &str, detail: &str, rule: DeadLetterRule) -> OutRecord {
    let headers = vec![
        (H_REASON, reason.as_bytes().to_vec()),
        (H_DETAIL, detail.as_bytes().to_vec()),
        (H_TOPIC, m.topic.as_bytes().to_vec()),
        (H_PARTITION, m.partition.to_string().into_bytes()),
        (H_OFFSET, m.offset.to_string().into_bytes()),
    ];
    letter(topic, m.key().to_vec(), m.payload(), true, headers, rule)
}

/// The dead-letter record for input a live CAD source refused before it became a record (a database row, a
/// pushed document): `original` as the source read it, `source` its name, `position` where it stood (a row's
/// id, a connection and message number).
pub fn source_dead_letter(
    topic: &str,
    source: &str,
    position: &str,
    original: &[u8],
    reason: &str,
    detail: &str,
    rule: DeadLetterRule,
) -> OutRecord {
    let headers = vec![
        (H_REASON, reason.as_bytes().to_vec()),
        (H_DETAIL, detail.as_bytes().to_vec()),
        (H_TOPIC, format!("ingest:{source}").into_bytes()),
        (H_OFFSET, position.as_bytes().to_vec()),
    ];
    letter(topic, position.as_bytes().to_vec(), original, true, headers, rule)
}

/// The dead-letter record for a registry record that could not be applied. A registry record holds an
/// owner's home location: a redacted letter keeps none of it.
pub fn registry_dead_letter(topic: &str, b: &BadRegistryRecord, rule: DeadLetterRule) -> OutRecord {
    let headers = vec![
        (H_REASON, b"invalid_camera_record".to_vec()),
        (H_CAMERA_PROBLEM, b.reason.as_str().as_bytes().to_vec()),
        (H_DETAIL, b.detail.clone().into_bytes()),
        (H_TOPIC, b.topic.as_bytes().to_vec()),
        (H_PARTITION, b.partition.to_string().into_bytes()),
        (H_OFFSET, b.offset.to_string().into_bytes()),
    ];
    letter(topic, b.key.clone().unwrap_or_default(), &b.payload, false, headers, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_keys_round_trip() {
        let k = incident_key("CITY-PD", "2026/001");
        assert_eq!(k, b"CITY-PD/2026/001");
        assert_eq!(parse_incident_key(&k), Some(("CITY-PD", "2026/001")));
        assert_eq!(parse_incident_key(b"no-slash"), None);
    }

    #[test]
    fn a_letter_too_large_keeps_its_digest_and_says_why() {
        let original = vec![7u8; 2_000];
        let mut h = vec![(H_DETAIL, vec![b'd'; 5_000])];
        let rule = DeadLetterRule { payload: DeadLetterPayload::Original, max_bytes: 1_500 };
        let p = kept_bytes(&original, rule.payload, true, &mut h);
        let p = fit(p, &original, b"k", &mut h, rule.max_bytes);
        assert!(p.is_empty());
        assert!(h.iter().any(|(k, v)| *k == H_PAYLOAD_DROPPED && v == b"too_large"));
        assert!(h.iter().any(|(k, v)| *k == H_ORIGINAL_BYTES && v == b"2000"));
        assert!(headers_size(&h) <= rule.max_bytes);
    }
}
