//! Behaviour of the planner: consent, scope, incident lifecycle, latency budget, rejects.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use trigger_core::*;

const T0: Millis = 1_720_000_000_000; // 2024-07-03T09:46:40Z (04:46 in Chicago)
const LAT: f64 = 36.16;
const LON: f64 = -86.78;

fn policy_with(extra: &str) -> Policy {
    let cfg = PolicyConfig::from_toml(&format!(
        r#"
max_cameras = 3
radius_cap_m = 400
incident_ref_key = "test-key"
{extra}
[categories.burglary]
radius_m = 200
record_seconds = 600
live_stream = true
[categories.robbery]
radius_m = 300
record_seconds = 300
[categories.alarm]
enabled = false
radius_m = 100
record_seconds = 60
[[agency]]
id = "metro"
code_tables = ["t"]
jurisdiction = "square.geojson"
"#
    ))
    .unwrap();
    let table = CodeTable::from_toml(
        r#"
name = "t"
[alarm]
text = ["ALARM"]
[[rule]]
code = "70"
label = "BURGLARY - RESIDENCE"
category = "burglary"
[[rule]]
code = "53"
label = "HOLDUP / ROBBERY"
category = "robbery"
[[rule]]
code = "93"
category = "none"
"#,
    )
    .unwrap();
    // A square of about 22 km around the test point.
    let square = r#"{"type":"Polygon","coordinates":[[[-86.9,36.06],[-86.66,36.06],[-86.66,36.26],[-86.9,36.26],[-86.9,36.06]]]}"#;
    let j = BTreeMap::from([("metro".to_string(), square.to_string())]);
    Policy::new(cfg, &[table], &j).unwrap()
}

fn engine() -> Engine {
    Engine::new(policy_with(""))
}

fn consent(cats: &[Category]) -> Consent {
    Consent {
        categories: cats.iter().copied().collect(),
        max_radius_m: 500.0,
        quiet_hours: None,
        daily_cap: 10,
        live_stream_allowed: false,
    }
}

/// A camera `north_m` metres north of the incident.
fn cam(id: &str, north_m: f64) -> CameraRecord {
    CameraRecord {
        camera_id: id.into(),
        owner_ref: format!("owner-{id}"),
        lat: LAT + north_m / 111_195.0,
        lon: LON,
        consent: consent(&[Category::Burglary, Category::Robbery]),
        online: true,
        updated_at: 0,
    }
}

/// The type text a CAD sends with each code of the test table (the evidence a START needs).
fn text_of(code: &str) -> &'static str {
    match code {
        "70" => "BURGLARY - RESIDENCE",
        "53" => "HOLDUP / ROBBERY",
        "93" => "TRAFFIC VIOLATION",
        _ => "",
    }
}

fn ev(rev: u32, status: Status, code: &str, at: Millis) -> CallForService {
    CallForService {
        incident_id: "PD1".into(),
        agency_id: "metro".into(),
        revision: rev,
        status,
        call_type_code: code.into(),
        call_type_text: text_of(code).into(),
        priority: 1,
        location: Some(Location { lat: LAT, lon: LON, uncertainty_m: 0.0 }),
        received_at: T0,
        emitted_at: at,
        blocked: None,
        type_fields: vec![],
    }
}

fn starts(d: &Decision) -> Vec<&str> {
    d.commands.iter().filter(|c| c.action == Action::Start).map(|c| c.camera_id.as_str()).collect()
}
fn stops(d: &Decision) -> Vec<&str> {
    d.commands.iter().filter(|c| c.action == Action::Stop).map(|c| c.camera_id.as_str()).collect()
}
fn excluded(d: &Decision) -> Vec<(&str, Exclusion)> {
    d.record.excluded.iter().map(|e| (e.camera_id.as_str(), e.reason)).collect()
}

#[test]
fn triggers_nearest_consenting_cameras_and_explains_every_exclusion() {
    let mut e = engine();
    let mut cams = vec![cam("a", 50.0), cam("b", 100.0), cam("c", 150.0), cam("d", 170.0), cam("far", 250.0)];
    cams.push(CameraRecord { consent: consent(&[Category::Robbery]), ..cam("scope", 20.0) });
    cams.push(CameraRecord {
        consent: Consent { max_radius_m: 30.0, ..consent(&[Category::Burglary]) },
        ..cam("radius", 40.0)
    });
    cams.push(CameraRecord { online: false, ..cam("off", 60.0) });
    let d = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(d.record.outcome, Outcome::Triggered);
    assert_eq!(d.record.category, Some(Category::Burglary));
    assert_eq!(d.record.rule.as_deref(), Some("t:code:70"));
    assert_eq!(d.record.radius_m, Some(200.0));
    assert_eq!(starts(&d), ["a", "b", "c"], "nearest first, at most k = 3");
    assert_eq!(
        excluded(&d),
        [
            ("scope", Exclusion::OutOfScopeCategory),
            ("radius", Exclusion::BeyondOwnerRadius),
            ("off", Exclusion::Offline),
            ("d", Exclusion::KCap)
        ]
    );
    assert!(!d.record.excluded.iter().any(|x| x.camera_id == "far"), "outside the radius is not a candidate");
    assert_eq!(d.notices.len(), 3);
    assert!(d.notices.iter().all(|n| n.area_h3 == d.record.area_h3.clone().unwrap()));
    // Live stream: category allows it, these owners did not.
    assert!(d.commands.iter().all(|c| !c.live_stream && c.record_seconds == 600));
    assert!(d.commands.iter().all(|c| c.expires_at == T0 + 30_000));
}

#[test]
fn live_stream_only_where_owner_allowed() {
    let mut e = engine();
    let mut yes = cam("yes", 10.0);
    yes.consent.live_stream_allowed = true;
    let cams = vec![yes, cam("no", 20.0)];
    let d = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    let live: Vec<_> = d.commands.iter().map(|c| (c.camera_id.as_str(), c.live_stream)).collect();
    assert_eq!(live, [("yes", true), ("no", false)]);
    // Robbery policy has no live stream: even a willing owner gets none.
    let mut e = engine();
    let d = e.decide(&ev(1, Status::New, "53", T0), cams.as_slice(), T0).unwrap();
    assert!(d.commands.iter().all(|c| !c.live_stream));
}

#[test]
fn quiet_hours_follow_the_owner_time_zone() {
    let mut e = engine();
    // T0 is 04:46 in Chicago and 09:46 in UTC.
    let mut chicago = cam("chi", 10.0);
    chicago.consent.quiet_hours = Some(QuietHours {
        start: MinuteOfDay::parse("22:00").unwrap(),
        end: MinuteOfDay::parse("07:00").unwrap(),
        time_zone: chrono_tz::America::Chicago,
    });
    let mut utc = chicago.clone();
    utc.camera_id = "utc".into();
    utc.consent.quiet_hours.as_mut().unwrap().time_zone = chrono_tz::UTC;
    let cams = vec![chicago, utc];
    let d = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d), ["utc"]);
    assert_eq!(excluded(&d), [("chi", Exclusion::QuietHours)]);
}

#[test]
fn daily_cap_counts_starts_per_owner_day() {
    let mut e = engine();
    let mut c = cam("c", 10.0);
    c.consent.daily_cap = 2;
    let cams = vec![c];
    for (i, expect) in [(1, true), (2, true), (3, false)] {
        let mut x = ev(1, Status::New, "70", T0 + i);
        x.incident_id = format!("PD{i}");
        let d = e.decide(&x, cams.as_slice(), T0 + i).unwrap();
        assert_eq!(!starts(&d).is_empty(), expect, "incident {i}");
        if !expect {
            assert_eq!(excluded(&d), [("c", Exclusion::DailyCap)]);
        }
    }
    // Next UTC day (no quiet-hours zone): the cap resets.
    let day = 86_400_000;
    let mut x = ev(1, Status::New, "70", T0 + day);
    x.incident_id = "PD4".into();
    x.received_at = T0 + day;
    assert_eq!(starts(&e.decide(&x, cams.as_slice(), T0 + day).unwrap()), ["c"]);
}

#[test]
fn later_revisions_only_add_cameras_and_close_stops_active_ones() {
    let mut e = engine();
    let mut cams = vec![cam("a", 50.0)];
    let d1 = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d1), ["a"]);
    cams.push(cam("b", 60.0));
    let d2 = e.decide(&ev(2, Status::Dispatched, "70", T0 + 10_000), cams.as_slice(), T0 + 10_000).unwrap();
    assert_eq!(d2.record.outcome, Outcome::Extended);
    assert_eq!(starts(&d2), ["b"], "a is not started twice");
    let d3 = e.decide(&ev(3, Status::OnScene, "70", T0 + 20_000), cams.as_slice(), T0 + 20_000).unwrap();
    assert_eq!(d3.record.outcome, Outcome::NoNewCamera);
    assert!(d3.commands.is_empty());
    let d4 = e.decide(&ev(4, Status::Closed, "70", T0 + 30_000), cams.as_slice(), T0 + 30_000).unwrap();
    assert_eq!(d4.record.outcome, Outcome::Closed);
    assert_eq!(stops(&d4), ["a", "b"]);
    assert!(d4.record.commanded.iter().all(|c| c.stop_reason == Some(StopReason::IncidentClosed)));
}

#[test]
fn close_after_recording_ended_sends_nothing() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    let later = T0 + 601_000;
    let d = e.decide(&ev(2, Status::Closed, "70", later), cams.as_slice(), later).unwrap();
    assert!(d.commands.is_empty());
}

#[test]
fn reclassification_into_a_trigger_category_triggers_on_that_revision() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    let d1 = e.decide(&ev(1, Status::New, "93", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(d1.record.outcome, Outcome::NotTriggerType);
    let d2 = e.decide(&ev(2, Status::Updated, "53", T0 + 5_000), cams.as_slice(), T0 + 5_000).unwrap();
    assert_eq!(d2.record.outcome, Outcome::Triggered);
    assert_eq!(d2.record.category, Some(Category::Robbery));
    assert_eq!(starts(&d2), ["a"]);
}

#[test]
fn reclassification_out_of_scope_stops_cameras() {
    let mut e = engine();
    let mut robbery_only = cam("r", 10.0);
    robbery_only.consent = consent(&[Category::Robbery]);
    let cams = vec![cam("a", 50.0), robbery_only];
    let d1 = e.decide(&ev(1, Status::New, "53", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d1), ["r", "a"]);
    // Robbery -> burglary: "r" consented to robbery only and must stop.
    let d2 = e.decide(&ev(2, Status::Updated, "70", T0 + 1000), cams.as_slice(), T0 + 1000).unwrap();
    assert_eq!(stops(&d2), ["r"]);
    assert_eq!(d2.record.commanded[0].stop_reason, Some(StopReason::ConsentWithdrawn));
    // -> a blocked type: everything stops.
    let mut x = ev(3, Status::Updated, "", T0 + 2000);
    x.call_type_text = "CIVIL UNREST".into();
    let d3 = e.decide(&x, cams.as_slice(), T0 + 2000).unwrap();
    assert_eq!(d3.record.outcome, Outcome::BlockedType);
    assert_eq!(stops(&d3), ["a"]);
}

#[test]
fn a_code_or_a_label_alone_starts_nothing_the_cads_own_words_must_corroborate() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    // Code 70 maps to burglary and its label says BURGLARY, but the CAD sent no type text.
    let mut x = ev(1, Status::New, "70", T0);
    x.call_type_text.clear();
    let d1 = e.decide(&x, cams.as_slice(), T0).unwrap();
    assert_eq!(d1.record.outcome, Outcome::Uncorroborated);
    assert_eq!(d1.record.category, Some(Category::Burglary), "the claimed category is audited");
    assert!(d1.commands.is_empty());
    // Text that names another category does not corroborate this one.
    let mut y = ev(2, Status::Updated, "70", T0 + 1000);
    y.call_type_text = "REPORT TO FOLLOW / SHOTS FIRED".into();
    assert_eq!(e.decide(&y, cams.as_slice(), T0 + 1000).unwrap().record.outcome, Outcome::Uncorroborated);
    // The CAD's words arrive on a later revision: that revision starts the camera.
    let z = ev(3, Status::Updated, "70", T0 + 2000);
    let d3 = e.decide(&z, cams.as_slice(), T0 + 2000).unwrap();
    assert_eq!(d3.record.outcome, Outcome::Triggered);
    assert_eq!(d3.record.type_text, "BURGLARY - RESIDENCE");
    assert_eq!(starts(&d3), ["a"]);
    // And uncorroborated again: the camera stops, as for any reclassification out of the categories.
    let d4 = e.decide(&x_at(&x, 4, T0 + 3000), cams.as_slice(), T0 + 3000).unwrap();
    assert_eq!(d4.record.outcome, Outcome::Uncorroborated);
    assert_eq!(stops(&d4), ["a"]);
}

fn x_at(x: &CallForService, rev: u32, at: Millis) -> CallForService {
    CallForService { revision: rev, emitted_at: at, ..x.clone() }
}

#[test]
fn once_an_incident_named_a_blocked_type_no_later_revision_starts_and_cameras_stop() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0), cam("b", 80.0)];
    let d1 = e.decide(&ev(1, Status::New, "53", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d1), ["a", "b"]);
    let mut protest = ev(2, Status::Updated, "53", T0 + 1000);
    protest.call_type_text = "HOLDUP / ROBBERY AT PUBLIC GATHERING".into();
    let d2 = e.decide(&protest, cams.as_slice(), T0 + 1000).unwrap();
    assert_eq!(d2.record.outcome, Outcome::BlockedType);
    assert_eq!(stops(&d2), ["a", "b"], "every camera still recording stops at that revision");
    // Reclassified to a robbery again, with honest text: still blocked, and the record names the rule.
    let mut later = cams.clone();
    later.push(cam("c", 20.0));
    let d3 = e.decide(&ev(3, Status::Updated, "53", T0 + 2000), later.as_slice(), T0 + 2000).unwrap();
    assert_eq!(d3.record.outcome, Outcome::BlockedType);
    assert!(d3.commands.is_empty(), "{:?}", d3.commands);
    assert_eq!(
        d3.record.rule.as_deref(),
        Some("sticky:builtin:first_amendment:GATHERING@revision:2"),
        "{:?}",
        d3.record
    );
    // An incident blocked before it started anything needs no camera for any later revision.
    let mut fresh = ev(1, Status::New, "53", T0);
    (fresh.incident_id, fresh.call_type_text) = ("PD2".into(), "ROBBERY / IMMIGRATION ENFORCEMENT".into());
    e.decide(&fresh, cams.as_slice(), T0).unwrap();
    let next = CallForService { incident_id: "PD2".into(), ..ev(2, Status::Updated, "53", T0 + 1000) };
    assert!(!e.may_use_cameras(&next));
    // Sticky across a changelog restore too.
    let snap = e.snapshot_incident("metro", "PD1").unwrap();
    let mut other = engine();
    other.restore_incident(snap);
    let d4 = other.decide(&ev(4, Status::Updated, "53", T0 + 3000), later.as_slice(), T0 + 3000).unwrap();
    assert_eq!(d4.record.outcome, Outcome::BlockedType);
}

#[test]
fn every_record_names_the_classification_in_force() {
    let mut e = engine();
    let d = e.decide(&ev(1, Status::New, "70", T0), [].as_slice(), T0).unwrap();
    let digest = d.record.classification.clone();
    assert!(digest.starts_with("cls_") && digest.len() == 36, "{digest}");
    assert_eq!(digest, e.policy().classification_digest("metro"));
    // Another input mapping, or another table, is another classification.
    let mut p = policy_with("");
    p.set_input_mapping("csv profile x: type_text = [\"Disposition\"]");
    assert_ne!(p.classification_digest("metro"), digest);
    assert_ne!(policy_with("").classification_digest("metro"), policy_with("").classification_digest("nobody"));
    let doc = e.policy().classification("metro");
    assert!(doc["vocabulary"]["blocked"].as_array().is_some_and(|b| !b.is_empty()));
    assert_eq!(doc["tables"][0]["name"], "t");
}

#[test]
fn blocked_types_never_trigger() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    for (i, text) in
        ["CIVIL UNREST; REQUEST MUTUAL AID", "PROTEST", "IMMIGRATION ENFORCEMENT ASSIST"].iter().enumerate()
    {
        let mut x = ev(1, Status::New, "70", T0);
        x.incident_id = format!("B{i}");
        x.call_type_text = text.to_string();
        let d = e.decide(&x, cams.as_slice(), T0).unwrap();
        assert_eq!(d.record.outcome, Outcome::BlockedType, "{text}");
        assert!(d.commands.is_empty());
    }
}

#[test]
fn alarm_calls_are_their_own_category_and_off_by_default() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    let mut x = ev(1, Status::New, "70", T0);
    x.call_type_text = "BURGLARY - RESIDENCE / ALARM".into();
    let d = e.decide(&x, cams.as_slice(), T0).unwrap();
    assert_eq!(d.record.category, Some(Category::Alarm));
    assert_eq!(d.record.outcome, Outcome::CategoryDisabled);
    assert!(d.commands.is_empty());
}

#[test]
fn stale_events_trigger_nothing_but_closes_still_stop() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    let late = T0 + 121_000;
    let d = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), late).unwrap();
    assert_eq!(d.record.outcome, Outcome::RefusedStale);
    assert!(d.commands.is_empty());
    assert_eq!(d.record.latencies.received_to_decided_ms, 121_000);
    let ok = T0 + 120_000;
    let mut x = ev(1, Status::New, "70", T0);
    x.incident_id = "fresh".into();
    assert_eq!(e.decide(&x, cams.as_slice(), ok).unwrap().record.outcome, Outcome::Triggered);
    let d = e.decide(&ev(2, Status::Closed, "70", T0 + 200_000), cams.as_slice(), T0 + 200_000).unwrap();
    assert!(d.commands.is_empty(), "PD1 never started anything");
    let mut c = ev(2, Status::Closed, "70", T0 + 200_000);
    c.incident_id = "fresh".into();
    assert_eq!(stops(&e.decide(&c, cams.as_slice(), T0 + 200_000).unwrap()), ["a"]);
}

#[test]
fn radius_widens_with_uncertainty_up_to_the_cap() {
    let mut e = engine();
    let cams = vec![cam("a", 290.0), cam("b", 390.0), cam("c", 450.0)];
    let mut x = ev(1, Status::New, "70", T0);
    x.location.as_mut().unwrap().uncertainty_m = 100.0;
    let d = e.decide(&x, cams.as_slice(), T0).unwrap();
    assert_eq!(d.record.radius_m, Some(300.0));
    assert_eq!(starts(&d), ["a"]);
    let mut x = ev(1, Status::New, "70", T0);
    x.incident_id = "wide".into();
    x.location.as_mut().unwrap().uncertainty_m = 5000.0;
    let d = e.decide(&x, cams.as_slice(), T0).unwrap();
    assert_eq!(d.record.radius_m, Some(400.0), "capped");
    assert_eq!(starts(&d), ["a", "b"]);
}

#[test]
fn jurisdiction_and_partnership() {
    let mut e = engine();
    // A camera just across the jurisdiction's northern edge, near an incident just inside it.
    let edge = 36.26;
    let inside = CameraRecord { lat: edge - 0.0005, ..cam("in", 0.0) };
    let outside = CameraRecord { lat: edge + 0.0005, ..cam("out", 0.0) };
    let cams = vec![inside, outside];
    let mut x = ev(1, Status::New, "70", T0);
    x.location = Some(Location { lat: edge - 0.0001, lon: LON, uncertainty_m: 0.0 });
    let d = e.decide(&x, cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d), ["in"]);
    assert_eq!(excluded(&d), [("out", Exclusion::OutsideJurisdiction)]);
    let mut x = ev(1, Status::New, "70", T0);
    x.incident_id = "elsewhere".into();
    x.location = Some(Location { lat: 40.0, lon: -80.0, uncertainty_m: 0.0 });
    assert_eq!(e.decide(&x, cams.as_slice(), T0).unwrap().record.outcome, Outcome::OutsideJurisdiction);
    let mut x = ev(1, Status::New, "70", T0);
    x.agency_id = "stranger".into();
    let d = e.decide(&x, cams.as_slice(), T0).unwrap();
    assert_eq!(d.record.outcome, Outcome::NotPartner);
    assert!(d.commands.is_empty());
}

#[test]
fn bad_revisions_and_unknown_types_are_named_rejects() {
    let mut e = engine();
    let cams = vec![cam("a", 50.0)];
    e.decide(&ev(2, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    let r = |e: &mut Engine, x: CallForService| e.decide(&x, cams.as_slice(), T0 + 1).unwrap_err().reason;
    assert_eq!(r(&mut e, ev(2, Status::Updated, "70", T0)), RejectReason::DuplicateRevision);
    assert_eq!(r(&mut e, ev(1, Status::Updated, "70", T0)), RejectReason::OutOfOrderRevision);
    assert_eq!(r(&mut e, ev(3, Status::Updated, "12345", T0)), RejectReason::UnknownCallType);
    assert_eq!(r(&mut e, ev(0, Status::Updated, "70", T0)), RejectReason::InvalidRevision);
    let mut x = ev(5, Status::Updated, "70", T0);
    x.location = Some(Location { lat: 0.0, lon: 0.0, uncertainty_m: 0.0 });
    assert_eq!(r(&mut e, x.clone()), RejectReason::NullIsland);
    x.location = Some(Location { lat: f64::NAN, lon: 1.0, uncertainty_m: 0.0 });
    assert_eq!(r(&mut e, x.clone()), RejectReason::InvalidCoordinates);
    x.location = Some(Location { lat: 91.0, lon: 1.0, uncertainty_m: 0.0 });
    assert_eq!(r(&mut e, x.clone()), RejectReason::InvalidCoordinates);
    x.location = None;
    assert_eq!(r(&mut e, x.clone()), RejectReason::MissingLocation);
    let mut x = ev(5, Status::Updated, "70", T0 + 3_600_000);
    assert_eq!(r(&mut e, x.clone()), RejectReason::TimestampInFuture);
    x.incident_id = " ".into();
    assert_eq!(r(&mut e, x), RejectReason::MissingIncidentId);
    // The good event after all those rejects is still decided.
    assert_eq!(e.decide(&ev(3, Status::Updated, "70", T0 + 1), cams.as_slice(), T0 + 1).unwrap().record.revision, 3);
}

#[test]
fn removed_camera_is_stopped_and_never_started_again() {
    let mut e = engine();
    let mut cams = vec![cam("a", 50.0), cam("b", 60.0)];
    let d = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d), ["a", "b"]);
    cams.retain(|c| c.camera_id != "a"); // tombstone: owner opted out
    let d = e.decide(&ev(2, Status::Updated, "70", T0 + 1000), cams.as_slice(), T0 + 1000).unwrap();
    assert_eq!(stops(&d), ["a"]);
    assert_eq!(d.record.commanded[0].stop_reason, Some(StopReason::CameraRemoved));
    let mut x = ev(1, Status::New, "70", T0 + 2000);
    x.incident_id = "PD2".into();
    let d = e.decide(&x, cams.as_slice(), T0 + 2000).unwrap();
    assert_eq!(starts(&d), ["b"]);
}

#[test]
fn ids_are_deterministic_and_opaque() {
    let a = engine();
    let b = engine();
    let r = a.incident_ref("metro", "PD1");
    assert_eq!(r, b.incident_ref("metro", "PD1"));
    assert!(!r.contains("PD1"));
    assert_ne!(r, a.incident_ref("metro", "PD2"));
    assert_ne!(r, Engine::new(policy_with("")).incident_ref("other", "PD1"));
    assert_eq!(command_id(&r, "cam", Action::Start), command_id(&r, "cam", Action::Start));
    assert_ne!(command_id(&r, "cam", Action::Start), command_id(&r, "cam", Action::Stop));
}

#[test]
fn state_expires_after_ttl() {
    let mut e = Engine::new(policy_with("state_ttl_s = 3600"));
    let cams = vec![cam("a", 50.0)];
    e.decide(&ev(5, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(e.incidents_in_state(), 1);
    e.expire(T0 + 3_600_001);
    assert_eq!(e.incidents_in_state(), 0);
}

#[test]
fn policy_errors_are_reported_together() {
    let cfg = PolicyConfig::from_toml(
        r#"
max_cameras = 0
area_resolution = 20
[categories.burglary]
radius_m = -1
record_seconds = 0
[[agency]]
id = "x"
code_tables = ["missing"]
jurisdiction = "x.geojson"
"#,
    )
    .unwrap();
    let err = Policy::new(cfg, &[], &BTreeMap::new()).err().unwrap();
    assert!(err.0.len() >= 5, "{err}");
    assert!(PolicyConfig::from_toml("unknown_key = 1\n[categories]\n[[agency]]\nid='a'\njurisdiction='j'").is_err());
}

proptest! {
    /// Whatever the registry and the events (within the incident-state TTL), no START ever exceeds the owner's
    /// consent or the policy, and a camera is started at most once per incident.
    #[test]
    fn consent_is_never_exceeded(
        cams in prop::collection::vec((0.0f64..600.0, 0.0f64..6.3, 0u16..256, 0.0f64..600.0, any::<bool>(), 0u32..3, prop::option::of((0u16..1440, 0u16..1440))), 0..40),
        events in prop::collection::vec((0u8..4, prop::sample::select(vec!["70", "53", "93"]), 0i64..21_000_000, 0.0f64..300.0), 1..30),
    ) {
        let registry: Vec<CameraRecord> = cams.iter().enumerate().map(|(i, (r, bearing, cats, max_r, online, cap, quiet))| {
            let mut c = cam(&format!("c{i:02}"), 0.0);
            c.lat = LAT + r * bearing.cos() / 111_195.0;
            c.lon = LON + r * bearing.sin() / (111_195.0 * LAT.to_radians().cos());
            c.consent = Consent {
                categories: Category::ALL.into_iter().filter(|k| cats & (1 << *k as u16) != 0).collect(),
                max_radius_m: *max_r,
                quiet_hours: quiet.map(|(s, e)| QuietHours { start: MinuteOfDay(s), end: MinuteOfDay(e), time_zone: chrono_tz::America::Chicago }),
                daily_cap: *cap,
                live_stream_allowed: i % 2 == 0,
            };
            c.online = *online;
            c
        }).collect();
        let mut e = engine();
        let mut per_incident: HashMap<String, usize> = HashMap::new();
        let mut per_day: HashMap<(String, String), u32> = HashMap::new();
        let mut once = std::collections::HashSet::new();
        let mut sorted = events.clone();
        sorted.sort_by_key(|x| x.2);
        for (n, (inc, code, t, unc)) in sorted.into_iter().enumerate() {
            let now = T0 + t;
            let mut x = ev(n as u32 + 1, Status::Updated, code, now);
            x.incident_id = format!("I{inc}");
            x.received_at = now;
            x.location.as_mut().unwrap().uncertainty_m = unc;
            let Ok(d) = e.decide(&x, registry.as_slice(), now) else { continue };
            for c in d.commands.iter().filter(|c| c.action == Action::Start) {
                let cam = registry.iter().find(|k| k.camera_id == c.camera_id).unwrap();
                let dist = trigger_core::geodesy::distance_m(cam.point(), LatLon::new(LAT, LON));
                prop_assert!(cam.consent.categories.contains(c.category));
                prop_assert!(dist <= cam.consent.max_radius_m);
                prop_assert!(dist <= 400.0);
                prop_assert!(cam.online);
                prop_assert!(!trigger_core::engine::in_quiet_hours(&cam.consent, now));
                prop_assert!(!c.live_stream || cam.consent.live_stream_allowed);
                prop_assert!(c.category != Category::Alarm);
                *per_incident.entry(c.incident_ref.clone()).or_default() += 1;
                prop_assert!(once.insert((c.incident_ref.clone(), c.camera_id.clone())), "START twice");
                let day = chrono::DateTime::from_timestamp_millis(now).unwrap()
                    .with_timezone(&cam.consent.quiet_hours.map_or(chrono_tz::UTC, |q| q.time_zone))
                    .date_naive().to_string();
                let used = per_day.entry((cam.camera_id.clone(), day)).or_default();
                *used += 1;
                prop_assert!(*used <= cam.consent.daily_cap);
            }
        }
        prop_assert!(per_incident.values().all(|n| *n <= 3));
    }
}

proptest! {
    /// `may_use_cameras` is what lets the service skip the registry round trip: wherever it says no, the
    /// decision must not depend on the registry at all. Two engines decide the same events; the second is
    /// given no camera whenever the first's `may_use_cameras` said no. Any decision (or any later one, through
    /// the state it leaves) that did depend on a camera comes out different.
    #[test]
    fn where_may_use_cameras_says_no_the_registry_changes_nothing(
        events in prop::collection::vec((0u8..3, prop::sample::select(vec!["70", "53", "93", "99"]), any::<bool>(), 0u8..4, any::<bool>(), 0i64..2_000_000), 1..40),
    ) {
        let registry: Vec<CameraRecord> = (0..6).map(|i| cam(&format!("c{i}"), 20.0 + 30.0 * i as f64)).collect();
        let (mut a, mut b) = (engine(), engine());
        let mut sorted = events.clone();
        sorted.sort_by_key(|x| x.5);
        let mut said_no = 0;
        for (n, (inc, code, alarm, status, partner, t)) in sorted.into_iter().enumerate() {
            let now = T0 + t;
            let status = [Status::New, Status::Updated, Status::Closed, Status::Cancelled][status as usize];
            let mut x = ev(n as u32 + 1, status, code, now);
            x.incident_id = format!("I{inc}");
            if alarm {
                x.call_type_text = "BURGLARY ALARM".into(); // the alarm category: disabled in this policy
            }
            x.received_at = now;
            if !partner {
                x.agency_id = "elsewhere".into();
            }
            let may = a.may_use_cameras(&x);
            said_no += usize::from(!may);
            let none: &[CameraRecord] = &[];
            let with_b = if may { registry.as_slice() } else { none };
            prop_assert_eq!(a.decide(&x, registry.as_slice(), now), b.decide(&x, with_b, now), "event {} ({:?})", n, x);
        }
        prop_assume!(said_no > 0);
    }
}

#[test]
fn may_use_cameras_only_for_triggers_and_incidents_with_cameras() {
    let mut e = engine();
    let registry = vec![cam("a", 50.0)];
    let open = ev(1, Status::New, "70", T0);
    assert!(e.may_use_cameras(&open), "a trigger type searches for cameras");
    assert!(!e.may_use_cameras(&ev(1, Status::New, "93", T0)), "not a trigger type, nothing started");
    assert!(!e.may_use_cameras(&ev(1, Status::New, "99", T0)), "an unknown type is a reject");
    assert!(!e.may_use_cameras(&ev(1, Status::Closed, "70", T0)), "a close with nothing started");
    let mut stranger = open.clone();
    stranger.agency_id = "elsewhere".into();
    assert!(!e.may_use_cameras(&stranger), "not a partner's");
    assert_eq!(starts(&e.decide(&open, registry.as_slice(), T0).unwrap()), ["a"]);
    assert!(e.may_use_cameras(&ev(2, Status::Closed, "70", T0 + 1000)), "closing stops the camera started");
    assert!(e.may_use_cameras(&ev(2, Status::Updated, "93", T0 + 1000)), "reclassified: stops it too");
}

#[test]
fn a_restored_snapshot_decides_later_revisions_as_the_original_would() {
    let cams = vec![cam("a", 50.0), cam("b", 60.0)];
    let mut c = cam("c", 10.0);
    c.consent.daily_cap = 1;
    let cams_with_capped: Vec<CameraRecord> = cams.iter().cloned().chain([c]).collect();
    let mut original = engine();
    original.decide(&ev(1, Status::New, "70", T0), cams_with_capped.as_slice(), T0).unwrap();
    let snap = original.snapshot_incident("metro", "PD1").expect("held");
    assert_eq!(snap.state.last_revision, 1);
    assert_eq!(snap.caps.get("c"), Some(&(snap.caps["c"].0, 1)), "cap counters travel with the snapshot");
    // Through JSON, as a changelog would carry it.
    let snap: IncidentSnapshot = serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();

    let mut restored = engine();
    restored.restore_incident(snap);
    for (rev, status) in [(2, Status::Dispatched), (3, Status::Closed)] {
        let at = T0 + rev as i64 * 10_000;
        let a = original.decide(&ev(rev, status, "70", at), cams_with_capped.as_slice(), at).unwrap();
        let b = restored.decide(&ev(rev, status, "70", at), cams_with_capped.as_slice(), at).unwrap();
        assert_eq!(a, b, "revision {rev}");
    }
    // The restored cap still binds: c started once today, a second incident may not start it.
    let mut other = ev(1, Status::New, "70", T0 + 40_000);
    other.incident_id = "PD2".into();
    let d = restored.decide(&other, cams_with_capped.as_slice(), T0 + 40_000).unwrap();
    assert!(excluded(&d).contains(&("c", Exclusion::DailyCap)));
    // A duplicate of an already-decided revision is still refused after a restore.
    let mut again = engine();
    again.restore_incident(original.snapshot_incident("metro", "PD1").unwrap());
    let r = again.decide(&ev(3, Status::Closed, "70", T0 + 50_000), cams.as_slice(), T0 + 50_000).unwrap_err();
    assert_eq!(r.reason, RejectReason::DuplicateRevision);
    again.forget_incident("metro", "PD1");
    assert!(again.snapshot_incident("metro", "PD1").is_none());
}

/// A decider killed after its commands were acknowledged but before the state that stands for them: the next
/// decider knows only what the commands topic says. It counts each START against the camera's daily cap, and
/// knows the camera records for its incident (so the incident's close stops it, and its re-decided revision
/// starts it no second time).
#[test]
fn commands_read_back_bind_the_cap_and_stop_what_records() {
    let mut c = cam("c", 10.0);
    c.consent.daily_cap = 1;
    let cams = vec![c.clone(), cam("a", 50.0)];
    let mut original = engine();
    let d = original.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d), ["c", "a"]);
    let sent: Vec<SentCommand> = d
        .commands
        .iter()
        .map(|k| SentCommand {
            incident_ref: k.incident_ref.clone(),
            camera_id: k.camera_id.clone(),
            action: k.action,
            issued_at: k.issued_at,
            record_seconds: k.record_seconds,
            owner_day: Some(trigger_core::consent::owner_day(&c.consent, k.issued_at)),
        })
        .collect();

    // Another incident first: c's one START of the day is spent.
    let mut next = engine();
    next.restore_sent(&sent);
    let mut other = ev(1, Status::New, "70", T0 + 1000);
    other.incident_id = "PD2".into();
    let d2 = next.decide(&other, cams.as_slice(), T0 + 1000).unwrap();
    assert!(excluded(&d2).contains(&("c", Exclusion::DailyCap)), "{:?}", excluded(&d2));
    // The first incident decided again: its cameras are already recording for it.
    let again = next.decide(&ev(1, Status::New, "70", T0 + 2000), cams.as_slice(), T0 + 2000).unwrap();
    assert!(starts(&again).is_empty(), "started twice: {:?}", starts(&again));
    let closed = next.decide(&ev(2, Status::Closed, "70", T0 + 3000), cams.as_slice(), T0 + 3000).unwrap();
    assert_eq!(stops(&closed), ["a", "c"]);

    // A STOP read back too: nothing is left recording.
    let mut stopped = engine();
    let mut all = sent.clone();
    all.extend(sent.iter().map(|s| SentCommand { action: Action::Stop, ..s.clone() }));
    stopped.restore_sent(&all);
    let d3 = stopped.decide(&ev(2, Status::Closed, "70", T0 + 3000), cams.as_slice(), T0 + 3000).unwrap();
    assert!(d3.commands.is_empty(), "{:?}", d3.commands);
    // The changelog's snapshot and the commands together: the count is not doubled.
    let mut both = engine();
    both.restore_incident(original.snapshot_incident("metro", "PD1").unwrap());
    both.restore_sent(&sent);
    assert_eq!(both.snapshot_incident("metro", "PD1").unwrap().caps["c"].1, 1);
}

mod break_glass {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// An officer (agency) key, a supervisor key, and a supervisor key held by the officer themself.
    fn policy() -> Policy {
        let entry = |id: &str, role: &str, identity: &str, seed: u8| {
            format!(
                "[[break_glass_key]]\nid = \"{id}\"\nrole = \"{role}\"\nidentity = \"{identity}\"\npublic_key = \"{}\"\nagency_id = \"metro\"\n",
                hex::encode(key(seed).verifying_key().to_bytes())
            )
        };
        policy_with(
            &[
                entry("officer", "agency", "officer-1", 1),
                entry("supervisor", "supervisor", "sup-7", 2),
                entry("officer-as-supervisor", "supervisor", "officer-1", 3),
            ]
            .concat(),
        )
    }

    fn request(radius_m: f64, expires_at: Millis, signers: &[(&str, u8)]) -> BreakGlassRequest {
        let mut r = BreakGlassRequest {
            agency_id: "metro".into(),
            incident_id: "PD1".into(),
            radius_m,
            max_cameras: 5,
            expires_at,
            reason_code: "armed_suspect_search".into(),
            authorisations: vec![],
        };
        let msg = r.message();
        r.authorisations = signers
            .iter()
            .map(|(id, seed)| Authorisation {
                key_id: id.to_string(),
                signature: hex::encode(key(*seed).sign(&msg).to_bytes()),
            })
            .collect();
        r
    }

    /// near: 50 m; far: 350 m (beyond the burglary radius of 200 m); far_narrow: 380 m, owner allows 300 m.
    fn cams() -> Vec<CameraRecord> {
        let mut narrow = cam("far_narrow", 380.0);
        narrow.consent.max_radius_m = 300.0;
        vec![cam("near", 50.0), cam("far", 350.0), narrow]
    }

    #[test]
    fn two_signatures_widen_the_policy_scope_but_never_an_owners_consent() {
        let mut e = Engine::new(policy());
        let granted = e.break_glass(&request(400.0, T0 + 600_000, &[("officer", 1), ("supervisor", 2)]), T0);
        assert_eq!(granted.outcome, Outcome::BreakGlassGranted);
        assert!(granted.break_glass);
        assert_eq!(granted.rule.as_deref(), Some("break_glass:granted:armed_suspect_search"));
        let d = e.decide(&ev(1, Status::New, "70", T0 + 1000), cams().as_slice(), T0 + 1000).unwrap();
        assert!(d.record.break_glass);
        assert_eq!(d.record.radius_m, Some(400.0));
        assert_eq!(starts(&d), ["near", "far"]);
        assert_eq!(excluded(&d), [("far_narrow", Exclusion::BeyondOwnerRadius)], "the owner's own radius still binds");
        assert!(d.notices.iter().all(|n| n.break_glass), "owners are told it was a break-glass activation");
    }

    #[test]
    fn without_both_valid_authorisations_it_is_refused_and_audited() {
        let cases: Vec<(BreakGlassRequest, &str)> = vec![
            (request(400.0, T0 + 600_000, &[("officer", 1)]), "break_glass:refused:missing_authorisation:supervisor"),
            (request(400.0, T0 + 600_000, &[("supervisor", 2)]), "break_glass:refused:missing_authorisation:agency"),
            (
                request(400.0, T0 + 600_000, &[("officer", 1), ("officer-as-supervisor", 3)]),
                "break_glass:refused:same_identity_twice",
            ),
            (
                request(400.0, T0 + 600_000, &[("officer", 1), ("supervisor", 9)]),
                "break_glass:refused:bad_signature:supervisor",
            ),
            (
                request(400.0, T0 + 600_000, &[("officer", 1), ("intruder", 2)]),
                "break_glass:refused:unknown_key:intruder",
            ),
            (request(400.0, T0 - 1, &[("officer", 1), ("supervisor", 2)]), "break_glass:refused:expired"),
            (
                request(400.0, T0 + 7_200_000, &[("officer", 1), ("supervisor", 2)]),
                "break_glass:refused:longer_than_allowed",
            ),
            (
                request(5_000.0, T0 + 600_000, &[("officer", 1), ("supervisor", 2)]),
                "break_glass:refused:beyond_break_glass_caps",
            ),
        ];
        for (req, rule) in cases {
            let mut e = Engine::new(policy());
            let rec = e.break_glass(&req, T0);
            assert_eq!(rec.outcome, Outcome::BreakGlassRefused, "{rule}");
            assert_eq!(rec.rule.as_deref(), Some(rule));
            let d = e.decide(&ev(1, Status::New, "70", T0 + 1000), cams().as_slice(), T0 + 1000).unwrap();
            assert!(!d.record.break_glass);
            assert_eq!(starts(&d), ["near"], "{rule}: the usual scope");
        }
        // A request altered after it was signed (a wider radius) no longer verifies.
        let mut altered = request(400.0, T0 + 600_000, &[("officer", 1), ("supervisor", 2)]);
        altered.radius_m = 900.0;
        let rec = Engine::new(policy()).break_glass(&altered, T0);
        assert_eq!(rec.rule.as_deref(), Some("break_glass:refused:bad_signature:officer"));
    }

    #[test]
    fn an_override_expires() {
        let mut e = Engine::new(policy());
        e.break_glass(&request(400.0, T0 + 60_000, &[("officer", 1), ("supervisor", 2)]), T0);
        let d = e.decide(&ev(1, Status::New, "70", T0 + 90_000), cams().as_slice(), T0 + 90_000).unwrap();
        assert!(!d.record.break_glass);
        assert_eq!(starts(&d), ["near"]);
    }
}

mod two_clocks {
    use super::*;

    /// A call that is not a trigger type when it comes in, reclassified at dispatch `after_ms` later.
    fn reclassified(e: &mut Engine, id: &str, after_ms: i64, decided_late_ms: i64) -> Decision {
        let cams = vec![cam("a", 50.0)];
        let mut first = ev(1, Status::New, "93", T0);
        first.incident_id = id.into();
        assert_eq!(e.decide(&first, cams.as_slice(), T0).unwrap().record.outcome, Outcome::NotTriggerType);
        let mut x = ev(2, Status::Dispatched, "53", T0 + after_ms);
        x.incident_id = id.into();
        e.decide(&x, cams.as_slice(), T0 + after_ms + decided_late_ms).unwrap()
    }

    #[test]
    fn a_reclassification_at_dispatch_minutes_later_triggers_on_that_revision() {
        let mut e = engine();
        // Nine minutes after the call came in, decided at once: inside robbery's 15-minute window.
        let d = reclassified(&mut e, "R1", 9 * 60_000, 0);
        assert_eq!(d.record.outcome, Outcome::Triggered);
        assert_eq!(starts(&d), ["a"]);
        // Sixteen minutes: outside the incident window, whatever the engine's clock says.
        let d = reclassified(&mut e, "R2", 16 * 60_000, 0);
        assert_eq!(d.record.outcome, Outcome::OutsideIncidentWindow);
        assert!(d.commands.is_empty());
    }

    #[test]
    fn the_backlog_guard_is_the_lag_since_the_cad_emitted_the_revision() {
        let mut e = engine();
        // Emitted 10 s after the call, decided 120 s after that: at the limit, still decided.
        assert_eq!(reclassified(&mut e, "L1", 10_000, 120_000).record.outcome, Outcome::Triggered);
        // One millisecond more: a backlog, refused.
        assert_eq!(reclassified(&mut e, "L2", 10_000, 120_001).record.outcome, Outcome::RefusedStale);
    }

    #[test]
    fn a_revision_at_exactly_the_window_is_decided_the_same_offline_and_over_kafka() {
        // Offline the clock is emitted_at; the service's wall clock is a few milliseconds later. The window is
        // measured on the CAD's clock, so both decide the same.
        let window = 15 * 60_000;
        let mut offline = engine();
        let mut service = engine();
        let a = reclassified(&mut offline, "W", window, 0);
        let b = reclassified(&mut service, "W", window, 37);
        assert_eq!(a.record.outcome, Outcome::Triggered);
        assert_eq!(b.record.outcome, a.record.outcome);
        assert_eq!(starts(&a), starts(&b));
        let mut late = engine();
        assert_eq!(reclassified(&mut late, "W", window + 1, 0).record.outcome, Outcome::OutsideIncidentWindow);
    }

    #[test]
    fn stops_are_never_refused_by_either_clock() {
        let mut e = engine();
        let cams = vec![cam("a", 50.0)];
        assert_eq!(starts(&e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap()), ["a"]);
        // Closed 5 minutes later, decided 4 minutes after that (a backlog): the STOP still goes out.
        let close = ev(2, Status::Closed, "70", T0 + 300_000);
        assert_eq!(stops(&e.decide(&close, cams.as_slice(), T0 + 540_000).unwrap()), ["a"]);
    }

    #[test]
    fn windows_are_per_category_and_configurable() {
        let mut e = Engine::new(policy_with(""));
        assert_eq!(e.policy().window_ms(Category::Burglary), 900_000);
        assert_eq!(e.policy().window_ms(Category::Hostage), 1_800_000);
        let custom = policy_with("max_lag_s = 30");
        assert_eq!(custom.config.max_lag_s, 30);
        let cams = vec![cam("a", 50.0)];
        let d = e.decide(&ev(1, Status::New, "70", T0 + 900_001), cams.as_slice(), T0 + 900_001).unwrap();
        assert_eq!(d.record.outcome, Outcome::OutsideIncidentWindow);
    }
}

#[test]
fn timestamps_off_the_calendar_are_named_rejects_and_nothing_overflows() {
    let cams = vec![cam("a", 50.0)];
    for (received, emitted, now) in [
        (T0, i64::MAX - 5, i64::MAX - 5),
        (T0, i64::MAX, T0),
        (i64::MIN, T0, T0),
        (T0, i64::MIN, T0),
        (-1, T0, T0),
        (T0, 4_102_444_800_000, 4_102_444_800_000),
    ] {
        let mut e = engine();
        let mut x = ev(1, Status::New, "70", emitted);
        x.received_at = received;
        let r = e.decide(&x, cams.as_slice(), now).unwrap_err();
        assert_eq!(r.reason, RejectReason::TimestampOutOfRange, "{received} {emitted}: {r}");
    }
    // The engine's own clock at an extreme never panics either.
    let mut e = engine();
    let _ = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), i64::MAX);
    let _ = e.decide(&ev(2, Status::New, "70", T0), cams.as_slice(), i64::MIN);
}

#[test]
fn settings_that_void_every_command_or_use_the_old_clock_are_refused() {
    let j = BTreeMap::from([(
        "metro".to_string(),
        "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]}".to_string(),
    )]);
    let table = CodeTable::from_toml("name = \"t\"\n").unwrap();
    let base = "[categories.burglary]\nradius_m = 100\nrecord_seconds = 60\n[[agency]]\nid = \"metro\"\ncode_tables = [\"t\"]\njurisdiction = \"j\"\n";
    for (extra, says) in [
        ("command_ttl_s = 0\n", "command_ttl_s must be at least 1"),
        ("max_age_s = 120\n", "max_age_s was split in two"),
        ("max_lag_s = 0\n", "max_lag_s must be at least 1"),
    ] {
        let cfg = PolicyConfig::from_toml(&format!("{extra}{base}")).unwrap();
        let err = Policy::new(cfg, std::slice::from_ref(&table), &j).expect_err("refused").to_string();
        assert!(err.contains(says), "{extra}: {err}");
    }
}

/// A raw record's verdict, as a decoder sets it.
fn named_protest(mut x: CallForService) -> CallForService {
    x.blocked = Some(RawBlock {
        kind: vocabulary::BlockKind::FirstAmendment,
        term: "PROTEST".into(),
        field: "Disposition".into(),
    });
    x
}

#[test]
fn a_blocked_record_stops_its_cameras_whatever_its_revision_and_marks_the_incident_beyond_the_state() {
    let mut e = Engine::new(policy_with("state_ttl_s = 3600"));
    let cams = vec![cam("a", 50.0)];
    let d1 = e.decide(&ev(1, Status::New, "70", T0), cams.as_slice(), T0).unwrap();
    assert_eq!(starts(&d1), ["a"]);
    // The same revision again, retyped within the CAD's second: a duplicate by number, decided as blocked.
    let d2 = e.decide(&named_protest(ev(1, Status::Updated, "70", T0 + 500)), cams.as_slice(), T0 + 500).unwrap();
    assert_eq!((d2.record.outcome, stops(&d2)), (Outcome::BlockedType, vec!["a"]));
    // Even one with no location or type at all (a row the decoder could not otherwise read) is decided.
    let mut bare = named_protest(ev(0, Status::Updated, "", 0));
    bare.location = None;
    assert_eq!(e.decide(&bare, cams.as_slice(), T0 + 600).unwrap().record.outcome, Outcome::BlockedType);
    let snapshot = e.snapshot_incident("metro", "PD1").unwrap();
    // Two days on, the incident's state is gone (TTL one hour) and a new burglary revision arrives: the mark
    // stands, here and in an engine restored from the changelog.
    let later = T0 + 2 * 86_400_000;
    let mut again = ev(2, Status::New, "70", later);
    again.received_at = later;
    let mut restored = Engine::new(policy_with("state_ttl_s = 3600"));
    restored.restore_incident(snapshot);
    for e in [&mut e, &mut restored] {
        e.expire(later);
        assert_eq!(e.incidents_in_state(), 0);
        let d = e.decide(&again, cams.as_slice(), later).unwrap();
        assert_eq!((d.record.outcome, starts(&d).len()), (Outcome::BlockedType, 0), "{:?}", d.record.rule);
    }
    // The mark is kept 30 days: past them, the incident is a new one.
    let past = T0 + 31 * 86_400_000;
    let mut x = ev(3, Status::New, "70", past);
    x.received_at = past;
    e.expire(past);
    assert_eq!(starts(&e.decide(&x, cams.as_slice(), past).unwrap()), ["a"]);
}

#[test]
fn a_state_ttl_below_an_incident_window_is_refused() {
    let cfg = PolicyConfig::from_toml(
        "state_ttl_s = 60\n[categories.burglary]\nradius_m = 100\nrecord_seconds = 60\n[[agency]]\nid = \"a\"\njurisdiction = \"j\"\n",
    )
    .unwrap();
    let err = Policy::new(cfg, &[], &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.contains("state_ttl_s 60 is below the incident window"), "{err}");
}
