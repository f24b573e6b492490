//! trigger-cad: CAD input formats and replay ordering.
//!
//! Every decoder turns bytes into [`DecodedEvent`]s and [`Rejected`] inputs. A reject names its reason
//! (the closed set in `trigger_core::RejectReason`), says where it was, and keeps the original bytes. A bad
//! record never stops a decoder: the records around it are still decoded.
//!
//! Caller, person, callback, vehicle and narrative data are dropped here: decoders read only the fields a
//! `CallForService` has, and there is nowhere else to put anything.

pub mod commands;
pub mod csv_profile;
pub mod eido;
pub mod error;
pub mod jsonl;
pub mod pacing;
pub mod pb;
pub mod registry;

use std::sync::Arc;
use trigger_core::{CallForService, Reject, RejectReason};

pub use csv_profile::CsvProfile;
pub use error::{BadPace, InputError, ProfileError, ProfileProblem, UnknownFormat};

/// Default largest accepted message (one protobuf message, JSON line, EIDO document or CSV row).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// City CSV export, read through a [`CsvProfile`].
    Csv,
    /// NENA EIDO JSON: one document, a JSON array of documents, or one document per line.
    Eido,
    /// One `CallForService` as JSON per line.
    Jsonl,
    /// Length-delimited protobuf `CallForService` messages.
    Pb,
}

impl std::str::FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "csv" => Ok(Format::Csv),
            "eido" => Ok(Format::Eido),
            "jsonl" => Ok(Format::Jsonl),
            "pb" => Ok(Format::Pb),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Where an event came from, with the exact bytes (kept for dead-lettering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// "row 17", "line 3", "message 5 at byte 1234", "document 2".
    pub position: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct DecodedEvent {
    pub event: CallForService,
    pub source: Arc<Source>,
}

/// A refused input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub position: String,
    pub reason: RejectReason,
    pub detail: String,
    pub original: Vec<u8>,
}

impl Rejected {
    pub fn new(source: &Source, reject: Reject) -> Self {
        Self {
            position: source.position.clone(),
            reason: reject.reason,
            detail: reject.detail,
            original: source.bytes.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<DecodedEvent>,
    pub rejects: Vec<Rejected>,
    /// Values read with a fallback rather than refused, by kind (`unreadable_priority`: a priority cell that
    /// is neither a whole number nor in the profile's `priority_map`, read as 0), with a few examples.
    pub warnings: std::collections::BTreeMap<&'static str, Warned>,
}

/// How often one kind of fallback happened, with the first few values that caused it.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warned {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Decoded {
    /// Count a fallback of `kind` caused by `value` (the first five distinct values are kept as examples).
    pub fn warn(&mut self, kind: &'static str, value: &str) {
        let w = self.warnings.entry(kind).or_default();
        w.count += 1;
        if w.examples.len() < 5 && !w.examples.iter().any(|e| e == value) {
            w.examples.push(value.to_string());
        }
    }
}

impl Decoded {
    fn push(&mut self, source: Source, r: Result<Vec<CallForService>, Reject>) {
        let source = Arc::new(source);
        match r {
            Ok(evs) => self.events.extend(evs.into_iter().map(|event| DecodedEvent { event, source: source.clone() })),
            Err(e) => self.rejects.push(Rejected::new(&source, e)),
        }
    }
}

/// Options shared by the decoders.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub max_message_bytes: usize,
    /// Overrides the agency for formats that carry one (EIDO, JSONL, protobuf); CSV uses its profile's.
    pub agency_id: Option<String>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES, agency_id: None }
    }
}

/// The first string value of one of `keys` in JSON text that a parser may refuse (`"key": "value"`), for a
/// record whose verdict must find its incident. Escapes are not decoded; at most 256 bytes are taken.
pub(crate) fn lenient_string(bytes: &[u8], keys: &[&str]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    keys.iter().find_map(|k| {
        let at = text.find(&format!("\"{k}\""))? + k.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
        let value: String = rest.chars().take_while(|c| *c != '"').take(256).collect();
        (!value.trim().is_empty()).then(|| value.trim().to_string())
    })
}

/// A record that names a blocked type and could not be decoded otherwise: its incident, to be marked.
pub(crate) fn blocked_only(
    incident_id: String,
    agency_id: String,
    at: trigger_core::Millis,
    found: trigger_core::RawBlock,
) -> CallForService {
    CallForService {
        incident_id,
        agency_id,
        revision: 1,
        status: trigger_core::Status::Updated,
        call_type_code: String::new(),
        call_type_text: String::new(),
        priority: 0,
        location: None,
        received_at: at,
        emitted_at: at,
        blocked: Some(found),
        type_fields: vec![],
    }
}

pub(crate) fn oversized(len: usize, max: usize) -> Reject {
    Reject::new(RejectReason::OversizedMessage, format!("{len} bytes, limit {max}"))
}

/// Decode a whole input in any format. CSV needs a profile.
pub fn decode(
    format: Format,
    data: &[u8],
    profile: Option<&CsvProfile>,
    opts: &DecodeOptions,
) -> Result<Decoded, InputError> {
    Ok(match format {
        Format::Csv => csv_profile::decode(data, profile.ok_or(InputError::CsvNeedsProfile)?, opts)?,
        Format::Eido => eido::decode(data, opts),
        Format::Jsonl => jsonl::decode(data, opts),
        Format::Pb => pb::decode_stream(data, opts),
    })
}
