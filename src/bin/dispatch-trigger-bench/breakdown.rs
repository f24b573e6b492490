//! Where the end-to-end time of one-event batches goes (every batch at 100 events/s is one event): the first
//! event's age when polled, the registry sync, deciding and planning, the acknowledgements; for the relay,
//! the engine's events that wrote one record (the audit record alone) and those that wrote more (commands,
//! audit, owner notices: one produce request per partition).

use dispatch_trigger::stats::percentile;
use trigger_kafka::BatchTiming;

/// Which loop a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Relay,
    Engine,
}

const PARTS: [&str; 5] = ["age at poll", "registry sync", "plan", "ack", "total"];
const GROUPS: [&str; 3] = ["relay", "engine, one record", "engine, more records"];

/// The parts of every one-event batch observed, by group.
#[derive(Debug, Default)]
pub(crate) struct Breakdown {
    rows: [Vec<[f64; 5]>; 3],
}

impl Breakdown {
    pub(crate) fn observe(&mut self, side: Side, t: &BatchTiming) {
        if t.events != 1 {
            return;
        }
        let group = match (side, t.records) {
            (Side::Relay, _) => 0,
            (Side::Engine, 1) => 1,
            (Side::Engine, _) => 2,
        };
        let parts = [t.age_at_poll_us, t.registry_sync_us, t.plan_us, t.ack_us];
        let ms = |us: u64| us as f64 / 1e3;
        self.rows[group].push([ms(parts[0]), ms(parts[1]), ms(parts[2]), ms(parts[3]), ms(parts.iter().sum())]);
    }

    pub(crate) fn extend(&mut self, other: Breakdown) {
        for (mine, theirs) in self.rows.iter_mut().zip(other.rows) {
            mine.extend(theirs);
        }
    }

    /// A Markdown table: p50 / p99 of each part, per group.
    pub(crate) fn print(&self) {
        let head: Vec<String> = PARTS.iter().map(|p| format!("{p} p50 / p99 ms")).collect();
        println!("| one-event batches | n | {} |", head.join(" | "));
        println!("|---|---|{}", "---|".repeat(PARTS.len()));
        for (name, rows) in GROUPS.iter().zip(&self.rows).filter(|(_, r)| !r.is_empty()) {
            let cells: Vec<String> = (0..PARTS.len())
                .map(|k| {
                    let mut v: Vec<f64> = rows.iter().map(|r| r[k]).collect();
                    v.sort_by(f64::total_cmp);
                    format!("{:.2} / {:.2}", percentile(&v, 0.5), percentile(&v, 0.99))
                })
                .collect();
            println!("| {name} | {} | {} |", rows.len(), cells.join(" | "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(events: usize, records: usize, parts: [u64; 4]) -> BatchTiming {
        BatchTiming {
            events,
            records,
            produced_ms: vec![Some(0); events],
            acknowledged_us: 0,
            age_at_poll_us: parts[0],
            registry_sync_us: parts[1],
            plan_us: parts[2],
            ack_us: parts[3],
        }
    }

    #[test]
    fn one_event_batches_by_side_and_records_and_nothing_else() {
        let mut b = Breakdown::default();
        b.observe(Side::Relay, &timing(1, 1, [1000, 0, 100, 900]));
        b.observe(Side::Engine, &timing(1, 1, [1000, 50, 200, 800]));
        b.observe(Side::Engine, &timing(1, 4, [1000, 50, 300, 2000]));
        b.observe(Side::Engine, &timing(2, 8, [1000, 50, 300, 2000]));
        assert_eq!(b.rows.each_ref().map(|r| r.len()), [1, 1, 1]);
        assert_eq!(b.rows[0][0], [1.0, 0.0, 0.1, 0.9, 2.0]);
        assert_eq!(b.rows[2][0][4], 3.35);
    }
}
