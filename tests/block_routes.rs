//! The routes a red team found around the block, through the binary, on the shipped configuration: a
//! record that names a protest with a time that cannot be read, bytes that are not UTF-8, the wrong number of
//! fields, more bytes than a record may have, or a spelling of symbols or of words run together. Each
//! incident's last row is a shooting report: it must start nothing, and what started before must stop.
//!
//! The oracle reads the outputs only: per incident reference, every START before the first `blocked_type`
//! decision has its STOP, and no START comes at or after it.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;

const HEADER: &str = "OBJECTID,Event Number,Complaint Number,Tencode,Tencode Description,Tencode Suffix,\
Tencode Suffix Description,Disposition Code,Disposition Description,Block,Street Name,Unit Dispatched,Shift,\
Sector,Zone,Latitude,Longitude,RPA,Call_Received";

fn row(id: &str, disposition: &str, street: &str, time: &str) -> Vec<u8> {
    format!("1,{id},,83,SHOTS FIRED,P,PROGRESS,5,{disposition},300,{street},621C,C,E,623,36.218,-86.834,3105,{time}")
        .into_bytes()
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_route_a_red_team_found_blocks_its_incident() {
    let mut rows: Vec<Vec<u8>> = vec![HEADER.as_bytes().to_vec()];
    let mut add = |id: &str, protest: Vec<u8>, minute: u32| {
        rows.push(row(id, "GONE ON ARRIVAL", "HAYNES PARK DR", &format!("2024-07-05 01:{minute:02}:05")));
        rows.push(protest);
        rows.push(row(id, "GONE ON ARRIVAL", "HAYNES PARK DR", &format!("2024-07-05 01:{:02}:05", minute + 2)));
    };
    // A time in another format: decided at a clock value no CAD sends, and marked all the same.
    add("R1", row("R1", "PROTEST", "HAYNES PARK DR", "2024-07-05T01:11:05"), 10);
    // A byte that is not UTF-8 elsewhere in the row.
    let mut latin1 = row("R2", "PROTEST", "CAF_ ST", "2024-07-05 01:21:05");
    let at = latin1.iter().position(|b| *b == b'_').unwrap();
    latin1[at] = 0xC9;
    add("R2", latin1, 20);
    // One field too many.
    let mut extra = row("R3", "PROTEST", "HAYNES PARK DR", "2024-07-05 01:31:05");
    extra.extend_from_slice(b",X");
    add("R3", extra, 30);
    // More bytes than a record may have.
    add("R4", row("R4", &format!("PROTEST {}", "X".repeat(300_000)), "HAYNES PARK DR", "2024-07-05 01:41:05"), 40);
    // Symbols for letters, and a phrase run together.
    add("R5", row("R5", "R@LLY", "HAYNES PARK DR", "2024-07-05 01:51:05"), 50);
    add("R6", row("R6", "CIVILUNREST", "HAYNES PARK DR", "2024-07-05 01:56:05"), 55);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("routes.csv");
    std::fs::write(&csv, rows.join(&b"\n"[..])).unwrap();
    let out = dir.path().join("out");
    let (csv, o) = (csv.to_str().unwrap(), out.to_str().unwrap());
    let args = ["replay", csv, "--format", "csv", "--profile", "nashville-mnpd", "--generate-cameras", "300"];
    let status = std::process::Command::new(common::BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args(["--seed", "1", "--out", o, "--no-wall-clock"])
        .output()
        .unwrap();
    assert!(out.join("decisions.jsonl").exists(), "{}", String::from_utf8_lossy(&status.stderr));
    let decisions = lines(&out.join("decisions.jsonl"));
    let commands = lines(&out.join("commands.jsonl"));
    // The first blocked decision of each incident, by its clock value.
    let mut blocked_at: BTreeMap<String, i64> = BTreeMap::new();
    for d in decisions.iter().filter(|d| d["outcome"] == "blocked_type") {
        let at = d["decided_at"].as_i64().unwrap();
        let e = blocked_at.entry(d["incident_ref"].as_str().unwrap().to_string()).or_insert(at);
        *e = (*e).min(at);
    }
    assert_eq!(blocked_at.len(), 6, "every incident is blocked: {decisions:#?}");
    for incident in blocked_at.keys() {
        let of: Vec<&Value> = commands.iter().filter(|c| c["incident_ref"] == incident.as_str()).collect();
        let (starts, stops) =
            (of.iter().filter(|c| c["action"] == "start").count(), of.iter().filter(|c| c["action"] == "stop").count());
        assert_eq!(starts, stops, "{incident}: every START stopped, none after the block: {of:#?}");
    }
    // The shooting reports after the protest rows start nothing.
    let triggered_after: Vec<&Value> = decisions
        .iter()
        .filter(|d| {
            let at = d["decided_at"].as_i64().unwrap();
            blocked_at.get(d["incident_ref"].as_str().unwrap()).is_some_and(|b| at > *b && *b > 946_684_800_000)
                && d["outcome"] == "triggered"
        })
        .collect();
    assert!(triggered_after.is_empty(), "{triggered_after:#?}");
}
