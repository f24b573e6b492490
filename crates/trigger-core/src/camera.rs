//! What a camera registry entry must be before it is believed: one validation for every way a camera
//! arrives (a layout file in JSONL, CSV or GeoJSON, `cameras publish`, the registry topic, the index).
//!
//! A camera that fails is never loaded: a file names each bad entry and refuses the whole file; the registry
//! topic dead-letters the record and keeps the camera out of the index.

use crate::reject::check_coordinates;
use crate::types::{CameraRecord, CameraRef, Category, MinuteOfDay};
use crate::RejectReason;
use std::fmt;

/// One thing wrong with a camera entry. [`CameraProblem::reason`] is its closed, named form.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraProblem {
    EmptyId,
    /// A required field is absent or empty.
    MissingField(&'static str),
    /// A field that is not of its type (a number that is not a number, a flag that is not true/false).
    BadField {
        field: &'static str,
        value: String,
    },
    /// NaN, infinite, or outside [-90, 90] x [-180, 180].
    InvalidCoordinates {
        lat: f64,
        lon: f64,
    },
    /// Exactly (0, 0): a geocoder's failure value, not a home.
    NullIsland,
    /// The owner's radius must be a finite distance > 0.
    InvalidRadius(f64),
    /// A daily cap of 0 would be consent to nothing: the owner should leave the program instead.
    ZeroDailyCap,
    UnknownCategory(String),
    UnknownTimeZone(String),
    /// A quiet-hours bound that is not a minute of the day (0..1440, or HH:MM).
    QuietMinuteOutOfRange(String),
    /// The same camera_id earlier in the same file (`first` names where).
    DuplicateId {
        first: String,
    },
    /// camera_id or owner_ref longer than [`MAX_REF_BYTES`].
    TooLong {
        field: &'static str,
        bytes: usize,
    },
}

/// The longest camera_id or owner_ref, in bytes (a UUID is 36; the index keeps each length in one ASCII byte).
pub const MAX_REF_BYTES: usize = 127;

impl CameraProblem {
    /// The named reason, for dead-letter headers, metrics labels and error messages.
    pub fn reason(&self) -> &'static str {
        match self {
            CameraProblem::EmptyId => "empty_camera_id",
            CameraProblem::MissingField(_) => "missing_field",
            CameraProblem::BadField { .. } => "bad_field",
            CameraProblem::InvalidCoordinates { .. } => "invalid_coordinates",
            CameraProblem::NullIsland => "null_island",
            CameraProblem::InvalidRadius(_) => "invalid_radius",
            CameraProblem::ZeroDailyCap => "zero_daily_cap",
            CameraProblem::UnknownCategory(_) => "unknown_category",
            CameraProblem::UnknownTimeZone(_) => "unknown_time_zone",
            CameraProblem::QuietMinuteOutOfRange(_) => "quiet_minute_out_of_range",
            CameraProblem::DuplicateId { .. } => "duplicate_camera_id",
            CameraProblem::TooLong { .. } => "too_long",
        }
    }
}

impl fmt::Display for CameraProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.reason();
        match self {
            CameraProblem::EmptyId => write!(f, "{r}: camera_id is empty"),
            CameraProblem::MissingField(k) => write!(f, "{r}: {k} is missing"),
            CameraProblem::BadField { field, value } => write!(f, "{r}: {field} {value:?} is not of its type"),
            CameraProblem::InvalidCoordinates { lat, lon } => write!(f, "{r}: lat {lat}, lon {lon} is not a position"),
            CameraProblem::NullIsland => write!(f, "{r}: location is (0, 0)"),
            CameraProblem::InvalidRadius(m) => write!(f, "{r}: max_radius_m {m} must be a distance > 0"),
            CameraProblem::ZeroDailyCap => write!(f, "{r}: daily_cap 0 allows nothing (remove the camera instead)"),
            CameraProblem::UnknownCategory(c) => {
                let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
                write!(f, "{r}: unknown category {c:?} (known: {})", known.join(", "))
            }
            CameraProblem::UnknownTimeZone(z) => write!(f, "{r}: unknown time zone {z:?} (IANA names only)"),
            CameraProblem::QuietMinuteOutOfRange(m) => write!(f, "{r}: {m:?} is not a time of day"),
            CameraProblem::DuplicateId { first } => write!(f, "{r}: the same camera_id as {first}"),
            CameraProblem::TooLong { field, bytes } => {
                write!(f, "{r}: {field} is {bytes} bytes (at most {MAX_REF_BYTES})")
            }
        }
    }
}

/// Every problem of one camera entry (empty when it may be loaded).
pub fn camera_problems(c: &CameraRecord) -> Vec<CameraProblem> {
    camera_ref_problems(&c.view())
}

/// [`camera_problems`] of a borrowed record.
pub fn camera_ref_problems(c: &CameraRef<'_>) -> Vec<CameraProblem> {
    let mut out = Vec::new();
    if c.camera_id.trim().is_empty() {
        out.push(CameraProblem::EmptyId);
    }
    for (field, v) in [("camera_id", c.camera_id), ("owner_ref", c.owner_ref)] {
        if v.len() > MAX_REF_BYTES {
            out.push(CameraProblem::TooLong { field, bytes: v.len() });
        }
    }
    if let Err(r) = check_coordinates(c.lat, c.lon) {
        out.push(match r.reason {
            RejectReason::NullIsland => CameraProblem::NullIsland,
            _ => CameraProblem::InvalidCoordinates { lat: c.lat, lon: c.lon },
        });
    }
    let m = c.consent.max_radius_m;
    if !(m.is_finite() && m > 0.0) {
        out.push(CameraProblem::InvalidRadius(m));
    }
    if c.consent.daily_cap == 0 {
        out.push(CameraProblem::ZeroDailyCap);
    }
    out
}

/// A category name as owners' consent records carry it.
pub fn parse_category(s: &str) -> Result<Category, CameraProblem> {
    Category::parse(s.trim()).ok_or_else(|| CameraProblem::UnknownCategory(s.trim().to_string()))
}

/// An IANA time zone name.
pub fn parse_time_zone(s: &str) -> Result<chrono_tz::Tz, CameraProblem> {
    s.trim().parse().map_err(|_| CameraProblem::UnknownTimeZone(s.trim().to_string()))
}

/// A quiet-hours bound given as minutes since midnight.
pub fn minute_of_day(m: u32) -> Result<MinuteOfDay, CameraProblem> {
    u16::try_from(m)
        .ok()
        .filter(|m| *m < 24 * 60)
        .map(MinuteOfDay)
        .ok_or_else(|| CameraProblem::QuietMinuteOutOfRange(m.to_string()))
}

/// A quiet-hours bound given as HH:MM.
pub fn parse_hhmm(s: &str) -> Result<MinuteOfDay, CameraProblem> {
    MinuteOfDay::parse(s).ok_or_else(|| CameraProblem::QuietMinuteOutOfRange(s.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CategorySet, Consent};

    fn cam() -> CameraRecord {
        CameraRecord {
            camera_id: "c1".into(),
            owner_ref: "o1".into(),
            lat: 36.1,
            lon: -86.7,
            consent: Consent {
                categories: CategorySet::default(),
                max_radius_m: 100.0,
                quiet_hours: None,
                daily_cap: 1,
                live_stream_allowed: false,
            },
            online: true,
            updated_at: 0,
        }
    }

    #[test]
    fn what_cannot_be_true_is_named() {
        assert!(camera_problems(&cam()).is_empty());
        let reasons = |f: &dyn Fn(&mut CameraRecord)| {
            let mut c = cam();
            f(&mut c);
            camera_problems(&c).iter().map(CameraProblem::reason).collect::<Vec<_>>()
        };
        assert_eq!(reasons(&|c| c.lat = 129.95), ["invalid_coordinates"]);
        assert_eq!(reasons(&|c| c.lon = -900.0), ["invalid_coordinates"]);
        assert_eq!(reasons(&|c| (c.lat, c.lon) = (0.0, 0.0)), ["null_island"]);
        assert_eq!(reasons(&|c| c.lat = f64::NAN), ["invalid_coordinates"]);
        assert_eq!(reasons(&|c| c.consent.max_radius_m = -5.0), ["invalid_radius"]);
        assert_eq!(reasons(&|c| c.consent.max_radius_m = 0.0), ["invalid_radius"]);
        assert_eq!(reasons(&|c| c.consent.max_radius_m = f64::NAN), ["invalid_radius"]);
        assert_eq!(reasons(&|c| c.consent.daily_cap = 0), ["zero_daily_cap"]);
        assert_eq!(reasons(&|c| c.camera_id = " ".into()), ["empty_camera_id"]);
        assert_eq!(parse_category("arson").unwrap_err().reason(), "unknown_category");
        assert_eq!(parse_time_zone("Mars/Olympus").unwrap_err().reason(), "unknown_time_zone");
        assert_eq!(minute_of_day(1440).unwrap_err().reason(), "quiet_minute_out_of_range");
        assert_eq!(parse_hhmm("24:00").unwrap_err().reason(), "quiet_minute_out_of_range");
    }
}
