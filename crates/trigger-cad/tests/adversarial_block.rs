//! "No protests, no immigration enforcement, under any configuration", against an adversary that holds every
//! knob by construction.
//!
//! **The adversary's moves come from the types.** It writes every key of the CSV profile (`CsvProfile`, its
//! `[columns]` and `[lifecycle]`, the join, the time format, the priority map), of the code table
//! (`CodeTable`: markers and rules, with labels that lie) and of the policy (`PolicyConfig`, every category's
//! `CategoryPolicy`, every `[[agency]]`, break-glass keys, every window and TTL). The lists of keys it varies
//! are compared with the keys each type's own deserialiser accepts (`every_configuration_field_is_varied`):
//! a field added to one of these types fails that test until the adversary varies it. For EIDO it varies every
//! string of the document (each leaf of the samples, found by walking them, and new components).
//!
//! **The data.** Rows of both real exports in `../shared` and `fixtures/`, and rows made from them with a
//! blocked text in any column, at any revision of an incident, as a same-revision duplicate, behind gaps of
//! seconds to days. The blocked texts are drawn from a generator of spellings (inflections, truncations,
//! ordinals, hyphenation, initials, other languages, possessives, look-alike letters, format characters,
//! HTML entities, digits for letters, split words) of a hand-written list of the things that must never
//! trigger — not from the product's vocabulary.
//!
//! **The oracle shares nothing with the code under test.** It reads the raw bytes with its own reader and
//! calls a row blocked when one of its fields holds a text this case planted. The property: no START for an
//! incident from its first blocked row on (within the 30 days the mark is kept), and at that row a STOP for
//! every camera still recording for it. The decisions are made after a protobuf round trip, as the service
//! makes them (the verdict travels on the wire).

use proptest::prelude::*;
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use trigger_cad::{csv_profile, eido, pb, CsvProfile, DecodeOptions};
use trigger_core::*;

// ---------------------------------------------------------------------------------------------------------
// What the adversary varies: every key of every configuration table it writes.

const PROFILE_KEYS: &[&str] = &[
    "name",
    "description",
    "agency_id",
    "time_zone",
    "timestamp_format",
    "delimiter",
    "join",
    "coordinate_uncertainty_m",
    "columns",
    "lifecycle",
    "priority_map",
];
const COLUMNS_KEYS: &[&str] = &[
    "incident_id",
    "agency",
    "type_code",
    "type_text",
    "final_type_code",
    "final_type_text",
    "priority",
    "latitude",
    "longitude",
    "point_wkt",
];
const LIFECYCLE_KEYS: &[&str] = &["created", "dispatched", "on_scene", "closed", "cancelled"];
const TABLE_KEYS: &[&str] = &["name", "description", "unknown", "alarm", "blocked", "rule"];
const MARKER_KEYS: &[&str] = &["codes", "text"];
const RULE_KEYS: &[&str] = &["code", "text", "label", "category"];
const POLICY_KEYS: &[&str] = &[
    "max_lag_s",
    "max_age_s",
    "max_future_skew_s",
    "state_ttl_s",
    "max_cameras",
    "radius_cap_m",
    "command_ttl_s",
    "area_resolution",
    "incident_ref_key",
    "how_to_stop",
    "default_code_tables",
    "categories",
    "agency",
    "break_glass_key",
    "break_glass_max_radius_m",
    "break_glass_max_cameras",
    "break_glass_max_duration_s",
];
const CATEGORY_KEYS: &[&str] = &["enabled", "radius_m", "record_seconds", "live_stream", "priority", "window_s"];
const AGENCY_KEYS: &[&str] = &["id", "name", "code_tables", "jurisdiction"];
const BREAK_GLASS_KEYS: &[&str] = &["id", "role", "identity", "public_key", "agency_id"];

/// The keys a type's deserialiser accepts, read from its refusal of a key it does not know.
fn accepted_keys(err: &str) -> Vec<String> {
    let Some(at) = err.find("unknown field `zz_probe`") else { panic!("the probe was not refused by name: {err}") };
    let rest = &err[at + "unknown field `zz_probe`".len()..];
    let line = rest.lines().next().unwrap_or("");
    line.split('`').skip(1).step_by(2).map(String::from).collect()
}

#[test]
fn every_configuration_field_is_varied() {
    let profile = |s: &str| CsvProfile::from_toml(s).unwrap_err().to_string();
    let table = |s: &str| CodeTable::from_toml(s).unwrap_err().to_string();
    let policy = |s: &str| PolicyConfig::from_toml(s).unwrap_err().to_string();
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("CsvProfile", profile("zz_probe = 1\n"), PROFILE_KEYS),
        ("Columns", profile("[columns]\nzz_probe = 1\n"), COLUMNS_KEYS),
        ("Lifecycle", profile("[lifecycle]\nzz_probe = 1\n"), LIFECYCLE_KEYS),
        ("CodeTable", table("zz_probe = 1\n"), TABLE_KEYS),
        ("Markers", table("[alarm]\nzz_probe = 1\n"), MARKER_KEYS),
        ("Rule", table("name = \"t\"\n[[rule]]\nzz_probe = 1\n"), RULE_KEYS),
        ("PolicyConfig", policy("zz_probe = 1\n"), POLICY_KEYS),
        ("CategoryPolicy", policy("[categories.burglary]\nzz_probe = 1\n"), CATEGORY_KEYS),
        ("AgencyConfig", policy("[[agency]]\nzz_probe = 1\n"), AGENCY_KEYS),
        ("BreakGlassKey", policy("[[break_glass_key]]\nzz_probe = 1\n"), BREAK_GLASS_KEYS),
    ];
    for (ty, err, varied) in cases {
        let mut accepted = accepted_keys(&err);
        let mut varied: Vec<String> = varied.iter().map(|s| s.to_string()).collect();
        accepted.sort();
        varied.sort();
        assert_eq!(accepted, varied, "{ty}: the adversary must vary every field the type accepts");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The data: the real exports.

const GENUINE: &str = "Tencode Description";

struct Export {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Rows whose type is one of the program's crimes (half the stream, so a wrong START is likely).
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

// ---------------------------------------------------------------------------------------------------------
// Blocked texts, drawn from spellings of a hand-written list (the oracle's ground truth, not the product's).

/// What must never trigger, with the forms CADs write of it (inflections, agent nouns, truncations, other
/// languages, initials), written by hand.
const NEVER: &[(&str, &[&str])] = &[
    ("PROTEST", &["PROTESTED", "PROTESTING", "PROTESTERS", "PROTESTOR", "PROTES", "COUNTER-PROTEST", "PROTESTA"]),
    ("DEMONSTRATION", &["DEMONSTRATING", "DEMONSTRATORS", "DEMONST", "DEMO", "MANIFESTACION", "MANIFESTANTES"]),
    ("RALLY", &["RALLIES", "RALLIED", "RALLYING"]),
    ("MARCH", &["MARCHERS", "MARCHING", "MARCHED", "MARCHA"]),
    ("PICKET", &["PICKETING", "PICKETERS", "PICKET LINE"]),
    ("VIGIL", &["VIGILS", "CANDLELIGHT VIGIL"]),
    ("PUBLIC GATHERING", &["GATHERING", "PUBLIC GATH", "MASS GATHERING"]),
    ("UNLAWFUL ASSEMBLY", &["ASSEMBLY", "UNLAWFUL ASSEM"]),
    ("CROWD", &["CROWDS", "LARGE CROWD"]),
    ("PARADE", &["PARADES", "PARADING"]),
    ("PROCESSION", &["PROCESSIONS"]),
    ("SECOND LINE", &["2ND LINE", "SECOND LINERS"]),
    ("SIT-IN", &["SIT IN", "TEACH-IN", "DIE-IN", "SITIN"]),
    ("LABOR STRIKE", &["STRIKERS", "HUELGA", "WALKOUT"]),
    ("BOYCOTT", &["BOYCOTTING", "BOYCOTTERS"]),
    ("RIOT", &["RIOTING", "RIOTERS", "RIOTS"]),
    ("CIVIL UNREST", &["CIV UNREST", "UNREST"]),
    ("CIVIL DISTURBANCE", &["CIV DISTURB", "CIVIL DISORDER", "CIV DIST"]),
    ("FIRST AMENDMENT", &["1ST AMENDMENT", "1ST AMEND", "FREE SPEECH"]),
    ("IMMIGRATION ENFORCEMENT", &["IMMIGRATION", "IMMIGRANTS", "INMIGRACION", "MIGRA"]),
    ("DEPORTATION", &["DEPORTED", "DEPORTING", "DEPORTACION"]),
    ("ICE", &["ICE'S", "I.C.E.", "ICE AGENTS"]),
    ("BORDER PATROL", &["USBP", "CBP", "BORDER PAT"]),
    ("ILLEGAL ALIEN", &["ALIENS", "UNDOCUMENTED"]),
    ("REDADA", &["REDADAS"]),
];

/// Words around a blocked text, as CADs write them with trigger words.
const CONTEXT: &[(&str, &str)] = &[
    ("", ""),
    ("SHOTS FIRED AT ", ""),
    ("BURGLARY - ", ""),
    ("", " / SHOOTING"),
    ("", " IN PROGRESS"),
    ("ASSIST ", " - ROBBERY"),
];

/// Latin capitals and the letters of other scripts that look like them.
const LOOK_ALIKE: &[(char, char)] = &[
    ('A', '\u{0410}'),
    ('E', '\u{0415}'),
    ('O', '\u{041E}'),
    ('P', '\u{0420}'),
    ('C', '\u{0421}'),
    ('T', '\u{0422}'),
    ('H', '\u{041D}'),
    ('M', '\u{041C}'),
    ('I', '\u{0406}'),
    ('N', '\u{039D}'),
    ('R', '\u{13A1}'),
];
const FORMAT_CHARS: &[char] = &['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}'];
const DIGITS: &[(char, char)] = &[('O', '0'), ('I', '1'), ('E', '3'), ('A', '4'), ('S', '5'), ('T', '7')];

/// One spelling of a blocked text: which entry, which form, which spelling class, where, and the context.
#[derive(Debug, Clone)]
struct Spelling {
    entry: usize,
    form: Option<usize>,
    class: usize,
    at: usize,
    context: usize,
    lower: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (0..NEVER.len(), prop::option::weighted(0.6, 0..8usize), 0..10usize, 0..64usize, 0..CONTEXT.len(), any::<bool>())
        .prop_map(|(entry, form, class, at, context, lower)| Spelling { entry, form, class, at, context, lower })
}

/// The letters of the longest word of `s`, as (start, end) byte positions.
fn longest_word(s: &str) -> (usize, usize) {
    let mut best = (0, 0);
    let mut start = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
        match (c.is_ascii_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(b)) => {
                if i - b > best.1 - best.0 {
                    best = (b, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    best
}

fn respell(base: &str, class: usize, at: usize) -> String {
    let (ws, we) = longest_word(base);
    let letters: Vec<usize> = (ws..we).collect();
    let pick = |n: usize| letters.get(n % letters.len().max(1)).copied();
    let replace_at = |i: usize, with: &str| format!("{}{with}{}", &base[..i], &base[i + 1..]);
    match class {
        // Look-alike letters of other scripts, as many as there are.
        1 => base.chars().map(|c| LOOK_ALIKE.iter().find(|(l, _)| *l == c).map_or(c, |(_, a)| *a)).collect(),
        // A format character inside the word.
        2 => match pick(at).filter(|&i| i > ws) {
            Some(i) => format!("{}{}{}", &base[..i], FORMAT_CHARS[at % FORMAT_CHARS.len()], &base[i..]),
            None => base.to_string(),
        },
        // An HTML character reference for a letter (once in three, encoded twice).
        3 => match pick(at) {
            Some(i) => {
                let c = base.as_bytes()[i];
                let r = if at.is_multiple_of(3) { format!("&amp;#{c};") } else { format!("&#x{c:X};") };
                replace_at(i, &r)
            }
            None => base.to_string(),
        },
        // Digits for the letters they look like, in the longest word, which keeps a letter.
        4 => {
            let word: String =
                base[ws..we].chars().map(|c| DIGITS.iter().find(|(l, _)| *l == c).map_or(c, |(_, d)| *d)).collect();
            if word.chars().any(|c| c.is_ascii_alphabetic()) {
                format!("{}{word}{}", &base[..ws], &base[we..])
            } else {
                base.to_string()
            }
        }
        // The longest word split by a space or a hyphen, two letters at least on each side.
        5 if we - ws >= 4 => {
            let cut = ws + 2 + at % (we - ws - 3);
            format!("{}{}{}", &base[..cut], if at.is_multiple_of(2) { " " } else { "-" }, &base[cut..])
        }
        // Letters spaced or dotted.
        6 if we - ws <= 5 => {
            let sep = if at.is_multiple_of(2) { " " } else { "." };
            let spaced: Vec<String> = base[ws..we].chars().map(String::from).collect();
            format!("{}{}{}", &base[..ws], spaced.join(sep), &base[we..])
        }
        // Full-width letters.
        7 => base
            .chars()
            .map(|c| if c.is_ascii_uppercase() { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c })
            .collect(),
        // A possessive.
        8 => format!("{base}'S"),
        _ => base.to_string(),
    }
}

fn spell(s: &Spelling) -> String {
    let (base, forms) = NEVER[s.entry];
    let word = s.form.and_then(|f| forms.get(f % forms.len().max(1))).copied().unwrap_or(base);
    let word = if s.lower { word.to_lowercase() } else { word.to_string() };
    let word = if s.lower { word } else { respell(&word, s.class, s.at) };
    let (before, after) = CONTEXT[s.context];
    format!("{before}{word}{after}")
}

// ---------------------------------------------------------------------------------------------------------
// The adversary's configuration.

const LABELS: &[&str] = &[
    "",
    "SHOTS FIRED",
    "BURGLARY - RESIDENCE",
    "HOLDUP / ROBBERY",
    "SHOOTING",
    "CUTTING / STABBING",
    "HOSTAGE",
    "BURGLAR ALARM",
    "REPORT TO FOLLOW",
    "PUBLIC GATHERING",
];
const PHRASES: &[&str] = &[
    "SHOTS FIRED",
    "SHOTS",
    "SHOOTING",
    "BURGLARY",
    "ROBBERY",
    "STABBING",
    "ALARM",
    "PROGRESS",
    "REPORT",
    "ICE",
    "MOB",
    "BLACK",
];
const TARGETS: &[&str] =
    &["none", "burglary", "vehicle_break_in", "robbery", "shots_fired", "shooting", "stabbing", "hostage", "alarm"];
const JOINS: &[&str] =
    &[" / ", " - ", ", ", "; ", "", " ", "|", " SHOTS FIRED ", " BLACK", "ICE ", " AND ", "\u{200B}"];
const ZONES: &[&str] = &["America/Chicago", "UTC", "Pacific/Kiritimati"];
const FORMATS: &[&str] = &["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "rfc3339", "%m/%d/%Y %H:%M"];
const WORDS: &[&str] = &["adversary", "", "PROTEST", "SHOTS FIRED", "metro"];
const INVENTED_CODE: &str = "P90";

/// A column of the export: the likely one, or any.
fn column(likely: &'static str) -> impl Strategy<Value = String> {
    let h = &export().header;
    prop_oneof![4 => Just(likely.to_string()), 1 => (0..h.len()).prop_map(|i| export().header[i].clone())]
}

fn any_column() -> impl Strategy<Value = String> {
    (0..export().header.len()).prop_map(|i| export().header[i].clone())
}

/// None, one or two columns (`Cols`).
fn cols(likely: &'static str) -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        1 => Just(vec![]),
        2 => column(likely).prop_map(|c| vec![c]),
        2 => (column(likely), any_column()).prop_map(|(a, b)| vec![a, b]),
    ]
}

fn maybe_column() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.25, any_column())
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || !c.is_ascii() => out.push_str(&format!("\\U{:08X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", "))
}

fn profile_toml() -> impl Strategy<Value = String> {
    let top = (
        prop::sample::select(WORDS),
        prop::sample::select(WORDS),
        prop::option::weighted(0.97, prop::sample::select(&["metro", "metro", "metro", "other"][..])),
        prop::sample::select(ZONES),
        prop::sample::select(FORMATS),
        prop::sample::select(&[',', ',', ',', ';'][..]),
        prop_oneof![6 => prop::sample::select(&JOINS[..7]), 1 => prop::sample::select(&JOINS[7..])],
        0.0..2000.0f64,
        prop::collection::btree_map(prop::sample::select(&["1", "2A", "E", "P"][..]), 0..10u32, 0..3),
    );
    let columns = (
        column("Event Number"),
        prop::option::weighted(0.1, any_column()),
        cols("Tencode"),
        cols(GENUINE),
        prop_oneof![3 => Just(vec![]), 1 => cols("Tencode")],
        prop_oneof![3 => Just(vec![]), 1 => cols(GENUINE)],
        maybe_column(),
        column("Latitude"),
        column("Longitude"),
        prop::option::weighted(0.05, any_column()),
    );
    let lifecycle = (column("Call_Received"), maybe_column(), maybe_column(), maybe_column(), maybe_column());
    (top, columns, lifecycle).prop_map(|(t, c, l)| {
        let mut p = format!(
            "name = {}\ndescription = {}\n{}time_zone = {}\ntimestamp_format = {}\ndelimiter = {}\njoin = {}\n\
             coordinate_uncertainty_m = {}\n",
            toml_string(t.0),
            toml_string(t.1),
            t.2.map(|a| format!("agency_id = {}\n", toml_string(a))).unwrap_or_default(),
            toml_string(t.3),
            toml_string(t.4),
            toml_string(&t.5.to_string()),
            toml_string(t.6),
            t.7,
        );
        p += "[priority_map]\n";
        for (k, v) in &t.8 {
            p += &format!("{} = {v}\n", toml_string(k));
        }
        p += &format!("[columns]\nincident_id = {}\n", toml_string(&c.0));
        let opt =
            |k: &str, v: &Option<String>| v.as_ref().map(|v| format!("{k} = {}\n", toml_string(v))).unwrap_or_default();
        let many =
            |k: &str, v: &Vec<String>| if v.is_empty() { String::new() } else { format!("{k} = {}\n", toml_list(v)) };
        p += &opt("agency", &c.1);
        p += &many("type_code", &c.2);
        p += &many("type_text", &c.3);
        p += &many("final_type_code", &c.4);
        p += &many("final_type_text", &c.5);
        p += &opt("priority", &c.6);
        p += &format!("latitude = {}\nlongitude = {}\n", toml_string(&c.7), toml_string(&c.8));
        p += &opt("point_wkt", &c.9);
        p += &format!("[lifecycle]\ncreated = {}\n", toml_string(&l.0));
        p += &opt("dispatched", &l.1);
        p += &opt("on_scene", &l.2);
        p += &opt("closed", &l.3);
        p += &opt("cancelled", &l.4);
        p
    })
}

#[derive(Debug, Clone)]
struct TableMoves {
    /// Start from the rules of the city's real code book (`config/codes/nashville-mnpd.toml`).
    real_rules: bool,
    name: &'static str,
    description: &'static str,
    unknown_reject: bool,
    alarm: (Vec<&'static str>, Vec<&'static str>),
    blocked: (Vec<&'static str>, Vec<&'static str>),
    /// Code rules: (row of the stream whose code to map, or the invented code; label; target).
    code_rules: Vec<(Option<usize>, usize, usize)>,
    text_rules: Vec<(usize, usize, Option<usize>)>,
}

fn markers() -> impl Strategy<Value = (Vec<&'static str>, Vec<&'static str>)> {
    (
        prop::collection::vec(prop::sample::select(&["83", "70", INVENTED_CODE, "A"][..]), 0..2),
        prop::collection::vec(prop::sample::select(PHRASES), 0..2),
    )
}

/// A text rule's phrase: mostly words of the program's crimes, sometimes the blocked ones (refused).
fn phrase() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0..PHRASES.len() - 3, 1 => PHRASES.len() - 3..PHRASES.len()]
}

/// A label: mostly a description (true or a lie), sometimes none or a blocked one (the loader refuses those).
fn label() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 1 => Just(LABELS.len() - 1), 40 => 1..LABELS.len() - 1]
}

fn table_moves() -> impl Strategy<Value = TableMoves> {
    (
        prop::bool::weighted(0.7),
        prop::sample::select(&["adv", "nashville-mnpd", "PROTEST"][..]),
        prop::sample::select(WORDS),
        prop::bool::weighted(0.2),
        markers(),
        prop::option::weighted(0.2, markers()).prop_map(Option::unwrap_or_default),
        prop::collection::vec((prop::option::weighted(0.8, 0..24usize), label(), 0..TARGETS.len()), 0..6),
        prop::collection::vec((phrase(), 0..TARGETS.len(), prop::option::of(label())), 0..4),
    )
        .prop_map(|(real_rules, name, description, unknown_reject, alarm, blocked, code_rules, text_rules)| {
            TableMoves { real_rules, name, description, unknown_reject, alarm, blocked, code_rules, text_rules }
        })
}

/// The adversary's code table. A code rule maps what the profile reads as the code of one of the stream's
/// rows (so its rules do match), or the invented code.
fn table_toml(m: &TableMoves, profile: &CsvProfile, csv_text: &str) -> String {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let code_cols: Vec<usize> =
        profile.columns.type_code.names().iter().filter_map(|n| h.iter().position(|x| x == n)).collect();
    let list = |v: &[&str]| toml_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let mut t = format!(
        "name = {}\ndescription = {}\nunknown = \"{}\"\n[alarm]\ncodes = {}\ntext = {}\n[blocked]\ncodes = {}\ntext = {}\n",
        toml_string(m.name),
        toml_string(m.description),
        if m.unknown_reject { "reject" } else { "ignore" },
        list(&m.alarm.0),
        list(&m.alarm.1),
        list(&m.blocked.0),
        list(&m.blocked.1),
    );
    if m.real_rules {
        let real = std::fs::read_to_string(shared("config/codes/nashville-mnpd.toml")).unwrap();
        t += &real[real.find("[[rule]]").expect("rules")..];
        t.push('\n');
    }
    for (which, label, target) in &m.code_rules {
        let code = match which {
            Some(i) if !code_cols.is_empty() && !rows.is_empty() => {
                let row = &rows[i % rows.len()];
                let parts: Vec<&str> = code_cols.iter().map(|c| row[*c].trim()).filter(|s| !s.is_empty()).collect();
                parts.join(&profile.join)
            }
            _ => INVENTED_CODE.to_string(),
        };
        if code.is_empty() {
            continue;
        }
        t += &format!(
            "[[rule]]\ncode = {}\nlabel = {}\ncategory = {}\n",
            toml_string(&code),
            toml_string(LABELS[*label]),
            toml_string(TARGETS[*target])
        );
    }
    for (phrase, target, label) in &m.text_rules {
        t += &format!(
            "[[rule]]\ntext = {}\ncategory = {}\n",
            toml_string(PHRASES[*phrase]),
            toml_string(TARGETS[*target])
        );
        if let Some(l) = label {
            t += &format!("label = {}\n", toml_string(LABELS[*l]));
        }
    }
    t
}

/// A real Ed25519 public key (break-glass keys must parse; the adversary may list any).
const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn policy_toml(table_name: &'static str) -> impl Strategy<Value = String> {
    let top = (
        prop_oneof![Just(1_000_000_000u64), 1..200u64],
        prop::option::weighted(0.03, 1..100u64),
        prop_oneof![Just(300u64), 0..100_000u64],
        prop_oneof![6 => 3600..10_000_000u64, 1 => 1..3600u64],
        1..12usize,
        100.0..3000.0f64,
        1..3600u64,
        0..16u8,
        prop::sample::select(WORDS),
        prop::sample::select(WORDS),
        prop::bool::weighted(0.4),
    );
    let category = (
        prop::bool::weighted(0.8),
        50.0..3000.0f64,
        1..86_400u32,
        any::<bool>(),
        0..10u8,
        prop::option::weighted(0.7, prop_oneof![3 => 1..3600u64, 1 => 3600..1_000_000u64]),
    );
    let categories = prop::collection::vec(category, TARGETS.len() - 1);
    let agency = (prop::sample::select(WORDS), prop::bool::weighted(0.9));
    let break_glass = (
        prop::collection::vec(
            (prop::sample::select(&["agency", "supervisor"][..]), prop::option::of(Just("metro"))),
            0..3,
        ),
        1.0..5000.0f64,
        1..100usize,
        1..100_000u64,
    );
    (top, categories, agency, break_glass).prop_map(move |(t, cats, a, bg)| {
        let mut p = format!(
            "max_lag_s = {}\n{}max_future_skew_s = {}\nstate_ttl_s = {}\nmax_cameras = {}\nradius_cap_m = {}\n\
             command_ttl_s = {}\narea_resolution = {}\nincident_ref_key = {}\nhow_to_stop = {}\n\
             default_code_tables = {}\nbreak_glass_max_radius_m = {}\nbreak_glass_max_cameras = {}\n\
             break_glass_max_duration_s = {}\n",
            t.0,
            t.1.map(|v| format!("max_age_s = {v}\n")).unwrap_or_default(),
            t.2,
            t.3,
            t.4,
            t.5,
            t.6,
            t.7,
            toml_string(t.8),
            toml_string(t.9),
            if t.10 { toml_list(&[table_name.to_string()]) } else { "[]".into() },
            bg.1,
            bg.2,
            bg.3,
        );
        for (cat, c) in TARGETS[1..].iter().zip(&cats) {
            p += &format!(
                "[categories.{cat}]\nenabled = {}\nradius_m = {}\nrecord_seconds = {}\nlive_stream = {}\npriority = {}\n{}",
                c.0,
                c.1.min(t.5),
                c.2,
                c.3,
                c.4,
                c.5.map(|w| format!("window_s = {w}\n")).unwrap_or_default(),
            );
        }
        for (i, (role, agency)) in bg.0.iter().enumerate() {
            p += &format!(
                "[[break_glass_key]]\nid = \"k{i}\"\nrole = \"{role}\"\nidentity = \"staff-{i}\"\npublic_key = \"{PUBLIC_KEY}\"\n{}",
                agency.map(|a| format!("agency_id = \"{a}\"\n")).unwrap_or_default()
            );
        }
        let tables = if a.1 { toml_list(&[table_name.to_string()]) } else { "[]".into() };
        p + &format!("[[agency]]\nid = \"metro\"\nname = {}\ncode_tables = {tables}\njurisdiction = \"j\"\n", toml_string(a.0))
    })
}

// ---------------------------------------------------------------------------------------------------------
// The stream and the oracle.

#[derive(Debug, Clone)]
struct Revision {
    /// The real row it is made from.
    row: usize,
    /// A blocked text planted: (its spelling, the column, replace the cell or add to it).
    plant: Option<(Spelling, usize, bool)>,
    /// Seconds after the incident's previous row.
    gap_s: u32,
    /// The same revision number as the row before it (a CAD retyping a call within its clock's second).
    duplicate: bool,
}

fn incidents() -> impl Strategy<Value = Vec<Vec<Revision>>> {
    let e = export();
    let row = prop_oneof![0..e.rows.len(), (0..e.crimes.len()).prop_map(|i| export().crimes[i])];
    let plant = prop::option::weighted(0.3, (spelling(), 0..e.header.len(), any::<bool>()));
    let gap = prop_oneof![8 => 1..600u32, 1 => 600..7200u32, 1 => 7200..259_200u32];
    let revision = (row, plant, gap, prop::bool::weighted(0.15)).prop_map(|(row, plant, gap_s, duplicate)| Revision {
        row,
        plant,
        gap_s,
        duplicate,
    });
    prop::collection::vec(prop::collection::vec(revision, 1..6), 1..6)
}

/// Base time of the stream: 2024-07-01 10:00:00 local.
fn stamp(base: chrono::NaiveDateTime, secs: i64) -> String {
    (base + chrono::Duration::seconds(secs)).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The CSV the CAD exports for these incidents, and the texts planted in it.
fn export_csv(incidents: &[Vec<Revision>]) -> (String, Vec<String>, Vec<bool>) {
    let e = export();
    let (id, received) = (col(&e.header, "Event Number"), col(&e.header, "Call_Received"));
    let (lat, lon) = (col(&e.header, "Latitude"), col(&e.header, "Longitude"));
    let base = chrono::NaiveDate::from_ymd_opt(2024, 7, 1).unwrap().and_hms_opt(10, 0, 0).unwrap();
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(&e.header).unwrap();
    let (mut planted, mut duplicates) = (Vec::new(), Vec::new());
    for (n, revisions) in incidents.iter().enumerate() {
        let first = &e.rows[revisions[0].row];
        let mut t = n as i64 * 97;
        for r in revisions {
            t += i64::from(r.gap_s);
            let mut row = e.rows[r.row].clone();
            row[id] = format!("ADV{n}");
            row[received] = stamp(base, t);
            (row[lat], row[lon]) = (first[lat].clone(), first[lon].clone());
            if let Some((s, c, replace)) = &r.plant {
                let text = spell(s);
                row[*c] = if *replace { text.clone() } else { format!("{} {text}", row[*c]) };
                planted.push(text);
            }
            duplicates.push(r.duplicate);
            w.write_record(&row).unwrap();
        }
    }
    (String::from_utf8(w.into_inner().unwrap()).unwrap(), planted, duplicates)
}

/// The oracle, from the raw CSV with its own reader: each data row's incident (agency and id as the profile
/// names their columns) and whether one of its fields holds a planted text.
fn oracle(csv_text: &str, p: &CsvProfile, planted: &[String]) -> Vec<((String, String), bool)> {
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(csv_text.as_bytes());
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let get = |row: &csv::StringRecord, name: &str| {
        h.iter().position(|x| x == name).map_or("", |i| row[i].trim()).to_string()
    };
    r.records()
        .map(Result::unwrap)
        .map(|row| {
            let agency =
                p.columns.agency.as_deref().map(|a| get(&row, a)).or_else(|| p.agency_id.clone()).unwrap_or_default();
            let blocked = row.iter().any(|f| planted.iter().any(|t| f.contains(t.as_str())));
            ((agency, get(&row, &p.columns.incident_id)), blocked)
        })
        .collect()
}

const SQUARE: &str =
    r#"{"type":"Polygon","coordinates":[[[-87.2,35.8],[-86.4,35.8],[-86.4,36.6],[-87.2,36.6],[-87.2,35.8]]]}"#;

/// Three cameras within 30 m of every located incident, consenting to every category at any hour.
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
                    max_radius_m: 5000.0,
                    quiet_hours: None,
                    daily_cap: 100_000,
                    live_stream_allowed: true,
                },
                online: true,
                updated_at: 0,
            })
        })
        .collect()
}

/// The event as the service decides it: through the CFS topic's protobuf.
fn over_the_wire(ev: &CallForService) -> Result<CallForService, Reject> {
    pb::decode_one(&pb::to_pb(ev).encode_to_vec(), &DecodeOptions::default())
}

/// What the engine told the cameras of each incident: camera -> recording until (ms), while not stopped.
type Recording = HashMap<(String, String), HashMap<String, Millis>>;

/// Decide `events` (with the data row each came from) with a monotonic clock, and check the property.
fn check(
    engine: &mut Engine,
    events: &[(usize, CallForService)],
    rows: &[((String, String), bool)],
    cams: &[CameraRecord],
    what: &dyn Fn() -> String,
) -> Result<(), TestCaseError> {
    let mut first_blocked: HashMap<&(String, String), usize> = HashMap::new();
    for (i, (key, blocked)) in rows.iter().enumerate() {
        if *blocked {
            first_blocked.entry(key).or_insert(i);
        }
    }
    let mut recording: Recording = HashMap::new();
    let mut stopped_at_block: HashSet<(String, String)> = HashSet::new();
    let mut now = Millis::MIN;
    for (row, ev) in events {
        let Ok(ev) = over_the_wire(ev) else { continue };
        now = now.max(ev.emitted_at);
        let key = (ev.agency_id.trim().to_string(), ev.incident_id.trim().to_string());
        let Ok(d) = engine.decide(&ev, cams, now) else { continue };
        let since = first_blocked.get(&key).copied();
        let blocked_here = since.is_some_and(|b| *row >= b);
        let rec = recording.entry(key.clone()).or_default();
        if blocked_here && stopped_at_block.insert(key.clone()) {
            let still: Vec<&String> = rec.iter().filter(|(_, until)| **until > now).map(|(c, _)| c).collect();
            let stops: HashSet<&str> =
                d.commands.iter().filter(|c| c.action == Action::Stop).map(|c| c.camera_id.as_str()).collect();
            let missing: Vec<&&String> = still.iter().filter(|c| !stops.contains(c.as_str())).collect();
            prop_assert!(
                missing.is_empty(),
                "no STOP for {missing:?} at the first blocked row {row} of {key:?}\n{}",
                what()
            );
        }
        for c in &d.commands {
            match c.action {
                Action::Start => {
                    prop_assert!(
                        !blocked_here,
                        "START of {} for {key:?} at row {row}, blocked since row {since:?}: code {:?} text {:?} -> \
                         {:?} {:?}\n{}",
                        c.camera_id,
                        ev.call_type_code,
                        ev.call_type_text,
                        d.record.outcome,
                        d.record.rule,
                        what()
                    );
                    rec.insert(c.camera_id.clone(), now + i64::from(c.record_seconds) * 1000);
                }
                Action::Stop => {
                    rec.remove(&c.camera_id);
                }
            }
        }
    }
    Ok(())
}

fn data_row(position: &str) -> usize {
    position.strip_prefix("row ").and_then(|n| n.parse::<usize>().ok()).expect("a CSV position") - 2
}

/// A code table and a policy that names it (or not: then the defaults, or nothing, are consulted).
fn table_and_policy() -> impl Strategy<Value = (TableMoves, String)> {
    table_moves().prop_flat_map(|t| {
        let name = t.name;
        (Just(t), policy_toml(name))
    })
}

fn cases() -> u32 {
    std::env::var("ADVERSARY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(500)
}

proptest! {
    // 500 cases a run (EIDO: 250); ADVERSARY_CASES=N for a longer search.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn no_configuration_starts_a_camera_for_an_incident_whose_record_named_a_blocked_type(
        profile_text in profile_toml(),
        (table, policy_text) in table_and_policy(),
        incidents in incidents(),
    ) {
        let (csv_text, planted, duplicates) = export_csv(&incidents);
        // A configuration a loader refuses never runs.
        let Ok(profile) = CsvProfile::from_toml(&profile_text) else { return Ok(()) };
        let table_text = table_toml(&table, &profile, &csv_text);
        let Ok(codes) = CodeTable::from_toml(&table_text) else { return Ok(()) };
        let j = BTreeMap::from([("metro".to_string(), SQUARE.to_string())]);
        let Ok(config) = PolicyConfig::from_toml(&policy_text) else { return Ok(()) };
        let Ok(policy) = Policy::new(config, &[codes], &j) else { return Ok(()) };
        let Ok(decoded) = csv_profile::decode(csv_text.as_bytes(), &profile, &DecodeOptions::default()) else {
            return Ok(());
        };
        // The stream numbers each incident's revisions in export order, as a CAD that exports each would; a
        // duplicate row keeps the number of the one before it.
        let mut next: HashMap<(String, String), (u32, Millis, usize)> = HashMap::new();
        let events: Vec<(usize, CallForService)> = decoded
            .events
            .into_iter()
            .map(|d| {
                let row = data_row(&d.source.position);
                let mut ev = d.event;
                let n = next.entry((ev.agency_id.clone(), ev.incident_id.clone())).or_insert((0, ev.received_at, usize::MAX));
                let same_row = n.2 == row;
                if !(duplicates[row] && !same_row && n.0 > 0) {
                    n.0 += 1;
                }
                n.2 = row;
                (ev.revision, ev.received_at) = (n.0, n.1);
                (row, ev)
            })
            .collect();
        let plain: Vec<CallForService> = events.iter().map(|(_, e)| e.clone()).collect();
        let cams = cameras(&plain);
        let rows = oracle(&csv_text, &profile, &planted);
        let what = || format!("profile:\n{profile_text}\ntable:\n{table_text}\npolicy:\n{policy_text}\nplanted: {planted:?}");
        check(&mut Engine::new(policy), &events, &rows, &cams, &what)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// EIDO: every string of the document.

fn sample(name: &str) -> serde_json::Value {
    let p = shared(&format!("../shared/data/eido/{name}"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// Every path to a string leaf of a document (object keys and array indexes).
fn string_paths(v: &serde_json::Value, path: &mut Vec<serde_json::Value>, out: &mut Vec<Vec<serde_json::Value>>) {
    match v {
        serde_json::Value::String(_) => out.push(path.clone()),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.into());
                string_paths(x, path, out);
                path.pop();
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone().into());
                string_paths(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut serde_json::Value, path: &[serde_json::Value]) -> &'a mut serde_json::Value {
    path.iter().fold(v, |v, k| match k {
        serde_json::Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        serde_json::Value::String(s) => &mut v[s.as_str()],
        _ => unreachable!(),
    })
}

const CRIME_TEXTS: &[&str] =
    &["SHOTS FIRED", "SHOOTING", "BURGLARY - RESIDENCE", "HOLDUP / ROBBERY", "CUTTING / STABBING"];

/// One revision of an incident: the sample it is made from, its crime, its time, and what is planted where.
#[derive(Debug, Clone)]
struct Doc {
    template: usize,
    crime: usize,
    gap_s: u32,
    /// (the spelling, which string leaf (modulo their number) or None: a second incident component, replace).
    plant: Option<(Spelling, Option<usize>, bool)>,
}

fn docs() -> impl Strategy<Value = Vec<Vec<Doc>>> {
    let plant = prop::option::weighted(0.35, (spelling(), prop::option::weighted(0.8, 0..10_000usize), any::<bool>()));
    let doc = (0..2usize, 0..CRIME_TEXTS.len(), prop_oneof![4 => 0..600u32, 1 => Just(0u32)], plant)
        .prop_map(|(template, crime, gap_s, plant)| Doc { template, crime, gap_s, plant });
    prop::collection::vec(prop::collection::vec(doc, 1..5), 1..5)
}

/// An EIDO document for an incident of ours: the sample with its incident, time, place and type set.
fn document(d: &Doc, n: usize, t: i64) -> (serde_json::Value, Option<String>) {
    let mut doc = sample(["sample-civil-unrest-2020.json", "sample-call-transfer.json"][d.template]);
    let at = chrono::DateTime::from_timestamp(1_719_828_000 + t, 0).unwrap().to_rfc3339();
    doc["incidentTrackingIdentifier"] = format!("ADV{n}").into();
    doc["lastUpdateTimeStamp"] = at.clone().into();
    doc["LastUpdateTimeStamp"] = at.into();
    doc["incidentComponent"] = serde_json::json!([{
        "incidentTypeInternalText": CRIME_TEXTS[d.crime],
        "incidentTypeCommonRegistryText": CRIME_TEXTS[d.crime],
        "incidentStatusInternalText": ["DISPATCHED"],
    }]);
    doc["locationComponent"] = serde_json::json!([{
        "locationTypeDescriptionRegistryText": "Incident",
        "locationByValue": "<presence><gml:pos>36.1627 -86.7816</gml:pos></presence>",
    }]);
    let Some((s, leaf, replace)) = &d.plant else { return (doc, None) };
    let text = spell(s);
    match leaf {
        None => doc["incidentComponent"].as_array_mut().unwrap().push(serde_json::json!({
            "incidentTypeCommonRegistryText": [CRIME_TEXTS[d.crime], text.clone()],
        })),
        Some(i) => {
            let mut paths = Vec::new();
            string_paths(&doc, &mut Vec::new(), &mut paths);
            let path = &paths[i % paths.len()];
            let v = at_path(&mut doc, path);
            let old = v.as_str().unwrap_or_default().to_string();
            *v = if *replace { text.clone().into() } else { format!("{old} {text}").into() };
        }
    }
    (doc, Some(text))
}

/// The oracle's own walk: a string of the document holds a planted text.
fn names_planted(v: &serde_json::Value, planted: &[String]) -> bool {
    match v {
        serde_json::Value::String(s) => planted.iter().any(|p| s.contains(p.as_str())),
        serde_json::Value::Array(a) => a.iter().any(|x| names_planted(x, planted)),
        serde_json::Value::Object(m) => {
            m.iter().any(|(k, x)| planted.iter().any(|p| k.contains(p.as_str())) || names_planted(x, planted))
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 2, ..ProptestConfig::default() })]

    #[test]
    fn no_configuration_starts_a_camera_for_an_eido_incident_that_named_a_blocked_type(
        (table, policy_text) in table_and_policy(),
        incidents in docs(),
    ) {
        let mut bytes = Vec::new();
        let mut planted = Vec::new();
        for (n, revisions) in incidents.iter().enumerate() {
            let mut t = n as i64 * 7;
            for d in revisions {
                t += i64::from(d.gap_s);
                let (doc, text) = document(d, n, t);
                planted.extend(text);
                bytes.push(serde_json::to_vec(&doc).unwrap());
            }
        }
        // The table's code rules map the crimes' texts (EIDO's codes are its registry texts).
        let csv_like = format!("c\n{}\n", CRIME_TEXTS.join("\n"));
        let profile = CsvProfile::from_toml(
            "name = \"p\"\nagency_id = \"metro\"\ntime_zone = \"UTC\"\ntimestamp_format = \"rfc3339\"\n[columns]\n\
             incident_id = \"c\"\ntype_code = \"c\"\nlatitude = \"c\"\nlongitude = \"c\"\n[lifecycle]\ncreated = \"c\"\n",
        ).unwrap();
        let table_text = table_toml(&table, &profile, &csv_like);
        let Ok(codes) = CodeTable::from_toml(&table_text) else { return Ok(()) };
        let j = BTreeMap::from([("metro".to_string(), SQUARE.to_string())]);
        let Ok(config) = PolicyConfig::from_toml(&policy_text) else { return Ok(()) };
        let Ok(policy) = Policy::new(config, &[codes], &j) else { return Ok(()) };
        let opts = DecodeOptions { agency_id: Some("metro".into()), ..DecodeOptions::default() };
        let mut events = Vec::new();
        let mut rows = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            // The oracle parses the raw bytes itself.
            let raw: serde_json::Value = serde_json::from_slice(b).unwrap();
            let id = raw["incidentTrackingIdentifier"].as_str().unwrap_or_default().trim().to_string();
            rows.push((("metro".to_string(), id), names_planted(&raw, &planted)));
            let decoded = eido::decode(b, &opts);
            events.extend(decoded.events.into_iter().map(|d| (i, d.event)));
        }
        let plain: Vec<CallForService> = events.iter().map(|(_, e)| e.clone()).collect();
        let cams = cameras(&plain);
        let what = || format!("table:\n{table_text}\npolicy:\n{policy_text}\nplanted: {planted:?}");
        check(&mut Engine::new(policy), &events, &rows, &cams, &what)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The tools themselves.

/// The spellings the generator writes are what they should be, and the oracle finds them.
#[test]
fn the_generator_spells_and_the_oracle_reads_the_raw_bytes() {
    let s = |entry, form, class, at| spell(&Spelling { entry, form, class, at, context: 0, lower: false });
    assert_eq!(s(0, None, 0, 0), "PROTEST");
    assert_eq!(s(0, None, 4, 0), "PR07357");
    assert_eq!(s(18, Some(0), 4, 0), "1ST 4M3NDM3N7");
    assert_eq!(s(0, None, 5, 1), "PRO-TEST");
    assert_eq!(s(21, None, 6, 1), "I.C.E");
    assert_eq!(s(0, None, 3, 1), "P&#x52;OTEST");
    let incidents = vec![vec![
        Revision { row: 0, plant: None, gap_s: 1, duplicate: false },
        Revision {
            row: 1,
            plant: Some((Spelling { entry: 0, form: None, class: 0, at: 0, context: 0, lower: false }, 9, false)),
            gap_s: 1,
            duplicate: false,
        },
    ]];
    let (csv_text, planted, _) = export_csv(&incidents);
    let profile =
        CsvProfile::from_toml(&std::fs::read_to_string(shared("config/profiles/nashville-mnpd.toml")).unwrap())
            .unwrap();
    let rows = oracle(&csv_text, &profile, &planted);
    assert_eq!(rows.iter().map(|(_, b)| *b).collect::<Vec<_>>(), [false, true]);
}

/// Every spelling class of every entry, with every context, is read as blocked (a direct check of what the
/// property tests draw from).
#[test]
fn every_generated_spelling_is_blocked() {
    let mut missed = Vec::new();
    for (entry, (_, forms)) in NEVER.iter().enumerate() {
        for form in std::iter::once(None).chain((0..forms.len()).map(Some)) {
            for class in 0..10 {
                for at in 0..6 {
                    for lower in [false, true] {
                        let s = spell(&Spelling { entry, form, class, at, context: 0, lower });
                        if trigger_core::vocabulary::blocked_in(&s).is_none() {
                            missed.push(s);
                        }
                    }
                }
            }
        }
    }
    missed.sort();
    missed.dedup();
    assert!(missed.is_empty(), "{} spellings not blocked: {missed:?}", missed.len());
}

/// Over-blocking on the real export: every value of every row, each read as the raw scan reads it. The
/// export has no protest calls; any block here is a call lost to a word read wrongly, listed with its field.
#[test]
fn no_value_of_the_real_export_is_blocked() {
    let path = shared("../shared/data/cad/nashville_mnpd_calls_2024_sample.csv");
    let text = std::fs::read_to_string(&path).unwrap().trim_start_matches("ï»¿").to_string();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut blocked = std::collections::BTreeSet::new();
    let mut values = 0;
    for row in r.records().map(Result::unwrap) {
        for (i, v) in row.iter().enumerate() {
            values += 1;
            if let Some((_, term)) = trigger_core::vocabulary::blocked_in(v) {
                blocked.insert((h[i].clone(), v.to_string(), term));
            }
        }
    }
    // Each row's bytes read whole, as the scan also reads them.
    for line in text.lines().skip(1) {
        let mut scanner = trigger_core::Scanner::default();
        scanner.raw("(row)", line.as_bytes());
        if let Some(b) = scanner.finish() {
            blocked.insert(("(row)".into(), line.to_string(), Box::leak(b.term.into_boxed_str())));
        }
    }
    assert!(values > 500_000, "{values} values");
    assert!(blocked.is_empty(), "blocked: {blocked:?}");
}

/// JSONL: a blocked text in any field, known or not, is the verdict; the value itself does not travel.
#[test]
fn a_jsonl_line_is_read_whole() {
    let line = br#"{"incident_id":"1","agency_id":"metro","revision":1,"status":"new","call_type_code":"70","call_type_text":"BURGLARY","location":{"lat":36.1,"lon":-86.7},"received_at":1,"emitted_at":1,"notes":"caller says PR0TESTERS outside"}"#;
    let ev = trigger_cad::jsonl::decode_line(line, &DecodeOptions::default()).unwrap();
    let b = ev.blocked.clone().expect("blocked");
    assert_eq!(b.field, "notes");
    let wire = pb::to_pb(&ev).encode_to_vec();
    assert!(!String::from_utf8_lossy(&wire).contains("caller"));
    assert_eq!(pb::decode_one(&wire, &DecodeOptions::default()).unwrap().blocked, Some(b));
}

/// Records a parser reads only in part still block: a repeated JSON key, nesting past the parser's depth, a
/// lone surrogate, a syntax error; a repeated or unknown protobuf field.
#[test]
fn what_a_parser_drops_is_read_all_the_same() {
    let opts = DecodeOptions::default();
    let good = r#""incident_id":"J1","agency_id":"metro","revision":1,"status":"new","call_type_code":"83","call_type_text":"SHOTS FIRED","location":{"lat":36.2,"lon":-86.8},"received_at":1720160000000,"emitted_at":1720160000000"#;
    let deep = format!("{}\"PROTEST\"{}", "[".repeat(200), "]".repeat(200));
    for line in [
        format!(r#"{{{good},"notes":"PROTEST","notes":"ok"}}"#),
        format!(r#"{{{good},"x":{deep}}}"#),
        format!(r#"{{{good},"x":"\ud800PROTEST"}}"#),
        format!(r#"{{{good},"x":"PROTEST",}}"#),
    ] {
        let ev = trigger_cad::jsonl::decode_line(line.as_bytes(), &opts).unwrap_or_else(|r| panic!("{line}: {r:?}"));
        assert!(ev.blocked.is_some(), "{line}");
        assert_eq!(ev.incident_id, "J1");
    }
    let shots: CallForService = serde_json::from_str(&format!("{{{good}}}")).unwrap();
    let protest = CallForService { call_type_text: "PROTEST".into(), ..shots.clone() };
    // Two encodings back to back are one message whose later fields win: the wire still says PROTEST.
    let mut wire = pb::to_pb(&protest).encode_to_vec();
    wire.extend(pb::to_pb(&shots).encode_to_vec());
    let ev = pb::decode_one(&wire, &opts).unwrap();
    assert_eq!(ev.call_type_text, "SHOTS FIRED");
    assert!(ev.blocked.is_some());
    // An unknown field holding text.
    let mut wire = pb::to_pb(&shots).encode_to_vec();
    wire.extend([0x9a, 0x06, 7]);
    wire.extend(b"PROTEST");
    assert!(pb::decode_one(&wire, &opts).unwrap().blocked.is_some());
    // A document whose JSON is refused, naming its incident.
    let eido = br#"{"incidentTrackingIdentifier":"E1","incidentComponent":[{"incidentTypeInternalText":"PROTEST"}],}"#;
    let d = eido::decode(eido, &DecodeOptions { agency_id: Some("metro".into()), ..DecodeOptions::default() });
    assert_eq!((d.events.len(), d.events[0].event.incident_id.as_str()), (1, "E1"));
}

/// A CSV delimiter is punctuation: a letter would cut words out of the CAD's text.
#[test]
fn a_delimiter_that_is_a_letter_is_refused() {
    let p = "name = \"p\"\nagency_id = \"a\"\ntime_zone = \"UTC\"\ntimestamp_format = \"rfc3339\"\ndelimiter = \"P\"\n\
             [columns]\nincident_id = \"id\"\ntype_text = \"t\"\nlatitude = \"la\"\nlongitude = \"lo\"\n[lifecycle]\ncreated = \"c\"\n";
    assert!(CsvProfile::from_toml(p).unwrap_err().to_string().contains("delimiter"));
}
