//! trigger-audit: the audit trail, tamper-evident. No I/O.
//!
//! Every decision becomes one `ActivationRecord` ([`activation`]). Records of one audit stream (one replay
//! run; one CFS partition in the service) are hash-chained by [`Chain`]: each carries the previous record's
//! hash (`prev_hash`) and its own (`hash` = SHA-256 of the record's protobuf encoding with `hash` empty, so
//! the link to the previous record is covered too). [`verify`] walks a stream and names the first record
//! that was altered, is unreadable, follows a missing record, or stands out of order.
//!
//! Retention: the per-camera detail (which cameras were commanded or excluded, and why) enters the hash only
//! through its digest (`detail_digest`). [`redact`] drops the detail of a record and marks it; the chain still
//! verifies, the counts (`cameras_started`) stay, and detail that is kept cannot be altered unnoticed.

use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use trigger_core::{Action, DecisionRecord};
use trigger_proto::v1 as pb;

/// The `prev_hash` of a stream's first record.
pub const GENESIS: &str = "";

/// The audit form of a decision (without its place in the chain).
pub fn activation(r: &DecisionRecord) -> pb::ActivationRecord {
    let action = |a: Action| match a {
        Action::Start => pb::CommandAction::Start,
        Action::Stop => pb::CommandAction::Stop,
    } as i32;
    pb::ActivationRecord {
        incident_ref: r.incident_ref.clone(),
        agency_id: r.agency_id.clone(),
        category: r.category.map(|c| c.as_str().to_string()).unwrap_or_default(),
        rule: r.rule.clone().unwrap_or_default(),
        revision: r.revision,
        outcome: r.outcome.as_str().to_string(),
        commanded: r
            .commanded
            .iter()
            .map(|c| pb::CommandedCamera {
                camera_id: c.camera_id.clone(),
                distance_m: c.distance_m.unwrap_or(0.0),
                action: action(c.action),
            })
            .collect(),
        excluded: r
            .excluded
            .iter()
            .map(|x| pb::ExcludedCamera {
                camera_id: x.camera_id.clone(),
                distance_m: x.distance_m,
                reason: x.reason.as_str().to_string(),
            })
            .collect(),
        area_h3: r.area_h3.clone().unwrap_or_default(),
        latencies: Some(pb::StageLatencies {
            emitted_to_decided_ms: r.latencies.emitted_to_decided_ms,
            received_to_decided_ms: r.latencies.received_to_decided_ms,
        }),
        radius_m: r.radius_m.unwrap_or(0.0),
        decided_at_ms: r.decided_at,
        prev_hash: String::new(),
        hash: String::new(),
        break_glass: r.break_glass,
        detail_digest: String::new(),
        detail_redacted: false,
        cameras_started: r.commanded.iter().filter(|c| c.action == Action::Start).count() as u32,
        type_text: r.type_text.clone(),
        classification: r.classification.clone(),
    }
}

/// SHA-256 (hex) of a record's per-camera detail alone.
pub fn detail_digest(r: &pb::ActivationRecord) -> String {
    let detail =
        pb::ActivationRecord { commanded: r.commanded.clone(), excluded: r.excluded.clone(), ..Default::default() };
    hex::encode(Sha256::digest(detail.encode_to_vec()))
}

/// Drop a record's per-camera detail (retention); its hash, digest and counts stay, so the chain verifies.
pub fn redact(r: &mut pb::ActivationRecord) {
    r.commanded.clear();
    r.excluded.clear();
    r.detail_redacted = true;
}

/// SHA-256 (hex) of the record's encoding with `hash` empty and the detail replaced by its digest (already
/// in `detail_digest`). prost encodes fields in number order and keeps repeated fields in order, so equal
/// records give equal bytes.
pub fn record_hash(r: &pb::ActivationRecord) -> String {
    let mut unsealed = r.clone();
    unsealed.hash.clear();
    unsealed.commanded.clear();
    unsealed.excluded.clear();
    unsealed.detail_redacted = false;
    hex::encode(Sha256::digest(unsealed.encode_to_vec()))
}

/// The writer's side of one audit stream.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    head: String,
}

impl Chain {
    /// A new stream.
    pub fn new() -> Self {
        Self { head: GENESIS.to_string() }
    }

    /// Continue a stream whose last record has this hash.
    pub fn resume(head: impl Into<String>) -> Self {
        Self { head: head.into() }
    }

    /// Link the record to the stream and seal it.
    pub fn seal(&mut self, mut r: pb::ActivationRecord) -> pb::ActivationRecord {
        r.detail_digest = detail_digest(&r);
        r.prev_hash = std::mem::take(&mut self.head);
        r.hash = record_hash(&r);
        self.head = r.hash.clone();
        r
    }

    /// Hash of the last sealed record (GENESIS before any).
    pub fn head(&self) -> &str {
        &self.head
    }
}

/// Where and how a chain is broken. Indexes count records from 0 in the order they were read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("record {index} cannot be read: {error}")]
    Unreadable { index: usize, error: String },
    #[error("record {index} was altered: its content does not match its hash")]
    Altered { index: usize },
    #[error("record {index} follows a record that is missing (its predecessor is not in the stream)")]
    Missing { index: usize },
    #[error("record {index} is out of order: its predecessor is record {predecessor_at}")]
    Reordered { index: usize, predecessor_at: usize },
    #[error("the stream does not start at the beginning of a chain: records are missing before record 0")]
    NotAtGenesis,
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    /// Records whose per-camera detail was dropped by retention.
    pub redacted: usize,
    /// Hash of the last record: publish it, and anyone can check later that nothing was rewritten since.
    pub head: String,
}

/// Walk one stream. `start`: the `prev_hash` the first record must carry (GENESIS for a whole stream; a
/// known earlier head to check a continuation; None to accept any starting point, e.g. a topic whose oldest
/// records were deleted by retention).
pub fn verify(records: &[Result<pb::ActivationRecord, String>], start: Option<&str>) -> Result<Verified, Break> {
    let position: HashMap<&str, usize> =
        records.iter().enumerate().filter_map(|(i, r)| r.as_ref().ok().map(|r| (r.hash.as_str(), i))).collect();
    let mut prev: Option<&str> = start;
    let mut redacted = 0;
    for (index, r) in records.iter().enumerate() {
        let r = r.as_ref().map_err(|e| Break::Unreadable { index, error: e.clone() })?;
        let detail_ok = if r.detail_redacted {
            redacted += 1;
            r.commanded.is_empty() && r.excluded.is_empty()
        } else {
            detail_digest(r) == r.detail_digest
        };
        if !detail_ok || record_hash(r) != r.hash {
            return Err(Break::Altered { index });
        }
        if let Some(p) = prev {
            if r.prev_hash != p {
                return Err(match position.get(r.prev_hash.as_str()) {
                    Some(&at) => Break::Reordered { index, predecessor_at: at },
                    None if index == 0 => Break::NotAtGenesis,
                    None => Break::Missing { index },
                });
            }
        }
        prev = Some(&r.hash);
    }
    Ok(Verified { records: records.len(), redacted, head: prev.unwrap_or(GENESIS).to_string() })
}

/// Records as a length-delimited protobuf stream (the audit file format of `replay`).
pub fn encode_stream<'a>(records: impl IntoIterator<Item = &'a pb::ActivationRecord>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.encode_length_delimited(&mut out).expect("a Vec grows");
    }
    out
}

/// Read a length-delimited stream. A record that does not decode is kept as an error in its place; a
/// broken length prefix ends the stream with one error.
pub fn decode_stream(data: &[u8]) -> Vec<Result<pb::ActivationRecord, String>> {
    trigger_proto::framing::frames(data)
        .map(|f| match f {
            Ok(f) => pb::ActivationRecord::decode(f.body).map_err(|e| e.to_string()),
            Err((_, e)) => Err(e.to_string()),
        })
        .collect()
}
