//! NENA EIDO JSON: one document, an array, or one per line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = trigger_cad::eido::decode(data, &Default::default());
    let events: Vec<_> = d.events.into_iter().map(|e| e.event).collect();
    dispatch_trigger_fuzz::decide_all(&events);
});
