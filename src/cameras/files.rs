//! Camera layout files: JSONL, CSV and GeoJSON, written and read; every entry checked with
//! `trigger_core::camera` (the one check, whatever the format), and a file with a bad entry refused whole.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use trigger_core::camera::{self, camera_problems, CameraProblem};
use trigger_core::{CameraRecord, CategorySet, Consent, QuietHours};

const CSV_HEADER: [&str; 12] = [
    "camera_id",
    "owner_ref",
    "lat",
    "lon",
    "categories",
    "max_radius_m",
    "quiet_start",
    "quiet_end",
    "time_zone",
    "daily_cap",
    "live_stream_allowed",
    "online",
];

fn kind(path: &Path) -> &str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => "csv",
        Some("geojson") => "geojson",
        _ => "jsonl",
    }
}

fn csv_row(c: &CameraRecord) -> Vec<String> {
    let q = c.consent.quiet_hours;
    vec![
        c.camera_id.clone(),
        c.owner_ref.clone(),
        c.lat.to_string(),
        c.lon.to_string(),
        c.consent.categories.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(";"),
        c.consent.max_radius_m.to_string(),
        q.map(|q| q.start.to_string()).unwrap_or_default(),
        q.map(|q| q.end.to_string()).unwrap_or_default(),
        q.map(|q| q.time_zone.name().to_string()).unwrap_or_default(),
        c.consent.daily_cap.to_string(),
        c.consent.live_stream_allowed.to_string(),
        c.online.to_string(),
    ]
}

/// One camera from named fields (a CSV row, a GeoJSON feature's properties, a JSONL object flattened), with
/// every problem named: what cannot be read and what cannot be true (`trigger_core::camera`).
/// Reads one camera entry's fields by name, collecting every problem rather than stopping at the first.
struct Fields<F> {
    get: F,
    problems: Vec<CameraProblem>,
}

impl<F: Fn(&str) -> Option<String>> Fields<F> {
    fn present(&self, k: &str) -> Option<String> {
        (self.get)(k).filter(|s| !s.trim().is_empty())
    }

    /// A required field: missing or empty is a problem.
    fn need(&mut self, k: &'static str) -> Option<String> {
        let v = self.present(k);
        if v.is_none() {
            self.problems.push(CameraProblem::MissingField(k));
        }
        v
    }

    /// A required field parsed as `T`: unreadable is a problem naming the value.
    fn parsed<T: std::str::FromStr>(&mut self, k: &'static str) -> Option<T> {
        let s = self.need(k)?;
        match s.trim().parse::<T>() {
            Ok(x) => Some(x),
            Err(_) => {
                self.problems.push(CameraProblem::BadField { field: k, value: s });
                None
            }
        }
    }

    /// An optional true/false field.
    fn flag(&mut self, k: &'static str, default: bool) -> bool {
        match self.present(k) {
            None => default,
            Some(s) => s.trim().parse().unwrap_or_else(|_| {
                self.problems.push(CameraProblem::BadField { field: k, value: s });
                default
            }),
        }
    }

    fn categories(&mut self) -> CategorySet {
        let mut categories = CategorySet::default();
        let text = self.need("categories").unwrap_or_default();
        for c in text.split([';', ',']).filter(|s| !s.trim().is_empty()) {
            match camera::parse_category(c) {
                Ok(c) => categories.insert(c),
                Err(p) => self.problems.push(p),
            }
        }
        categories
    }

    /// Quiet hours when `quiet_start` is given: then `quiet_end` and `time_zone` are required too.
    fn quiet_hours(&mut self) -> Option<QuietHours> {
        let start = self.present("quiet_start")?;
        let end = self.need("quiet_end").unwrap_or_default();
        let tz = self.need("time_zone").unwrap_or_default();
        match (camera::parse_hhmm(&start), camera::parse_hhmm(&end), camera::parse_time_zone(&tz)) {
            (Ok(start), Ok(end), Ok(time_zone)) => Some(QuietHours { start, end, time_zone }),
            (a, b, c) => {
                let unread = [a.err(), b.err().filter(|_| !end.is_empty()), c.err().filter(|_| !tz.is_empty())];
                self.problems.extend(unread.into_iter().flatten());
                None
            }
        }
    }
}

/// One camera entry from its fields by name (a CSV row, a JSONL object, a GeoJSON feature's properties),
/// checked whole: every problem of the entry at once.
fn from_fields(get: impl Fn(&str) -> Option<String>) -> Result<CameraRecord, Vec<CameraProblem>> {
    let mut f = Fields { get, problems: Vec::new() };
    let camera_id = f.need("camera_id").unwrap_or_default();
    let owner_ref = f.need("owner_ref").unwrap_or_default();
    let lat = f.parsed::<f64>("lat");
    let lon = f.parsed::<f64>("lon");
    let max_radius_m = f.parsed::<f64>("max_radius_m");
    let daily_cap = f.parsed::<u32>("daily_cap").unwrap_or(1);
    let categories = f.categories();
    let quiet_hours = f.quiet_hours();
    let live_stream_allowed = f.flag("live_stream_allowed", false);
    let online = f.flag("online", true);
    let updated_at = (f.get)("updated_at").and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let rec = CameraRecord {
        camera_id,
        owner_ref,
        lat: lat.unwrap_or(f64::NAN),
        lon: lon.unwrap_or(f64::NAN),
        consent: Consent {
            categories,
            max_radius_m: max_radius_m.unwrap_or(f64::NAN),
            quiet_hours,
            daily_cap,
            live_stream_allowed,
        },
        online,
        updated_at,
    };
    // Values that were missing or unreadable are already named; do not name them twice.
    let unread = |p: &CameraProblem| match p {
        CameraProblem::InvalidCoordinates { .. } => lat.is_none() || lon.is_none(),
        CameraProblem::InvalidRadius(_) => max_radius_m.is_none(),
        CameraProblem::EmptyId => rec.camera_id.is_empty(),
        _ => false,
    };
    let mut problems = f.problems;
    problems.extend(camera_problems(&rec).into_iter().filter(|p| !unread(p)));
    if problems.is_empty() {
        Ok(rec)
    } else {
        Err(problems)
    }
}

/// A JSON value as the text a CSV cell would hold (arrays joined with `;`).
fn json_cell(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>().join(";"),
        ),
        other => Some(other.to_string()),
    }
}

/// A JSONL camera (the serde form of `CameraRecord`) by the flat field names of the CSV form.
fn jsonl_field(v: &serde_json::Value, k: &str) -> Option<String> {
    let c = &v["consent"];
    let q = &c["quiet_hours"];
    json_cell(match k {
        "categories" | "max_radius_m" | "daily_cap" | "live_stream_allowed" => &c[k],
        "quiet_start" => &q["start"],
        "quiet_end" => &q["end"],
        "time_zone" => &q["time_zone"],
        _ => &v[k],
    })
}

/// Every bad entry of a camera file, each with where it is: the whole file is refused.
#[derive(Debug)]
pub struct CameraFileError {
    pub path: String,
    pub entries: Vec<(String, String, Vec<CameraProblem>)>,
}

impl std::fmt::Display for CameraFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} bad camera entries, none loaded:", self.path, self.entries.len())?;
        for (at, id, problems) in &self.entries {
            let id = if id.is_empty() { String::new() } else { format!(" (camera {id:?})") };
            for p in problems {
                write!(f, "\n  {at}{id}: {p}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CameraFileError {}

pub fn save(path: &Path, cams: &[CameraRecord]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    match kind(path) {
        "csv" => {
            let mut cw = csv::Writer::from_writer(w);
            cw.write_record(CSV_HEADER)?;
            for c in cams {
                cw.write_record(csv_row(c))?;
            }
            cw.flush()?;
        }
        "geojson" => {
            let features: Vec<serde_json::Value> = cams
                .iter()
                .map(|c| {
                    let props: serde_json::Map<String, serde_json::Value> =
                        CSV_HEADER.iter().zip(csv_row(c)).filter(|(k, _)| !matches!(**k, "lat" | "lon")).map(|(k, v)| (k.to_string(), v.into())).collect();
                    serde_json::json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [c.lon, c.lat]}, "properties": props})
                })
                .collect();
            serde_json::to_writer(&mut w, &serde_json::json!({"type": "FeatureCollection", "features": features}))?;
            w.flush()?;
        }
        _ => {
            for c in cams {
                serde_json::to_writer(&mut w, c)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// (where in the file, the entry or what was wrong with it)
type Entries = Vec<(String, Result<CameraRecord, Vec<CameraProblem>>)>;

fn unreadable(what: String) -> Result<CameraRecord, Vec<CameraProblem>> {
    Err(vec![CameraProblem::BadField { field: "entry", value: what }])
}

/// Load a layout. Every invalid entry is named with its line / row / feature, and the file is refused.
pub fn load(path: &Path) -> Result<Vec<CameraRecord>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read cameras {}", path.display()))?;
    let entries = match kind(path) {
        "csv" => csv_entries(path, &bytes)?,
        "geojson" => geojson_entries(path, &bytes)?,
        _ => jsonl_entries(&bytes),
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    let mut first_at: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (at, entry) in entries {
        match entry {
            Ok(rec) => match first_at.get(&rec.camera_id) {
                Some(first) => {
                    bad.push((at, rec.camera_id.clone(), vec![CameraProblem::DuplicateId { first: first.clone() }]))
                }
                None => {
                    first_at.insert(rec.camera_id.clone(), at);
                    out.push(rec);
                }
            },
            Err(problems) => bad.push((at, String::new(), problems)),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(CameraFileError { path: path.display().to_string(), entries: bad }.into())
    }
}

fn csv_entries(path: &Path, bytes: &[u8]) -> Result<Entries> {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r.headers().with_context(|| format!("{}: CSV header", path.display()))?.clone();
    let mut entries = Vec::new();
    for (i, row) in r.records().enumerate() {
        let at = format!("row {}", i + 2);
        entries.push(match row {
            Err(e) => (at, unreadable(e.to_string())),
            Ok(row) => {
                let get = |k: &str| header.iter().position(|h| h == k).and_then(|j| row.get(j)).map(str::to_string);
                (at, from_fields(get))
            }
        });
    }
    Ok(entries)
}

fn geojson_entries(path: &Path, bytes: &[u8]) -> Result<Entries> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).with_context(|| format!("{} is not JSON", path.display()))?;
    let feats = v["features"].as_array().with_context(|| format!("{}: not a FeatureCollection", path.display()))?;
    let mut entries = Vec::new();
    for (i, f) in feats.iter().enumerate() {
        let coords = f["geometry"]["coordinates"].as_array();
        let at = |k: usize| coords.and_then(|c| c.get(k)).and_then(json_cell);
        let get = |k: &str| match k {
            "lat" => at(1),
            "lon" => at(0),
            _ => json_cell(&f["properties"][k]),
        };
        entries.push((format!("feature {}", i + 1), from_fields(get)));
    }
    Ok(entries)
}

fn jsonl_entries(bytes: &[u8]) -> Entries {
    let mut entries = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = format!("line {}", i + 1);
        entries.push(match serde_json::from_slice::<serde_json::Value>(line) {
            Err(e) => (at, unreadable(format!("not JSON: {e}"))),
            Ok(v) => (at, from_fields(|k| jsonl_field(&v, k))),
        });
    }
    entries
}
