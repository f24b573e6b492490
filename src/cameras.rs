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
        Placement::BBox(b) => *b,
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

fn from_fields(get: impl Fn(&str) -> Option<String>) -> Result<CameraRecord> {
    let need = |k: &str| get(k).filter(|s| !s.is_empty()).with_context(|| format!("missing {k}"));
    let num = |k: &str| -> Result<f64> { need(k)?.parse().with_context(|| format!("{k} is not a number")) };
    let flag = |k: &str, d: bool| -> Result<bool> {
        get(k).filter(|s| !s.is_empty()).map_or(Ok(d), |s| s.parse().with_context(|| format!("{k} is not true/false")))
    };
    let categories = need("categories")?
        .split([';', ','])
        .map(|s| Category::parse(s.trim()).with_context(|| format!("unknown category {s:?}")))
        .collect::<Result<CategorySet>>()?;
    let quiet_hours = match get("quiet_start").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(QuietHours {
            start: MinuteOfDay::parse(&s).context("quiet_start is not HH:MM")?,
            end: MinuteOfDay::parse(&need("quiet_end")?).context("quiet_end is not HH:MM")?,
            time_zone: need("time_zone")?.parse().map_err(|e| anyhow::anyhow!("time_zone: {e}"))?,
        }),
    };
    Ok(CameraRecord {
        camera_id: need("camera_id")?,
        owner_ref: need("owner_ref")?,
        lat: num("lat")?,
        lon: num("lon")?,
        consent: Consent {
            categories,
            max_radius_m: num("max_radius_m")?,
            quiet_hours,
            daily_cap: need("daily_cap")?.parse().context("daily_cap is not a whole number")?,
            live_stream_allowed: flag("live_stream_allowed", false)?,
        },
        online: flag("online", true)?,
        updated_at: 0,
    })
}

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

/// Load a layout. Invalid entries are errors naming the line / row / feature.
pub fn load(path: &Path) -> Result<Vec<CameraRecord>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read cameras {}", path.display()))?;
    let mut out = Vec::new();
    match kind(path) {
        "csv" => {
            let mut r = csv::Reader::from_reader(bytes.as_slice());
            let header = r.headers()?.clone();
            for (i, row) in r.records().enumerate() {
                let row = row.with_context(|| format!("{} row {}", path.display(), i + 2))?;
                let get = |k: &str| header.iter().position(|h| h == k).and_then(|j| row.get(j)).map(str::to_string);
                out.push(from_fields(get).with_context(|| format!("{} row {}", path.display(), i + 2))?);
            }
        }
        "geojson" => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
            let feats =
                v["features"].as_array().with_context(|| format!("{}: not a FeatureCollection", path.display()))?;
            for (i, f) in feats.iter().enumerate() {
                let ctx = || format!("{} feature {}", path.display(), i + 1);
                let coords = f["geometry"]["coordinates"].as_array().with_context(ctx)?;
                let (lon, lat) = (coords.first().and_then(|x| x.as_f64()), coords.get(1).and_then(|x| x.as_f64()));
                let props = &f["properties"];
                let get = |k: &str| match k {
                    "lat" => lat.map(|x| x.to_string()),
                    "lon" => lon.map(|x| x.to_string()),
                    _ => match &props[k] {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Null => None,
                        serde_json::Value::Array(a) => {
                            Some(a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(";"))
                        }
                        other => Some(other.to_string()),
                    },
                };
                out.push(from_fields(get).with_context(ctx)?);
            }
        }
        _ => {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push(serde_json::from_slice(line).with_context(|| format!("{} line {}", path.display(), i + 1))?);
            }
        }
    }
    Ok(out)
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
    fn bad_rows_name_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "camera_id,owner_ref,lat,lon,categories,max_radius_m,daily_cap\nc1,o1,36,-86,burglary,100,2\nc2,o2,36,-86,arson,100,2\n").unwrap();
        let err = format!("{:#}", load(&p).unwrap_err());
        assert!(err.contains("row 3") && err.contains("arson"), "{err}");
    }
}
