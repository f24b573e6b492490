//! The offline replay, end to end through the binary: real Nashville data, the NENA EIDO samples, a second
//! city's export through a profile, every kind of bad input, all four formats, determinism.

mod common;

use common::{replay_week, run, run_fails, BIN};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE: &str = common::WEEK;
const FULL_EXPORT: &str = "../shared/data/cad/nashville_mnpd_calls_2024_sample.csv";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lines(dir: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(name)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn all_output_bytes(dir: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    for f in ["commands.jsonl", "decisions.jsonl", "notices.jsonl", "rejects.jsonl", "summary.json"] {
        v.extend(std::fs::read(dir.join(f)).unwrap());
    }
    v
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn same_input_gives_byte_identical_outputs() {
    let (a, b) = (tmp(), tmp());
    replay_week(a.path(), &["--no-wall-clock"]);
    replay_week(b.path(), &["--no-wall-clock"]);
    assert_eq!(all_output_bytes(a.path()), all_output_bytes(b.path()));
    assert!(summary(a.path())["decide_latency_us"].is_null());
    // With the wall clock on, only decide_latency_us may differ.
    let c = tmp();
    replay_week(c.path(), &["--index", "h3"]);
    for f in ["commands.jsonl", "decisions.jsonl", "notices.jsonl", "rejects.jsonl"] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(c.path().join(f)).unwrap(),
            "{f}: rstar vs h3"
        );
    }
    let (mut sa, mut sc) = (summary(a.path()), summary(c.path()));
    assert!(sc["decide_latency_us"]["p99"].as_f64().unwrap() > 0.0);
    for x in [&mut sa, &mut sc] {
        x.as_object_mut().unwrap().remove("decide_latency_us");
        x.as_object_mut().unwrap().remove("index");
    }
    assert_eq!(sa, sc);
}

#[test]
fn bundled_sample_triggers_and_explains() {
    let out = tmp();
    let stdout = replay_week(out.path(), &[]);
    let sum = summary(out.path());
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["decisions"], sum["decisions"], "summary printed");
    let decisions = lines(out.path(), "decisions.jsonl");
    let commands = lines(out.path(), "commands.jsonl");
    assert_eq!(sum["decisions"].as_u64().unwrap() as usize, decisions.len());
    assert_eq!(sum["events_decoded"], 808);
    assert!(sum["triggered_incidents"].as_u64().unwrap() > 0);
    // Every START is explained by a decision that commanded that camera for that incident.
    let key = |inc: &Value, cam: &Value, act: &Value| format!("{inc}|{cam}|{act}");
    let mut commanded = std::collections::BTreeSet::new();
    for d in &decisions {
        for c in d["commanded"].as_array().unwrap() {
            commanded.insert(key(&d["incident_ref"], &c["camera_id"], &c["action"]));
        }
    }
    assert_eq!(commanded.len(), commands.len());
    for c in &commands {
        assert!(commanded.contains(&key(&c["incident_ref"], &c["camera_id"], &c["action"])), "unexplained command {c}");
    }
    // Never more cameras than k per incident; alarm-only calls never trigger.
    let mut per_incident: BTreeMap<String, usize> = BTreeMap::new();
    for c in &commands {
        *per_incident.entry(c["incident_ref"].as_str().unwrap().into()).or_default() += 1;
        assert_ne!(c["category"], "alarm");
    }
    assert!(per_incident.values().all(|n| *n <= 8));
    // No CAD incident number reaches an output.
    let text = String::from_utf8(all_output_bytes(out.path())).unwrap();
    assert!(!text.contains("PD2024"), "the CAD event number leaked");
}

#[test]
fn full_nashville_export_replays() {
    if !Path::new(&root().join(FULL_EXPORT)).exists() {
        panic!("{FULL_EXPORT} is missing: the test suite runs with ../shared beside the repository");
    }
    let out = tmp();
    run(&[
        "replay",
        FULL_EXPORT,
        "--format",
        "csv",
        "--profile",
        "nashville-mnpd",
        "--generate-cameras",
        "50000",
        "--seed",
        "42",
        "--out",
        s(out.path()),
    ]);
    let sum = summary(out.path());
    // Count rows and rows without coordinates independently of the decoder.
    let mut r = csv::Reader::from_path(root().join(FULL_EXPORT)).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (lat, text, suffix) = (col("Latitude"), col("Tencode Description"), col("Tencode Suffix Description"));
    let (mut rows, mut unlocated, mut program_calls) = (0u64, 0u64, 0u64);
    for rec in r.records() {
        let rec = rec.unwrap();
        rows += 1;
        unlocated += rec[lat].trim().is_empty() as u64;
        // The program's crimes as the CAD itself names them (alarms are their own category, off by default).
        let crime =
            ["BURGLARY", "ROBBERY", "SHOTS FIRED", "SHOOTING", "STABBING"].iter().any(|w| rec[text].contains(w));
        program_calls += (crime && !rec[lat].trim().is_empty() && rec[suffix].trim() != "ALARM") as u64;
    }
    assert_eq!(sum["events_decoded"].as_u64().unwrap(), rows);
    assert_eq!(sum["rejects"]["missing_location"].as_u64().unwrap(), unlocated);
    assert_eq!(sum["decisions"].as_u64().unwrap() + sum["rejects_total"].as_u64().unwrap(), rows);
    // Recall under the fail-closed block: every located call of the program's crimes is corroborated by its own
    // text (it triggered, or no camera was in scope), none is blocked or uncorroborated, and at least 477 of the
    // 482 incidents this layout triggered before the block was redesigned still trigger.
    let outcome = |o: &str| sum["outcomes"][o].as_u64().unwrap_or(0);
    assert_eq!(outcome("triggered") + outcome("no_camera_in_scope"), program_calls, "{sum}");
    assert_eq!((outcome("blocked_type"), outcome("uncorroborated")), (0, 0), "{sum}");
    assert!(sum["triggered_incidents"].as_u64().unwrap() >= 477, "{sum}");
}

fn example_city_config(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("codes")).unwrap();
    for t in ["california.toml", "apco-2.103.toml"] {
        std::fs::copy(root().join("config/codes").join(t), dir.join("codes").join(t)).unwrap();
    }
    std::fs::write(
        dir.join("example.geojson"),
        r#"{"type":"Polygon","coordinates":[[[-122.1,37.2],[-121.7,37.2],[-121.7,37.5],[-122.1,37.5],[-122.1,37.2]]]}"#,
    )
    .unwrap();
    let policy = std::fs::read_to_string(root().join("config/policy.toml")).unwrap();
    let head = policy.split("[[agency]]").next().unwrap();
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        format!("{head}[[agency]]\nid = \"example-pd\"\ncode_tables = [\"california\"]\njurisdiction = \"example.geojson\"\n"),
    )
    .unwrap();
    p
}

fn camera_line(id: &str, lat: f64, lon: f64) -> String {
    format!(
        r#"{{"camera_id":"{id}","owner_ref":"own-{id}","lat":{lat},"lon":{lon},"consent":{{"categories":["burglary","robbery","shooting","shots_fired"],"max_radius_m":500,"daily_cap":5,"live_stream_allowed":true}},"online":true}}"#
    )
}

#[test]
fn a_second_city_needs_only_a_profile() {
    let cfg = tmp();
    let policy = example_city_config(cfg.path());
    let cams = cfg.path().join("cams.jsonl");
    std::fs::write(&cams, [camera_line("a", 37.3383, -121.8863), camera_line("b", 37.3391, -121.8871)].join("\n"))
        .unwrap();
    let out = tmp();
    let profile = root().join("config/profiles/example-city.toml");
    run(&[
        "replay",
        "fixtures/example-city.csv",
        "--format",
        "csv",
        "--profile",
        s(&profile),
        "--cameras",
        s(&cams),
        "--out",
        s(out.path()),
        "--policy",
        s(&policy),
    ]);
    let decisions = lines(out.path(), "decisions.jsonl");
    let outcomes: Vec<(u64, &str)> =
        decisions.iter().map(|d| (d["revision"].as_u64().unwrap(), d["outcome"].as_str().unwrap())).collect();
    // In event-time order:
    // 24-0001 NEW triggers; DISPATCHED (70 s) adds nothing; 24-0002 (a disturbance) NEW does not trigger,
    // and is reclassified as a shooting on DISPATCHED 90 s after the call: triggers; 24-0001 ON_SCENE is
    // 9 min after the call, inside burglary's 15-minute incident window and decided as it left the CAD (no
    // lag): nothing new to start; its CLOSED stops the cameras still recording; 24-0004 vehicle theft: not a
    // trigger type, then closed; 24-0006 riot (PC 404): blocked.
    assert_eq!(
        outcomes,
        [
            (1, "triggered"),
            (2, "no_new_camera"),
            (1, "not_trigger_type"),
            (2, "triggered"),
            (3, "no_new_camera"),
            (4, "closed"),
            (1, "not_trigger_type"),
            (1, "blocked_type"),
            (2, "closed"),
        ]
    );
    // Nearest first: camera b is the closer one to 24-0002.
    let cmds = lines(out.path(), "commands.jsonl");
    let actions: Vec<(&str, &str, &str)> = cmds
        .iter()
        .map(|c| (c["camera_id"].as_str().unwrap(), c["action"].as_str().unwrap(), c["category"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("a", "start", "burglary"),
            ("b", "start", "burglary"),
            ("b", "start", "shooting"),
            ("a", "start", "shooting"),
            ("a", "stop", "burglary"),
            ("b", "stop", "burglary")
        ]
    );
    assert!(cmds.iter().filter(|c| c["category"] == "shooting").all(|c| c["live_stream"] == true));
    let rejects = lines(out.path(), "rejects.jsonl");
    let reasons: Vec<&str> = rejects.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    // Decoder rejects (file order) come before the engine's (event-time order).
    assert_eq!(reasons, ["unparseable_timestamp", "missing_location"]);
    // Caller data never reaches commands, decisions or notices; only the dead-letter keeps original bytes.
    for f in ["commands.jsonl", "decisions.jsonl", "notices.jsonl", "summary.json"] {
        let text = std::fs::read_to_string(out.path().join(f)).unwrap();
        for pii in ["Jane", "Roe", "408-555", "neighbour", "24-0001"] {
            assert!(!text.contains(pii), "{pii} in {f}");
        }
    }
}

#[test]
fn every_kind_of_bad_input_is_a_named_reject_and_the_good_rows_still_decide() {
    let header = std::fs::read_to_string(root().join(FIXTURE)).unwrap().lines().next().unwrap().to_string();
    let row = |id: &str, code: &str, desc: &str, lat: &str, lon: &str, at: &str| {
        format!("1,{id},,{code},{desc},P,PROGRESS,,,100,MAIN ST,,B,H,527,{lat},{lon},9705,{at}")
    };
    let good = |id: &str| row(id, "83", "SHOTS FIRED", "36.160", "-86.780", "2024-07-03 12:00:00");
    let rows = [
        good("GOOD1"),
        row("BAD-NAN", "83", "SHOTS FIRED", "NaN", "-86.78", "2024-07-03 12:00:01"),
        row("BAD-RANGE", "83", "SHOTS FIRED", "136.16", "-86.78", "2024-07-03 12:00:02"),
        row("BAD-ZERO", "83", "SHOTS FIRED", "0", "0", "2024-07-03 12:00:03"),
        row("", "83", "SHOTS FIRED", "36.16", "-86.78", "2024-07-03 12:00:04"),
        row("BAD-TIME", "83", "SHOTS FIRED", "36.16", "-86.78", "yesterday-ish"),
        // (Not ALIEN LANDING: ALIEN is a blocked immigration term, and a block is decided, not refused.)
        row("BAD-TYPE", "999", "UFO LANDING", "36.16", "-86.78", "2024-07-03 12:00:05"),
        "1,BAD-NOTYPE,,,,,,,,100,MAIN ST,,B,H,527,36.16,-86.78,9705,2024-07-03 12:00:06".to_string(),
        "1,BAD-SHORT,,83".to_string(),
        row("BAD-BIG", "83", &"X".repeat(3000), "36.16", "-86.78", "2024-07-03 12:00:07"),
        row("BAD-DST", "83", "SHOTS FIRED", "36.16", "-86.78", "2024-03-10 02:30:00"),
        good("GOOD1"),
        good("GOOD2"),
    ];
    let dir = tmp();
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let out = tmp();
    run(&[
        "replay",
        s(&input),
        "--format",
        "csv",
        "--profile",
        "nashville-mnpd",
        "--generate-cameras",
        "500",
        "--out",
        s(out.path()),
        "--max-message-bytes",
        "2048",
    ]);
    let rejects = lines(out.path(), "rejects.jsonl");
    let got: BTreeMap<String, String> = rejects
        .iter()
        .map(|r| (r["position"].as_str().unwrap().to_string(), r["reason"].as_str().unwrap().to_string()))
        .collect();
    let want: BTreeMap<String, String> = [
        ("row 3", "invalid_coordinates"),
        ("row 4", "invalid_coordinates"),
        ("row 5", "null_island"),
        ("row 6", "missing_incident_id"),
        ("row 7", "unparseable_timestamp"),
        ("row 8", "unknown_call_type"),
        ("row 9", "missing_call_type"),
        ("row 10", "malformed_csv"),
        ("row 11", "oversized_message"),
        ("row 12", "unparseable_timestamp"),
        ("row 13", "duplicate_revision"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    // Original bytes are kept exactly.
    use base64::Engine as _;
    let b64 =
        |r: &Value| base64::engine::general_purpose::STANDARD.decode(r["original_b64"].as_str().unwrap()).unwrap();
    let short = rejects.iter().find(|r| r["position"] == "row 10").unwrap();
    assert_eq!(b64(short), b"1,BAD-SHORT,,83");
    // The good events around the bad ones were decided.
    let decided: Vec<Value> = lines(out.path(), "decisions.jsonl");
    assert_eq!(decided.len(), 2, "GOOD1 once (its duplicate rejected) and GOOD2");
    assert_eq!(summary(out.path())["rejects_total"], 11);
}

#[test]
fn nena_eido_samples() {
    let out = tmp();
    let cams = out.path().join("cams.jsonl");
    std::fs::write(&cams, camera_line("pgh", 40.4414, -80.0003)).unwrap();
    for f in ["sample-civil-unrest-2020.json", "sample-call-transfer.json"] {
        let o = out.path().join(f);
        let path = format!("../shared/data/eido/{f}");
        let args = ["replay", &path, "--format", "eido", "--cameras", s(&cams), "--out", s(&o)];
        let err = run_fails(&args);
        if f == "sample-call-transfer.json" {
            // Its only record is refused: the replay writes its outputs, then fails with the reason.
            assert!(err.contains("every record was refused (1 of 1)") && err.contains("missing_call_type"), "{err}");
        } else {
            // Its only incident is blocked: decided and audited, and a run in which nothing could start a camera
            // says so.
            assert!(err.contains("no event's type text corroborated a trigger category"), "{err}");
        }
    }
    // 2020 generation: the civil-unrest incident is located (gml:pos) and refused as a blocked type.
    let d = lines(&out.path().join("sample-civil-unrest-2020.json"), "decisions.jsonl");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["outcome"], "blocked_type");
    // Read from the raw document: the term and the field it stood in.
    assert_eq!(d[0]["rule"], "raw:first_amendment:CIVIL UNREST@incidentComponent[0].incidentTypeInternalText");
    assert_eq!(d[0]["agency_id"], "psap.allegheny.pa.us");
    assert!(lines(&out.path().join("sample-civil-unrest-2020.json"), "commands.jsonl").is_empty());
    // 2021+ generation: a call transfer has no incident type (and only a civic address): a named reject.
    let t = out.path().join("sample-call-transfer.json");
    let r = lines(&t, "rejects.jsonl");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["reason"], "missing_call_type");
    // Nothing of the person, callback or provider data reaches the non-dead-letter outputs.
    for dir in [t.clone(), out.path().join("sample-civil-unrest-2020.json")] {
        for f in ["commands.jsonl", "decisions.jsonl", "notices.jsonl", "summary.json"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            for pii in ["8195551212", "tjones", "Tschofenig", "alice", "dern.handy", "555"] {
                assert!(!text.contains(pii), "{pii} in {}", dir.join(f).display());
            }
        }
    }
}

#[test]
fn all_formats_decide_alike() {
    // The fixture, re-encoded as JSONL and as a protobuf stream, replays to the same decisions.
    let profile = trigger_cad::CsvProfile::from_toml(
        &std::fs::read_to_string(root().join("config/profiles/nashville-mnpd.toml")).unwrap(),
    )
    .unwrap();
    let decoded = trigger_cad::decode(
        trigger_cad::Format::Csv,
        &std::fs::read(root().join(FIXTURE)).unwrap(),
        Some(&profile),
        &Default::default(),
    )
    .unwrap();
    let events: Vec<_> = decoded.events.iter().map(|e| e.event.clone()).collect();
    let dir = tmp();
    std::fs::write(dir.path().join("x.jsonl"), trigger_cad::jsonl::encode(&events)).unwrap();
    std::fs::write(dir.path().join("x.pb"), trigger_cad::pb::encode_stream(&events)).unwrap();
    let cams = dir.path().join("cams.jsonl");
    run(&[
        "cameras",
        "generate",
        "--count",
        "20000",
        "--seed",
        "7",
        "--around",
        FIXTURE,
        "--profile",
        "nashville-mnpd",
        "--out",
        s(&cams),
    ]);
    let mut outs = vec![];
    for (file, fmt) in
        [(root().join(FIXTURE), "csv"), (dir.path().join("x.jsonl"), "jsonl"), (dir.path().join("x.pb"), "pb")]
    {
        let o = dir.path().join(fmt);
        run(&[
            "replay",
            s(&file),
            "--format",
            fmt,
            "--profile",
            "nashville-mnpd",
            "--cameras",
            s(&cams),
            "--out",
            s(&o),
        ]);
        outs.push((
            std::fs::read(o.join("decisions.jsonl")).unwrap(),
            std::fs::read(o.join("commands.jsonl")).unwrap(),
        ));
    }
    assert!(!outs[0].1.is_empty());
    assert_eq!(outs[0], outs[1], "csv vs jsonl");
    assert_eq!(outs[0], outs[2], "csv vs protobuf");
    // The generated layout equals the one --generate-cameras builds with the same seed.
    let gen = tmp();
    replay_week(gen.path(), &[]);
    assert_eq!(std::fs::read(gen.path().join("commands.jsonl")).unwrap(), outs[0].1);
}

#[test]
fn clear_errors_for_bad_invocations() {
    let dir = tmp();
    let out = Command::new(BIN)
        .current_dir(root())
        .args(["replay", FIXTURE, "--format", "csv", "--generate-cameras", "10", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a profile"));
    let out =
        Command::new(BIN).current_dir(root()).args(["check-config", "--policy", "nope/policy.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read nope/policy.toml"));
    assert!(run(&["check-config"]).contains("ok"));
}
