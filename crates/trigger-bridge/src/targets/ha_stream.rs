//! Home Assistant records one clip per stream at a time: `camera.record` while a recording of that camera runs
//! fails ("Stream already recording to ...!", HTTP 500). A START for a camera this bridge is already recording
//! (for another incident) is therefore delivered as an **extension**: nothing is called when the running
//! recording already covers the new command's window; otherwise a continuation is called when the running
//! recording ends, for the rest of the new command's window only (never beyond what the command asked, so
//! never beyond the owner's consent). A STOP for the incident a continuation serves cancels it. A continuation
//! is held in memory: a bridge that restarts before it is due records less, never more.
//!
//! What is running is what this bridge started; a recording it did not start (another client of Home
//! Assistant, or one started before a restart) answers "already recording", which is retried until the
//! command expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use trigger_core::Millis;

/// The wall clock, Unix ms: Home Assistant's recordings run in real time.
pub(crate) use crate::wall_ms;

/// What to do with a START for a camera (times in Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing runs: call `camera.record` for the command's seconds now.
    Record,
    /// The running recording covers the whole window: nothing to call.
    Covered,
    /// Call `camera.record` at `at` for `seconds` (the rest of the window).
    Continue { at: Millis, seconds: u32 },
}

/// A continuation due later, cancellable.
#[derive(Debug, Clone)]
pub(crate) struct Continuation {
    pub(crate) incident: String,
    pub(crate) until: Millis,
    pub(crate) cancelled: Arc<AtomicBool>,
}

/// One camera's stream: when the recording this bridge started ends, and the continuation after it.
type Stream = (Millis, Option<Continuation>);

/// Per camera, its stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Streams(Arc<Mutex<HashMap<String, Stream>>>);

impl Streams {
    /// How a START of `seconds` at `now` for `incident` on `camera` is delivered.
    pub(crate) fn plan(&self, camera: &str, now: Millis, seconds: u32) -> Plan {
        let want = now + i64::from(seconds) * 1000;
        let map = self.0.lock().expect("not poisoned");
        let Some((running, next)) = map.get(camera) else { return Plan::Record };
        // Busy until the running recording ends, or the continuation due after it does: a continuation not taken
        // yet (its recording not started) keeps the stream busy too, so a START never asks beside it.
        let busy = next.as_ref().filter(|c| !c.cancelled.load(Relaxed)).map_or(*running, |c| c.until.max(*running));
        if busy <= now {
            return Plan::Record;
        }
        if busy >= want {
            return Plan::Covered;
        }
        Plan::Continue { at: busy, seconds: ((want - busy + 999) / 1000) as u32 }
    }

    /// When the recording this bridge started last on `camera` ends (0: none).
    pub(crate) fn running_until(&self, camera: &str) -> Millis {
        self.0.lock().expect("not poisoned").get(camera).map_or(0, |(until, _)| *until)
    }

    /// A recording of `camera` started at `now` for `seconds`.
    pub(crate) fn started(&self, camera: &str, now: Millis, seconds: u32) {
        let mut map = self.0.lock().expect("not poisoned");
        let e = map.entry(camera.to_string()).or_insert((0, None));
        e.0 = now + i64::from(seconds) * 1000;
    }

    /// A continuation for `incident` registered; what cancels it.
    pub(crate) fn continue_with(&self, camera: &str, incident: &str, until: Millis) -> Arc<AtomicBool> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut map = self.0.lock().expect("not poisoned");
        let e = map.entry(camera.to_string()).or_insert((0, None));
        if let Some(old) = e.1.take() {
            // The new continuation starts where the old one ends and is called after it: both stay due.
            if old.until > until {
                e.1 = Some(old);
                return cancelled;
            }
        }
        e.1 = Some(Continuation { incident: incident.to_string(), until, cancelled: cancelled.clone() });
        cancelled
    }

    /// A STOP for `incident` on `camera`: its continuation, if one is due, is cancelled.
    pub(crate) fn stop(&self, camera: &str, incident: &str) -> bool {
        let map = self.0.lock().expect("not poisoned");
        match map.get(camera).and_then(|(_, c)| c.as_ref()) {
            Some(c) if c.incident == incident => !c.cancelled.swap(true, Relaxed),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_during_a_recording_is_covered_or_continued_for_the_rest_of_its_window_only() {
        let s = Streams::default();
        assert_eq!(s.plan("cam", 1_000, 10), Plan::Record);
        s.started("cam", 1_000, 10); // runs until 11 000
        assert_eq!(s.plan("cam", 2_000, 5), Plan::Covered);
        assert_eq!(s.plan("cam", 5_000, 10), Plan::Continue { at: 11_000, seconds: 4 });
        let cancel = s.continue_with("cam", "inc-2", 15_000);
        assert_eq!(s.plan("cam", 6_000, 9), Plan::Covered, "the continuation covers it too");
        assert_eq!(s.plan("cam", 6_000, 12), Plan::Continue { at: 15_000, seconds: 3 });
        assert!(!s.stop("cam", "inc-1"), "another incident's STOP leaves the continuation");
        assert!(s.stop("cam", "inc-2"));
        assert!(cancel.load(Relaxed));
        assert_eq!(s.plan("cam", 6_000, 9), Plan::Continue { at: 11_000, seconds: 4 }, "cancelled: not counted");
        assert_eq!(s.plan("cam", 12_000, 5), Plan::Record, "the recording ended");
    }
}
