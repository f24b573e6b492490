//! Replay ordering and pacing. Pure: the caller sleeps.

use crate::DecodedEvent;
use std::time::Duration;
use trigger_core::Millis;

/// Event-time order: by `emitted_at`, input order breaking ties (a stable sort), so a replay is
/// deterministic whatever order the export's rows are in.
pub fn event_time_order(events: &mut [DecodedEvent]) {
    events.sort_by_key(|e| e.event.emitted_at);
}

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// No waiting: decide as fast as the engine goes.
    AsFastAsPossible,
    /// Recorded gaps divided by this factor (1.0 = real time, 60 = an hour a minute).
    Speed(f64),
    /// A fixed number of events per second, whatever the recorded gaps (load tests).
    Rate(f64),
}

impl Pace {
    /// `--speed X`: the recorded gaps divided by X, which must be a finite number > 0.
    pub fn speed(x: f64) -> Result<Pace, crate::BadPace> {
        Self::positive(x, "--speed").map(Pace::Speed)
    }

    /// `--rate N`: events per second, a finite number > 0.
    pub fn rate(x: f64) -> Result<Pace, crate::BadPace> {
        Self::positive(x, "--rate").map(Pace::Rate)
    }

    fn positive(value: f64, option: &'static str) -> Result<f64, crate::BadPace> {
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(crate::BadPace { option, value })
        }
    }
}

/// Tells the caller how long to wait before the next event to keep the recorded pace.
#[derive(Debug, Clone)]
pub struct Pacer {
    pace: Pace,
    origin: Option<Millis>,
    sent: u64,
}

impl Pacer {
    pub fn new(pace: Pace) -> Self {
        Self { pace, origin: None, sent: 0 }
    }

    /// `elapsed`: wall time since the replay started. Returns the wait before deciding an event at `event_time`.
    pub fn wait_before(&mut self, event_time: Millis, elapsed: Duration) -> Duration {
        let due_s = match self.pace {
            Pace::AsFastAsPossible => return Duration::ZERO,
            Pace::Speed(speed) => {
                let origin = *self.origin.get_or_insert(event_time);
                (event_time.saturating_sub(origin).max(0) as f64 / 1000.0) / speed
            }
            Pace::Rate(per_s) => self.sent as f64 / per_s,
        };
        // A tiny speed over far-apart events asks for a wait longer than any Duration: wait "forever" (the
        // caller's shutdown flag still ends it), never panic.
        let due = Duration::try_from_secs_f64(due_s).unwrap_or(Duration::MAX);
        self.sent += 1;
        due.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_follows_recorded_gaps_divided_by_speed() {
        let mut p = Pacer::new(Pace::Speed(10.0));
        assert_eq!(p.wait_before(1_000_000, Duration::ZERO), Duration::ZERO);
        assert_eq!(p.wait_before(1_010_000, Duration::from_millis(200)), Duration::from_millis(800));
        assert_eq!(p.wait_before(1_010_000, Duration::from_secs(5)), Duration::ZERO, "behind: no wait");
        let mut rate = Pacer::new(Pace::Rate(100.0));
        assert_eq!(rate.wait_before(1, Duration::ZERO), Duration::ZERO);
        assert_eq!(rate.wait_before(1, Duration::from_millis(4)), Duration::from_millis(6), "ignores event time");
        assert_eq!(rate.wait_before(9_000_000, Duration::from_millis(20)), Duration::ZERO);
        // A tiny speed over far-apart events: a wait too long for a Duration is the longest one, not a panic.
        let mut slow = Pacer::new(Pace::Speed(1e-9));
        assert_eq!(slow.wait_before(0, Duration::ZERO), Duration::ZERO);
        assert!(slow.wait_before(4_000_000_000_000, Duration::ZERO) > Duration::from_secs(1 << 60));
        assert_eq!(slow.wait_before(i64::MAX, Duration::ZERO), Duration::MAX);
        assert!(Pace::speed(0.0).is_err() && Pace::speed(f64::NAN).is_err() && Pace::rate(f64::INFINITY).is_err());
        let mut fast = Pacer::new(Pace::AsFastAsPossible);
        assert_eq!(fast.wait_before(5_000_000, Duration::ZERO), Duration::ZERO);
    }
}
