//! No caller data leaves ingest. Inputs that carry caller names, phone numbers, narratives, person and
//! callback components (the example city's CSV export; the NENA EIDO call-transfer sample) go through the
//! offline replay and through the Kafka service (as a child process, JSON logs at debug level, /metrics), and
//! no byte of any output may contain them: commands, decisions, audit, owner notices, dead-letter headers,
//! logs, metric labels. The CAD incident numbers must not appear in commands, audit or notices either (they
//! carry an opaque reference).
//!
//! By design, dead-letter payloads (and a replay's rejects.jsonl) keep the refused input's original bytes:
//! docs/privacy-and-audit.md, "Bad input and personal data", says how long they are kept.

mod common;

use common::run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use trigger_kafka::inspect;

const CSV: &str = "fixtures/example-city.csv";
const EIDO: &str = "../shared/data/eido/sample-call-transfer.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Caller data in the inputs, read from them: every caller name, phone number and narrative of the CSV, and
/// the identifying values of the EIDO sample's person, callback and agent components.
fn caller_data() -> Vec<String> {
    let mut r = csv::Reader::from_path(root().join(CSV)).unwrap();
    let h = r.headers().unwrap().clone();
    let cols: Vec<usize> =
        ["caller_name", "caller_phone", "narrative"].iter().map(|c| h.iter().position(|x| x == *c).unwrap()).collect();
    let mut v: Vec<String> = r
        .records()
        .flat_map(|rec| {
            let rec = rec.unwrap();
            cols.iter().map(|&i| rec[i].to_string()).collect::<Vec<_>>()
        })
        .filter(|s| s.len() >= 6)
        .collect();
    // The EIDO sample: the caller's number, the call and person identifiers, the call-taker's address.
    let eido = std::fs::read_to_string(root().join(EIDO)).unwrap();
    for s in ["8195551212", "a56e556d871", "123e4567-abcd-12d3-a456-426614174000", "tjones.atroop", "conferenceid3053"]
    {
        assert!(eido.contains(s), "the sample carries {s}");
        v.push(s.to_string());
    }
    v
}

fn cad_numbers() -> Vec<String> {
    let mut r = csv::Reader::from_path(root().join(CSV)).unwrap();
    r.records().map(|x| x.unwrap()[0].to_string()).collect()
}

fn assert_clean(what: &str, bytes: &[u8], forbidden: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for f in forbidden {
        assert!(!text.contains(f.as_str()), "{what} contains {f:?}");
    }
}

/// A policy with the shipped agencies plus the example city's, in `dir`.
fn policy(dir: &Path) -> PathBuf {
    for sub in ["codes", "jurisdictions"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for f in std::fs::read_dir(root().join("config").join(sub)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(sub).join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.join("jurisdictions/example.geojson"),
        r#"{"type":"Polygon","coordinates":[[[-122.1,37.2],[-121.7,37.2],[-121.7,37.5],[-122.1,37.5],[-122.1,37.2]]]}"#,
    )
    .unwrap();
    let mut p = std::fs::read_to_string(root().join("config/policy.toml")).unwrap();
    p.push_str("\n[[agency]]\nid = \"example-pd\"\ncode_tables = [\"california\"]\njurisdiction = \"jurisdictions/example.geojson\"\n");
    let path = dir.join("policy.toml");
    std::fs::write(&path, p).unwrap();
    path
}

fn cameras(dir: &Path) -> PathBuf {
    let line = |id: &str, lat: f64, lon: f64| {
        format!(
            r#"{{"camera_id":"{id}","owner_ref":"own-{id}","lat":{lat},"lon":{lon},"consent":{{"categories":["burglary","robbery","shooting","shots_fired"],"max_radius_m":500,"daily_cap":50,"live_stream_allowed":true}},"online":true}}"#
        )
    };
    let p = dir.join("cams.jsonl");
    std::fs::write(&p, [line("a", 37.3383, -121.8863), line("b", 37.3391, -121.8871)].join("\n")).unwrap();
    p
}

#[test]
fn offline_replay_outputs_carry_no_caller_data() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, cams) = (policy(dir.path()), cameras(dir.path()));
    let forbidden = caller_data();
    let mut with_numbers = forbidden.clone();
    with_numbers.extend(cad_numbers());
    let profile = root().join("config/profiles/example-city.toml");
    for (input, format, profile) in [(CSV, "csv", Some(profile.to_str().unwrap())), (EIDO, "eido", None)] {
        let out = dir.path().join(format);
        let mut args = vec!["replay", input, "--format", format, "--cameras", cams.to_str().unwrap()];
        args.extend(["--policy", policy.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        if let Some(p) = profile {
            args.extend(["--profile", p]);
        }
        if format == "eido" {
            // Its only record is refused: the replay writes its outputs, then fails saying so.
            common::run_fails(&args);
        } else {
            run(&args);
        }
        // Refused records keep their original bytes (base64) by design; what the replay says about them may
        // not repeat caller data.
        for line in std::fs::read_to_string(out.join("rejects.jsonl")).unwrap().lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let said = format!("{} {} {}", r["position"], r["reason"], r["detail"]);
            assert_clean(&format!("{input}: a reject's position, reason and detail"), said.as_bytes(), &forbidden);
        }
        for f in ["commands.jsonl", "notices.jsonl", "audit.pb"] {
            assert_clean(&format!("{input}: {f}"), &std::fs::read(out.join(f)).unwrap(), &with_numbers);
        }
        for f in ["decisions.jsonl", "summary.json"] {
            assert_clean(&format!("{input}: {f}"), &std::fs::read(out.join(f)).unwrap(), &forbidden);
        }
    }
    let commands = std::fs::read_to_string(dir.path().join("csv/commands.jsonl")).unwrap();
    assert!(commands.contains("\"start\""), "the example city's burglary triggered: the check saw real outputs");
    // The EIDO call transfer names no incident type: refused, with its bytes, and nothing else said.
    let rejects = std::fs::read_to_string(dir.path().join("eido/rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 1);
}

crate::on_every_broker! {
fn the_kafka_service_passes_on_no_caller_data_in_outputs_headers_logs_or_metrics(broker: &Broker) {
    let dir = tempfile::tempdir().unwrap();
    let (policy, cams) = (policy(dir.path()), cameras(dir.path()));
    let settings = broker.settings(3);
    let (b, t) = (settings.bootstrap_servers.clone(), settings.topics.clone());
    let port = common::unique::port();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "policy = \"{}\"\n{}[service]\npoll_timeout_ms = 20\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n",
            policy.display(),
            common::kafka_section(&settings)
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    run(&["cameras", "publish", "--cameras", cams.to_str().unwrap(), "--to", &b, "--config", cfg]);
    let log_path = dir.path().join("service.log");
    let mut child = common::serve_until_ready(&config, &log_path, port, &[]);
    let csv_args = [
        "replay",
        CSV,
        "--format",
        "csv",
        "--profile",
        "example-city",
        "--to-kafka",
        &b,
        "--include-rejects",
        "--config",
        cfg,
    ];
    run(&csv_args);
    run(&["replay", EIDO, "--format", "eido", "--to-kafka", &b, "--include-rejects", "--config", cfg]);
    let sent = inspect::topic_record_count(&settings, &t.cfs).unwrap();
    let t0 = Instant::now();
    let metrics = loop {
        let m = common::http_get(port, "/metrics").unwrap_or_default();
        let handled: f64 = m
            .lines()
            .find(|l| l.starts_with("dispatch_trigger_events_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if handled >= sent as f64 {
            break m;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "handled {handled} of {sent}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());

    let forbidden = caller_data();
    let mut with_numbers = forbidden.clone();
    with_numbers.extend(cad_numbers());
    let read = |topic: &str| inspect::read_topic(&settings, topic, false, Duration::from_secs(30)).unwrap();
    let commands = read(&t.commands);
    assert!(!commands.is_empty(), "the example city's burglary triggered: the check saw real outputs");
    for (topic, recs) in [(&t.commands, commands), (&t.audit, read(&t.audit)), (&t.notices, read(&t.notices))] {
        for r in recs {
            assert_clean(topic, r.payload.as_deref().unwrap_or_default(), &with_numbers);
            assert_clean(topic, r.key.as_deref().unwrap_or_default(), &with_numbers);
        }
    }
    let dlq = read(&t.dead_letter);
    assert!(!dlq.is_empty(), "refused rows were dead-lettered");
    assert!(
        dlq.iter().any(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).contains("Cy Moe")),
        "dead letters keep the original bytes (documented retention)"
    );
    for r in &dlq {
        for (k, v) in &r.headers {
            assert_clean(&format!("dead-letter header {k}"), v, &forbidden);
        }
    }
    let logs = std::fs::read(&log_path).unwrap();
    assert!(logs.len() > 1000, "debug logs were written");
    assert_clean("the service's logs", &logs, &forbidden);
    assert_clean("/metrics", metrics.as_bytes(), &with_numbers);
}
}
