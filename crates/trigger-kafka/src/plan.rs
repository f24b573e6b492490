//! The plan of a batch: every output record its events cause (commands, sealed audit records, owner notices,
//! dead letters and incident-state changelog records: see [`Changelog`]), computed without any I/O from plain
//! input records ([`InRecord`]: no client type). The engine decides, the audit chains seal; the sink
//! ([`crate::sink::Sink::commit`]) then commits the plan, in either delivery mode.
//!
//! Everything the plan needs from Kafka is brought in before a batch is planned: the audit chain head of
//! each partition is resumed when the partition is assigned ([`Planner::resume_chain`]), incident state is
//! restored from the changelog at the same moment. A partition without a resumed chain is an internal error,
//! never a network round trip in the middle of a batch.

use crate::codec;
use crate::options::RunStats;
use crate::records::{dead_letter, incident_key, DeadLetterRule, InRecord, OutRecord};
use crate::settings::Topics;
use crate::telemetry::{self, stage, Stage};
use crate::KafkaError;
use prost::Message as _;
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
    pub fn decode(&self, batch: &[InRecord]) -> Vec<Result<CallForService, Reject>> {
        let opts = DecodeOptions { max_message_bytes: self.max_message_bytes, agency_id: None };
        batch.iter().map(|m| trigger_cad::pb::decode_one(m.payload(), &opts)).collect()
    }

    /// Whether deciding the batch may read the camera registry (`Engine::may_use_cameras` of any of its
    /// events): if not, the service needs no registry round trip before it.
    pub fn may_use_cameras(engine: &Engine, batch: &[InRecord], decoded: &[Result<CallForService, Reject>]) -> bool {
        batch.iter().zip(decoded).any(|(m, ev)| !m.break_glass && ev.as_ref().is_ok_and(|e| engine.may_use_cameras(e)))
    }

    /// Decide a batch (`decoded`: [`Planner::decode`] of it) and plan its outputs. `now` is the wall clock in
    /// Unix ms, read once per decision.
    pub fn plan<B: SpatialBackend>(
        &mut self,
        engine: &mut Engine,
        index: &CameraIndex<B>,
        batch: &[InRecord],
        decoded: Vec<Result<CallForService, Reject>>,
        stats: &mut RunStats,
        now: &dyn Fn() -> i64,
    ) -> Result<Plan, KafkaError> {
        let missing = self.missing_chains(batch.iter().map(|m| m.partition));
        if !missing.is_empty() {
            return Err(KafkaError::Internal(format!("audit chains of partitions {missing:?} were not resumed")));
        }
        let polled_ms = now();
        let mut sink = BatchSink { planner: self, records: Vec::new(), dead_letters: 0 };
        for i in priority_order(engine, batch, &decoded) {
            let m = &batch[i];
            telemetry::event_taken();
            let (result, incident) = if m.break_glass {
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
    message: &'m InRecord,
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
        telemetry::refused(r.reason, m.partition, m.offset);
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
        let chain = self.chains.get_mut(&m.partition).expect("checked before planning");
        let sealed = chain.seal(codec::activation(&d.record));
        out.push(OutRecord {
            topic: t.audit.clone(),
            partition: Some(m.partition),
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
                    partition: Some(m.partition),
                    key: incident_key(agency, id),
                    payload: snap.as_ref().map(|s| serde_json::to_vec(s).expect("serialisable")),
                    headers: vec![],
                });
            }
            self.incident_partition.insert((agency.clone(), id.clone()), m.partition);
        }
    }
}

/// Under backlog, higher-priority incidents first. Records with the same key (an incident's revisions, and
/// any break-glass request for it) share the priority of the highest among them and keep their order: the
/// sort is stable.
fn priority_order(engine: &Engine, batch: &[InRecord], decoded: &[Result<CallForService, Reject>]) -> Vec<usize> {
    let mut key_priority: HashMap<&[u8], u8> = HashMap::new();
    for (m, ev) in batch.iter().zip(decoded) {
        if let Ok(ev) = ev {
            let p = engine.policy().priority_of_event(ev);
            let e = key_priority.entry(m.key()).or_default();
            *e = (*e).max(p);
        }
    }
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(key_priority.get(batch[i].key()).copied().unwrap_or(0)));
    order
}

/// A break-glass request travels on the CFS topic, keyed like the incident it is for, so it lands on the
/// incident's partition, in order with its revisions (and in its transaction, exactly-once).
fn break_glass(engine: &mut Engine, m: &InRecord, now_ms: i64) -> (Result<Decision, Reject>, Option<(String, String)>) {
    match serde_json::from_slice::<trigger_core::BreakGlassRequest>(m.payload()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_command;
    use crate::records::{DeadLetterPayload, H_OFFSET, H_PARTITION, H_REASON, H_TOPIC};
    use std::collections::BTreeMap;
    use trigger_core::{Action, CameraRecord, Category, CodeTable, Consent, Location, Policy, PolicyConfig, Status};
    use trigger_index::RTreeBackend;
    use trigger_proto::v1 as pb;

    const T0: i64 = 1_720_000_000_000;

    fn engine() -> Engine {
        let cfg = PolicyConfig::from_toml(
            "max_cameras = 3\nradius_cap_m = 400\nincident_ref_key = \"test-key\"\n\
             [categories.burglary]\nradius_m = 200\nrecord_seconds = 600\n\
             [[agency]]\nid = \"metro\"\ncode_tables = [\"t\"]\njurisdiction = \"square.geojson\"\n",
        )
        .unwrap();
        let table = CodeTable::from_toml(
            "name = \"t\"\n[[rule]]\ncode = \"70\"\nlabel = \"BURGLARY - RESIDENCE\"\ncategory = \"burglary\"\n",
        )
        .unwrap();
        let square = r#"{"type":"Polygon","coordinates":[[[-86.9,36.06],[-86.66,36.06],[-86.66,36.26],[-86.9,36.26],[-86.9,36.06]]]}"#;
        let j = BTreeMap::from([("metro".to_string(), square.to_string())]);
        Engine::new(Policy::new(cfg, &[table], &j).unwrap())
    }

    /// Two cameras that consent to burglary within the radius, one that does not.
    fn index() -> CameraIndex<RTreeBackend> {
        let cam = |id: &str, north_m: f64, cats: &[Category]| CameraRecord {
            camera_id: id.into(),
            owner_ref: format!("owner-{id}"),
            lat: 36.16 + north_m / 111_195.0,
            lon: -86.78,
            consent: Consent {
                categories: cats.iter().copied().collect(),
                max_radius_m: 500.0,
                quiet_hours: None,
                daily_cap: 10,
                live_stream_allowed: false,
            },
            online: true,
            updated_at: 0,
        };
        let cams = vec![
            cam("c1", 50.0, &[Category::Burglary]),
            cam("c2", 120.0, &[Category::Burglary]),
            cam("c3", 60.0, &[Category::Robbery]),
        ];
        CameraIndex::<RTreeBackend>::bulk_load(cams).0
    }

    fn call() -> CallForService {
        CallForService {
            incident_id: "PD1".into(),
            agency_id: "metro".into(),
            revision: 1,
            status: Status::Dispatched,
            call_type_code: "70".into(),
            call_type_text: "BURGLARY - RESIDENCE".into(),
            priority: 1,
            location: Some(Location { lat: 36.16, lon: -86.78, uncertainty_m: 0.0 }),
            received_at: T0,
            emitted_at: T0,
            blocked: None,
            type_fields: vec![],
        }
    }

    fn record(offset: i64, payload: &[u8], break_glass: bool) -> InRecord {
        InRecord {
            topic: "cad.cfs.v1".into(),
            partition: 2,
            offset,
            key: Some(b"metro/PD1".to_vec()),
            payload: Some(payload.to_vec()),
            timestamp_ms: Some(T0),
            break_glass,
        }
    }

    fn planner() -> Planner {
        let letters = DeadLetterRule { payload: DeadLetterPayload::Original, max_bytes: 1 << 20 };
        let mut p = Planner::new(Topics::default(), Changelog::StateChanges, letters, 1 << 20);
        p.resume_chain(2, trigger_audit::GENESIS.to_string());
        p
    }

    fn plan(batch: &[InRecord]) -> (Plan, RunStats) {
        let (mut planner, mut engine, index) = (planner(), engine(), index());
        let mut stats = RunStats::default();
        let decoded = planner.decode(batch);
        let plan = planner.plan(&mut engine, &index, batch, decoded, &mut stats, &|| T0 + 500).unwrap();
        (plan, stats)
    }

    fn header<'r>(r: &'r OutRecord, name: &str) -> &'r [u8] {
        r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_slice()).unwrap_or_default()
    }

    #[test]
    fn a_decided_call_plans_commands_then_its_sealed_audit_record_notices_and_state() {
        let bytes = trigger_cad::pb::to_pb(&call()).encode_to_vec();
        let (plan, stats) = plan(&[record(41, &bytes, false)]);
        let t = Topics::default();
        let topics: Vec<&str> = plan.records.iter().map(|r| r.topic.as_str()).collect();
        let expected = [&t.commands, &t.commands, &t.audit, &t.notices, &t.notices, &t.changelog];
        assert_eq!(topics, expected.map(String::as_str), "{:#?}", plan.records);
        let commands: Vec<_> =
            plan.records[..2].iter().map(|r| decode_command(r.payload.as_deref().unwrap()).unwrap().0).collect();
        let mut started: Vec<&str> = commands.iter().map(|c| c.camera_id.as_str()).collect();
        started.sort_unstable();
        assert_eq!(started, ["c1", "c2"], "the camera that did not consent to burglary is not commanded");
        assert!(commands.iter().all(|c| c.action == Action::Start));
        for r in &plan.records[..2] {
            assert_eq!(r.key, decode_command(r.payload.as_deref().unwrap()).unwrap().0.camera_id.into_bytes());
        }
        // The audit record goes to the CFS record's own partition, keyed by the opaque incident reference, and
        // starts the partition's chain.
        let audit = &plan.records[2];
        assert_eq!(audit.partition, Some(2));
        let sealed = pb::ActivationRecord::decode(audit.payload.as_deref().unwrap()).unwrap();
        assert_eq!(audit.key, sealed.incident_ref.as_bytes());
        assert!(sealed.incident_ref.starts_with("inc_") && !sealed.incident_ref.contains("PD1"));
        trigger_audit::verify(&[Ok(sealed)], Some(trigger_audit::GENESIS)).expect("a chain from its genesis");
        // The incident's state, on the same partition, keyed by the incident: the cameras it started.
        let state = &plan.records[5];
        assert_eq!((state.partition, state.key.as_slice()), (Some(2), &b"metro/PD1"[..]));
        let snap: IncidentSnapshot = serde_json::from_slice(state.payload.as_deref().unwrap()).unwrap();
        assert_eq!(snap.state.started.keys().collect::<Vec<_>>(), ["c1", "c2"]);
        assert_eq!((stats.tally.start_commands, stats.dead_letters), (2, 0));
    }

    #[test]
    fn a_record_that_is_no_call_is_dead_lettered_with_its_own_bytes_and_the_next_is_still_decided() {
        let garbage = b"\xff\x00 not a CallForService".to_vec();
        let good = trigger_cad::pb::to_pb(&call()).encode_to_vec();
        let (plan, stats) = plan(&[record(41, &garbage, false), record(42, &good, false)]);
        let t = Topics::default();
        let letter = &plan.records[0];
        assert_eq!(letter.topic, t.dead_letter);
        assert_eq!(letter.payload.as_deref(), Some(garbage.as_slice()), "the original bytes, unchanged");
        assert_eq!(letter.key, b"metro/PD1");
        assert_eq!(header(letter, H_REASON), b"malformed_protobuf");
        assert_eq!((header(letter, H_TOPIC), header(letter, H_PARTITION)), (&b"cad.cfs.v1"[..], &b"2"[..]));
        assert_eq!(header(letter, H_OFFSET), b"41");
        assert_eq!(plan.records.iter().filter(|r| r.topic == t.audit).count(), 1, "the good call is decided");
        assert_eq!((stats.dead_letters, stats.tally.start_commands), (1, 2));
    }

    #[test]
    fn a_break_glass_request_that_is_not_json_is_refused_by_name_not_decided_as_a_call() {
        // Its bytes are a valid call: the header, not the payload, says what the record is.
        let bytes = trigger_cad::pb::to_pb(&call()).encode_to_vec();
        let (plan, stats) = plan(&[record(7, &bytes, true)]);
        assert_eq!(plan.records.len(), 1, "{:#?}", plan.records);
        assert_eq!(header(&plan.records[0], H_REASON), b"malformed_json");
        assert_eq!((stats.dead_letters, stats.tally.start_commands), (1, 0));
    }

    #[test]
    fn a_partition_whose_chain_was_not_resumed_is_never_planned() {
        let bytes = trigger_cad::pb::to_pb(&call()).encode_to_vec();
        let mut batch = record(41, &bytes, false);
        batch.partition = 0;
        let (mut planner, mut engine, index) = (planner(), engine(), index());
        let decoded = planner.decode(std::slice::from_ref(&batch));
        let r = planner.plan(&mut engine, &index, &[batch], decoded, &mut RunStats::default(), &|| T0);
        assert!(matches!(r, Err(KafkaError::Internal(_))), "{r:?}");
    }
}
