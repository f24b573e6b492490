//! The camera registry record (`CameraRecord` protobuf, the compacted registry topic's value): to and from
//! the domain type. Decoding validates with `trigger_core::camera`, like every camera file.

use prost::Message;
use trigger_core::camera::{self, CameraProblem};
use trigger_core::{CameraRecord, Consent, QuietHours};
use trigger_proto::v1 as pb;

pub fn camera_to_pb(c: &CameraRecord) -> pb::CameraRecord {
    pb::CameraRecord {
        camera_id: c.camera_id.clone(),
        owner_ref: c.owner_ref.clone(),
        location: Some(pb::GeoPoint { lat: c.lat, lon: c.lon, uncertainty_m: 0.0 }),
        consent: Some(pb::Consent {
            categories: c.consent.categories.iter().map(|c| c.as_str().to_string()).collect(),
            max_radius_m: c.consent.max_radius_m,
            quiet_hours: c.consent.quiet_hours.map(|q| pb::QuietHours {
                start_minute: q.start.0 as u32,
                end_minute: q.end.0 as u32,
                time_zone: q.time_zone.name().to_string(),
            }),
            daily_cap: c.consent.daily_cap,
            live_stream_allowed: c.consent.live_stream_allowed,
        }),
        online: c.online,
        updated_at_ms: c.updated_at,
    }
}

/// A registry record refused: its named reason (`malformed_protobuf` or a `CameraProblem` reason) and what
/// was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct BadCamera {
    pub reason: &'static str,
    pub detail: String,
}

/// A registry entry from the wire. Anything that cannot be read as consent, or that cannot be true
/// (`trigger_core::camera`), is refused: a camera whose consent is unreadable must not be commanded.
pub fn camera_from_pb(bytes: &[u8]) -> Result<CameraRecord, BadCamera> {
    let m = pb::CameraRecord::decode(bytes)
        .map_err(|e| BadCamera { reason: "malformed_protobuf", detail: format!("not a CameraRecord: {e}") })?;
    let id = m.camera_id;
    let bad = |p: CameraProblem| BadCamera { reason: p.reason(), detail: format!("{p} (camera {id:?})") };
    let loc = m.location.ok_or_else(|| bad(CameraProblem::MissingField("location")))?;
    let consent = m.consent.ok_or_else(|| bad(CameraProblem::MissingField("consent")))?;
    let categories = consent
        .categories
        .iter()
        .map(|c| camera::parse_category(c))
        .collect::<Result<trigger_core::CategorySet, _>>()
        .map_err(&bad)?;
    let quiet_hours = match consent.quiet_hours {
        None => None,
        Some(q) => Some(QuietHours {
            start: camera::minute_of_day(q.start_minute).map_err(&bad)?,
            end: camera::minute_of_day(q.end_minute).map_err(&bad)?,
            time_zone: camera::parse_time_zone(&q.time_zone).map_err(&bad)?,
        }),
    };
    let rec = CameraRecord {
        camera_id: id.clone(),
        owner_ref: m.owner_ref,
        lat: loc.lat,
        lon: loc.lon,
        consent: Consent {
            categories,
            max_radius_m: consent.max_radius_m,
            quiet_hours,
            daily_cap: consent.daily_cap,
            live_stream_allowed: consent.live_stream_allowed,
        },
        online: m.online,
        updated_at: m.updated_at_ms,
    };
    match trigger_core::camera_problems(&rec).into_iter().next() {
        None => Ok(rec),
        Some(p) => Err(bad(p)),
    }
}

/// A heartbeat from the status topic: online or not, as of `last_seen_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraStatus {
    pub camera_id: String,
    pub online: bool,
    pub last_seen_ms: trigger_core::Millis,
}

pub fn status_to_pb(s: &CameraStatus) -> pb::CameraStatus {
    pb::CameraStatus { camera_id: s.camera_id.clone(), online: s.online, last_seen_ms: s.last_seen_ms }
}

/// A status record from the wire; refused when unreadable or without a camera id.
pub fn status_from_pb(bytes: &[u8]) -> Result<CameraStatus, BadCamera> {
    let m = pb::CameraStatus::decode(bytes)
        .map_err(|e| BadCamera { reason: "malformed_protobuf", detail: format!("not a CameraStatus: {e}") })?;
    if m.camera_id.trim().is_empty() {
        let p = CameraProblem::EmptyId;
        return Err(BadCamera { reason: p.reason(), detail: p.to_string() });
    }
    Ok(CameraStatus { camera_id: m.camera_id, online: m.online, last_seen_ms: m.last_seen_ms })
}
