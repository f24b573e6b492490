//! Seed corpora for the fuzz targets (fuzz/), from the real data: the bundled week of Nashville calls, the
//! example city's export, the NENA EIDO samples in ../shared/data/eido, the shipped configuration, and
//! hand-made records at the extremes (i64::MIN/MAX, 0, -1 timestamps; NaN and out-of-range numbers).
//!
//! `cargo run -p trigger-cad --example fuzz_seeds -- fuzz/corpus` (from the repository root; fuzz/run.sh does it).

use prost::Message;
use std::path::{Path, PathBuf};
use trigger_core::{CallForService, CameraRecord, Category, Consent, Location, MinuteOfDay, QuietHours, Status};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn copy_dir(dir: &Path, target: &str, from: &str, ext: &str) {
    let Ok(entries) = std::fs::read_dir(from) else { return eprintln!("skipped {from}: not found") };
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == ext) {
            write(dir, target, &e.file_name().to_string_lossy(), &std::fs::read(e.path()).unwrap());
        }
    }
}

/// The rows of a CSV export without its header, in chunks of `n`.
fn row_chunks(path: &str, n: usize, most: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).take(most).collect();
    rows.chunks(n).map(|c| c.join("\n") + "\n").collect()
}

fn extremes(base: &CallForService) -> Vec<CallForService> {
    let mut v = Vec::new();
    for (r, e) in [(i64::MAX, i64::MAX), (base.received_at, i64::MAX - 1), (i64::MIN, i64::MIN), (-1, 0), (0, -1)] {
        v.push(CallForService { received_at: r, emitted_at: e, ..base.clone() });
    }
    v.push(CallForService { revision: u32::MAX, priority: u32::MAX, ..base.clone() });
    v.push(CallForService {
        location: Some(Location { lat: f64::NAN, lon: 1e308, uncertainty_m: -1.0 }),
        ..base.clone()
    });
    v.push(CallForService {
        location: Some(Location { lat: 0.0, lon: 0.0, uncertainty_m: f64::INFINITY }),
        ..base.clone()
    });
    v
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let profile =
        trigger_cad::CsvProfile::from_toml(&std::fs::read_to_string("config/profiles/nashville-mnpd.toml").unwrap())
            .unwrap();
    let week = std::fs::read("fixtures/nashville-mnpd-2024-07-01_07.csv").unwrap();
    let d = trigger_cad::csv_profile::decode(&week, &profile, &Default::default()).unwrap();
    let mut events: Vec<CallForService> = d.events.into_iter().map(|e| e.event).collect();
    events.sort_by_key(|e| e.emitted_at);
    let base = events.iter().find(|e| e.call_type_code == "83").cloned().unwrap_or_else(|| events[0].clone());
    calls(&out, &events, &base);
    csv_rows(&out);
    cameras(&out, &base);
    break_glass(&out, &base);
    write(&out, "policy_toml", "policy.toml", &std::fs::read("config/policy.toml").unwrap());
    copy_dir(&out, "code_table_toml", "config/codes", "toml");
    copy_dir(&out, "profile_toml", "config/profiles", "toml");
    eprintln!("seed corpora written to {}", out.display());
}

/// Calls one by one and in streams, protobuf and JSONL; the NENA EIDO samples.
fn calls(out: &Path, events: &[CallForService], base: &CallForService) {
    let mut singles: Vec<CallForService> = events.iter().step_by(7).take(60).cloned().collect();
    singles.extend(extremes(base));
    singles.push(CallForService { status: Status::Closed, revision: 2, ..base.clone() });
    for (i, ev) in singles.iter().enumerate() {
        write(out, "cfs_pb", &format!("ev{i:03}"), &trigger_cad::pb::to_pb(ev).encode_to_vec());
        write(out, "jsonl", &format!("ev{i:03}"), &trigger_cad::jsonl::encode([ev]));
    }
    for (i, chunk) in events.chunks(6).take(30).enumerate() {
        write(out, "cfs_pb_stream", &format!("chunk{i:02}"), &trigger_cad::pb::encode_stream(chunk));
        write(out, "jsonl", &format!("chunk{i:02}"), &trigger_cad::jsonl::encode(chunk));
    }
    write(out, "cfs_pb_stream", "extremes", &trigger_cad::pb::encode_stream(&extremes(base)));
    copy_dir(out, "eido", "../shared/data/eido", "json");
}

/// Rows of the real exports and of the example city, a few at a time.
fn csv_rows(out: &Path) {
    for (i, c) in row_chunks("fixtures/nashville-mnpd-2024-07-01_07.csv", 4, 200).iter().enumerate() {
        write(out, "csv_nashville", &format!("rows{i:02}"), c.as_bytes());
    }
    for (i, c) in row_chunks("../shared/data/cad/nashville_mnpd_calls_2024_sample.csv", 4, 200).iter().enumerate() {
        write(out, "csv_nashville", &format!("export{i:02}"), c.as_bytes());
    }
    for (i, c) in row_chunks("fixtures/example-city.csv", 2, 100).iter().enumerate() {
        write(out, "csv_example_city", &format!("rows{i:02}"), c.as_bytes());
    }
}

/// A camera at the base call, and the same camera broken one way at a time.
fn cameras(out: &Path, base: &CallForService) {
    let cam = CameraRecord {
        camera_id: "cam-1".into(),
        owner_ref: "own-1".into(),
        lat: base.location.map_or(36.16, |l| l.lat),
        lon: base.location.map_or(-86.78, |l| l.lon),
        consent: Consent {
            categories: Category::ALL.into_iter().collect(),
            max_radius_m: 300.0,
            quiet_hours: Some(QuietHours {
                start: MinuteOfDay(22 * 60),
                end: MinuteOfDay(7 * 60),
                time_zone: chrono_tz::America::Chicago,
            }),
            daily_cap: 2,
            live_stream_allowed: true,
        },
        online: true,
        updated_at: 1,
    };
    let bad = |f: &dyn Fn(&mut CameraRecord)| {
        let mut c = cam.clone();
        f(&mut c);
        c
    };
    let cams = [
        cam.clone(),
        bad(&|c| c.consent.quiet_hours = None),
        bad(&|c| c.lat = 129.95),
        bad(&|c| (c.lat, c.lon) = (0.0, 0.0)),
        bad(&|c| c.consent.max_radius_m = f64::NAN),
        bad(&|c| c.consent.daily_cap = 0),
        bad(&|c| c.updated_at = i64::MIN),
    ];
    for (i, c) in cams.iter().enumerate() {
        write(out, "camera_record", &format!("cam{i}"), &trigger_cad::registry::camera_to_pb(c).encode_to_vec());
    }
}

/// Break-glass requests, one sensible and three at the extremes.
fn break_glass(out: &Path, base: &CallForService) {
    let bg = |expires: i64, radius: f64| {
        format!(
            r#"{{"agency_id":"nashville-mnpd","incident_id":"{}","radius_m":{radius},"max_cameras":12,"expires_at":{expires},"reason_code":"armed_suspect_search","authorisations":[{{"key_id":"k1","signature":"00"}},{{"key_id":"k2","signature":"ff"}}]}}"#,
            base.incident_id
        )
    };
    for (i, (e, r)) in
        [(base.emitted_at + 1_800_000, 600.0), (i64::MAX, 1e308), (i64::MIN, -1.0), (0, 0.0)].iter().enumerate()
    {
        write(out, "break_glass", &format!("req{i}"), bg(*e, *r).as_bytes());
    }
}
