//! Bad input: a closed set of named reasons, shared by the decoders and the engine so that metrics labels,
//! dead-letter headers and reject files all speak the same words.

use crate::types::{CallForService, Millis};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Bytes that are not a valid protobuf `CallForService`.
    MalformedProtobuf,
    /// Bytes that are not valid JSON, or JSON of the wrong shape.
    MalformedJson,
    /// A CSV row that cannot be read (wrong number of fields, bad quoting, not UTF-8).
    MalformedCsv,
    /// Larger than the configured maximum message size.
    OversizedMessage,
    MissingIncidentId,
    MissingAgencyId,
    /// Neither a call type code nor a call type text.
    MissingCallType,
    /// The call type is not in any code table of the agency, and the table says unknown types are rejected.
    UnknownCallType,
    MissingLocation,
    /// NaN, infinite, or outside [-90, 90] x [-180, 180].
    InvalidCoordinates,
    /// Exactly (0, 0): a geocoder's failure value, never a real incident.
    NullIsland,
    /// Negative, NaN or absurd uncertainty radius.
    InvalidUncertainty,
    MissingTimestamp,
    UnparseableTimestamp,
    /// A timestamp further in the future than the allowed clock skew.
    TimestampInFuture,
    /// A timestamp outside [2000-01-01, 2100-01-01): no CAD system sends one, and arithmetic on it could
    /// overflow.
    TimestampOutOfRange,
    /// Revision 0, or a status word that is not one of the lifecycle statuses.
    InvalidRevision,
    /// The same revision of an incident was already decided.
    DuplicateRevision,
    /// An older revision than one already decided.
    OutOfOrderRevision,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedProtobuf => "malformed_protobuf",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MalformedCsv => "malformed_csv",
            RejectReason::OversizedMessage => "oversized_message",
            RejectReason::MissingIncidentId => "missing_incident_id",
            RejectReason::MissingAgencyId => "missing_agency_id",
            RejectReason::MissingCallType => "missing_call_type",
            RejectReason::UnknownCallType => "unknown_call_type",
            RejectReason::MissingLocation => "missing_location",
            RejectReason::InvalidCoordinates => "invalid_coordinates",
            RejectReason::NullIsland => "null_island",
            RejectReason::InvalidUncertainty => "invalid_uncertainty",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::UnparseableTimestamp => "unparseable_timestamp",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidRevision => "invalid_revision",
            RejectReason::DuplicateRevision => "duplicate_revision",
            RejectReason::OutOfOrderRevision => "out_of_order_revision",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one input was refused. `detail` is for operators; it never contains caller data
/// (decoders put field names and positions in it, not field values of personal components).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// Largest plausible location uncertainty (a cell-sector fix can be a few km; beyond 50 km it is not a place).
pub const MAX_UNCERTAINTY_M: f64 = 50_000.0;

/// Structural checks every event passes before any decision, whatever format it came in.
pub fn validate(ev: &CallForService, now: Millis, max_future_skew_ms: Millis) -> Result<(), Reject> {
    use RejectReason::*;
    if ev.incident_id.trim().is_empty() {
        return Err(Reject::new(MissingIncidentId, "incident_id is empty"));
    }
    if ev.agency_id.trim().is_empty() {
        return Err(Reject::new(MissingAgencyId, "agency_id is empty"));
    }
    if ev.revision == 0 {
        return Err(Reject::new(InvalidRevision, "revision must be >= 1"));
    }
    if ev.call_type_code.trim().is_empty() && ev.call_type_text.trim().is_empty() {
        return Err(Reject::new(MissingCallType, "no call type code or text"));
    }
    let Some(loc) = ev.location else {
        return Err(Reject::new(MissingLocation, "no location"));
    };
    check_coordinates(loc.lat, loc.lon)?;
    if !(loc.uncertainty_m.is_finite() && (0.0..=MAX_UNCERTAINTY_M).contains(&loc.uncertainty_m)) {
        return Err(Reject::new(
            InvalidUncertainty,
            format!("uncertainty_m {} not in [0, {MAX_UNCERTAINTY_M}]", loc.uncertainty_m),
        ));
    }
    if ev.received_at == 0 || ev.emitted_at == 0 {
        return Err(Reject::new(MissingTimestamp, "received_at and emitted_at are required"));
    }
    for (name, t) in [("received_at", ev.received_at), ("emitted_at", ev.emitted_at)] {
        check_timestamp(name, t)?;
    }
    let limit = now.saturating_add(max_future_skew_ms);
    for (name, t) in [("received_at", ev.received_at), ("emitted_at", ev.emitted_at)] {
        if t > limit {
            return Err(Reject::new(
                TimestampInFuture,
                format!("{name} is {} s ahead of the clock", t.saturating_sub(now) / 1000),
            ));
        }
    }
    Ok(())
}

/// 2000-01-01T00:00:00Z, Unix ms: the earliest timestamp accepted.
pub const MIN_TIMESTAMP_MS: Millis = 946_684_800_000;
/// 2100-01-01T00:00:00Z, Unix ms: every accepted timestamp is before it.
pub const MAX_TIMESTAMP_MS: Millis = 4_102_444_800_000;

/// A timestamp from outside must lie in [`MIN_TIMESTAMP_MS`, `MAX_TIMESTAMP_MS`): beyond that it is not a
/// time a CAD system could have sent, and sums on it could overflow.
pub fn check_timestamp(name: &str, t: Millis) -> Result<(), Reject> {
    if (MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&t) {
        Ok(())
    } else {
        Err(Reject::new(
            RejectReason::TimestampOutOfRange,
            format!("{name} {t} ms is not between 2000-01-01 and 2100-01-01"),
        ))
    }
}

/// Coordinates must be finite, in range, and not exactly (0, 0).
pub fn check_coordinates(lat: f64, lon: f64) -> Result<(), Reject> {
    if !(lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)) {
        return Err(Reject::new(RejectReason::InvalidCoordinates, format!("lat {lat}, lon {lon} is not a position")));
    }
    if lat == 0.0 && lon == 0.0 {
        return Err(Reject::new(RejectReason::NullIsland, "location is (0, 0)"));
    }
    Ok(())
}
