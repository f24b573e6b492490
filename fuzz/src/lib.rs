//! What every fuzz target shares: the shipped policy (compiled in), a fixed camera layout, and `decide_all`,
//! which decides decoded events twice — at a fixed clock and at `now = emitted_at` (the replay's clock) — and
//! checks what must hold whatever the input: no panic, no overflow (targets build with overflow checks), no
//! START for a blocked type, no command that expires before it is issued, none for a camera not in the layout.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use trigger_core::{
    Action, CallForService, CameraRecord, Category, CodeTable, Consent, Decision, Engine, Millis, Outcome, Policy,
    PolicyConfig,
};

/// The fixed clock: 2024-07-03T09:46:40Z.
pub const T: Millis = 1_720_000_000_000;

pub const POLICY: &str = include_str!("../../config/policy.toml");
pub const TABLES: [&str; 3] = [
    include_str!("../../config/codes/nashville-mnpd.toml"),
    include_str!("../../config/codes/apco-2.103.toml"),
    include_str!("../../config/codes/california.toml"),
];
pub const NASHVILLE: &str = include_str!("../../config/jurisdictions/nashville-mnpd.geojson");
pub const ALLEGHENY: &str = include_str!("../../config/jurisdictions/allegheny.geojson");
pub const PROFILE_NASHVILLE: &str = include_str!("../../config/profiles/nashville-mnpd.toml");
pub const PROFILE_EXAMPLE: &str = include_str!("../../config/profiles/example-city.toml");
pub const SAMPLE: &str = include_str!("../../fixtures/nashville-mnpd-2024-07-01_07.csv");
/// The header rows of the two shipped CSV profiles' exports.
pub const HEADER_NASHVILLE: &str = "OBJECTID,Event Number,Complaint Number,Tencode,Tencode Description,Tencode Suffix,Tencode Suffix Description,Disposition Code,Disposition Description,Block,Street Name,Unit Dispatched,Shift,Sector,Zone,Latitude,Longitude,RPA,Call_Received";
pub const HEADER_EXAMPLE_CITY: &str = "incident_number,agency,initial_type,final_type,priority,location,created_at,dispatched_at,onscene_at,closed_at,caller_name,caller_phone,narrative";

pub fn tables() -> &'static [CodeTable] {
    static T: OnceLock<Vec<CodeTable>> = OnceLock::new();
    T.get_or_init(|| TABLES.iter().map(|t| CodeTable::from_toml(t).expect("shipped table")).collect())
}

/// Jurisdictions by agency id: the shipped ones, and Nashville's for any other agency a fuzzed policy names.
pub fn jurisdictions(cfg: &PolicyConfig) -> BTreeMap<String, String> {
    cfg.agencies
        .iter()
        .map(|a| {
            let j = if a.id == "psap.allegheny.pa.us" { ALLEGHENY } else { NASHVILLE };
            (a.id.clone(), j.to_string())
        })
        .collect()
}

pub fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let cfg = PolicyConfig::from_toml(POLICY).expect("shipped policy");
        let j = jurisdictions(&cfg);
        Policy::new(cfg, tables(), &j).expect("shipped policy")
    })
}

/// A grid of cameras around the Nashville sample's centre and the Allegheny EIDO samples, every consent shape.
pub fn cameras() -> &'static [CameraRecord] {
    static C: OnceLock<Vec<CameraRecord>> = OnceLock::new();
    C.get_or_init(|| {
        let mut out = Vec::new();
        for (n, (lat, lon)) in [(36.16, -86.78), (40.4414, -80.0003)].into_iter().enumerate() {
            for i in 0..40 {
                let cats: Vec<Category> =
                    Category::ALL.iter().copied().filter(|c| (*c as usize + i) % 3 != 0).collect();
                out.push(CameraRecord {
                    camera_id: format!("cam-{n}-{i:02}"),
                    owner_ref: format!("own-{n}-{i:02}"),
                    lat: lat + (i as f64 - 20.0) * 0.0007,
                    lon: lon + ((i * 7) % 11) as f64 * 0.0006,
                    consent: Consent {
                        categories: cats.into_iter().collect(),
                        max_radius_m: [100.0, 250.0, 500.0][i % 3],
                        quiet_hours: None,
                        daily_cap: 1 + (i % 4) as u32,
                        live_stream_allowed: i % 5 == 0,
                    },
                    online: i % 9 != 0,
                    updated_at: 0,
                });
            }
        }
        out
    })
}

/// What must hold of any decision.
pub fn check(d: &Decision, cams: &[CameraRecord]) {
    for c in &d.commands {
        assert!(c.expires_at >= c.issued_at, "a command that expires before it is issued: {c:?}");
        assert!(cams.iter().any(|k| k.camera_id == c.camera_id) || c.action == Action::Stop, "unknown camera {c:?}");
    }
    if matches!(d.record.outcome, Outcome::BlockedType | Outcome::Uncorroborated) {
        assert!(d.commands.iter().all(|c| c.action == Action::Stop), "a START for a blocked or uncorroborated type: {d:?}");
    }
}

/// The most events one input decides: the decoders see every record, the engine the first few (what an
/// input can do to the engine, a few events show; more would only slow the search down).
pub const MAX_DECIDED: usize = 6;

/// Decide `events` in order with a fresh engine of `policy`, at a fixed clock and at the events' own times.
pub fn decide_with(policy: &Policy, events: &[CallForService]) {
    let cams = cameras();
    for at_event_time in [false, true] {
        let mut e = Engine::new(policy.clone());
        for ev in events.iter().take(MAX_DECIDED) {
            let now = if at_event_time { ev.emitted_at } else { T };
            if let Ok(d) = e.decide(ev, cams, now) {
                check(&d, cams);
            }
        }
    }
}

/// [`decide_with`] the shipped policy.
pub fn decide_all(events: &[CallForService]) {
    decide_with(policy(), events)
}

/// A few events the fuzzed configuration targets decide: each of the sample's call types, in order.
pub fn sample_events() -> &'static [CallForService] {
    static E: OnceLock<Vec<CallForService>> = OnceLock::new();
    E.get_or_init(|| {
        let p = trigger_cad::CsvProfile::from_toml(PROFILE_NASHVILLE).expect("shipped profile");
        let head: String = SAMPLE.lines().take(120).collect::<Vec<_>>().join("\n");
        let d = trigger_cad::csv_profile::decode(head.as_bytes(), &p, &Default::default()).expect("sample");
        let mut evs: Vec<CallForService> = d.events.into_iter().map(|e| e.event).collect();
        evs.sort_by_key(|e| e.emitted_at);
        evs
    })
}

/// Decide what a decoder produced, in event-time order (as a replay does).
pub fn decide_decoded(d: trigger_cad::Decoded) {
    let mut events: Vec<CallForService> = d.events.into_iter().map(|e| e.event).collect();
    events.sort_by_key(|e| e.emitted_at);
    decide_all(&events);
}

/// Rows of a city export (`body`, after the export's fixed `header`) through `profile`, decoded and decided.
pub fn csv_rows(profile: &trigger_cad::CsvProfile, header: &str, body: &[u8]) {
    if let Ok(d) = trigger_cad::csv_profile::decode(&csv_with_header(header, body), profile, &Default::default()) {
        decide_decoded(d);
    }
}

/// The CSV header of a profile's export, so CSV targets fuzz the rows, not the header.
pub fn csv_with_header(header: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + 1 + body.len());
    v.extend_from_slice(header.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}
