//! One protobuf `CallForService` (a Kafka record's value), decoded and decided.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = trigger_cad::pb::decode_one(data, &Default::default()) {
        dispatch_trigger_fuzz::decide_all(&[ev]);
    }
});
