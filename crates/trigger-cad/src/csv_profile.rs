//! City CSV exports, read through a TOML profile: which columns hold the id, the call type (initial and
//! final), the coordinates (lat/lon columns or a WKT POINT), the lifecycle timestamps, and how times are
//! written. Each status timestamp present in a row becomes one revision (created -> NEW, dispatched,
//! on scene, closed, cancelled), in that order. Another city's export needs a profile, not code.
//!
//! Every column of a row is read once, each value on its own, for a blocked term (`trigger_core::scan`): the
//! revision carries the verdict (the term and the column), never the value. Beyond that scan, columns not
//! named in the profile (caller names, phone numbers, narratives, ...) are never read.

use crate::error::{InputError, ProfileError, ProfileProblem};
use crate::{oversized, DecodeOptions, Decoded, DecodedEvent, Rejected, Source};
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use std::sync::Arc;
use trigger_core::{CallForService, Location, Millis, Reject, RejectReason, Status};

/// One column name, or several joined with the profile's `join` separator (empty parts skipped).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum Cols {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Cols {
    pub fn names(&self) -> Vec<&str> {
        match self {
            Cols::None => vec![],
            Cols::One(s) => vec![s.as_str()],
            Cols::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub incident_id: String,
    #[serde(default)]
    pub agency: Option<String>,
    #[serde(default)]
    pub type_code: Cols,
    #[serde(default)]
    pub type_text: Cols,
    /// The call type after reclassification, if the export has it; used from the second revision on.
    #[serde(default)]
    pub final_type_code: Cols,
    #[serde(default)]
    pub final_type_text: Cols,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub latitude: Option<String>,
    #[serde(default)]
    pub longitude: Option<String>,
    /// A WKT `POINT (lon lat)` column, instead of latitude/longitude.
    #[serde(default)]
    pub point_wkt: Option<String>,
}

/// Status timestamp columns. `created` is required; it is also the call's received_at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub created: String,
    #[serde(default)]
    pub dispatched: Option<String>,
    #[serde(default)]
    pub on_scene: Option<String>,
    #[serde(default)]
    pub closed: Option<String>,
    #[serde(default)]
    pub cancelled: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Agency of every row (unless `columns.agency` is set).
    #[serde(default)]
    pub agency_id: Option<String>,
    /// IANA zone of local timestamps (ignored for formats that carry an offset).
    pub time_zone: Tz,
    /// chrono strftime format of the timestamps, or "rfc3339".
    pub timestamp_format: String,
    #[serde(default = "comma")]
    pub delimiter: char,
    #[serde(default = "slash")]
    pub join: String,
    /// Uncertainty of the export's coordinates (e.g. 3 decimals ~ 71 m), metres.
    #[serde(default)]
    pub coordinate_uncertainty_m: f64,
    pub columns: Columns,
    pub lifecycle: Lifecycle,
    /// Priority words of the export and the number each means (`"1A" = 1`, `"E" = 1`). Keys match the
    /// trimmed cell, case-insensitively. See [`CsvProfile::priority`] for the whole rule.
    #[serde(default)]
    pub priority_map: std::collections::BTreeMap<String, u32>,
}

fn comma() -> char {
    ','
}
fn slash() -> String {
    " / ".into()
}

impl Lifecycle {
    /// The columns that hold times.
    pub fn columns(&self) -> Vec<&str> {
        std::iter::once(self.created.as_str())
            .chain(
                [&self.dispatched, &self.on_scene, &self.closed, &self.cancelled]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
            .collect()
    }
}

impl CsvProfile {
    /// True when the time format writes month or weekday names (`%B`, `%b`, `%h`, `%A`, `%a`).
    fn names_calendar_words(&self) -> bool {
        ["%B", "%b", "%h", "%A", "%a"].iter().any(|f| self.timestamp_format.contains(f))
    }

    pub fn from_toml(s: &str) -> Result<Self, ProfileError> {
        let p: CsvProfile = toml::from_str(s).map_err(|e| ProfileError::Toml(e.to_string()))?;
        let c = &p.columns;
        let mut errs = vec![];
        if c.point_wkt.is_none() && (c.latitude.is_none() || c.longitude.is_none()) {
            errs.push(ProfileProblem::NoLocationColumns);
        }
        if c.type_code.names().is_empty() && c.type_text.names().is_empty() {
            errs.push(ProfileProblem::NoTypeColumns);
        }
        if p.agency_id.is_none() && c.agency.is_none() {
            errs.push(ProfileProblem::NoAgency);
        }
        if !(p.delimiter.is_ascii_punctuation() || p.delimiter == '\t' || p.delimiter == ' ') || p.delimiter == '"' {
            errs.push(ProfileProblem::Delimiter(p.delimiter));
        }
        if !join_is_punctuation(&p.join) {
            errs.push(ProfileProblem::JoinHoldsWords(p.join.clone()));
        }
        if errs.is_empty() {
            Ok(p)
        } else {
            Err(ProfileError::Invalid { profile: p.name, problems: errs })
        }
    }

    /// Where this profile reads the call type, as the published classification names it.
    pub fn type_mapping(&self) -> String {
        let c = &self.columns;
        format!(
            "csv profile {}: type_code = {:?}, type_text = {:?}, final_type_code = {:?}, final_type_text = {:?}, \
             join = {:?}",
            self.name,
            c.type_code.names(),
            c.type_text.names(),
            c.final_type_code.names(),
            c.final_type_text.names(),
            self.join
        )
    }

    /// Which revisions carry the CAD's type text: (the first, the later ones). A revision without it can never
    /// start a camera. Later revisions read `final_type_text` when the profile maps a final type, else the
    /// first revision's columns.
    pub fn reads_type_text(&self) -> (bool, bool) {
        let c = &self.columns;
        let first = !c.type_text.names().is_empty();
        let has_final = !(c.final_type_code.names().is_empty() && c.final_type_text.names().is_empty());
        (first, if has_final { !c.final_type_text.names().is_empty() } else { first })
    }

    /// Every column the profile reads, once each.
    pub fn all_columns(&self) -> Vec<&str> {
        let c = &self.columns;
        let l = &self.lifecycle;
        let mut v = vec![c.incident_id.as_str(), l.created.as_str()];
        for cols in [&c.type_code, &c.type_text, &c.final_type_code, &c.final_type_text] {
            v.extend(cols.names());
        }
        for o in [
            &c.agency,
            &c.priority,
            &c.latitude,
            &c.longitude,
            &c.point_wkt,
            &l.dispatched,
            &l.on_scene,
            &l.closed,
            &l.cancelled,
        ] {
            v.extend(o.as_deref());
        }
        v
    }

    /// The priority of a cell: empty is 0; a key of `priority_map` (trimmed, case-insensitive) is its
    /// value; a whole number is itself; anything else (`2C` with no map entry) is `None`: read as 0 and
    /// counted by the caller as `unreadable_priority`.
    pub fn priority(&self, cell: &str) -> Option<u32> {
        let cell = cell.trim();
        if cell.is_empty() {
            return Some(0);
        }
        let mapped = self.priority_map.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(cell)).map(|(_, v)| *v);
        mapped.or_else(|| cell.parse::<u32>().ok())
    }

    /// Parse one timestamp cell. Empty -> None.
    pub fn parse_time(&self, s: &str) -> Result<Option<Millis>, Reject> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = |e: String| Reject::new(RejectReason::UnparseableTimestamp, format!("{s:?}: {e}"));
        if self.timestamp_format == "rfc3339" {
            return chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| bad(e.to_string()));
        }
        let naive = NaiveDateTime::parse_from_str(s, &self.timestamp_format).map_err(|e| bad(e.to_string()))?;
        // Ambiguous local times (the autumn DST hour) take the earlier instant; times in the spring gap do not exist.
        self.time_zone
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| Some(t.timestamp_millis()))
            .ok_or_else(|| bad(format!("does not exist in {}", self.time_zone)))
    }
}

/// A join of nothing but white space and punctuation: it separates the CAD's values and says nothing.
pub fn join_is_punctuation(join: &str) -> bool {
    join.chars().all(|c| {
        c.is_whitespace() || c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_control() && !is_format(c))
    })
}

/// Characters that read as nothing (zero-width, soft hyphen, joiners): never a separator of words.
fn is_format(c: char) -> bool {
    trigger_core::text::canon_words(&format!("A{c}A")) == ["AA"]
}

fn parse_wkt_point(s: &str) -> Result<Option<(f64, f64)>, Reject> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("POINT EMPTY") {
        return Ok(None);
    }
    let bad = || Reject::new(RejectReason::InvalidCoordinates, format!("{t:?} is not a WKT POINT (lon lat)"));
    let upper = t.to_ascii_uppercase();
    let inner = upper.strip_prefix("POINT").ok_or_else(bad)?.trim();
    let inner = inner.strip_prefix('(').and_then(|x| x.strip_suffix(')')).ok_or_else(bad)?;
    let mut it = inner.split_whitespace().map(str::parse::<f64>);
    let lon = it.next().and_then(Result::ok).ok_or_else(bad)?;
    let lat = it.next().and_then(Result::ok).ok_or_else(bad)?;
    Ok(Some((lat, lon)))
}

struct Row<'a> {
    fields: Vec<&'a str>,
    idx: &'a std::collections::HashMap<String, usize>,
    join: &'a str,
    /// The row's bytes as read (empty where the row came as values, from a database).
    raw: &'a [u8],
}

impl Row<'_> {
    fn get(&self, col: &str) -> &str {
        self.idx.get(col).map_or("", |&i| self.fields.get(i).map_or("", |f| f.trim()))
    }
    /// The non-empty values of `cols`, each as the CAD sent it.
    fn values(&self, cols: &Cols) -> Vec<String> {
        cols.names().into_iter().map(|c| self.get(c)).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
    fn joined(&self, cols: &Cols) -> String {
        self.values(cols).join(self.join)
    }

    /// Every value of the row read for a blocked term, each on its own, named by its column (a column the
    /// profile maps as a code is also read for the shipped standards' blocked codes).
    fn scan(&self, p: &CsvProfile) -> Option<trigger_core::RawBlock> {
        let c = &p.columns;
        let codes: Vec<&str> = c.type_code.names().into_iter().chain(c.final_type_code.names()).collect();
        let mut names: Vec<(&str, usize)> = self.idx.iter().map(|(n, i)| (n.as_str(), *i)).collect();
        names.sort_by_key(|(_, i)| *i);
        let times = p.lifecycle.columns();
        let named_months = p.names_calendar_words();
        let mut scanner = trigger_core::Scanner::default();
        for (i, value) in self.fields.iter().enumerate() {
            let name = names.iter().find(|(_, j)| *j == i).map_or("", |(n, _)| *n);
            if codes.contains(&name) {
                scanner.code(name, value);
            } else if named_months && times.contains(&name) && matches!(p.parse_time(value), Ok(Some(_))) {
                // A time the profile's format writes with month or day names: those names are the calendar's.
                scanner.text(name, &without_calendar_words(value));
            } else {
                scanner.text(name, value);
            }
        }
        if named_months {
            scanner.raw("(row)", without_calendar_words(&String::from_utf8_lossy(self.raw)).as_bytes());
        } else {
            scanner.raw("(row)", self.raw);
        }
        scanner.finish()
    }
}

/// Month and weekday names, as a time format with `%B`, `%b`, `%A` or `%a` writes them.
const CALENDAR_WORDS: &[&str] = &[
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "SEPT",
    "OCT",
    "NOV",
    "DEC",
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
    "MON",
    "TUE",
    "WED",
    "THU",
    "FRI",
    "SAT",
    "SUN",
];

/// `value` with its month and weekday names (whole words, any case) blanked.
fn without_calendar_words(value: &str) -> String {
    value
        .split_inclusive(|c: char| !c.is_alphanumeric())
        .map(|piece| {
            let word = piece.trim_end_matches(|c: char| !c.is_alphanumeric());
            if CALENDAR_WORDS.iter().any(|m| m.eq_ignore_ascii_case(word)) {
                piece.replacen(word, &" ".repeat(word.len()), 1)
            } else {
                piece.to_string()
            }
        })
        .collect()
}

/// The type text's values for `type_fields`: kept only when there are several (one is `call_type_text`).
fn several(values: Vec<String>) -> Vec<String> {
    if values.len() > 1 {
        values
    } else {
        vec![]
    }
}

fn number(s: &str, what: &str) -> Result<Option<f64>, Reject> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<f64>()
        .map(Some)
        .map_err(|_| Reject::new(RejectReason::InvalidCoordinates, format!("{what} {s:?} is not a number")))
}

/// One row's revisions, its bad lifecycle cells, and the priority cells read as 0 (`warnings`).
fn row_events(
    p: &CsvProfile,
    row: &Row<'_>,
    opts: &DecodeOptions,
    warnings: &mut Vec<String>,
) -> Result<(Vec<CallForService>, Vec<Reject>), Reject> {
    let c = &p.columns;
    let incident_id = row.get(&c.incident_id).to_string();
    if incident_id.is_empty() {
        return Err(Reject::new(RejectReason::MissingIncidentId, format!("column {:?} is empty", c.incident_id)));
    }
    let agency_id = row_agency(p, row, opts);
    let location = row_location(p, row)?;
    let priority = match c.priority.as_deref().map(|col| row.get(col)) {
        None => 0,
        Some(cell) => p.priority(cell).unwrap_or_else(|| {
            warnings.push(cell.to_string());
            0
        }),
    };
    let received_at = p.parse_time(row.get(&p.lifecycle.created))?.ok_or_else(|| {
        Reject::new(RejectReason::MissingTimestamp, format!("column {:?} is empty", p.lifecycle.created))
    })?;
    let (code0, text0) = (row.joined(&c.type_code), row.joined(&c.type_text));
    let (code1, text1) = (row.joined(&c.final_type_code), row.joined(&c.final_type_text));
    let (fields0, fields1) = (several(row.values(&c.type_text)), several(row.values(&c.final_type_text)));
    let (code1, text1, fields1) = if code1.is_empty() && text1.is_empty() {
        (code0.clone(), text0.clone(), fields0.clone())
    } else {
        (code1, text1, fields1)
    };
    let first = CallForService {
        incident_id,
        agency_id,
        revision: 1,
        status: Status::New,
        call_type_code: code0,
        call_type_text: text0,
        priority,
        location,
        received_at,
        emitted_at: received_at,
        blocked: row.scan(p),
        type_fields: fields0,
    };
    Ok(later_revisions(p, row, first, (&code1, &text1, &fields1)))
}

/// What a row says when it cannot be decoded but names a blocked type: its incident, marked (no location,
/// type or time is needed to block). None without an incident id or a blocked term.
fn blocked_only(p: &CsvProfile, row: &Row<'_>, opts: &DecodeOptions) -> Option<CallForService> {
    let blocked = row.scan(p)?;
    let incident_id = row.get(&p.columns.incident_id).to_string();
    let at = p.parse_time(row.get(&p.lifecycle.created)).ok().flatten().unwrap_or(0);
    (!incident_id.is_empty()).then(|| crate::blocked_only(incident_id, row_agency(p, row, opts), at, blocked))
}

/// The agency of a row: the caller's, the profile's column, or the profile's one agency.
fn row_agency(p: &CsvProfile, row: &Row<'_>, opts: &DecodeOptions) -> String {
    opts.agency_id
        .clone()
        .or_else(|| p.columns.agency.as_deref().map(|a| row.get(a).to_string()))
        .or_else(|| p.agency_id.clone())
        .unwrap_or_default()
}

/// A row's location: a WKT point, or a latitude and a longitude column (both or neither).
fn row_location(p: &CsvProfile, row: &Row<'_>) -> Result<Option<Location>, Reject> {
    let c = &p.columns;
    let point = match &c.point_wkt {
        Some(w) => parse_wkt_point(row.get(w))?,
        None => {
            let lat = number(row.get(c.latitude.as_deref().unwrap_or_default()), "latitude")?;
            let lon = number(row.get(c.longitude.as_deref().unwrap_or_default()), "longitude")?;
            match (lat, lon) {
                (Some(lat), Some(lon)) => Some((lat, lon)),
                (None, None) => None,
                _ => return Err(Reject::new(RejectReason::InvalidCoordinates, "only one of latitude / longitude")),
            }
        }
    };
    Ok(point.map(|(lat, lon)| Location { lat, lon, uncertainty_m: p.coordinate_uncertainty_m }))
}

/// The first revision, then one per lifecycle time the row has (with the final type), in order; a time that
/// cannot be read or that goes back in time is a reject of its own, and the row's other revisions stand.
fn later_revisions(
    p: &CsvProfile,
    row: &Row<'_>,
    first: CallForService,
    (code1, text1, fields1): (&str, &str, &[String]),
) -> (Vec<CallForService>, Vec<Reject>) {
    let l = &p.lifecycle;
    let later = [
        (Status::Dispatched, &l.dispatched),
        (Status::OnScene, &l.on_scene),
        (Status::Closed, &l.closed),
        (Status::Cancelled, &l.cancelled),
    ];
    let mut events = vec![first];
    let mut bad = vec![];
    for (status, col) in later {
        let Some(col) = col else { continue };
        let t = match p.parse_time(row.get(col)) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        let prev = events.last().expect("created").clone();
        if t < prev.emitted_at {
            bad.push(Reject::new(
                RejectReason::OutOfOrderRevision,
                format!("{} time {col:?} is before the {} time", status.as_str(), prev.status.as_str()),
            ));
            continue;
        }
        events.push(CallForService {
            revision: prev.revision + 1,
            status,
            call_type_code: code1.to_string(),
            call_type_text: text1.to_string(),
            type_fields: fields1.to_vec(),
            emitted_at: t,
            ..prev
        });
    }
    (events, bad)
}

/// One row of a table (a CAD reporting database's, read live) as the incident stands in it: the latest of
/// the revisions the profile reads from the row (the status of its latest lifecycle time, the final type if
/// present), as revision `revision` emitted at `emitted_at` (the row's last update). `columns` names the
/// row's columns in order; a column the profile reads and the row lacks is a `MissingColumns` error of the
/// source's, reported before any row ([`CsvProfile::missing_columns`]).
pub fn row_state(
    p: &CsvProfile,
    columns: &std::collections::HashMap<String, usize>,
    fields: Vec<&str>,
    revision: u32,
    emitted_at: trigger_core::Millis,
    opts: &DecodeOptions,
) -> Result<CallForService, Reject> {
    let row = Row { fields, idx: columns, join: &p.join, raw: &[] };
    match row_events(p, &row, opts, &mut Vec::new()) {
        Ok((events, _bad_later_times)) => {
            let latest = events.into_iter().last().expect("a row yields its first revision at least");
            Ok(CallForService { revision, emitted_at, ..latest })
        }
        // A row that names a blocked type is decided as blocked, whatever else is wrong with it.
        Err(r) => match blocked_only(p, &row, opts) {
            Some(ev) => Ok(CallForService { revision, emitted_at, received_at: emitted_at, ..ev }),
            None => Err(r),
        },
    }
}

impl CsvProfile {
    /// The columns the profile reads that `columns` does not have.
    pub fn missing_columns(&self, columns: &std::collections::HashMap<String, usize>) -> Vec<String> {
        self.all_columns().into_iter().filter(|c| !columns.contains_key(*c)).map(str::to_string).collect()
    }
}

/// The header's column names and where each stands; `Err` when a column the profile maps is not there.
fn header_index(
    rdr: &mut csv::Reader<&[u8]>,
    p: &CsvProfile,
) -> Result<(Vec<String>, std::collections::HashMap<String, usize>), InputError> {
    let header: Vec<String> = rdr
        .byte_headers()
        .map_err(|e| InputError::Header(e.to_string()))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let idx: std::collections::HashMap<String, usize> =
        header.iter().enumerate().map(|(i, h)| (h.clone(), i)).collect();
    let missing = p.missing_columns(&idx);
    if !missing.is_empty() {
        return Err(InputError::MissingColumns { profile: p.name.clone(), missing, header });
    }
    Ok((header, idx))
}

/// [`row_events`], its unreadable priority cells warned about in `out` when the row decoded.
fn row_events_warned(
    p: &CsvProfile,
    row: &Row<'_>,
    opts: &DecodeOptions,
    out: &mut Decoded,
) -> Result<(Vec<CallForService>, Vec<Reject>), Reject> {
    let mut unreadable = Vec::new();
    let r = row_events(p, row, opts, &mut unreadable);
    if r.is_ok() {
        unreadable.iter().for_each(|v| out.warn("unreadable_priority", v));
    }
    r
}

/// What became of one row read: its revisions (and bad later times), or why it is refused; and, when it is
/// refused but names a blocked type, its incident to mark.
type RowRead = (Result<(Vec<CallForService>, Vec<Reject>), Reject>, Option<CallForService>);

/// One row the reader took: refused when oversized, of the wrong width or not UTF-8, else decoded; a refused
/// row that names a blocked type is decided as blocked, whatever else is wrong with it.
fn read_row(
    p: &CsvProfile,
    rec: &csv::ByteRecord,
    (header, idx): (&[String], &std::collections::HashMap<String, usize>),
    raw: &[u8],
    opts: &DecodeOptions,
    out: &mut Decoded,
) -> RowRead {
    let refused = if raw.len() > opts.max_message_bytes {
        Some(oversized(raw.len(), opts.max_message_bytes))
    } else if rec.len() != header.len() {
        Some(Reject::new(RejectReason::MalformedCsv, format!("{} fields, the header has {}", rec.len(), header.len())))
    } else {
        rec.iter()
            .map(std::str::from_utf8)
            .collect::<Result<Vec<_>, _>>()
            .err()
            .map(|e| Reject::new(RejectReason::MalformedCsv, format!("not UTF-8: {e}")))
    };
    let lossy: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let row = Row { fields: lossy.iter().map(String::as_str).collect(), idx, join: &p.join, raw };
    let r = match refused {
        Some(r) => Err(r),
        None => row_events_warned(p, &row, opts, out),
    };
    let blocked = if r.is_err() { blocked_only(p, &row, opts) } else { None };
    (r, blocked)
}

/// Decode a whole CSV export. `Err` only for a header that does not fit the profile.
pub fn decode(data: &[u8], p: &CsvProfile, opts: &DecodeOptions) -> Result<Decoded, InputError> {
    // A UTF-8 byte-order mark, or one that was itself re-encoded as UTF-8 ("ï»¿", as in the MNPD export).
    let data = data
        .strip_prefix(b"\xEF\xBB\xBF")
        .or_else(|| data.strip_prefix("\u{ef}\u{bb}\u{bf}".as_bytes()))
        .unwrap_or(data);
    let mut rdr = csv::ReaderBuilder::new().delimiter(p.delimiter as u8).flexible(true).from_reader(data);
    let (header, idx) = header_index(&mut rdr, p)?;
    let mut out = Decoded::default();
    let mut rec = csv::ByteRecord::new();
    let mut row_no = 1usize; // the header is row 1
    let mut blocked: Option<CallForService> = None;
    loop {
        let start = rdr.position().byte() as usize;
        let more = rdr.read_byte_record(&mut rec);
        let end = rdr.position().byte() as usize;
        row_no += 1;
        let raw = data[start.min(data.len())..end.min(data.len())].trim_ascii_end().to_vec();
        let source = Source { position: format!("row {row_no}"), bytes: raw };
        let result = match more {
            Ok(false) => break,
            Err(e) => Err(Reject::new(RejectReason::MalformedCsv, e.to_string())),
            Ok(true) => {
                let (r, b) = read_row(p, &rec, (&header, &idx), &source.bytes, opts, &mut out);
                blocked = b;
                r
            }
        };
        let source = Arc::new(source);
        if let Some(event) = blocked.take() {
            out.events.push(DecodedEvent { event, source: source.clone() });
            continue;
        }
        match result {
            Ok((events, bad)) => {
                out.events.extend(events.into_iter().map(|event| DecodedEvent { event, source: source.clone() }));
                out.rejects.extend(bad.into_iter().map(|r| Rejected::new(&source, r)));
            }
            Err(r) => out.rejects.push(Rejected::new(&source, r)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
name = "p"
agency_id = "a"
time_zone = "UTC"
timestamp_format = "rfc3339"
[columns]
incident_id = "id"
type_code = "code"
priority = "prio"
latitude = "lat"
longitude = "lon"
[lifecycle]
created = "at"
[priority_map]
"1A" = 1
E = 1
"#;

    #[test]
    fn priorities_follow_the_documented_rule_and_unreadable_ones_are_counted() {
        let p = CsvProfile::from_toml(PROFILE).unwrap();
        assert_eq!(p.priority(" 3 "), Some(3));
        assert_eq!(p.priority(""), Some(0));
        assert_eq!(p.priority("1a"), Some(1), "map keys match case-insensitively");
        assert_eq!(p.priority("e"), Some(1));
        assert_eq!(p.priority("2C"), None);
        let csv = "id,code,prio,lat,lon,at\n1,70,2C,36.1,-86.7,2024-07-01T00:00:00Z\n2,70,1A,36.1,-86.7,2024-07-01T00:00:00Z\n3,70,2C,36.1,-86.7,2024-07-01T00:00:00Z\n";
        let d = decode(csv.as_bytes(), &p, &DecodeOptions::default()).unwrap();
        let prios: Vec<u32> = d.events.iter().map(|e| e.event.priority).collect();
        assert_eq!(prios, [0, 1, 0]);
        let w = &d.warnings["unreadable_priority"];
        assert_eq!((w.count, w.examples.clone()), (2, vec!["2C".to_string()]));
    }
}
