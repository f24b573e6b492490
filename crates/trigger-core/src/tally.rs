//! One count of what was decided, kept by every caller of the engine: the offline replay's summary, the
//! service's run statistics and `demo`'s summary all read theirs from a [`Tally`], so an outcome, an exclusion,
//! a reject or a command is counted in one place, the same way everywhere.

use crate::engine::{Decision, Exclusion, Outcome};
use crate::reject::RejectReason;
use crate::types::Action;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Events taken in: decided or refused.
    pub events: u64,
    /// Decisions, by outcome.
    pub decisions: BTreeMap<&'static str, u64>,
    /// Cameras near an incident and not commanded, by reason.
    pub exclusions: BTreeMap<&'static str, u64>,
    /// Refused events, by reason.
    pub rejects: BTreeMap<&'static str, u64>,
    pub start_commands: u64,
    pub stop_commands: u64,
    pub owner_notices: u64,
}

/// One thing a decision counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The decision itself, by outcome.
    Decision(Outcome),
    /// A camera near the incident, not commanded.
    Exclusion(Exclusion),
    Command(Action),
    /// Owner notices.
    Notices(u64),
}

/// Every count of one decision, once each: the one walk that every tally of decisions is built from (the
/// run's [`Tally`], the service's metrics).
pub fn counts(d: &Decision, mut f: impl FnMut(Count)) {
    f(Count::Decision(d.record.outcome));
    for x in &d.record.excluded {
        f(Count::Exclusion(x.reason));
    }
    for c in &d.commands {
        f(Count::Command(c.action));
    }
    f(Count::Notices(d.notices.len() as u64));
}

impl Tally {
    /// Count one decision: its outcome, exclusions, commands and notices.
    pub fn decided(&mut self, d: &Decision) {
        self.events += 1;
        counts(d, |c| match c {
            Count::Decision(o) => *self.decisions.entry(o.as_str()).or_default() += 1,
            Count::Exclusion(x) => *self.exclusions.entry(x.as_str()).or_default() += 1,
            Count::Command(Action::Start) => self.start_commands += 1,
            Count::Command(Action::Stop) => self.stop_commands += 1,
            Count::Notices(n) => self.owner_notices += n,
        });
    }

    /// Count one refused event.
    pub fn refused(&mut self, reason: RejectReason) {
        self.events += 1;
        *self.rejects.entry(reason.as_str()).or_default() += 1;
    }

    /// Decisions of every outcome.
    pub fn decision_count(&self) -> u64 {
        self.decisions.values().sum()
    }

    /// Refused events of every reason.
    pub fn reject_count(&self) -> u64 {
        self.rejects.values().sum()
    }
}

/// Where decided and refused events go: files (the offline replay), a plan of Kafka records (the service).
/// `S` is what locates an event in its input (a file position and the bytes, a Kafka message).
pub trait DecisionSink<S: ?Sized> {
    type Error;
    fn decided(&mut self, source: &S, d: &Decision) -> Result<(), Self::Error>;
    fn refused(&mut self, source: &S, r: &crate::Reject) -> Result<(), Self::Error>;
}

/// The one way an engine's answer is passed on: counted in the tally, then handed to the sink.
pub fn pass_on<S: ?Sized, K: DecisionSink<S>>(
    sink: &mut K,
    tally: &mut Tally,
    source: &S,
    result: &Result<Decision, crate::Reject>,
) -> Result<(), K::Error> {
    match result {
        Ok(d) => {
            tally.decided(d);
            sink.decided(source, d)
        }
        Err(r) => {
            tally.refused(r.reason);
            sink.refused(source, r)
        }
    }
}
