//! Camera layouts: a seeded synthetic generator, and files in JSONL, CSV or GeoJSON.
//!
//! The consent mix of a generated layout (documented in README.md, "Camera layouts"):
//! categories — 45% all seven program categories, 25% property only (burglary, vehicle break-in,
//! robbery), 15% violence only (shots fired, shooting, stabbing, hostage), 10% burglary only, 5% all seven
//! plus alarm calls; owner radius 100/200/300/500 m (20/35/30/15%); quiet hours 22:00-07:00 (40%),
//! 00:00-06:00 (10%), none (50%); daily cap 1/2/3/5 (25/35/25/15%); live stream allowed 20%; online 92%;
//! 15% of owners have a second camera within 15 m of the first.

use anyhow::{bail, Context, Result};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;
use trigger_core::camera::{self, camera_problems, CameraProblem};
use trigger_core::{CameraRecord, Category, CategorySet, Consent, LatLon, MinuteOfDay, QuietHours};

/// Where generated cameras go.
pub enum Placement {
    /// Around these incident locations (70%: within 400 m of one of them; 30%: anywhere in their bounding box).
    Around(Vec<LatLon>),
    /// Uniformly in [min_lat, min_lon, max_lat, max_lon].
    BBox([f64; 4]),
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut x = rng.random_range(0..total);
    for (v, w) in choices {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    choices[choices.len() - 1].0
}

/// A point uniformly within `r_m` metres of `c` (small-distance approximation).
fn jitter(rng: &mut ChaCha8Rng, c: LatLon, r_m: f64) -> LatLon {
    let d = r_m * rng.random::<f64>().sqrt();
    let a = rng.random::<f64>() * std::f64::consts::TAU;
    let lat = (c.lat + d * a.cos() / 111_195.0).clamp(-89.999, 89.999);
    let lon = c.lon + d * a.sin() / (111_195.0 * lat.to_radians().cos());
    LatLon::new(lat, lon)
}

fn consent(rng: &mut ChaCha8Rng, tz: Tz) -> Consent {
    use Category::*;
    const ALL7: [Category; 7] = [Burglary, VehicleBreakIn, Robbery, ShotsFired, Shooting, Stabbing, Hostage];
    let categories: CategorySet = match pick(rng, &[(0, 45), (1, 25), (2, 15), (3, 10), (4, 5)]) {
        0 => ALL7.into_iter().collect(),
        1 => [Burglary, VehicleBreakIn, Robbery].into_iter().collect(),
        2 => [ShotsFired, Shooting, Stabbing, Hostage].into_iter().collect(),
        3 => [Burglary].into_iter().collect(),
        _ => ALL7.into_iter().chain([Alarm]).collect(),
    };
    let quiet = match pick(rng, &[(0, 40), (1, 10), (2, 50)]) {
        0 => Some((22 * 60, 7 * 60)),
        1 => Some((0, 6 * 60)),
        _ => None,
    };
    Consent {
        categories,
        max_radius_m: pick(rng, &[(100.0, 20), (200.0, 35), (300.0, 30), (500.0, 15)]),
        quiet_hours: quiet.map(|(s, e)| QuietHours { start: MinuteOfDay(s), end: MinuteOfDay(e), time_zone: tz }),
        daily_cap: pick(rng, &[(1, 25), (2, 35), (3, 25), (5, 15)]),
        live_stream_allowed: rng.random_bool(0.2),
    }
}

/// A deterministic layout: the same arguments give the same cameras.
pub fn generate(count: usize, seed: u64, placement: &Placement, tz: Tz) -> Result<Vec<CameraRecord>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bbox = match placement {
        Placement::BBox(b) => check_bbox(*b)?,
        Placement::Around(pts) if pts.is_empty() => bail!("no located events to place cameras around"),
        Placement::Around(pts) => pts.iter().fold([90.0f64, 180.0, -90.0, -180.0], |b, p| {
            [b[0].min(p.lat), b[1].min(p.lon), b[2].max(p.lat), b[3].max(p.lon)]
        }),
    };
    let mut out: Vec<CameraRecord> = Vec::with_capacity(count);
    let mut owner = 0u64;
    for i in 0..count {
        let second = i > 0 && rng.random_bool(0.15);
        let (point, owner_id) = if second {
            let prev = &out[i - 1];
            (jitter(&mut rng, prev.point(), 15.0), owner)
        } else {
            owner += 1;
            let p = match placement {
                Placement::Around(pts) if rng.random_bool(0.7) => {
                    let centre = pts[rng.random_range(0..pts.len())];
                    jitter(&mut rng, centre, 400.0)
                }
                _ => LatLon::new(rng.random_range(bbox[0]..=bbox[2]), rng.random_range(bbox[1]..=bbox[3])),
            };
            (p, owner)
        };
        let consent = if second { out[i - 1].consent.clone() } else { consent(&mut rng, tz) };
        out.push(CameraRecord {
            camera_id: format!("cam-{i:08}"),
            // Opaque: a keyed-looking token, not a sequence a reader could map back to a household.
            owner_ref: format!("own-{:016x}", splitmix(seed ^ owner_id.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
            lat: (point.lat * 1e6).round() / 1e6,
            lon: (point.lon * 1e6).round() / 1e6,
            consent,
            online: rng.random_bool(0.92),
            updated_at: 0,
        });
    }
    Ok(out)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
fn from_fields(get: impl Fn(&str) -> Option<String>) -> Result<CameraRecord, Vec<CameraProblem>> {
    let mut problems = Vec::new();
    let need = |k: &'static str, problems: &mut Vec<CameraProblem>| {
        let v = get(k).filter(|s| !s.trim().is_empty());
        if v.is_none() {
            problems.push(CameraProblem::MissingField(k));
        }
        v
    };
    let camera_id = need("camera_id", &mut problems).unwrap_or_default();
    let owner_ref = need("owner_ref", &mut problems).unwrap_or_default();
    let num = |k: &'static str, v: Option<String>, problems: &mut Vec<CameraProblem>| -> Option<f64> {
        v.and_then(|s| match s.trim().parse::<f64>() {
            Ok(x) => Some(x),
            Err(_) => {
                problems.push(CameraProblem::BadField { field: k, value: s });
                None
            }
        })
    };
    let lat = num("lat", need("lat", &mut problems), &mut problems);
    let lon = num("lon", need("lon", &mut problems), &mut problems);
    let max_radius_m = num("max_radius_m", need("max_radius_m", &mut problems), &mut problems);
    let daily_cap = need("daily_cap", &mut problems)
        .and_then(|s| match s.trim().parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(CameraProblem::BadField { field: "daily_cap", value: s });
                None
            }
        })
        .unwrap_or(1);
    let flag = |k: &'static str, d: bool, problems: &mut Vec<CameraProblem>| -> bool {
        match get(k).filter(|s| !s.trim().is_empty()) {
            None => d,
            Some(s) => s.trim().parse().unwrap_or_else(|_| {
                problems.push(CameraProblem::BadField { field: k, value: s });
                d
            }),
        }
    };
    let mut categories = CategorySet::default();
    for c in need("categories", &mut problems).unwrap_or_default().split([';', ',']).filter(|s| !s.trim().is_empty()) {
        match camera::parse_category(c) {
            Ok(c) => categories.insert(c),
            Err(p) => problems.push(p),
        }
    }
    let quiet_hours = match get("quiet_start").filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(start) => {
            let end = need("quiet_end", &mut problems).unwrap_or_default();
            let tz = need("time_zone", &mut problems).unwrap_or_default();
            match (camera::parse_hhmm(&start), camera::parse_hhmm(&end), camera::parse_time_zone(&tz)) {
                (Ok(start), Ok(end), Ok(time_zone)) => Some(QuietHours { start, end, time_zone }),
                (a, b, c) => {
                    problems.extend(
                        [a.err(), b.err().filter(|_| !end.is_empty()), c.err().filter(|_| !tz.is_empty())]
                            .into_iter()
                            .flatten(),
                    );
                    None
                }
            }
        }
    };
    let live_stream_allowed = flag("live_stream_allowed", false, &mut problems);
    let online = flag("online", true, &mut problems);
    let updated_at = get("updated_at").and_then(|s| s.trim().parse().ok()).unwrap_or(0);
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

/// Load a layout. Every invalid entry is named with its line / row / feature, and the file is refused.
pub fn load(path: &Path) -> Result<Vec<CameraRecord>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read cameras {}", path.display()))?;
    // (where, the entry or what was wrong with it)
    let mut entries: Vec<(String, Result<CameraRecord, Vec<CameraProblem>>)> = Vec::new();
    let unreadable = |what: String| Err(vec![CameraProblem::BadField { field: "entry", value: what }]);
    match kind(path) {
        "csv" => {
            let mut r = csv::Reader::from_reader(bytes.as_slice());
            let header = r.headers().with_context(|| format!("{}: CSV header", path.display()))?.clone();
            for (i, row) in r.records().enumerate() {
                let at = format!("row {}", i + 2);
                entries.push(match row {
                    Err(e) => (at, unreadable(e.to_string())),
                    Ok(row) => {
                        let get =
                            |k: &str| header.iter().position(|h| h == k).and_then(|j| row.get(j)).map(str::to_string);
                        (at, from_fields(get))
                    }
                });
            }
        }
        "geojson" => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
            let feats =
                v["features"].as_array().with_context(|| format!("{}: not a FeatureCollection", path.display()))?;
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
        }
        _ => {
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
        }
    }
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

/// Where `cameras generate --bbox` may place cameras: on the globe, min below max.
pub fn check_bbox(b: [f64; 4]) -> Result<[f64; 4]> {
    let [min_lat, min_lon, max_lat, max_lon] = b;
    if !b.iter().all(|x| x.is_finite()) {
        bail!("--bbox {b:?}: every bound must be a number");
    }
    if !((-90.0..=90.0).contains(&min_lat) && (-90.0..=90.0).contains(&max_lat)) {
        bail!("--bbox {b:?}: latitudes must lie in [-90, 90]");
    }
    if !((-180.0..=180.0).contains(&min_lon) && (-180.0..=180.0).contains(&max_lon)) {
        bail!("--bbox {b:?}: longitudes must lie in [-180, 180]");
    }
    if min_lat > max_lat || min_lon > max_lon {
        bail!("--bbox {b:?}: give MIN_LAT,MIN_LON,MAX_LAT,MAX_LON with each minimum at most its maximum");
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_layout_and_every_format_round_trips() {
        let place = Placement::BBox([36.0, -87.0, 36.3, -86.6]);
        let a = generate(300, 7, &place, chrono_tz::America::Chicago).unwrap();
        assert_eq!(a, generate(300, 7, &place, chrono_tz::America::Chicago).unwrap());
        assert_ne!(a, generate(300, 8, &place, chrono_tz::America::Chicago).unwrap());
        let dir = tempfile::tempdir().unwrap();
        for ext in ["jsonl", "csv", "geojson"] {
            let p = dir.path().join(format!("cams.{ext}"));
            save(&p, &a).unwrap();
            assert_eq!(load(&p).unwrap(), a, "{ext}");
        }
    }

    #[test]
    fn every_bad_entry_is_named_at_once_in_every_format_and_nothing_loads() {
        let dir = tempfile::tempdir().unwrap();
        let good = generate(1, 1, &Placement::BBox([36.0, -87.0, 36.3, -86.6]), chrono_tz::UTC).unwrap();
        let bad = |f: &dyn Fn(&mut CameraRecord), id: &str| {
            let mut c = good[0].clone();
            c.camera_id = id.into();
            f(&mut c);
            c
        };
        let cams = vec![
            good[0].clone(),
            bad(&|c| c.lat = 129.95, "lat"),
            bad(&|c| c.lon = -900.0, "lon"),
            bad(&|c| (c.lat, c.lon) = (0.0, 0.0), "null"),
            bad(&|c| c.consent.max_radius_m = -5.0, "radius"),
            bad(&|c| c.consent.daily_cap = 0, "cap"),
            good[0].clone(),
        ];
        for ext in ["jsonl", "csv", "geojson"] {
            let p = dir.path().join(format!("cams.{ext}"));
            save(&p, &cams).unwrap();
            let err = load(&p).unwrap_err();
            let e = err.downcast_ref::<CameraFileError>().expect("a camera file error");
            let reasons: Vec<&str> = e.entries.iter().flat_map(|(_, _, ps)| ps.iter().map(|p| p.reason())).collect();
            assert_eq!(
                reasons,
                [
                    "invalid_coordinates",
                    "invalid_coordinates",
                    "null_island",
                    "invalid_radius",
                    "zero_daily_cap",
                    "duplicate_camera_id"
                ],
                "{ext}: {err}"
            );
            let text = err.to_string();
            let (second, last) = match ext {
                "csv" => ("row 3", "row 8"),
                "geojson" => ("feature 2", "feature 7"),
                _ => ("line 2", "line 7"),
            };
            assert!(text.contains(second) && text.contains(last), "{ext}: {text}");
        }
        // Unknown category, unknown time zone, a quiet-hours minute out of range, an empty id, NaN radius.
        let p = dir.path().join("c.csv");
        std::fs::write(
            &p,
            "camera_id,owner_ref,lat,lon,categories,max_radius_m,quiet_start,quiet_end,time_zone,daily_cap\n\
             c1,o1,36,-86,arson,100,,,,2\n\
             c2,o2,36,-86,burglary,100,22:00,07:00,Mars/Olympus,2\n\
             c3,o3,36,-86,burglary,100,25:00,07:00,UTC,2\n\
             ,o4,36,-86,burglary,NaN,,,,2\n",
        )
        .unwrap();
        let err = load(&p).unwrap_err();
        let reasons: Vec<&str> = err
            .downcast_ref::<CameraFileError>()
            .unwrap()
            .entries
            .iter()
            .flat_map(|(_, _, ps)| ps.iter().map(|p| p.reason()))
            .collect();
        assert_eq!(
            reasons,
            ["unknown_category", "unknown_time_zone", "quiet_minute_out_of_range", "missing_field", "invalid_radius"],
            "{err}"
        );
    }

    #[test]
    fn a_bbox_off_the_globe_or_upside_down_is_refused() {
        let tz = chrono_tz::UTC;
        for b in [
            [36.3, -87.0, 36.0, -86.6],
            [36.0, -86.6, 36.3, -87.0],
            [100.0, -87.0, 108.0, -86.6],
            [36.0, -900.0, 36.3, -86.6],
        ] {
            let err = generate(10, 1, &Placement::BBox(b), tz).unwrap_err().to_string();
            assert!(err.contains("--bbox"), "{b:?}: {err}");
        }
    }

    #[test]
    fn bad_rows_name_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "camera_id,owner_ref,lat,lon,categories,max_radius_m,daily_cap\nc1,o1,36,-86,burglary,100,2\nc2,o2,36,-86,arson,100,2\n").unwrap();
        let err = format!("{:#}", load(&p).unwrap_err());
        assert!(err.contains("row 3") && err.contains("arson"), "{err}");
    }
}
