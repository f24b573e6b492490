//! "No protests, no immigration enforcement, under any configuration", against an adversary who writes the
//! whole configuration, over rows of the real CAD exports.
//!
//! The adversary chooses the CSV profile (codes only, text only, or both, read from any column of the export,
//! one or two joined), a code table (any codes, including ones it invents, with any label — labels that lie —
//! and any category, text rules on any phrase, alarm and blocked markers) and the policy (which categories are
//! enabled, alarm-only calls included). The CAD stream is rows of the Metro Nashville PD export
//! (`../shared/data/cad` and `fixtures/`), plus rows made from them whose type text names a protest, civil
//! unrest or immigration enforcement, at the first, a middle or the last revision of an incident. Cameras that
//! consent to everything stand beside every incident, so any START the engine allows happens.
//!
//! The oracle does not share the code under test: it reads each row's genuine type text ("Tencode
//! Description") straight from the CSV bytes the decoder is given, with its own reader, and calls a revision
//! blocked when that text is one of this file's hand-written [`BLOCKED_TEXTS`]. The property: no START at or
//! after a revision whose genuine text named a blocked type.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use trigger_cad::{csv_profile, CsvProfile, DecodeOptions};
use trigger_core::*;

/// Type texts of protests, First Amendment activity, civil unrest and immigration enforcement, as CADs write
/// them (with the abbreviations, punctuation and trigger words they come with). Written by hand: the oracle's
/// ground truth.
const BLOCKED_TEXTS: &[&str] = &[
    "PROTEST",
    "PROTESTERS BLOCKING ROADWAY",
    "Protest - shots fired",
    "SHOOTING AT PROTEST",
    "DEMONSTRATION",
    "DEMO IN PROGRESS",
    "STABBING AT DEMONSTRATION",
    "RALLY",
    "POLITICAL RALLY / SHOTS FIRED",
    "HOLDUP / ROBBERY AT RALLY",
    "MARCH",
    "MARCH / PARADE",
    "PICKET LINE",
    "PICKETING - BURGLARY",
    "LABOR STRIKE",
    "CANDLELIGHT VIGIL",
    "PUBLIC GATHERING",
    "MASS GATHERING - SHOOTING",
    "UNLAWFUL ASSEMBLY",
    "ASSEMBLY - SHOTS FIRED",
    "CROWD CONTROL",
    "LARGE CROWD / SHOOTING",
    "SECOND LINE",
    "SECOND LINE PARADE - SHOTS FIRED",
    "SIT-IN",
    "BOYCOTT",
    "PROCESSION",
    "RIOT",
    "RIOT - ROBBERY",
    "CIVIL UNREST",
    "CIV UNREST",
    "CIVIL DISTURBANCE",
    "CIV DISTURB - SHOTS",
    "FREE SPEECH EVENT",
    "Manifestación",
    "IMMIGRATION ENFORCEMENT",
    "IMMIGRATION ENFORCEMENT - BURGLARY",
    "ICE",
    "I.C.E. ASSIST",
    "ASSIST ICE - BURGLARY",
    "ICE OPERATION / SHOOTING",
    "DEPORTATION",
    "ILLEGAL ALIEN",
    "BORDER PATROL ASSIST",
    "CUSTOMS ENFORCEMENT ASSIST / ROBBERY",
];

/// Gatherings named in words of no list of the product's. Nothing corroborates a category in them, so the
/// revision that carries one starts nothing; but the product cannot know them for blocked types, so they do
/// not make the incident sticky (docs/adding-a-city.md, "What is proven").
const UNLISTED_TEXTS: &[&str] = &["TEACH-IN", "OCCUPATION OF CITY HALL", "FLASH MOB"];

/// Labels an operator may write for a rule: real descriptions, lies, blocked texts, nothing.
const LABELS: &[&str] = &[
    "",
    "SHOTS FIRED",
    "DISCHARGING FIREARM",
    "BURGLARY - RESIDENCE",
    "HOLDUP / ROBBERY",
    "SHOOTING",
    "CUTTING / STABBING",
    "HOSTAGE",
    "BURGLAR ALARM",
    "REPORT TO FOLLOW",
    "PUBLIC GATHERING",
    "PROTEST",
];

/// Phrases an operator may write as text rules: the export's words, the categories' words, the protests'.
const PHRASES: &[&str] = &[
    "SHOTS FIRED",
    "SHOTS",
    "SHOOTING",
    "BURGLARY",
    "ROBBERY",
    "STABBING",
    "HOSTAGE",
    "ALARM",
    "PROGRESS",
    "REPORT",
    "ASSISTED CITIZEN",
    "GONE ON ARRIVAL",
    "RALLY",
    "GATHERING",
    "MARCH",
    "ICE",
    "TEACH",
    "MOB",
];

const TARGETS: &[&str] =
    &["none", "burglary", "vehicle_break_in", "robbery", "shots_fired", "shooting", "stabbing", "hostage", "alarm"];

/// A code only the adversary's table knows, for made rows.
const INVENTED_CODE: &str = "P90";
const GENUINE: &str = "Tencode Description";

struct Export {
    header: Vec<String>,
    /// Rows with coordinates, as the raw export has them.
    rows: Vec<Vec<String>>,
    /// Indexes of the rows whose type is one of the program's crimes: the rows that may start cameras, which
    /// the stream draws half of its revisions from, so a START the engine should not allow is likely.
    crimes: Vec<usize>,
}

fn shared(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn export() -> &'static Export {
    static E: OnceLock<Export> = OnceLock::new();
    E.get_or_init(|| {
        let mut rows = Vec::new();
        let mut header = Vec::new();
        for rel in
            ["../shared/data/cad/nashville_mnpd_calls_2024_sample.csv", "fixtures/nashville-mnpd-2024-07-01_07.csv"]
        {
            let path = shared(rel);
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (../shared beside the repo)", path.display()));
            let text =
                String::from_utf8_lossy(&bytes).trim_start_matches('\u{feff}').trim_start_matches("ï»¿").to_string();
            let mut r = csv::Reader::from_reader(text.as_bytes());
            header = r.headers().unwrap().iter().map(String::from).collect();
            let (lat, lon) = (col(&header, "Latitude"), col(&header, "Longitude"));
            rows.extend(
                r.records()
                    .map(|x| x.unwrap().iter().map(String::from).collect::<Vec<_>>())
                    .filter(|x| !x[lat].is_empty() && !x[lon].is_empty()),
            );
        }
        let text = col(&header, GENUINE);
        let crimes = (0..rows.len())
            .filter(|i| {
                ["BURGLARY", "ROBBERY", "SHOTS", "SHOOTING", "STABBING"].iter().any(|w| rows[*i][text].contains(w))
            })
            .collect();
        Export { header, rows, crimes }
    })
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"))
}

#[derive(Debug, Clone)]
struct Revision {
    /// Index of the real row it is made from.
    row: usize,
    /// `Some(i)`: its type text is replaced by the i-th of BLOCKED_TEXTS then UNLISTED_TEXTS (and its code,
    /// maybe, by the invented code).
    blocked: Option<(usize, bool)>,
}

#[derive(Debug, Clone)]
struct Adversary {
    /// Columns (indexes into the header) read as the type code and as the type text.
    code_cols: Vec<usize>,
    text_cols: Vec<usize>,
    /// Code rules: (revision whose code to map, or the invented code; label; target).
    code_rules: Vec<(Option<usize>, usize, usize)>,
    text_rules: Vec<(usize, usize)>,
    alarm_text: bool,
    blocked_marker: bool,
    alarm_enabled: bool,
    unknown_reject: bool,
}

/// Up to two columns of the export, half the time with `likely` among them.
fn columns(n: usize, likely: usize) -> impl Strategy<Value = Vec<usize>> {
    (prop::collection::vec(0..n, 0..3), any::<bool>()).prop_map(move |(mut cols, with)| {
        if with {
            cols.insert(0, likely);
            cols.truncate(2);
        }
        cols
    })
}

fn adversary(h: &[String]) -> impl Strategy<Value = Adversary> {
    (
        columns(h.len(), col(h, "Tencode")),
        columns(h.len(), col(h, GENUINE)),
        prop::collection::vec((prop::option::weighted(0.8, 0..24usize), 0..LABELS.len(), 0..TARGETS.len()), 0..10),
        prop::collection::vec((0..PHRASES.len(), 0..TARGETS.len()), 0..4),
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(code_cols, text_cols, code_rules, text_rules, alarm_text, blocked_marker, alarm_enabled, r)| Adversary {
                code_cols,
                text_cols,
                code_rules,
                text_rules,
                alarm_text,
                blocked_marker,
                alarm_enabled,
                unknown_reject: r,
            },
        )
}

fn incidents(e: &'static Export) -> impl Strategy<Value = Vec<Vec<Revision>>> {
    let row = prop_oneof![0..e.rows.len(), (0..e.crimes.len()).prop_map(|i| e.crimes[i])];
    let made = 0..BLOCKED_TEXTS.len() + UNLISTED_TEXTS.len();
    let revision =
        (row, prop::option::weighted(0.35, (made, any::<bool>()))).prop_map(|(row, blocked)| Revision { row, blocked });
    prop::collection::vec(prop::collection::vec(revision, 1..5), 1..7)
}

/// The CSV the CAD exports for these incidents: one row per revision, in the real export's columns.
fn export_csv(incidents: &[Vec<Revision>]) -> String {
    let e = export();
    let (id, code, received) =
        (col(&e.header, "Event Number"), col(&e.header, "Tencode"), col(&e.header, "Call_Received"));
    let (text, lat, lon) = (col(&e.header, GENUINE), col(&e.header, "Latitude"), col(&e.header, "Longitude"));
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(&e.header).unwrap();
    for (n, revisions) in incidents.iter().enumerate() {
        let first = &e.rows[revisions[0].row];
        for (i, r) in revisions.iter().enumerate() {
            let mut row = e.rows[r.row].clone();
            row[id] = format!("ADV{n}");
            row[received] = format!("2024-07-01 10:{:02}:{:02}", n, i * 10);
            (row[lat], row[lon]) = (first[lat].clone(), first[lon].clone());
            if let Some((b, invented)) = r.blocked {
                row[text] = BLOCKED_TEXTS.iter().chain(UNLISTED_TEXTS).nth(b).expect("in range").to_string();
                if invented {
                    row[code] = INVENTED_CODE.to_string();
                }
            }
            w.write_record(&row).unwrap();
        }
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn toml_list(header: &[String], cols: &[usize]) -> String {
    let names: Vec<String> = cols.iter().map(|c| format!("{:?}", header[*c])).collect();
    format!("[{}]", names.join(", "))
}

fn profile_toml(a: &Adversary) -> String {
    let h = &export().header;
    let mut p = String::from(
        "name = \"adversary\"\nagency_id = \"metro\"\ntime_zone = \"America/Chicago\"\n\
         timestamp_format = \"%Y-%m-%d %H:%M:%S\"\n[columns]\nincident_id = \"Event Number\"\n\
         latitude = \"Latitude\"\nlongitude = \"Longitude\"\n",
    );
    if !a.code_cols.is_empty() {
        p += &format!("type_code = {}\n", toml_list(h, &a.code_cols));
    }
    if !a.text_cols.is_empty() {
        p += &format!("type_text = {}\n", toml_list(h, &a.text_cols));
    }
    p + "[lifecycle]\ncreated = \"Call_Received\"\n"
}

/// The adversary's code table. A code rule maps what the profile reads as the code of one of the stream's
/// rows (so its rules do match), or the invented code.
fn table_toml(a: &Adversary, csv_text: &str) -> String {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let mut t = format!("name = \"adv\"\nunknown = \"{}\"\n", if a.unknown_reject { "reject" } else { "ignore" });
    if a.alarm_text {
        t += "[alarm]\ntext = [\"ALARM\"]\n";
    }
    if a.blocked_marker {
        t += "[blocked]\ntext = [\"PROGRESS\"]\n";
    }
    for (which, label, target) in &a.code_rules {
        let code = match which {
            Some(i) if !a.code_cols.is_empty() => {
                let row = &rows[i % rows.len()];
                let parts: Vec<&str> = a.code_cols.iter().map(|c| row[*c].trim()).filter(|s| !s.is_empty()).collect();
                parts.join(" / ")
            }
            _ => INVENTED_CODE.to_string(),
        };
        if code.is_empty() {
            continue;
        }
        t += &format!("[[rule]]\ncode = {code:?}\nlabel = {:?}\ncategory = {:?}\n", LABELS[*label], TARGETS[*target]);
    }
    for (phrase, target) in &a.text_rules {
        t += &format!("[[rule]]\ntext = {:?}\ncategory = {:?}\n", PHRASES[*phrase], TARGETS[*target]);
    }
    t
}

fn policy_toml(a: &Adversary) -> String {
    let mut p = String::from("incident_ref_key = \"k\"\nmax_cameras = 4\nradius_cap_m = 600\n");
    for cat in &TARGETS[1..] {
        let enabled = *cat != "alarm" || a.alarm_enabled;
        p += &format!("[categories.{cat}]\nenabled = {enabled}\nradius_m = 500\nrecord_seconds = 600\n");
    }
    p + "[[agency]]\nid = \"metro\"\ncode_tables = [\"adv\"]\njurisdiction = \"j\"\n"
}

/// Three cameras within 30 m of every incident, consenting to every category at any hour.
fn cameras(events: &[CallForService]) -> Vec<CameraRecord> {
    let mut seen = BTreeMap::new();
    for e in events {
        if let Some(l) = e.location {
            seen.entry(e.incident_id.clone()).or_insert(l);
        }
    }
    seen.iter()
        .flat_map(|(id, l)| {
            (0..3).map(move |k| CameraRecord {
                camera_id: format!("{id}-cam{k}"),
                owner_ref: format!("{id}-owner{k}"),
                lat: l.lat + (k as f64 * 10.0) / 111_195.0,
                lon: l.lon,
                consent: Consent {
                    categories: Category::ALL.into_iter().collect(),
                    max_radius_m: 1000.0,
                    quiet_hours: None,
                    daily_cap: 1000,
                    live_stream_allowed: true,
                },
                online: true,
                updated_at: 0,
            })
        })
        .collect()
}

/// The oracle, from the raw CSV: per incident id, the first revision (1-based, in row order) whose genuine
/// type text is a blocked text; and every (incident, revision) whose genuine type text is an unlisted one.
fn oracle(csv_text: &str) -> (HashMap<String, u32>, HashSet<(String, u32)>) {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let (id, text) = (col(&h, "Event Number"), col(&h, GENUINE));
    let mut rev: HashMap<String, u32> = HashMap::new();
    let (mut first, mut unlisted) = (HashMap::new(), HashSet::new());
    for row in r.records().map(Result::unwrap) {
        let n = rev.entry(row[id].to_string()).or_default();
        *n += 1;
        if BLOCKED_TEXTS.contains(&&row[text]) {
            first.entry(row[id].to_string()).or_insert(*n);
        }
        if UNLISTED_TEXTS.contains(&&row[text]) {
            unlisted.insert((row[id].to_string(), *n));
        }
    }
    (first, unlisted)
}

const SQUARE: &str =
    r#"{"type":"Polygon","coordinates":[[[-87.2,35.8],[-86.4,35.8],[-86.4,36.6],[-87.2,36.6],[-87.2,35.8]]]}"#;

proptest! {
    // 1,500 cases a run; ADVERSARY_CASES=N for a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ADVERSARY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_configuration_starts_a_camera_at_or_after_a_blocked_revision(
        a in adversary(&export().header),
        incidents in incidents(export()),
    ) {
        let csv_text = export_csv(&incidents);
        let Ok(profile) = CsvProfile::from_toml(&profile_toml(&a)) else { return Ok(()) };
        let table_text = table_toml(&a, &csv_text);
        // A table the loader refuses never runs.
        let Ok(table) = CodeTable::from_toml(&table_text) else { return Ok(()) };
        let j = BTreeMap::from([("metro".to_string(), SQUARE.to_string())]);
        let Ok(policy) = Policy::new(PolicyConfig::from_toml(&policy_toml(&a)).unwrap(), &[table], &j) else {
            return Ok(());
        };
        let decoded = csv_profile::decode(csv_text.as_bytes(), &profile, &DecodeOptions::default()).unwrap();
        // One export row per revision: the stream numbers them, as a CAD that exports each revision would.
        let mut next: HashMap<String, (u32, Millis)> = HashMap::new();
        let events: Vec<CallForService> = decoded
            .events
            .into_iter()
            .map(|d| {
                let mut ev = d.event;
                let n = next.entry(ev.incident_id.clone()).or_insert((0, ev.received_at));
                n.0 += 1;
                (ev.revision, ev.received_at) = (n.0, n.1);
                ev
            })
            .collect();
        let cams = cameras(&events);
        let (first_blocked, unlisted) = oracle(&csv_text);
        let mut engine = Engine::new(policy);
        for ev in &events {
            let Ok(d) = engine.decide(ev, cams.as_slice(), ev.emitted_at) else { continue };
            let started = d.commands.iter().filter(|c| c.action == Action::Start).count();
            let blocked_since = first_blocked.get(&ev.incident_id).copied();
            let here = blocked_since.is_some_and(|b| ev.revision >= b)
                || unlisted.contains(&(ev.incident_id.clone(), ev.revision));
            prop_assert!(
                !(started > 0 && here),
                "{started} STARTs for incident {} at revision {} (blocked since revision {:?}): code {:?} text {:?} \
                 -> {:?} {:?}\nprofile:\n{}\ntable:\n{}",
                ev.incident_id, ev.revision, blocked_since, ev.call_type_code, ev.call_type_text,
                d.record.outcome, d.record.rule, profile_toml(&a), table_text
            );
        }
    }
}

/// The oracle sees what it should: made rows are found blocked at the revision they stand at.
#[test]
fn the_oracle_reads_the_genuine_column() {
    let incidents = vec![vec![
        Revision { row: 0, blocked: None },
        Revision { row: 1, blocked: Some((0, false)) },
        Revision { row: 2, blocked: None },
    ]];
    let csv_text = export_csv(&incidents);
    let (first, unlisted) = oracle(&csv_text);
    assert_eq!(first, HashMap::from([("ADV0".to_string(), 2)]));
    assert!(unlisted.is_empty());
}

/// Over-blocking on the real export: no call type of it (every row, located or not; the description and
/// suffix as the shipped profile joins them) is a blocked type. The export has no protest calls, so any block
/// here would be a call lost to a word read wrongly.
#[test]
fn no_call_type_of_the_real_export_is_blocked() {
    let path = shared("../shared/data/cad/nashville_mnpd_calls_2024_sample.csv");
    let text = std::fs::read_to_string(&path).unwrap().trim_start_matches("ï»¿").to_string();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let (code, desc, suffix) = (col(&h, "Tencode"), col(&h, GENUINE), col(&h, "Tencode Suffix Description"));
    let types: std::collections::BTreeSet<(String, String)> = r
        .records()
        .map(Result::unwrap)
        .map(|row| {
            let parts: Vec<&str> =
                [row[desc].trim(), row[suffix].trim()].into_iter().filter(|s| !s.is_empty()).collect();
            (row[code].to_string(), parts.join(" / "))
        })
        .collect();
    let blocked: Vec<_> =
        types.iter().filter(|(c, t)| trigger_core::classify::hard_block(c, &[t.as_str()]).is_some()).collect();
    assert!(types.len() > 100, "{} call types", types.len());
    assert!(blocked.is_empty(), "blocked: {blocked:?}");
}
