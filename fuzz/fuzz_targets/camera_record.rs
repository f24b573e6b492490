//! A registry record (protobuf `CameraRecord`): decoded and validated, indexed, then an incident decided next to
//! it. What cannot be true must be refused before the index sees it. The fast reader and prost's path must give
//! the same answer for every input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trigger_core::{CallForService, Engine, Location, Status};
use trigger_index::RTreeIndex;

fuzz_target!(|data: &[u8]| {
    let decoded = trigger_cad::registry::camera_from_pb(data);
    // Compared as printed: a refusal can hold the NaN it refused, which is never equal to itself.
    let prost = trigger_cad::registry::camera_from_pb_prost(data);
    assert_eq!(format!("{decoded:?}"), format!("{prost:?}"), "the fast reader disagrees with prost");
    let Ok(cam) = decoded else { return };
    assert!(trigger_core::camera_problems(&cam).is_empty(), "decoded a camera that cannot be true: {cam:?}");
    let mut index = RTreeIndex::new();
    index.upsert(cam.clone()).expect("a decoded camera is indexable");
    let ev = CallForService {
        incident_id: "F-1".into(),
        agency_id: "nashville-mnpd".into(),
        revision: 1,
        status: Status::New,
        call_type_code: "83".into(),
        call_type_text: "SHOTS FIRED".into(),
        priority: 1,
        location: Some(Location { lat: cam.lat, lon: cam.lon, uncertainty_m: 0.0 }),
        received_at: dispatch_trigger_fuzz::T,
        emitted_at: dispatch_trigger_fuzz::T,
        blocked: None,
        type_fields: vec![],
    };
    let mut e = Engine::new(dispatch_trigger_fuzz::policy().clone());
    if let Ok(d) = e.decide(&ev, &index, dispatch_trigger_fuzz::T) {
        for c in &d.commands {
            assert!(c.expires_at >= c.issued_at);
        }
    }
});
