//! A length-delimited stream of protobuf `CallForService` messages (the replay's `pb` format).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = trigger_cad::pb::decode_stream(data, &Default::default());
    let events: Vec<_> = d.events.into_iter().map(|e| e.event).collect();
    dispatch_trigger_fuzz::decide_all(&events);
});
