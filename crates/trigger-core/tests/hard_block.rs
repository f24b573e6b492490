//! The guarantee "no protests, no immigration enforcement" under any configuration.
//!
//! Tables, profiles (which columns reach the engine: code, text, or both) and event streams are generated.
//! Each code of the generated code book has a true description; some describe a protest, civil unrest or an
//! immigration operation, and some are the shipped standards' blocked codes. Generated tables map codes to any
//! target (the protest codes included), with or without labels, with alarm markers and blocked markers.
//! Whatever the route — a code-only profile, a text rule, a reclassification on a later revision, a granted
//! break-glass override, an alarm marker — either the configuration is refused when loaded, or no event of a
//! blocked type ever yields a START.

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use std::collections::BTreeMap;
use trigger_core::*;

const T0: Millis = 1_720_000_000_000;
const LAT: f64 = 36.16;
const LON: f64 = -86.78;

/// The code book: (code, true description, blocked by its description, blocked by its code). The flags are
/// this test's own ground truth, written by hand, not computed by the code under test. A type blocked only by
/// its code (the shipped standards' codes, with a description that names no blocked type) is blocked when the
/// code reaches the engine; a type whose description names a blocked type is blocked whatever reaches it.
const BOOK: &[(&str, &str, bool, bool)] = &[
    ("P1", "PROTEST", true, false),
    ("P2", "CIVIL UNREST - LARGE CROWD", true, false),
    ("P3", "DEMONSTRATION / MARCH", true, false),
    ("P4", "IMMIGRATION ENFORCEMENT ASSIST", true, false),
    ("P5", "RIOT IN PROGRESS", true, false),
    ("P6", "ICE OPERATION", true, false),
    ("CIVDIS", "CROWD CONTROL", false, true),
    ("ALIEN", "ASSIST OTHER AGENCY", false, true),
    ("407", "GROUP GATHERING", false, true),
    ("70", "BURGLARY - RESIDENCE", false, false),
    ("53", "HOLDUP / ROBBERY", false, false),
    ("83", "SHOTS FIRED", false, false),
    ("52", "SHOOTING", false, false),
    ("93", "TRAFFIC VIOLATION", false, false),
    ("ALR", "BURGLARY ALARM", false, false),
];

/// Extra event texts: some hold a blocked phrase whatever the code says.
const TEXTS: &[(&str, bool)] = &[
    ("", false),
    ("SHOTS FIRED", false),
    ("SHOTS FIRED AT PROTEST", true),
    ("BURGLARY / ALARM", false),
    ("ROBBERY NEAR IMMIGRATION OFFICE", true),
    ("BURGLARY", false),
];

const TARGETS: &[&str] =
    &["none", "burglary", "robbery", "shots_fired", "shooting", "stabbing", "hostage", "alarm", "vehicle_break_in"];

#[derive(Debug, Clone)]
struct GenRule {
    book: usize,
    target: usize,
    with_label: bool,
}

#[derive(Debug, Clone)]
struct GenConfig {
    rules: Vec<GenRule>,
    /// Text rules: (index into TEXTS / BOOK descriptions, target).
    text_rules: Vec<(usize, usize)>,
    blocked_codes: Vec<usize>,
    alarm_text: bool,
    alarm_enabled: bool,
    /// Which columns the profile maps: 0 code only, 1 text only, 2 both.
    columns: u8,
}

#[derive(Debug, Clone)]
struct GenRevision {
    book: usize,
    extra_text: usize,
    closes: bool,
}

fn table_toml(c: &GenConfig) -> String {
    let mut t = String::from("name = \"gen\"\nunknown = \"ignore\"\n");
    if c.alarm_text {
        t.push_str("[alarm]\ntext = [\"ALARM\"]\n");
    }
    if !c.blocked_codes.is_empty() {
        let codes: Vec<String> = c.blocked_codes.iter().map(|i| format!("{:?}", BOOK[*i].0)).collect();
        t.push_str(&format!("[blocked]\ncodes = [{}]\n", codes.join(", ")));
    }
    for r in &c.rules {
        let (code, label, _, _) = BOOK[r.book];
        t.push_str(&format!("[[rule]]\ncode = {code:?}\n"));
        if r.with_label {
            t.push_str(&format!("label = {label:?}\n"));
        }
        t.push_str(&format!("category = {:?}\n", TARGETS[r.target]));
    }
    for (i, target) in &c.text_rules {
        let phrase = if *i < TEXTS.len() { TEXTS[*i].0 } else { BOOK[*i - TEXTS.len()].1 };
        if !phrase.is_empty() {
            t.push_str(&format!("[[rule]]\ntext = {phrase:?}\ncategory = {:?}\n", TARGETS[*target]));
        }
    }
    t
}

fn policy_toml(c: &GenConfig, keys: &str) -> String {
    let mut p = String::from("incident_ref_key = \"k\"\nmax_cameras = 4\n");
    for cat in &TARGETS[1..] {
        let enabled = *cat != "alarm" || c.alarm_enabled;
        p.push_str(&format!("[categories.{cat}]\nenabled = {enabled}\nradius_m = 300\nrecord_seconds = 600\n"));
    }
    p.push_str("[[agency]]\nid = \"metro\"\ncode_tables = [\"gen\"]\njurisdiction = \"j\"\n");
    p.push_str(keys);
    p
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn keys_toml() -> String {
    [("officer", "agency", "o-1", 1u8), ("sup", "supervisor", "s-1", 2u8)]
        .iter()
        .map(|(id, role, who, seed)| {
            format!(
                "[[break_glass_key]]\nid = \"{id}\"\nrole = \"{role}\"\nidentity = \"{who}\"\npublic_key = \"{}\"\n",
                hex::encode(key(*seed).verifying_key().to_bytes())
            )
        })
        .collect()
}

fn break_glass(incident: &str) -> BreakGlassRequest {
    let mut r = BreakGlassRequest {
        agency_id: "metro".into(),
        incident_id: incident.into(),
        radius_m: 900.0,
        max_cameras: 20,
        expires_at: T0 + 3_000_000,
        reason_code: "search".into(),
        authorisations: vec![],
    };
    let msg = r.message();
    r.authorisations = [("officer", 1u8), ("sup", 2u8)]
        .iter()
        .map(|(id, seed)| Authorisation {
            key_id: id.to_string(),
            signature: hex::encode(key(*seed).sign(&msg).to_bytes()),
        })
        .collect();
    r
}

fn cameras() -> Vec<CameraRecord> {
    (0..12)
        .map(|i| CameraRecord {
            camera_id: format!("cam{i:02}"),
            owner_ref: format!("owner{i}"),
            lat: LAT + (i as f64 * 20.0) / 111_195.0,
            lon: LON,
            consent: Consent {
                categories: Category::ALL.into_iter().collect(),
                max_radius_m: 1000.0,
                quiet_hours: None,
                daily_cap: 100,
                live_stream_allowed: true,
            },
            online: true,
            updated_at: 0,
        })
        .collect()
}

fn gen_config() -> impl Strategy<Value = GenConfig> {
    (
        prop::collection::vec(
            (0..BOOK.len(), 0..TARGETS.len(), prop::bool::weighted(0.8))
                .prop_map(|(book, target, with_label)| GenRule { book, target, with_label }),
            0..12,
        ),
        prop::collection::vec((0..TEXTS.len() + BOOK.len(), 0..TARGETS.len()), 0..4),
        prop::collection::vec(0..BOOK.len(), 0..2),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(|(rules, text_rules, blocked_codes, alarm_text, alarm_enabled, columns)| GenConfig {
            rules,
            text_rules,
            blocked_codes,
            alarm_text,
            alarm_enabled,
            columns,
        })
}

fn gen_incidents() -> impl Strategy<Value = Vec<(Vec<GenRevision>, bool)>> {
    prop::collection::vec(
        (
            prop::collection::vec(
                (0..BOOK.len(), 0..TEXTS.len(), prop::bool::weighted(0.1))
                    .prop_map(|(book, extra_text, closes)| GenRevision { book, extra_text, closes }),
                1..5,
            ),
            prop::bool::weighted(0.3),
        ),
        1..6,
    )
}

/// What the CAD sends for a revision, through the generated profile's columns.
/// Returns the event, whether its type is blocked, and whether the event's own text says so.
fn event(c: &GenConfig, incident: &str, rev: u32, r: &GenRevision) -> (CallForService, bool, bool) {
    let (code, description, description_blocked, code_blocked) = BOOK[r.book];
    let (extra, extra_blocked) = TEXTS[r.extra_text];
    let text = [description, extra].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" / ");
    let (code, text) = match c.columns {
        0 => (code.to_string(), String::new()),
        1 => (String::new(), text),
        _ => (code.to_string(), text),
    };
    // Ground truth: the type is blocked when its code book entry is, or when the text the CAD sent names a
    // blocked type (the profile mapped it), or when a table marks the code as blocked.
    let table_blocked = c.blocked_codes.iter().any(|i| BOOK[*i].0 == BOOK[r.book].0);
    let code_sent = c.columns != 1;
    let blocked =
        description_blocked || (c.columns != 0 && extra_blocked) || (code_sent && (code_blocked || table_blocked));
    let at = T0 + rev as i64 * 1000;
    let status = if r.closes { Status::Closed } else { Status::Updated };
    let ev = CallForService {
        incident_id: incident.into(),
        agency_id: "metro".into(),
        revision: rev,
        status,
        call_type_code: code,
        call_type_text: text,
        priority: 1,
        location: Some(Location { lat: LAT, lon: LON, uncertainty_m: 0.0 }),
        received_at: T0,
        emitted_at: at,
        blocked: None,
        type_fields: vec![],
    };
    (ev, blocked, c.columns != 0 && extra_blocked)
}

const SQUARE: &str =
    r#"{"type":"Polygon","coordinates":[[[-86.9,36.06],[-86.66,36.06],[-86.66,36.26],[-86.9,36.26],[-86.9,36.06]]]}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn no_blocked_type_ever_starts_a_camera(c in gen_config(), incidents in gen_incidents()) {
        let table_text = table_toml(&c);
        let Ok(table) = CodeTable::from_toml(&table_text) else {
            // Refused when loaded: this configuration never runs.
            return Ok(());
        };
        let cfg = PolicyConfig::from_toml(&policy_toml(&c, &keys_toml())).unwrap();
        let j = BTreeMap::from([("metro".to_string(), SQUARE.to_string())]);
        let Ok(policy) = Policy::new(cfg, &[table], &j) else { return Ok(()) };
        let mut engine = Engine::new(policy);
        let cams = cameras();
        for (n, (revisions, override_first)) in incidents.iter().enumerate() {
            let incident = format!("I{n}");
            if *override_first {
                let granted = engine.break_glass(&break_glass(&incident), T0);
                prop_assert_eq!(granted.outcome, Outcome::BreakGlassGranted);
            }
            for (i, r) in revisions.iter().enumerate() {
                let (ev, blocked, text_says_so) = event(&c, &incident, i as u32 + 1, r);
                let Ok(d) = engine.decide(&ev, cams.as_slice(), ev.emitted_at) else { continue };
                let started = d.commands.iter().filter(|c| c.action == Action::Start).count();
                prop_assert!(
                    !(blocked && started > 0),
                    "{started} STARTs for a blocked type: code {:?} text {:?} -> {:?}\ntable:\n{}",
                    ev.call_type_code, ev.call_type_text, d.record, table_text
                );
                // A code the tables do not know cannot be named blocked, only never started; a text that names a
                // blocked type is always decided as one.
                if text_says_so && !ev.status.is_terminal() {
                    prop_assert_eq!(d.record.outcome, Outcome::BlockedType);
                }
                if r.closes {
                    break;
                }
            }
        }
    }

    /// The runtime block does not rely on the loader: a classifier over tables that were never checked (built
    /// in code, bypassing `from_toml`) still blocks a code whose label, or whose code, is a blocked type.
    #[test]
    fn the_classifier_blocks_by_label_even_for_unchecked_tables(book in 0..BOOK.len(), target in 1..TARGETS.len()) {
        let (code, label, description_blocked, code_blocked) = BOOK[book];
        let blocked = description_blocked || code_blocked;
        let table = CodeTable {
            name: "raw".into(),
            description: String::new(),
            unknown: UnknownPolicy::Ignore,
            alarm: Default::default(),
            blocked: Default::default(),
            rules: vec![classify::Rule {
                code: Some(code.into()),
                text: None,
                label: Some(label.into()),
                category: toml::Value::String(TARGETS[target].into()).try_into().unwrap(),
                line: 1,
            }],
        };
        let got = Classifier::new(&[table]).classify(code, "");
        prop_assert_eq!(matches!(got, Classification::Blocked { .. }), blocked, "{:?}", got);
    }
}

#[test]
fn a_code_only_table_mapping_a_protest_code_to_a_trigger_is_refused_with_file_line_code_and_label() {
    let text = "name = \"city\"\n[[rule]]\ncode = \"70\"\nlabel = \"BURGLARY\"\ncategory = \"burglary\"\n\n[[rule]]\ncode = \"PRT\"\nlabel = \"PROTEST / MARCH\"\ncategory = \"shots_fired\"\n[[rule]]\ncode = \"X9\"\ncategory = \"robbery\"\n[[rule]]\ncode = \"CIVDIS\"\nlabel = \"CROWD\"\ncategory = \"robbery\"\n";
    let err = CodeTable::from_toml(text).unwrap_err().to_string();
    assert!(
        err.contains(
            "table city, line 8: code \"PRT\" (label \"PROTEST / MARCH\") maps to the trigger category shots_fired"
        ),
        "{err}"
    );
    assert!(err.contains("line 12: code \"X9\" maps to the trigger category robbery but has no `label`"), "{err}");
    assert!(err.contains("line 15: code \"CIVDIS\" (label \"CROWD\")"), "{err}");
    // A blocked code of one table mapped to a trigger by another, both consulted for one agency.
    let a = CodeTable::from_toml("name = \"a\"\n[blocked]\ncodes = [\"77\"]\n").unwrap();
    let b = CodeTable::from_toml(
        "name = \"b\"\n[[rule]]\ncode = \"77\"\nlabel = \"GANG ACTIVITY\"\ncategory = \"shooting\"\n",
    )
    .unwrap();
    let problems = Classifier::problems(&[a, b]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].to_string().contains("table b, line 3: code \"77\""), "{}", problems[0]);
}

#[test]
fn the_shipped_standards_blocked_codes_never_trigger_even_without_text() {
    let t = CodeTable::from_toml(
        "name = \"t\"\nunknown = \"ignore\"\n[[rule]]\ntext = \"ROBBERY\"\ncategory = \"robbery\"\n",
    )
    .unwrap();
    let c = Classifier::new(&[t]);
    for code in ["CIVDIS", "ALIEN", "404", "404.6", "405", "406", "407", "408", "409", "civdis"] {
        assert!(matches!(c.classify(code, "ROBBERY"), Classification::Blocked { .. }), "{code}");
    }
}

/// The tables of docs/adding-a-city.md are the public list of the vocabularies: every phrase the code holds stands there.
#[test]
fn the_readme_lists_every_phrase_of_the_vocabularies() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/adding-a-city.md")).unwrap();
    let section = &readme[readme.find("## The vocabularies").expect("docs/adding-a-city.md has the section")..];
    let mut missing = Vec::new();
    for t in vocabulary::BLOCKED {
        missing.extend(t.phrases.iter().chain(t.unless).filter(|p| !section.contains(**p)));
    }
    for e in vocabulary::CORROBORATING {
        missing.extend(e.groups.iter().flat_map(|g| g.iter()).filter(|p| !section.contains(**p)));
    }
    for (short, long) in vocabulary::ABBREVIATIONS {
        if !section.contains(&format!("{short} → {long}")) {
            missing.push(short);
        }
    }
    assert!(missing.is_empty(), "docs/adding-a-city.md, \"The vocabularies\", does not list {missing:?}");
}
