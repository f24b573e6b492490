//! A break-glass request (JSON, as on the CFS topic), decided at a fixed clock and at its own expiry, then the
//! sample's events decided under whatever it granted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use trigger_core::{BreakGlassRequest, Engine};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<BreakGlassRequest>(data) else { return };
    for now in [dispatch_trigger_fuzz::T, req.expires_at] {
        let mut e = Engine::new(dispatch_trigger_fuzz::policy().clone());
        let _ = e.break_glass(&req, now);
        for ev in dispatch_trigger_fuzz::sample_events().iter().take(dispatch_trigger_fuzz::MAX_DECIDED) {
            if let Ok(d) = e.decide(ev, dispatch_trigger_fuzz::cameras(), ev.emitted_at) {
                dispatch_trigger_fuzz::check(&d, dispatch_trigger_fuzz::cameras());
            }
        }
    }
});
