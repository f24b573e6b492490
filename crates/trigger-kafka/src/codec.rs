//! Wire forms of what crosses Kafka: domain types to and from the protobuf contracts.

use prost::Message;
use trigger_core::{Action, CameraCommand, CameraRecord, Category, Consent, MinuteOfDay, OwnerNotice, QuietHours};
use trigger_proto::v1 as pb;

fn action(a: Action) -> pb::CommandAction {
    match a {
        Action::Start => pb::CommandAction::Start,
        Action::Stop => pb::CommandAction::Stop,
    }
}

pub fn command(c: &CameraCommand) -> pb::CameraCommand {
    pb::CameraCommand {
        command_id: c.command_id.clone(),
        camera_id: c.camera_id.clone(),
        action: action(c.action) as i32,
        incident_ref: c.incident_ref.clone(),
        category: c.category.as_str().to_string(),
        record_seconds: c.record_seconds,
        live_stream: c.live_stream,
        issued_at_ms: c.issued_at,
        expires_at_ms: c.expires_at,
    }
}

/// Wire -> domain, for consumers of the commands topic (tests, tools).
pub fn command_from_pb(m: pb::CameraCommand) -> Result<CameraCommand, String> {
    Ok(CameraCommand {
        action: match pb::CommandAction::try_from(m.action) {
            Ok(pb::CommandAction::Start) => Action::Start,
            Ok(pb::CommandAction::Stop) => Action::Stop,
            _ => return Err(format!("command {}: action {} is neither START nor STOP", m.command_id, m.action)),
        },
        category: Category::parse(&m.category)
            .ok_or_else(|| format!("command {}: unknown category {:?}", m.command_id, m.category))?,
        command_id: m.command_id,
        camera_id: m.camera_id,
        incident_ref: m.incident_ref,
        record_seconds: m.record_seconds,
        live_stream: m.live_stream,
        issued_at: m.issued_at_ms,
        expires_at: m.expires_at_ms,
    })
}

/// The audit form of a decision: see `trigger_audit` (conversion and hash chain).
pub use trigger_audit::activation;

pub fn notice(n: &OwnerNotice) -> pb::OwnerNotice {
    pb::OwnerNotice {
        owner_ref: n.owner_ref.clone(),
        camera_id: n.camera_id.clone(),
        category: n.category.as_str().to_string(),
        area_h3: n.area_h3.clone(),
        at_ms: n.at,
        how_to_stop: n.how_to_stop.clone(),
        break_glass: n.break_glass,
    }
}

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

/// A registry entry from the wire. Anything that cannot be read as consent is refused: a camera whose
/// consent is unreadable must not be commanded.
pub fn camera_from_pb(bytes: &[u8]) -> Result<CameraRecord, String> {
    let m = pb::CameraRecord::decode(bytes).map_err(|e| format!("not a CameraRecord: {e}"))?;
    let id = m.camera_id;
    let loc = m.location.ok_or_else(|| format!("camera {id}: no location"))?;
    let consent = m.consent.ok_or_else(|| format!("camera {id}: no consent"))?;
    let mut categories = trigger_core::CategorySet::default();
    for c in &consent.categories {
        categories.insert(Category::parse(c).ok_or_else(|| format!("camera {id}: unknown category {c:?}"))?);
    }
    let quiet_hours = match consent.quiet_hours {
        None => None,
        Some(q) => {
            let minute = |m: u32| {
                u16::try_from(m)
                    .ok()
                    .filter(|m| *m < 24 * 60)
                    .map(MinuteOfDay)
                    .ok_or_else(|| format!("camera {id}: quiet-hours minute {m} is not within a day"))
            };
            Some(QuietHours {
                start: minute(q.start_minute)?,
                end: minute(q.end_minute)?,
                time_zone: q
                    .time_zone
                    .parse::<chrono_tz::Tz>()
                    .map_err(|_| format!("camera {id}: unknown time zone {:?}", q.time_zone))?,
            })
        }
    };
    Ok(CameraRecord {
        camera_id: id,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_round_trips_and_bad_consent_is_refused() {
        let cam = CameraRecord {
            camera_id: "cam-1".into(),
            owner_ref: "own-1".into(),
            lat: 36.16,
            lon: -86.78,
            consent: Consent {
                categories: [Category::Burglary, Category::Shooting].into_iter().collect(),
                max_radius_m: 250.0,
                quiet_hours: Some(QuietHours {
                    start: MinuteOfDay(22 * 60),
                    end: MinuteOfDay(7 * 60),
                    time_zone: chrono_tz::America::Chicago,
                }),
                daily_cap: 2,
                live_stream_allowed: true,
            },
            online: true,
            updated_at: 5,
        };
        let bytes = camera_to_pb(&cam).encode_to_vec();
        assert_eq!(camera_from_pb(&bytes).unwrap(), cam);

        let mut m = camera_to_pb(&cam);
        m.consent.as_mut().unwrap().categories.push("protest".into());
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().contains("unknown category"));
        let mut m = camera_to_pb(&cam);
        m.consent.as_mut().unwrap().quiet_hours.as_mut().unwrap().time_zone = "Mars/Olympus".into();
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().contains("time zone"));
        assert!(camera_from_pb(b"\xff\xff\xff").is_err());
    }
}
