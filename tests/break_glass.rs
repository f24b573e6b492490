//! Break-glass in a replay: a signed request for one real incident widens its scope, is audited, shows in the
//! owner notices and in the transparency report; the same request with one signature is refused.

mod common;

use common::run;

use std::path::{Path, PathBuf};

const LOG: &str = "fixtures/nashville-mnpd-2024-07-01_07.csv";
/// PD202400535975: shots fired, 2024-07-04 20:53:20 America/Chicago, in a dense area: without an override
/// the k-cap (8) stops dozens of consenting cameras.
const INCIDENT: &str = "PD202400535975";
const CALL_AT: i64 = 1_720_144_400_000;

fn request(signers: &[(&str, u8)]) -> String {
    let r = common::signed_break_glass(INCIDENT, 900.0, 20, CALL_AT + 1_800_000, signers);
    let mut v = serde_json::to_value(r).unwrap();
    v["at"] = serde_json::json!(CALL_AT - 60_000);
    v.to_string()
}

fn replay(dir: &Path, name: &str, requests: Option<String>) -> PathBuf {
    let policy = common::policy_with_break_glass_keys(&dir.join(format!("cfg-{name}")));
    let out = dir.join(name);
    let mut args: Vec<String> = ["replay", LOG, "--format", "csv", "--profile", "nashville-mnpd"]
        .into_iter()
        .chain(["--generate-cameras", "20000", "--seed", "7", "--no-wall-clock"])
        .map(String::from)
        .collect();
    args.extend(["--policy".into(), policy.display().to_string(), "--out".into(), out.display().to_string()]);
    if let Some(r) = requests {
        let f = dir.join(format!("{name}.jsonl"));
        std::fs::write(&f, r + "\n").unwrap();
        args.extend(["--break-glass".into(), f.display().to_string()]);
    }
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_signed_override_widens_one_incident_and_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let plain = replay(dir.path(), "plain", None);
    let granted = replay(dir.path(), "granted", Some(request(&[("officer", 1), ("sup", 2)])));
    let refused = replay(dir.path(), "refused", Some(request(&[("officer", 1)])));

    let d = lines(&granted.join("decisions.jsonl"));
    let grant = d.iter().find(|x| x["outcome"] == "break_glass_granted").expect("granted and audited");
    let under: Vec<_> =
        d.iter().filter(|x| x["break_glass"] == true && x["outcome"] != "break_glass_granted").collect();
    assert_eq!(under.len(), 1, "the incident's decision was made under the override");
    assert_eq!(under[0]["incident_ref"], grant["incident_ref"]);
    assert_eq!(under[0]["radius_m"], 900.0);
    let p = lines(&plain.join("decisions.jsonl"));
    let before = p.iter().find(|x| x["incident_ref"] == grant["incident_ref"]).unwrap();
    let commanded = |x: &serde_json::Value| x["commanded"].as_array().unwrap().len();
    assert_eq!(commanded(before), 8, "k-capped without the override");
    assert!(commanded(under[0]) > 8 && commanded(under[0]) <= 20, "more cameras, up to the override's k");
    let starts = |dir: &Path| lines(&dir.join("commands.jsonl")).iter().filter(|c| c["action"] == "start").count();
    assert!(starts(&granted) > starts(&plain), "more cameras for that incident");
    assert!(lines(&granted.join("notices.jsonl")).iter().any(|n| n["break_glass"] == true));

    let r = lines(&refused.join("decisions.jsonl"));
    let refusal = r.iter().find(|x| x["outcome"] == "break_glass_refused").expect("refused and audited");
    assert_eq!(refusal["rule"], "break_glass:refused:missing_authorisation:supervisor");
    assert_eq!(starts(&refused), starts(&plain), "a refused override changes nothing");

    // The audit trail stays intact and the public report counts both.
    let report = dir.path().join("report");
    for (run_dir, key) in [(&granted, "break_glass_uses"), (&refused, "break_glass_refused")] {
        run(&["audit", "verify", run_dir.to_str().unwrap()]);
        run(&["report", "transparency", "--audit", run_dir.to_str().unwrap(), "--out", report.to_str().unwrap()]);
        let t: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report.join("transparency.json")).unwrap()).unwrap();
        let n: u64 = t["rows"].as_array().unwrap().iter().map(|r| r[key].as_u64().unwrap()).sum();
        assert_eq!(n, 1, "{key}");
    }
}
