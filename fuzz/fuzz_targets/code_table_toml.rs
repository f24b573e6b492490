//! A code table: parsed and checked (a blocked type must never reach a trigger category), then used as the
//! Nashville agency's only table for the sample's events and for one event per rule code.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trigger_core::{CallForService, CodeTable, Policy, PolicyConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(table) = CodeTable::from_toml(text) else { return };
    let mut cfg = PolicyConfig::from_toml(dispatch_trigger_fuzz::POLICY).expect("shipped policy");
    for a in &mut cfg.agencies {
        a.code_tables = vec![table.name.clone()];
    }
    let j = dispatch_trigger_fuzz::jurisdictions(&cfg);
    let Ok(p) = Policy::new(cfg, std::slice::from_ref(&table), &j) else { return };
    let base = &dispatch_trigger_fuzz::sample_events()[0];
    // One event per rule first (what the table maps is what matters), then the sample's.
    let mut events: Vec<CallForService> = Vec::new();
    for (i, r) in table.rules.iter().enumerate().take(dispatch_trigger_fuzz::MAX_DECIDED) {
        events.push(CallForService {
            incident_id: format!("R{i}"),
            call_type_code: r.code.clone().unwrap_or_default(),
            call_type_text: r.text.clone().unwrap_or_default(),
            ..base.clone()
        });
    }
    events.extend(dispatch_trigger_fuzz::sample_events().iter().take(2).cloned());
    dispatch_trigger_fuzz::decide_with(&p, &events);
});
