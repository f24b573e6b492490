//! `audit verify` through the binary: a replay's audit file verifies; a flipped byte, a deleted record and
//! two swapped records are each caught and named, with exit status 1.

mod common;

use common::{replay_week, run, BIN};
use prost::Message;
use std::path::Path;
use std::process::Command;

fn verify(path: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(["audit", "verify", path.to_str().unwrap()]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn audit_verify_catches_a_flipped_byte_a_deleted_record_and_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    replay_week(&out, &["--no-wall-clock"]);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let head = summary["audit_head"].as_str().unwrap().to_string();
    assert_eq!(summary["audit_records"], summary["decisions"], "one audit record per decision");

    let (ok, text) = verify(&out);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("head {head}")), "the head in the summary is the file's: {text}");

    let data = std::fs::read(out.join("audit.pb")).unwrap();
    let records: Vec<_> = trigger_audit::decode_stream(&data).into_iter().map(Result::unwrap).collect();
    assert!(records.len() > 100);
    let write = |name: &str, recs: &[trigger_proto::v1::ActivationRecord]| {
        let p = dir.path().join(name);
        std::fs::write(&p, trigger_audit::encode_stream(recs)).unwrap();
        p
    };

    // One byte flipped inside record 40's payload (its outcome text).
    let offset: usize =
        records[..40].iter().map(|r| r.encoded_len() + prost::length_delimiter_len(r.encoded_len())).sum();
    let body = records[40].encode_to_vec();
    let at = body.windows(records[40].outcome.len()).position(|w| w == records[40].outcome.as_bytes()).unwrap();
    let mut flipped = data.clone();
    flipped[offset + prost::length_delimiter_len(body.len()) + at] ^= 0x20;
    let p = dir.path().join("flipped.pb");
    std::fs::write(&p, flipped).unwrap();
    let (ok, text) = verify(&p);
    assert!(!ok && text.contains("record 40 was altered"), "{text}");

    let mut deleted = records.clone();
    deleted.remove(57);
    let (ok, text) = verify(&write("deleted.pb", &deleted));
    assert!(!ok && text.contains("record 57 follows a record that is missing"), "{text}");

    let mut swapped = records.clone();
    swapped.swap(80, 81);
    let (ok, text) = verify(&write("swapped.pb", &swapped));
    assert!(!ok && text.contains("record 80 is out of order"), "{text}");
}

#[test]
fn an_owners_history_matches_the_notices_they_were_sent_and_needs_an_intact_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (cams, out) = (dir.path().join("cams.jsonl"), dir.path().join("run"));
    run(&["cameras", "generate", "--count", "20000", "--seed", "7", "--profile", "nashville-mnpd"]
        .iter()
        .copied()
        .chain(["--around", "fixtures/nashville-mnpd-2024-07-01_07.csv", "--out", cams.to_str().unwrap()])
        .collect::<Vec<_>>());
    run(&["replay", "fixtures/nashville-mnpd-2024-07-01_07.csv", "--format", "csv", "--profile", "nashville-mnpd"]
        .iter()
        .copied()
        .chain(["--cameras", cams.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .collect::<Vec<_>>());
    // The owner who was notified most often.
    let notices: Vec<serde_json::Value> = std::fs::read_to_string(out.join("notices.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut per_owner = std::collections::BTreeMap::<String, usize>::new();
    for n in &notices {
        *per_owner.entry(n["owner_ref"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let (owner, sent) = per_owner.iter().max_by_key(|(_, n)| **n).unwrap();
    let args =
        ["report", "owner", "--owner", owner, "--audit", out.to_str().unwrap(), "--cameras", cams.to_str().unwrap()];
    let report: serde_json::Value = serde_json::from_str(&run(&args)).unwrap();
    assert_eq!(report["starts"].as_u64().unwrap() as usize, *sent, "one START per notice sent");
    let theirs: Vec<&str> = report["cameras"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for a in report["activations"].as_array().unwrap() {
        assert!(theirs.contains(&a["camera_id"].as_str().unwrap()), "only the owner's own cameras");
        assert!(a["area_h3"].as_str().unwrap().len() == 15, "a coarse H3 cell, not a location");
    }
    // A tampered trail yields no report.
    let data = std::fs::read(out.join("audit.pb")).unwrap();
    let mut records: Vec<_> = trigger_audit::decode_stream(&data).into_iter().map(Result::unwrap).collect();
    records.remove(3);
    std::fs::write(out.join("audit.pb"), trigger_audit::encode_stream(&records)).unwrap();
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("the audit chain is broken"));
}

#[test]
fn retention_drops_audit_detail_and_the_public_counts_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (out, r1, r2) = (dir.path().join("run"), dir.path().join("report-before"), dir.path().join("report-after"));
    let o = out.to_str().unwrap();
    replay_week(&out, &["--no-wall-clock"]);
    run(&["report", "transparency", "--audit", o, "--out", r1.to_str().unwrap()]);
    let before = run(&["audit", "verify", o]);
    // The bundled week ends 2024-07-08: everything decided before 2024-07-05 loses its detail.
    let said = run(&["audit", "redact", o, "--older-than-days", "3", "--now", "2024-07-08T00:00:00Z"]);
    assert!(!said.starts_with("0 of"), "{said}");
    let after = run(&["audit", "verify", o]);
    let head = |t: &str| t.split("head ").nth(1).unwrap().trim().to_string();
    assert_eq!(head(&before), head(&after), "the chain and its head are unchanged");
    assert!(!after.contains("(0 without"), "{after}");
    let records: Vec<_> = trigger_audit::decode_stream(&std::fs::read(out.join("audit.pb")).unwrap())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let cutoff = 1_720_137_600_000; // 2024-07-05T00:00:00Z
    assert!(records.iter().filter(|r| r.decided_at_ms < cutoff).all(|r| r.detail_redacted && r.excluded.is_empty()));
    assert!(records.iter().filter(|r| r.decided_at_ms >= cutoff).all(|r| !r.detail_redacted));
    run(&["report", "transparency", "--audit", o, "--out", r2.to_str().unwrap()]);
    let json = |d: &std::path::Path| std::fs::read_to_string(d.join("transparency.json")).unwrap();
    assert_eq!(json(&r1), json(&r2), "the public report is the same after retention");
}
