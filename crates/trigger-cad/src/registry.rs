//! The camera registry record (`CameraRecord` protobuf, the compacted registry topic's value): to and from
//! the domain type. Decoding validates with `trigger_core::camera`, like every camera file.

use prost::Message;
use trigger_core::camera::{self, CameraProblem};
use trigger_core::{CameraRecord, CameraRef, Consent, QuietHours};
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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct BadCamera {
    pub reason: BadCameraReason,
    pub detail: String,
}

/// Why a registry or status record was refused: a closed set, named by [`BadCameraReason::as_str`] in
/// dead-letter headers and metric labels.
#[derive(Debug, Clone, PartialEq)]
pub enum BadCameraReason {
    /// Not a protobuf message of the topic's type.
    MalformedProtobuf,
    /// The record's camera_id is not its key.
    KeyMismatch,
    /// A camera that cannot be true ([`trigger_core::camera`]).
    Invalid(CameraProblem),
}

impl BadCameraReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            BadCameraReason::MalformedProtobuf => "malformed_protobuf",
            BadCameraReason::KeyMismatch => "key_mismatch",
            BadCameraReason::Invalid(p) => p.reason(),
        }
    }
}

impl BadCamera {
    /// A camera that cannot be true, `detail` naming it.
    pub fn invalid(p: CameraProblem, detail: String) -> Self {
        Self { reason: BadCameraReason::Invalid(p), detail }
    }
}

/// A registry entry from the wire. Anything that cannot be read as consent, or that cannot be true
/// (`trigger_core::camera`), is refused: a camera whose consent is unreadable must not be commanded.
///
/// The registry is read whole at every start-up and followed at heartbeat rate, so the common record (each
/// field once, nothing unknown, everything valid) is read by [`fast::camera`] without an allocation per
/// category string; anything else (and every error) takes prost's path, whose answer it must equal.
pub fn camera_from_pb(bytes: &[u8]) -> Result<CameraRecord, BadCamera> {
    match fast::camera(bytes) {
        Some(rec) => Ok(rec.to_record()),
        None => camera_from_pb_prost(bytes),
    }
}

/// The common registry record read without a copy, its strings borrowed from `bytes`: the same camera
/// [`camera_from_pb`] returns, or None when it would take prost's path (an unusual encoding, or a camera
/// it refuses: call [`camera_from_pb`] for the reason).
pub fn camera_ref_from_pb(bytes: &[u8]) -> Option<CameraRef<'_>> {
    fast::camera(bytes)
}

/// [`camera_from_pb`] through prost alone: the reference the fast reader is checked against (tests, fuzzing).
pub fn camera_from_pb_prost(bytes: &[u8]) -> Result<CameraRecord, BadCamera> {
    let m = pb::CameraRecord::decode(bytes).map_err(|e| BadCamera {
        reason: BadCameraReason::MalformedProtobuf,
        detail: format!("not a CameraRecord: {e}"),
    })?;
    let id = m.camera_id;
    let bad = |p: CameraProblem| {
        let detail = format!("{p} (camera {id:?})");
        BadCamera::invalid(p, detail)
    };
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
    let m = pb::CameraStatus::decode(bytes).map_err(|e| BadCamera {
        reason: BadCameraReason::MalformedProtobuf,
        detail: format!("not a CameraStatus: {e}"),
    })?;
    if m.camera_id.trim().is_empty() {
        let p = CameraProblem::EmptyId;
        let detail = p.to_string();
        return Err(BadCamera::invalid(p, detail));
    }
    Ok(CameraStatus { camera_id: m.camera_id, online: m.online, last_seen_ms: m.last_seen_ms })
}

/// The common registry record, read straight from the wire format. Returns None for anything it does not
/// handle exactly as prost would (a field twice, an unknown field, a wire type other than the schema's, a
/// value prost would truncate) or that is not a valid camera: the caller then takes prost's path.
mod fast {
    use trigger_core::camera;
    use trigger_core::{CameraRef, CategorySet, Consent, QuietHours};

    struct Cur<'a>(&'a [u8]);

    impl<'a> Cur<'a> {
        fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for i in 0..10 {
                let b = *self.0.get(i)?;
                if i == 9 && b > 1 {
                    return None;
                }
                v |= u64::from(b & 0x7f) << (7 * i);
                if b < 0x80 {
                    self.0 = &self.0[i + 1..];
                    return Some(v);
                }
            }
            None
        }
        fn u32(&mut self) -> Option<u32> {
            u32::try_from(self.varint()?).ok()
        }
        fn f64(&mut self) -> Option<f64> {
            let (h, t) = self.0.split_first_chunk::<8>()?;
            self.0 = t;
            Some(f64::from_le_bytes(*h))
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = usize::try_from(self.varint()?).ok().filter(|&n| n <= self.0.len())?;
            let (h, t) = self.0.split_at(n);
            self.0 = t;
            Some(h)
        }
        fn str(&mut self) -> Option<&'a str> {
            std::str::from_utf8(self.bytes()?).ok()
        }
        /// (field number, wire type) of the next field, None at the end.
        fn key(&mut self) -> Option<Option<(u64, u64)>> {
            if self.0.is_empty() {
                return Some(None);
            }
            let k = self.varint()?;
            Some(Some((k >> 3, k & 7)))
        }
    }

    /// Sets `slot` unless it was set before (a field twice: prost's merge rules, not ours).
    fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
        match slot {
            Some(_) => None,
            None => {
                *slot = Some(v?);
                Some(())
            }
        }
    }

    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LEN: u64 = 2;

    pub(super) fn camera(bytes: &[u8]) -> Option<CameraRef<'_>> {
        let mut c = Cur(bytes);
        let (mut id, mut owner, mut loc, mut consent_, mut online, mut updated) = (None, None, None, None, None, None);
        while let Some((field, wire)) = c.key()? {
            match (field, wire) {
                (1, LEN) => once(&mut id, c.str())?,
                (2, LEN) => once(&mut owner, c.str())?,
                (3, LEN) => once(&mut loc, c.bytes().and_then(location))?,
                (4, LEN) => once(&mut consent_, c.bytes().and_then(consent))?,
                (5, VARINT) => once(&mut online, c.varint().map(|v| v != 0))?,
                (6, VARINT) => once(&mut updated, c.varint().map(|v| v as i64))?,
                _ => return None,
            }
        }
        let (lat, lon) = loc?;
        let rec = CameraRef {
            camera_id: id.unwrap_or_default(),
            owner_ref: owner.unwrap_or_default(),
            lat,
            lon,
            consent: consent_?,
            online: online.unwrap_or(false),
            updated_at: updated.unwrap_or(0),
        };
        trigger_core::camera_ref_problems(&rec).is_empty().then_some(rec)
    }

    fn location(bytes: &[u8]) -> Option<(f64, f64)> {
        let mut c = Cur(bytes);
        let (mut lat, mut lon, mut unc) = (None, None, None);
        while let Some((field, wire)) = c.key()? {
            match (field, wire) {
                (1, FIXED64) => once(&mut lat, c.f64())?,
                (2, FIXED64) => once(&mut lon, c.f64())?,
                (3, FIXED64) => once(&mut unc, c.f64())?,
                _ => return None,
            }
        }
        Some((lat.unwrap_or(0.0), lon.unwrap_or(0.0)))
    }

    fn consent(bytes: &[u8]) -> Option<Consent> {
        let mut c = Cur(bytes);
        let mut categories = CategorySet::default();
        let (mut radius, mut quiet, mut cap, mut live) = (None, None, None, None);
        while let Some((field, wire)) = c.key()? {
            match (field, wire) {
                (1, LEN) => categories.insert(camera::parse_category(c.str()?).ok()?),
                (2, FIXED64) => once(&mut radius, c.f64())?,
                (3, LEN) => once(&mut quiet, c.bytes().and_then(quiet_hours))?,
                (4, VARINT) => once(&mut cap, c.u32())?,
                (5, VARINT) => once(&mut live, c.varint().map(|v| v != 0))?,
                _ => return None,
            }
        }
        Some(Consent {
            categories,
            max_radius_m: radius.unwrap_or(0.0),
            quiet_hours: quiet,
            daily_cap: cap.unwrap_or(0),
            live_stream_allowed: live.unwrap_or(false),
        })
    }

    fn quiet_hours(bytes: &[u8]) -> Option<QuietHours> {
        let mut c = Cur(bytes);
        let (mut start, mut end, mut tz) = (None, None, None);
        while let Some((field, wire)) = c.key()? {
            match (field, wire) {
                (1, VARINT) => once(&mut start, c.u32())?,
                (2, VARINT) => once(&mut end, c.u32())?,
                (3, LEN) => once(&mut tz, c.str())?,
                _ => return None,
            }
        }
        Some(QuietHours {
            start: camera::minute_of_day(start.unwrap_or(0)).ok()?,
            end: camera::minute_of_day(end.unwrap_or(0)).ok()?,
            time_zone: camera::parse_time_zone(tz.unwrap_or_default()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use trigger_core::Category;

    fn record() -> impl Strategy<Value = pb::CameraRecord> {
        let cats = prop::collection::vec(
            prop_oneof![
                Just("burglary".to_string()),
                Just("shooting".to_string()),
                Just(" robbery ".to_string()),
                Just("protest".to_string())
            ],
            0..4,
        );
        let quiet = prop::option::of((
            0u32..1500,
            0u32..1500,
            prop_oneof![Just("America/Chicago"), Just(""), Just("Mars/Olympus")],
        ));
        (
            ("[a-z0-9-]{0,12}", "[a-z0-9]{0,20}", prop::option::of((-95.0f64..95.0, -190.0f64..190.0))),
            (prop::option::of((cats, -10.0f64..600.0, quiet, 0u32..6, any::<bool>())), any::<bool>(), any::<i64>()),
        )
            .prop_map(|((id, owner, loc), (consent, online, updated))| pb::CameraRecord {
                camera_id: id,
                owner_ref: owner,
                location: loc.map(|(lat, lon)| pb::GeoPoint { lat, lon, uncertainty_m: 3.0 }),
                consent: consent.map(|(categories, max_radius_m, q, daily_cap, live_stream_allowed)| pb::Consent {
                    categories,
                    max_radius_m,
                    quiet_hours: q.map(|(s, e, tz)| pb::QuietHours {
                        start_minute: s,
                        end_minute: e,
                        time_zone: tz.to_string(),
                    }),
                    daily_cap,
                    live_stream_allowed,
                }),
                online,
                updated_at_ms: updated,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The fast reader answers exactly as prost's path, or leaves the record to it; on valid records,
        /// on records cut short, with a byte flipped, with a field repeated or an unknown one appended.
        #[test]
        fn the_fast_reader_agrees_with_prost(m in record(), cut in any::<prop::sample::Index>(),
                                             flip in any::<(prop::sample::Index, u8)>(), tail in prop::collection::vec(any::<u8>(), 0..6)) {
            let full = m.encode_to_vec();
            let mut variants = vec![full.clone(), full[..cut.index(full.len() + 1)].to_vec()];
            if !full.is_empty() {
                let mut f = full.clone();
                f[flip.0.index(full.len())] ^= flip.1;
                variants.push(f);
            }
            variants.push([full.clone(), full.clone()].concat());
            variants.push([full.clone(), tail].concat());
            for v in variants {
                if let Some(fast) = fast::camera(&v) {
                    prop_assert_eq!(Ok(fast.to_record()), camera_from_pb_prost(&v));
                }
            }
        }
    }

    #[test]
    fn an_ordinary_record_takes_the_fast_path() {
        let cam = CameraRecord {
            camera_id: "cam-1".into(),
            owner_ref: "own-1".into(),
            lat: 36.16,
            lon: -86.78,
            consent: Consent {
                categories: [Category::Burglary, Category::Shooting].into_iter().collect(),
                max_radius_m: 250.0,
                quiet_hours: Some(QuietHours {
                    start: trigger_core::MinuteOfDay(22 * 60),
                    end: trigger_core::MinuteOfDay(7 * 60),
                    time_zone: chrono_tz::America::Chicago,
                }),
                daily_cap: 3,
                live_stream_allowed: true,
            },
            online: true,
            updated_at: 5,
        };
        assert_eq!(fast::camera(&camera_to_pb(&cam).encode_to_vec()).map(|c| c.to_record()), Some(cam));
    }
}
