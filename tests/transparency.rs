//! The transparency report from a real replay's audit trail: its counts agree with the replay's own summary,
//! and no camera or owner identifier appears in any of its files.

mod common;

use common::{replay_week, run};

#[test]
fn the_transparency_report_agrees_with_the_run_and_names_no_camera_or_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (run_dir, report_dir) = (dir.path().join("run"), dir.path().join("report"));
    let (r, o) = (run_dir.to_str().unwrap(), report_dir.to_str().unwrap());
    replay_week(&run_dir, &["--no-wall-clock"]);
    run(&["report", "transparency", "--audit", r, "--out", o, "--min-count", "2"]);

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("transparency.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
    let outcome = |k: &str| summary["outcomes"][k].as_u64().unwrap_or(0);
    assert_eq!(sum("incidents_triggered"), summary["triggered_incidents"].as_u64().unwrap());
    assert_eq!(sum("cameras_activated"), summary["commands"]["start"].as_u64().unwrap());
    assert_eq!(sum("refused_stale"), outcome("refused_stale"));
    assert_eq!(sum("refused_outside_incident_window"), outcome("outside_incident_window"));
    assert_eq!(sum("refused_blocked_type"), outcome("blocked_type"));
    assert_eq!(sum("refused_outside_jurisdiction"), outcome("outside_jurisdiction"));
    assert!(sum("incidents_triggered") > 0);
    let csv = std::fs::read_to_string(report_dir.join("transparency.csv")).unwrap();
    assert_eq!(csv.lines().count(), rows.len() + 1, "one CSV line per row, plus the header");
    let areas = report["areas"].as_array().unwrap();
    assert!(areas.iter().all(|a| a["h3_cell"].as_str().unwrap().len() == 15));
    assert!(areas.iter().any(|a| a["incidents_triggered"].is_null()), "small cells are not counted");
    assert_eq!(sum("refused_uncorroborated"), outcome("uncorroborated"));

    // What each category stood for: the CAD type texts behind every START, counted from the run's own
    // decisions (not from the report's code), and the classification every record was decided under.
    let mut want: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    let mut digests = std::collections::BTreeSet::new();
    for l in std::fs::read_to_string(run_dir.join("decisions.jsonl")).unwrap().lines() {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        digests.insert(d["classification"].as_str().unwrap().to_string());
        let starts = d["commanded"].as_array().unwrap().iter().filter(|c| c["action"] == "start").count() as u64;
        if starts > 0 {
            let e = want
                .entry((d["category"].as_str().unwrap().into(), d["type_text"].as_str().unwrap().into()))
                .or_default();
            *e = (e.0 + 1, e.1 + starts);
        }
    }
    let got: std::collections::BTreeMap<(String, String), (u64, u64)> = report["type_texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = (t["category"].as_str().unwrap().into(), t["type_text"].as_str().unwrap().into());
            (key, (t["decisions"].as_u64().unwrap(), t["cameras_activated"].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(got, want);
    assert!(got.keys().any(|(c, t)| c == "shots_fired" && t.contains("SHOTS FIRED")), "{got:?}");
    let used: std::collections::BTreeSet<String> = report["classifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["classification"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(used, digests);
    assert!(digests.iter().all(|d| d.starts_with("cls_")), "{digests:?}");
    let classification: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("classification.json")).unwrap()).unwrap();
    assert!(digests.iter().all(|d| classification.get(d).is_some()), "the run publishes what each digest is");

    // Counts only: none of the commanded cameras, their owners, or the incident references appear.
    let commands = std::fs::read_to_string(run_dir.join("commands.jsonl")).unwrap();
    let notices = std::fs::read_to_string(run_dir.join("notices.jsonl")).unwrap();
    let mut ids: Vec<String> = Vec::new();
    for l in commands.lines() {
        let c: serde_json::Value = serde_json::from_str(l).unwrap();
        ids.push(c["camera_id"].as_str().unwrap().to_string());
        ids.push(c["incident_ref"].as_str().unwrap().to_string());
    }
    for l in notices.lines() {
        let n: serde_json::Value = serde_json::from_str(l).unwrap();
        ids.push(n["owner_ref"].as_str().unwrap().to_string());
    }
    assert!(!ids.is_empty());
    for f in ["transparency.csv", "transparency.json", "transparency.html"] {
        let text = std::fs::read_to_string(report_dir.join(f)).unwrap();
        for id in &ids {
            assert!(!text.contains(id.as_str()), "{f} names {id}");
        }
    }
    let html = std::fs::read_to_string(report_dir.join("transparency.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "charts are inline SVG");
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"), "self-contained");
}
