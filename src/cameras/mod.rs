//! Camera layouts: a seeded synthetic generator, and files in JSONL, CSV or GeoJSON.
//!
//! The consent mix of a generated layout (documented in docs/adding-a-city.md, `cameras generate`):
//! categories — 45% all seven program categories, 25% property only (burglary, vehicle break-in,
//! robbery), 15% violence only (shots fired, shooting, stabbing, hostage), 10% burglary only, 5% all seven
//! plus alarm calls; owner radius 100/200/300/500 m (20/35/30/15%); quiet hours 22:00-07:00 (40%),
//! 00:00-06:00 (10%), none (50%); daily cap 1/2/3/5 (25/35/25/15%); live stream allowed 20%; online 92%;
//! 15% of owners have a second camera within 15 m of the first.

use anyhow::{bail, Result};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trigger_core::{CameraRecord, Category, CategorySet, Consent, LatLon, MinuteOfDay, QuietHours};

/// Where generated cameras go.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Around these incident locations (70%: within 400 m of one of them; 30%: anywhere in their bounding box).
    Around(Vec<LatLon>),
    /// Uniformly in [min_lat, min_lon, max_lat, max_lon].
    BBox([f64; 4]),
    /// A national fleet: "cities" of 10 km radius at ~100 cameras/km² (about 8% of households in a US city),
    /// their centres spread over the contiguous US; local density is the same at every fleet size.
    Fleet,
}

/// Cameras per [`Placement::Fleet`] city: 100 / km² over pi x 10² km².
const FLEET_PER_CITY: usize = 31_400;

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
        Placement::Fleet => [25.0, -124.0, 49.0, -67.0],
        Placement::Around(pts) if pts.is_empty() => bail!("no located events to place cameras around"),
        Placement::Around(pts) => pts.iter().fold([90.0f64, 180.0, -90.0, -180.0], |b, p| {
            [b[0].min(p.lat), b[1].min(p.lon), b[2].max(p.lat), b[3].max(p.lon)]
        }),
    };
    let mut out: Vec<CameraRecord> = Vec::with_capacity(count);
    let cities: Vec<LatLon> = match placement {
        Placement::Fleet => (0..count.div_ceil(FLEET_PER_CITY))
            .map(|_| LatLon::new(rng.random_range(bbox[0]..bbox[2]), rng.random_range(bbox[1]..bbox[3])))
            .collect(),
        _ => Vec::new(),
    };
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
                Placement::Fleet => jitter(&mut rng, cities[i % cities.len()], 10_000.0),
                _ => LatLon::new(rng.random_range(bbox[0]..=bbox[2]), rng.random_range(bbox[1]..=bbox[3])),
            };
            (p, owner)
        };
        let consent = if second { out[i - 1].consent } else { consent(&mut rng, tz) };
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

mod files;

pub use files::{load, save, CameraFileError};

/// Where `cameras generate --bbox` may place cameras: on the globe, min below max.
/// The valid locations of decoded events (where generated cameras are placed, `Placement::Around`).
pub fn event_points(d: &trigger_cad::Decoded) -> Vec<trigger_core::LatLon> {
    d.events
        .iter()
        .filter_map(|e| e.event.location)
        .filter(|l| trigger_core::reject::check_coordinates(l.lat, l.lon).is_ok())
        .map(|l| l.point())
        .collect()
}

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
