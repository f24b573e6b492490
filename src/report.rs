//! Reports built from the audit trail alone (plus, for an owner, which cameras are theirs).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use trigger_proto::v1 as pb;

/// Read an audit file (or a replay folder's audit.pb) and check its chain; a broken chain is an error, since
/// a report from an altered trail would be worthless.
pub fn read_verified_audit(path: &Path) -> Result<(Vec<pb::ActivationRecord>, String)> {
    let path = if path.is_dir() { path.join("audit.pb") } else { path.to_path_buf() };
    let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = trigger_audit::decode_stream(&data);
    let v = trigger_audit::verify(&records, Some(trigger_audit::GENESIS))
        .map_err(|b| anyhow::anyhow!("{}: the audit chain is broken: {b}", path.display()))?;
    Ok((records.into_iter().map(|r| r.expect("verified")).collect(), v.head))
}

#[derive(Debug, Serialize)]
pub struct OwnerActivation {
    pub decided_at: String,
    pub camera_id: String,
    pub action: &'static str,
    pub category: String,
    pub incident_ref: String,
    /// Coarse area of the incident (H3 cell), never its exact location.
    pub area_h3: String,
    pub distance_m: f64,
}

#[derive(Debug, Serialize)]
pub struct OwnerReport {
    pub owner_ref: String,
    pub cameras: Vec<String>,
    /// The audit trail the report was built from: its record count and head hash (verified).
    pub audit_records: usize,
    pub audit_head: String,
    /// Records whose per-camera detail retention has dropped: the history says nothing about them.
    pub audit_records_without_detail: usize,
    pub starts: u64,
    pub stops: u64,
    pub starts_by_category: BTreeMap<String, u64>,
    /// Times one of the owner's cameras was near an incident but not used, by reason (their consent at work).
    pub not_used_by_reason: BTreeMap<String, u64>,
    pub activations: Vec<OwnerActivation>,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Everything the audit says about one owner's cameras.
pub fn owner(owner_ref: &str, cameras: &[trigger_core::CameraRecord], audit: &Path) -> Result<OwnerReport> {
    let mine: BTreeSet<&str> =
        cameras.iter().filter(|c| c.owner_ref == owner_ref).map(|c| c.camera_id.as_str()).collect();
    if mine.is_empty() {
        bail!("no camera of owner {owner_ref:?} in the camera layout");
    }
    let (records, head) = read_verified_audit(audit)?;
    let mut r = OwnerReport {
        owner_ref: owner_ref.to_string(),
        cameras: mine.iter().map(|s| s.to_string()).collect(),
        audit_records: records.len(),
        audit_head: head,
        audit_records_without_detail: records.iter().filter(|r| r.detail_redacted).count(),
        starts: 0,
        stops: 0,
        starts_by_category: BTreeMap::new(),
        not_used_by_reason: BTreeMap::new(),
        activations: Vec::new(),
    };
    for rec in &records {
        for c in rec.commanded.iter().filter(|c| mine.contains(c.camera_id.as_str())) {
            let action = if c.action == pb::CommandAction::Stop as i32 { "stop" } else { "start" };
            if action == "start" {
                r.starts += 1;
                *r.starts_by_category.entry(rec.category.clone()).or_default() += 1;
            } else {
                r.stops += 1;
            }
            r.activations.push(OwnerActivation {
                decided_at: iso(rec.decided_at_ms),
                camera_id: c.camera_id.clone(),
                action,
                category: rec.category.clone(),
                incident_ref: rec.incident_ref.clone(),
                area_h3: rec.area_h3.clone(),
                distance_m: (c.distance_m * 10.0).round() / 10.0,
            });
        }
        for x in rec.excluded.iter().filter(|x| mine.contains(x.camera_id.as_str())) {
            *r.not_used_by_reason.entry(x.reason.clone()).or_default() += 1;
        }
    }
    Ok(r)
}
