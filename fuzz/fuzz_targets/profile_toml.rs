//! A CSV profile: parsed, then the bundled sample's first rows decoded through it and decided.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(p) = trigger_cad::CsvProfile::from_toml(text) else { return };
    let head: String = dispatch_trigger_fuzz::SAMPLE.lines().take(40).collect::<Vec<_>>().join("\n");
    if let Ok(d) = trigger_cad::csv_profile::decode(head.as_bytes(), &p, &Default::default()) {
        dispatch_trigger_fuzz::decide_decoded(d);
    }
});
