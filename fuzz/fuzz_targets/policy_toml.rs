//! A policy file, validated against the shipped code tables, then the sample's events decided under it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trigger_core::{Policy, PolicyConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = PolicyConfig::from_toml(text) else { return };
    let j = dispatch_trigger_fuzz::jurisdictions(&cfg);
    if let Ok(p) = Policy::new(cfg, dispatch_trigger_fuzz::tables(), &j) {
        dispatch_trigger_fuzz::decide_with(&p, dispatch_trigger_fuzz::sample_events());
    }
});
