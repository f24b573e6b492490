//! Rows of a city export through its shipped CSV profile (the header is fixed: the rows are fuzzed).
#![no_main]
use dispatch_trigger_fuzz::*;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn profile() -> &'static trigger_cad::CsvProfile {
    static P: OnceLock<trigger_cad::CsvProfile> = OnceLock::new();
    P.get_or_init(|| trigger_cad::CsvProfile::from_toml(PROFILE_EXAMPLE).expect("shipped profile"))
}

fuzz_target!(|data: &[u8]| csv_rows(profile(), HEADER_EXAMPLE_CITY, data));
