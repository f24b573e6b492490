//! The plan of a batch: every output record its events cause (commands, sealed audit records, owner notices,
//! dead letters and incident-state changelog records: see [`Changelog`]), computed without any I/O. The engine
//! decides, the audit chains seal; a sink ([`crate::sink`]) then commits the plan.
//!
//! Everything the plan needs from Kafka is brought in before a batch is planned: the audit chain head of
//! each partition is resumed when the partition is assigned ([`Planner::resume_chain`]), incident state is
//! restored from the changelog at the same moment. A partition without a resumed chain is an internal error,
//! never a network round trip in the middle of a batch.

use crate::codec;
use crate::records::{dead_letter, incident_key, is_break_glass, DeadLetterRule, OutRecord};
use crate::service::RunStats;
use crate::settings::Topics;
use crate::telemetry::{self, stage, Stage};
use crate::KafkaError;
use prost::Message as _;
use rdkafka::message::{Message as _, OwnedMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use trigger_cad::DecodeOptions;
use trigger_core::{
    pass_on, CallForService, CommandSigner, Decision, DecisionSink, Engine, IncidentSnapshot, Reject, RejectReason,
};
use trigger_index::{CameraIndex, SpatialBackend};

/// A batch's outputs, in the order they are to be produced, and its events as decoded.
#[derive(Debug)]
pub struct Plan {
    pub records: Vec<OutRecord>,
    pub decoded: Vec<Result<CallForService, Reject>>,
}

/// Which decisions write their incident's state to the changelog (the state the next owner of the partition,
/// or this instance after a restart, restores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changelog {
    /// None (plans alone, in tests).
    Off,
    /// Every decision, inside the transaction that commits its outputs and its offset (exactly-once).
    EveryDecision,
    /// The decisions that change what must survive a restart — a camera started or stopped, a blocked type
    /// named, an override granted — written after the batch's other outputs are acknowledged (at-least-once:
    /// a state record never stands for a decision whose audit record was lost).
    StateChanges,
}

/// Plans batches: holds the audit chain of each assigned partition and which partition each incident in
/// the engine's state came from.
#[derive(Debug)]
pub struct Planner {
    topics: Topics,
    /// Which decisions write their incident's state to the changelog.
    changelog: Changelog,
    letters: DeadLetterRule,
    max_message_bytes: usize,
    /// One audit hash chain per CFS partition, written to the audit partition of the same number.
    chains: HashMap<i32, trigger_audit::Chain>,
    incident_partition: HashMap<(String, String), i32>,
    /// Signs every camera command (None: unsigned, for tests of the plan alone).
    pub(crate) signer: Option<Arc<CommandSigner>>,
}

impl Planner {
    pub fn new(topics: Topics, changelog: Changelog, letters: DeadLetterRule, max_message_bytes: usize) -> Self {
        Self {
            topics,
            changelog,
            letters,
            max_message_bytes,
            chains: HashMap::new(),
            incident_partition: HashMap::new(),
            signer: None,
        }
    }

    /// Continue partition `p`'s audit chain from `head` (the hash of its last record, or the genesis).
    pub fn resume_chain(&mut self, partition: i32, head: String) {
        self.chains.insert(partition, trigger_audit::Chain::resume(head));
    }

    /// Partitions of `parts` whose chain has not been resumed.
    pub fn missing_chains(&self, parts: impl IntoIterator<Item = i32>) -> Vec<i32> {
        let mut missing: Vec<i32> = parts.into_iter().filter(|p| !self.chains.contains_key(p)).collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// An incident restored from the changelog of partition `p`.
    pub fn restored(&mut self, agency_id: String, incident_id: String, partition: i32) {
        self.incident_partition.insert((agency_id, incident_id), partition);
    }

    /// Partitions taken away: forget their chains and their incidents' state.
    pub fn forget_partitions(&mut self, engine: &mut Engine, parts: &[i32]) {
        self.chains.retain(|p, _| !parts.contains(p));
        self.incident_partition.retain(|(a, i), p| {
            let gone = parts.contains(p);
            if gone {
                engine.forget_incident(a, i);
            }
            !gone
        });
    }

    /// Drop the partition of incidents the engine no longer holds.
    pub fn prune(&mut self, engine: &Engine) {
        self.incident_partition.retain(|(a, i), _| engine.snapshot_incident(a, i).is_some());
    }

    /// A batch's events as decoded (a break-glass request is not a CFS event: it decodes as a reject, and
    /// `plan` takes it by its header instead).
    pub fn decode(&self, batch: &[OwnedMessage]) -> Vec<Result<CallForService, Reject>> {
        let opts = DecodeOptions { max_message_bytes: self.max_message_bytes, agency_id: None };
        batch.iter().map(|m| trigger_cad::pb::decode_one(m.payload().unwrap_or_default(), &opts)).collect()
    }

    /// Whether deciding the batch may read the camera registry (`Engine::may_use_cameras` of any of its
    /// events): if not, the service needs no registry round trip before it.
    pub fn may_use_cameras(
        engine: &Engine,
        batch: &[OwnedMessage],
        decoded: &[Result<CallForService, Reject>],
    ) -> bool {
        batch
            .iter()
            .zip(decoded)
            .any(|(m, ev)| !is_break_glass(m) && ev.as_ref().is_ok_and(|e| engine.may_use_cameras(e)))
    }

    /// Decide a batch (`decoded`: [`Planner::decode`] of it) and plan its outputs. `now` is the wall clock in
    /// Unix ms, read once per decision.
    pub fn plan<B: SpatialBackend>(
        &mut self,
        engine: &mut Engine,
        index: &CameraIndex<B>,
        batch: &[OwnedMessage],
        decoded: Vec<Result<CallForService, Reject>>,
        stats: &mut RunStats,
        now: &dyn Fn() -> i64,
    ) -> Result<Plan, KafkaError> {
        let missing = self.missing_chains(batch.iter().map(|m| m.partition()));
        if !missing.is_empty() {
            return Err(KafkaError::Internal(format!("audit chains of partitions {missing:?} were not resumed")));
        }
        let polled_ms = now();
        let mut sink = BatchSink { planner: self, records: Vec::new(), dead_letters: 0 };
        for i in priority_order(engine, batch, &decoded) {
            let m = &batch[i];
            telemetry::event_taken();
            let (result, incident) = if is_break_glass(m) {
                break_glass(engine, m, now())
            } else {
                let incident = decoded[i].as_ref().ok().map(|ev| (ev.agency_id.clone(), ev.incident_id.clone()));
                (decide(engine, index, &decoded[i], polled_ms, stats, now), incident)
            };
            let snapshot = match (&result, &incident, sink.planner.changelog) {
                (Ok(d), Some((a, id)), Changelog::StateChanges) if changes_state(d) => {
                    Some(engine.snapshot_incident(a, id))
                }
                (Ok(_), Some((a, id)), Changelog::EveryDecision) => Some(engine.snapshot_incident(a, id)),
                _ => None,
            };
            let at = Event { message: m, incident, snapshot };
            let Ok(()) = pass_on(&mut sink, &mut stats.tally, &at, &result);
        }
        stats.dead_letters += sink.dead_letters;
        let records = sink.records;
        telemetry::incidents_in_state(engine.incidents_in_state());
        Ok(Plan { records, decoded })
    }
}

/// Whether a decision changed what a restart must not forget: the cameras an incident started (and stopped),
/// the daily counts that came with them, the sticky block, a granted override.
fn changes_state(d: &Decision) -> bool {
    use trigger_core::Outcome;
    !d.commands.is_empty() || matches!(d.record.outcome, Outcome::BlockedType | Outcome::BreakGlassGranted)
}

/// What locates a decided event in the service: its message, its incident (to key the changelog and to
/// forget on revocation) and, where the changelog takes it, the incident's state after the decision.
struct Event<'m> {
    message: &'m OwnedMessage,
    incident: Option<(String, String)>,
    snapshot: Option<Option<IncidentSnapshot>>,
}

/// The service's decision sink: the batch's plan being built.
struct BatchSink<'p> {
    planner: &'p mut Planner,
    records: Vec<OutRecord>,
    dead_letters: u64,
}

impl DecisionSink<Event<'_>> for BatchSink<'_> {
    type Error = std::convert::Infallible;

    fn refused(&mut self, at: &Event<'_>, r: &Reject) -> Result<(), Self::Error> {
        let m = at.message;
        self.dead_letters += 1;
        telemetry::refused(r.reason, m.partition(), m.offset());
        let p = &self.planner;
        self.records.push(dead_letter(&p.topics.dead_letter, m, r.reason.as_str(), &r.detail, p.letters));
        Ok(())
    }

    fn decided(&mut self, at: &Event<'_>, d: &Decision) -> Result<(), Self::Error> {
        telemetry::decided(d);
        self.planner.plan_decision(at, d, &mut self.records);
        Ok(())
    }
}

impl Planner {
    /// The records of one decision: its commands, its sealed audit record, its notices, and (see [`Changelog`]) its
    /// incident's state.
    fn plan_decision(&mut self, at: &Event<'_>, d: &Decision, out: &mut Vec<OutRecord>) {
        let m = at.message;
        let t = &self.topics;
        for c in &d.commands {
            out.push(OutRecord::keyed(
                &t.commands,
                c.camera_id.as_bytes(),
                Some(codec::command_to_pb(c, self.signer.as_deref()).encode_to_vec()),
            ));
        }
        let chain = self.chains.get_mut(&m.partition()).expect("checked before planning");
        let sealed = chain.seal(codec::activation(&d.record));
        out.push(OutRecord {
            topic: t.audit.clone(),
            partition: Some(m.partition()),
            key: d.record.incident_ref.clone().into_bytes(),
            payload: Some(sealed.encode_to_vec()),
            headers: vec![],
        });
        for n in &d.notices {
            out.push(OutRecord::keyed(&t.notices, n.owner_ref.as_bytes(), Some(codec::notice(n).encode_to_vec())));
        }
        if let Some((agency, id)) = &at.incident {
            if let Some(snap) = &at.snapshot {
                out.push(OutRecord {
                    topic: t.changelog.clone(),
                    partition: Some(m.partition()),
                    key: incident_key(agency, id),
                    payload: snap.as_ref().map(|s| serde_json::to_vec(s).expect("serialisable")),
                    headers: vec![],
                });
            }
            self.incident_partition.insert((agency.clone(), id.clone()), m.partition());
        }
    }
}

/// Under backlog, higher-priority incidents first. Records with the same key (an incident's revisions, and
/// any break-glass request for it) share the priority of the highest among them and keep their order: the
/// sort is stable.
fn priority_order(engine: &Engine, batch: &[OwnedMessage], decoded: &[Result<CallForService, Reject>]) -> Vec<usize> {
    let mut key_priority: HashMap<&[u8], u8> = HashMap::new();
    for (m, ev) in batch.iter().zip(decoded) {
        if let Ok(ev) = ev {
            let p = engine.policy().priority_of_event(ev);
            let e = key_priority.entry(m.key().unwrap_or_default()).or_default();
            *e = (*e).max(p);
        }
    }
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(key_priority.get(batch[i].key().unwrap_or_default()).copied().unwrap_or(0))
    });
    order
}

/// A break-glass request travels on the CFS topic, keyed like the incident it is for, so it lands on the
/// incident's partition, in order with its revisions (and in its transaction, exactly-once).
fn break_glass(
    engine: &mut Engine,
    m: &OwnedMessage,
    now_ms: i64,
) -> (Result<Decision, Reject>, Option<(String, String)>) {
    match serde_json::from_slice::<trigger_core::BreakGlassRequest>(m.payload().unwrap_or_default()) {
        Ok(req) => {
            let record = engine.break_glass(&req, now_ms);
            (Ok(Decision { record, commands: vec![], notices: vec![] }), Some((req.agency_id, req.incident_id)))
        }
        Err(e) => (Err(Reject::new(RejectReason::MalformedJson, format!("break-glass request: {e}"))), None),
    }
}

fn decide<B: SpatialBackend>(
    engine: &mut Engine,
    index: &CameraIndex<B>,
    ev: &Result<CallForService, Reject>,
    polled_ms: i64,
    stats: &mut RunStats,
    now: &dyn Fn() -> i64,
) -> Result<Decision, Reject> {
    let ev = ev.as_ref().map_err(Clone::clone)?;
    stage(Stage::CadToPoll, polled_ms.saturating_sub(ev.emitted_at) as f64 / 1e3);
    let t = Instant::now();
    let d = engine.decide(ev, index, now());
    let us = t.elapsed().as_secs_f64() * 1e6;
    stage(Stage::Decide, us / 1e6);
    let _ = stats.decide_us.record(us.ceil() as u64);
    d
}
