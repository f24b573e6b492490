//! The decision: one CAD revision in, commands + one explained decision record + owner notices out.
//! Deterministic given the events, the camera registry and the clock value passed in.

use crate::breakglass::Override;
use crate::classify::Classification;
use crate::consent;
use crate::geodesy::h3_cell;
use crate::policy::Policy;
use crate::reject::{validate, Reject, RejectReason};
use crate::types::*;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// A camera near an incident, with its distance. Borrowed from a source that holds records as they are (a
/// slice), or rebuilt by one that stores them packed (`trigger-index`).
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub camera: Cow<'a, CameraRecord>,
    pub distance_m: f64,
}

/// Where the engine finds cameras. Implemented by `trigger-index`; a slice of records is a brute-force source.
pub trait CameraSource {
    /// Every camera within `radius_m` (great-circle) of `center`, nearest first, ties broken by camera_id.
    fn within(&self, center: LatLon, radius_m: f64) -> Vec<Candidate<'_>>;
    fn get(&self, camera_id: &str) -> Option<Cow<'_, CameraRecord>>;
}

/// Sorts candidates into the order the engine relies on: distance, then camera_id.
pub fn sort_candidates(c: &mut [Candidate<'_>]) {
    c.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m).then_with(|| a.camera.camera_id.cmp(&b.camera.camera_id)));
}

impl CameraSource for [CameraRecord] {
    fn within(&self, center: LatLon, radius_m: f64) -> Vec<Candidate<'_>> {
        let mut v: Vec<_> = self
            .iter()
            .map(|c| Candidate { camera: Cow::Borrowed(c), distance_m: crate::geodesy::distance_m(center, c.point()) })
            .filter(|c| c.distance_m <= radius_m)
            .collect();
        sort_candidates(&mut v);
        v
    }
    fn get(&self, camera_id: &str) -> Option<Cow<'_, CameraRecord>> {
        self.iter().find(|c| c.camera_id == camera_id).map(Cow::Borrowed)
    }
}

/// What happened to an event, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// First cameras of the incident started.
    Triggered,
    /// A later revision added cameras.
    Extended,
    /// Trigger category, cameras already active, none to add.
    NoNewCamera,
    /// Trigger category, no camera passed consent and scope.
    NoCameraInScope,
    /// CLOSED / CANCELLED (STOP sent to cameras still recording, if any).
    Closed,
    /// The backlog guard: reached the engine more than `max_lag_s` after it left the CAD; nothing started.
    RefusedStale,
    /// Emitted more than the category's incident window after the call was received; nothing started.
    OutsideIncidentWindow,
    /// Protest and other First Amendment activity, civil unrest, immigration enforcement, or a table's blocked
    /// type, named by this revision or by an earlier one of the incident: never triggers.
    BlockedType,
    /// A rule maps the call to a trigger category, but the CAD's own type text does not corroborate it
    /// (no phrase of the category's shipped vocabulary): nothing started.
    Uncorroborated,
    /// A known type that does not trigger.
    NotTriggerType,
    /// A trigger category switched off in policy (e.g. alarm-only calls by default).
    CategoryDisabled,
    /// The agency is not a partner.
    NotPartner,
    /// The incident lies outside the agency's jurisdiction.
    OutsideJurisdiction,
    /// A break-glass override was granted for the incident (both authorisations valid).
    BreakGlassGranted,
    /// A break-glass override was refused (the rule says why).
    BreakGlassRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Triggered => "triggered",
            Outcome::Extended => "extended",
            Outcome::NoNewCamera => "no_new_camera",
            Outcome::NoCameraInScope => "no_camera_in_scope",
            Outcome::Closed => "closed",
            Outcome::RefusedStale => "refused_stale",
            Outcome::OutsideIncidentWindow => "outside_incident_window",
            Outcome::BlockedType => "blocked_type",
            Outcome::Uncorroborated => "uncorroborated",
            Outcome::NotTriggerType => "not_trigger_type",
            Outcome::CategoryDisabled => "category_disabled",
            Outcome::NotPartner => "not_partner",
            Outcome::OutsideJurisdiction => "outside_jurisdiction",
            Outcome::BreakGlassGranted => "break_glass_granted",
            Outcome::BreakGlassRefused => "break_glass_refused",
        }
    }
}

pub use crate::consent::Exclusion;

/// Why a STOP was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    IncidentClosed,
    Reclassified,
    ConsentWithdrawn,
    CameraRemoved,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Commanded {
    pub camera_id: String,
    /// Distance at the time of the decision; absent for a STOP to a camera that left the registry.
    pub distance_m: Option<f64>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    pub camera_id: String,
    pub distance_m: f64,
    pub reason: Exclusion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latencies {
    /// CAD emitted -> decided, on the engine's clock.
    pub emitted_to_decided_ms: i64,
    /// Call received -> decided, on the engine's clock.
    pub received_to_decided_ms: i64,
}

/// The explained decision for one event: the audit record's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    pub decided_at: Millis,
    pub incident_ref: String,
    pub agency_id: String,
    pub revision: u32,
    pub status: Status,
    pub priority: u32,
    pub outcome: Outcome,
    pub category: Option<Category>,
    /// The classification rule that matched (or blocked).
    pub rule: Option<String>,
    /// Search radius used, after widening by uncertainty and capping.
    pub radius_m: Option<f64>,
    /// Coarse area (H3 cell at the policy's area resolution); never the exact location.
    pub area_h3: Option<String>,
    pub commanded: Vec<Commanded>,
    pub excluded: Vec<Excluded>,
    pub latencies: Latencies,
    /// Decided under an active break-glass override (wider policy scope; owners' consent unchanged).
    pub break_glass: bool,
    /// The call-type text as the CAD sent it for this revision: the evidence the category was judged on.
    pub type_text: String,
    /// Digest of the classification in force for the agency (code tables, shipped vocabularies, the input's
    /// type columns): see [`Policy::classification`].
    pub classification: String,
}

/// Everything one event causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub record: DecisionRecord,
    pub commands: Vec<CameraCommand>,
    pub notices: Vec<OwnerNotice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub until: Millis,
    pub stopped: bool,
}

/// What the planner holds of one incident between its revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentState {
    pub last_revision: u32,
    pub last_seen: Millis,
    pub category: Option<Category>,
    /// Every camera ever STARTed for this incident (START happens once per camera per incident).
    pub started: BTreeMap<String, Started>,
    /// A granted break-glass override.
    #[serde(default)]
    pub break_glass: Option<Override>,
    /// The rule and revision that first named a blocked type: from then on nothing starts for the incident.
    #[serde(default)]
    pub blocked: Option<String>,
    /// When it was first named (the clock value of that decision): the mark outlives this state
    /// ([`BLOCK_MARK_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_at: Option<Millis>,
}

impl IncidentState {
    fn new(now: Millis) -> Self {
        Self {
            last_revision: 0,
            last_seen: now,
            category: None,
            started: BTreeMap::new(),
            break_glass: None,
            blocked: None,
            blocked_at: None,
        }
    }
}

/// How long an incident that named a blocked type stays marked, whatever the state TTL: 30 days.
pub const BLOCK_MARK_MS: Millis = 30 * 24 * 3600 * 1000;

/// The sticky block of one incident, kept apart from its state so that it outlives it.
#[derive(Debug, Clone, PartialEq)]
struct Mark {
    rule: String,
    at: Millis,
}

/// One incident's planner state, for a changelog: enough to resume deciding its later revisions exactly
/// as this engine would (which cameras it started, until when, its last revision), plus the daily-cap
/// counters of those cameras at the time, so caps survive a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentSnapshot {
    pub agency_id: String,
    pub incident_id: String,
    #[serde(flatten)]
    pub state: IncidentState,
    /// camera_id -> (owner-local day number, STARTs that day).
    pub caps: BTreeMap<String, (i32, u32)>,
}

fn incident_ref_with(key: &[u8], agency_id: &str, incident_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(agency_id.as_bytes());
    mac.update(&[0x1f]);
    mac.update(incident_id.as_bytes());
    format!("inc_{}", hex::encode(&mac.finalize().into_bytes()[..12]))
}

/// Cap counters only ever grow within a day: the larger count of the same day wins, a later day replaces an
/// earlier one.
fn merge_cap(caps: &mut HashMap<String, (i32, u32)>, camera_id: String, day: i32, n: u32) {
    let e = caps.entry(camera_id).or_insert((day, n));
    if day > e.0 || (day == e.0 && n > e.1) {
        *e = (day, n);
    }
}

/// A new incident's state, with the cameras the commands topic says were started for it.
fn new_incident(
    sent: &mut HashMap<String, BTreeMap<String, Started>>,
    incident_ref: &str,
    now: Millis,
) -> IncidentState {
    let mut st = IncidentState::new(now);
    if !sent.is_empty() {
        st.started = sent.remove(incident_ref).unwrap_or_default();
    }
    st
}

/// The planner: policy plus incident state and daily-cap counters.
pub struct Engine {
    policy: Policy,
    incidents: HashMap<(String, String), IncidentState>,
    /// camera_id -> (owner-local day number, STARTs that day)
    caps: HashMap<String, (i32, u32)>,
    /// Cameras the commands topic says were started for incidents not in state yet (incident_ref -> camera ->
    /// started): taken into the incident when it is first seen ([`Engine::restore_sent`]).
    sent: HashMap<String, BTreeMap<String, Started>>,
    /// Incidents that named a blocked type, kept [`BLOCK_MARK_MS`] (or the state TTL, if longer).
    marks: HashMap<(String, String), Mark>,
    next_sweep: Millis,
}

/// A command this deployment sent, as read back from the commands topic when a decider takes over.
#[derive(Debug, Clone, PartialEq)]
pub struct SentCommand {
    pub incident_ref: String,
    pub camera_id: String,
    pub action: Action,
    pub issued_at: Millis,
    pub record_seconds: u32,
    /// The owner-local day of `issued_at` ([`consent::owner_day`]); None: the camera is not in the registry,
    /// and nothing is counted for it.
    pub owner_day: Option<i32>,
}

const SWEEP_EVERY_MS: Millis = 60_000;

/// The policy and the size of the state (incidents and cap counters are many; a log line needs their count).
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policy", &self.policy)
            .field("incidents", &self.incidents.len())
            .field("cap_counters", &self.caps.len())
            .finish()
    }
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            incidents: HashMap::new(),
            caps: HashMap::new(),
            sent: HashMap::new(),
            marks: HashMap::new(),
            next_sweep: Millis::MIN,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Incidents currently held in state.
    pub fn incidents_in_state(&self) -> usize {
        self.incidents.len()
    }

    /// The opaque incident reference: HMAC-SHA-256(key, agency_id 0x1f incident_id), 96 bits, hex.
    pub fn incident_ref(&self, agency_id: &str, incident_id: &str) -> String {
        incident_ref_with(self.policy.config.incident_ref_key.expose().as_bytes(), agency_id, incident_id)
    }

    fn incident(&self, agency_id: &str, incident_id: &str) -> Option<&IncidentState> {
        self.incidents.get(&(agency_id.to_string(), incident_id.to_string()))
    }

    /// The state of one incident, if the engine holds it.
    pub fn snapshot_incident(&self, agency_id: &str, incident_id: &str) -> Option<IncidentSnapshot> {
        let st = self.incident(agency_id, incident_id)?;
        Some(IncidentSnapshot {
            agency_id: agency_id.to_string(),
            incident_id: incident_id.to_string(),
            state: st.clone(),
            caps: st.started.keys().filter_map(|id| self.caps.get(id).map(|c| (id.clone(), *c))).collect(),
        })
    }

    /// Take over an incident's state (from a changelog). Cap counters only ever grow within a day: the
    /// larger count of the same day wins, a later day replaces an earlier one.
    pub fn restore_incident(&mut self, s: IncidentSnapshot) {
        for (id, (day, n)) in s.caps {
            merge_cap(&mut self.caps, id, day, n);
        }
        let key = (s.agency_id, s.incident_id);
        if let Some(rule) = &s.state.blocked {
            let at = s.state.blocked_at.unwrap_or(s.state.last_seen);
            self.marks.entry(key.clone()).or_insert(Mark { rule: rule.clone(), at });
        }
        self.incidents.insert(key, s.state);
    }

    /// Drop an incident's state (its partition moved to another instance).
    pub fn forget_incident(&mut self, agency_id: &str, incident_id: &str) {
        let key = (agency_id.to_string(), incident_id.to_string());
        self.incidents.remove(&key);
        self.marks.remove(&key);
    }

    /// Drop every incident, cap counter and restored command (this instance no longer decides).
    pub fn forget_all(&mut self) {
        self.incidents.clear();
        self.caps.clear();
        self.sent.clear();
        self.marks.clear();
    }

    /// Take the commands that were sent (read back from the commands topic, oldest first) into the state, after
    /// the changelog's snapshots: a decider can be killed after its commands were acknowledged and before the
    /// incident state that stands for them was. Each START counts once per incident against its camera's
    /// daily cap (the larger of this count and the changelog's wins) and marks the camera started for its
    /// incident, in state now or first seen later; a STOP marks it stopped.
    pub fn restore_sent(&mut self, commands: &[SentCommand]) {
        let Engine { policy, incidents, caps, sent, .. } = self;
        let key = policy.config.incident_ref_key.expose().as_bytes().to_vec();
        let by_ref: HashMap<String, (String, String)> =
            incidents.keys().map(|(a, i)| (incident_ref_with(&key, a, i), (a.clone(), i.clone()))).collect();
        let mut per_day: HashMap<(&str, i32), std::collections::BTreeSet<&str>> = HashMap::new();
        for c in commands {
            let started = match by_ref.get(&c.incident_ref).and_then(|k| incidents.get_mut(k)) {
                Some(st) => &mut st.started,
                None => sent.entry(c.incident_ref.clone()).or_default(),
            };
            match c.action {
                Action::Start => {
                    let until = c.issued_at.saturating_add(c.record_seconds as i64 * 1000);
                    started.entry(c.camera_id.clone()).or_insert(Started { until, stopped: false });
                    if let Some(day) = c.owner_day {
                        per_day.entry((&c.camera_id, day)).or_default().insert(&c.incident_ref);
                    }
                }
                Action::Stop => {
                    if let Some(s) = started.get_mut(&c.camera_id) {
                        s.stopped = true;
                    }
                }
            }
        }
        for ((camera, day), refs) in per_day {
            merge_cap(caps, camera.to_string(), day, refs.len() as u32);
        }
    }

    /// Decide a break-glass request at clock value `now`: granted (the incident's scope widens until the
    /// request expires) or refused; either way the returned record is audited.
    pub fn break_glass(&mut self, req: &crate::breakglass::BreakGlassRequest, now: Millis) -> DecisionRecord {
        let cfg = &self.policy.config;
        let limits = crate::breakglass::Limits {
            max_radius_m: cfg.break_glass_max_radius_m,
            max_cameras: cfg.break_glass_max_cameras,
            max_duration_ms: (cfg.break_glass_max_duration_s as i64).saturating_mul(1000),
        };
        let verdict = if self.policy.is_partner(&req.agency_id) {
            crate::breakglass::check(req, &cfg.break_glass_keys, limits, now)
        } else {
            Err(crate::breakglass::Refusal::NotPartner)
        };
        let mut record = DecisionRecord {
            decided_at: now,
            incident_ref: self.incident_ref(&req.agency_id, &req.incident_id),
            agency_id: req.agency_id.clone(),
            revision: 0,
            status: Status::Updated,
            priority: 0,
            outcome: Outcome::BreakGlassRefused,
            category: None,
            rule: None,
            radius_m: Some(req.radius_m),
            area_h3: None,
            commanded: vec![],
            excluded: vec![],
            latencies: Latencies { emitted_to_decided_ms: 0, received_to_decided_ms: 0 },
            break_glass: false,
            type_text: String::new(),
            classification: self.policy.classification_digest(&req.agency_id).to_string(),
        };
        match verdict {
            Err(refusal) => record.rule = Some(format!("break_glass:refused:{refusal}")),
            Ok(()) => {
                let sent = &mut self.sent;
                let st = self
                    .incidents
                    .entry((req.agency_id.clone(), req.incident_id.clone()))
                    .or_insert_with(|| new_incident(sent, &record.incident_ref, now));
                st.last_seen = now;
                st.break_glass = Some(crate::breakglass::Override {
                    radius_m: req.radius_m,
                    max_cameras: req.max_cameras,
                    until: req.expires_at,
                });
                record.outcome = Outcome::BreakGlassGranted;
                record.break_glass = true;
                record.rule = Some(format!("break_glass:granted:{}", req.reason_code));
            }
        }
        record
    }

    /// Forget incidents not updated within the state TTL, and daily-cap counters of past days.
    pub fn expire(&mut self, now: Millis) {
        let ttl = (self.policy.config.state_ttl_s as i64).saturating_mul(1000);
        self.incidents.retain(|_, st| st.last_seen.saturating_add(ttl) >= now);
        let today_utc = consent::day_number(now, chrono_tz::UTC);
        // Owner-local days are within a day of UTC's: anything older than yesterday is finished.
        self.caps.retain(|_, (day, _)| *day >= today_utc - 1);
        self.sent.retain(|_, cams| cams.values().any(|s| s.until.saturating_add(ttl) >= now));
        let keep = ttl.max(BLOCK_MARK_MS);
        for m in self.marks.values_mut().filter(|m| m.at < crate::reject::MIN_TIMESTAMP_MS) {
            // Marked at a clock value no CAD sends (a record whose time could not be read, decided at it):
            // its 30 days start now.
            m.at = now;
        }
        self.marks.retain(|_, m| m.at.saturating_add(keep) >= now);
    }

    /// Decide one event at clock value `now`. `Err` is bad input (to the dead-letter destination).
    ///
    /// The steps, each below in its own function: **validate** (named rejects), **admit** (a partner's
    /// event, a known call type, a revision newer than the last), **terminal** (closed, blocked or no
    /// longer a trigger type: STOP what still records), **scope** (the agency's area, consent withdrawn
    /// since the START, the two clocks, the radius), **select** (candidates nearest first, each through
    /// [`consent::exclusion`]), **plan** (the outcome against what the incident had already started).
    pub fn decide(
        &mut self,
        ev: &CallForService,
        cams: &(impl CameraSource + ?Sized),
        now: Millis,
    ) -> Result<Decision, Reject> {
        if let Some(found) = &ev.blocked {
            return self.decide_raw_block(ev, found, cams, now);
        }
        validate(ev, now, (self.policy.config.max_future_skew_s as i64).saturating_mul(1000))?;
        self.sweep(now);
        let loc = ev.location.expect("validated");
        let mut d = Draft::new(self.record(ev, loc, now), now, &self.policy.config);
        let Engine { policy, incidents, caps, sent, marks, .. } = self;
        let Some(agency) = policy.agencies.get(&ev.agency_id) else {
            return Ok(d.finish(Outcome::NotPartner));
        };
        let (class, st) = admit(agency, incidents, sent, marks, &d.record.incident_ref, ev, now)?;
        let category = class.category();
        (d.record.category, d.record.rule) = (category, class.rule().map(str::to_string));
        if let Classification::Uncorroborated { rule, unexplained, .. } = &class {
            if !unexplained.is_empty() {
                // The words of the CAD's type text that nothing explains: what a city asks to have reviewed.
                d.record.rule = Some(format!("{rule};unexplained:{}", unexplained.join(" ")));
            }
        }
        let cat_policy = enabled_policy(policy, &class);
        if let Some((why, outcome)) = terminal(ev, &class, cat_policy) {
            d.stop_active(st, loc.point(), category.or(st.category).unwrap_or(Category::Burglary), why, cams);
            return Ok(d.finish(outcome));
        }
        let (category, cat_policy) = (category.expect("a trigger type"), cat_policy.expect("enabled"));
        st.category = Some(category);
        let scope = match scope(policy, agency, ev, category, cat_policy, st, now) {
            Ok(scope) => scope,
            Err(outcome) => {
                if outcome != Outcome::OutsideJurisdiction {
                    d.stop_withdrawn(st, loc.point(), category, cams);
                }
                return Ok(d.finish(outcome));
            }
        };
        d.stop_withdrawn(st, loc.point(), category, cams);
        d.record.break_glass = scope.break_glass;
        d.record.radius_m = Some(scope.radius_m);
        let had_started = !st.started.is_empty();
        select(&mut d, st, caps, &scope, cams, loc.point());
        let outcome = plan(&d, had_started);
        Ok(d.finish(outcome))
    }

    fn sweep(&mut self, now: Millis) {
        if now >= self.next_sweep {
            self.expire(now);
            self.next_sweep = now.saturating_add(SWEEP_EVERY_MS);
        }
    }

    /// A revision whose raw record named a blocked type, decided before anything else reads it: whatever its
    /// revision (a duplicate, an older one), its times or its location, the incident is marked, nothing
    /// starts for it again, and every camera still recording for it gets STOP. Only an incident id is needed
    /// (without one there is no incident to mark: a reject, as any record); without an agency, the id is
    /// marked under every agency.
    fn decide_raw_block(
        &mut self,
        ev: &CallForService,
        found: &crate::scan::RawBlock,
        cams: &(impl CameraSource + ?Sized),
        now: Millis,
    ) -> Result<Decision, Reject> {
        if ev.incident_id.trim().is_empty() {
            return Err(Reject::new(RejectReason::MissingIncidentId, "incident_id is empty"));
        }
        self.sweep(now);
        let loc = ev.location.filter(|l| crate::reject::check_coordinates(l.lat, l.lon).is_ok());
        let mut record = self.record(ev, loc.unwrap_or(Location { lat: 0.0, lon: 0.0, uncertainty_m: 0.0 }), now);
        if loc.is_none() {
            record.area_h3 = None;
        }
        let mut d = Draft::new(record, now, &self.policy.config);
        let rule = found.rule();
        let key = (ev.agency_id.clone(), ev.incident_id.clone());
        let first =
            self.marks.entry(key.clone()).or_insert(Mark { rule: format!("{rule}@revision:{}", ev.revision), at: now });
        let first = first.rule.clone();
        let Engine { incidents, sent, .. } = self;
        let st = incidents.entry(key).or_insert_with(|| new_incident(sent, &d.record.incident_ref, now));
        st.last_revision = st.last_revision.max(ev.revision);
        st.last_seen = now;
        if st.blocked.is_none() {
            st.blocked = Some(first.clone());
            st.blocked_at = Some(now);
        }
        let rule = if first.starts_with(&rule) { rule } else { format!("{rule};sticky:{first}") };
        (d.record.category, d.record.rule) = (None, Some(rule));
        let category = st.category.unwrap_or(Category::Burglary);
        let at = loc.map(|l| l.point());
        d.stop_active_anywhere(st, at, category, StopReason::Reclassified, cams);
        if ev.agency_id.trim().is_empty() {
            // No agency: the id is marked under every agency, and what records for it anywhere stops.
            let id = ev.incident_id.as_str();
            for (_, st) in incidents.iter_mut().filter(|(k, _)| k.1 == id && !k.0.is_empty()) {
                if st.blocked.is_none() {
                    (st.blocked, st.blocked_at) = (Some(first.clone()), Some(now));
                }
                let category = st.category.unwrap_or(Category::Burglary);
                d.stop_active_anywhere(st, at, category, StopReason::Reclassified, cams);
            }
        }
        Ok(d.finish(Outcome::BlockedType))
    }

    /// Whether deciding `ev` next may read the camera registry. False only where the decision cannot depend
    /// on any camera: the event is not a partner's, its call type is unknown (a reject), or it starts nothing
    /// (closed, blocked, not a trigger type, a disabled category) for an incident that has no camera to stop.
    /// The steps are `decide`'s own (classify, [`terminal`]), taken without changing any state; anything else
    /// (a trigger type, an incident with cameras started) may, so the service confirms the registry is current
    /// first. A batch of events none of which may needs no registry round trip: nothing in it can start a
    /// camera, so no incident in it gains one either.
    pub fn may_use_cameras(&self, ev: &CallForService) -> bool {
        let Some(agency) = self.policy.agencies.get(&ev.agency_id) else { return false };
        let class = agency.classifier.classify_event(ev);
        if class == Classification::Unknown {
            return false;
        }
        let st = self.incident(&ev.agency_id, &ev.incident_id);
        let marked = mark_of(&self.marks, &(ev.agency_id.clone(), ev.incident_id.clone())).is_some();
        let sticky = ev.blocked.is_some() || marked || st.is_some_and(|st| st.blocked.is_some());
        let starts_nothing = sticky || terminal(ev, &class, enabled_policy(&self.policy, &class)).is_some();
        !starts_nothing || st.is_some_and(|st| !st.started.is_empty())
    }

    /// The decision record as it stands before any step: the event's identity, area and latencies.
    fn record(&self, ev: &CallForService, loc: Location, now: Millis) -> DecisionRecord {
        DecisionRecord {
            decided_at: now,
            incident_ref: self.incident_ref(&ev.agency_id, &ev.incident_id),
            agency_id: ev.agency_id.clone(),
            revision: ev.revision,
            status: ev.status,
            priority: ev.priority,
            outcome: Outcome::NotPartner,
            category: None,
            rule: None,
            radius_m: None,
            area_h3: h3_cell(loc.point(), self.policy.area_resolution),
            commanded: vec![],
            excluded: vec![],
            latencies: Latencies {
                emitted_to_decided_ms: now.saturating_sub(ev.emitted_at),
                received_to_decided_ms: now.saturating_sub(ev.received_at),
            },
            break_glass: false,
            type_text: ev.call_type_text.clone(),
            classification: self.policy.classification_digest(&ev.agency_id).to_string(),
        }
    }
}

/// Admit: a call type some code table of the agency knows (else the named reject `unknown_call_type`) and a
/// revision newer than the incident's last (else `duplicate_revision` / `out_of_order_revision`). The
/// incident's state is created or touched. Sticky block: the first revision that names a blocked type marks
/// the incident, and every later revision is classified as blocked by that rule, whatever it is
/// reclassified to.
fn admit<'s>(
    agency: &crate::policy::Agency,
    incidents: &'s mut HashMap<(String, String), IncidentState>,
    sent: &mut HashMap<String, BTreeMap<String, Started>>,
    marks: &mut HashMap<(String, String), Mark>,
    incident_ref: &str,
    ev: &CallForService,
    now: Millis,
) -> Result<(Classification, &'s mut IncidentState), Reject> {
    let class = agency.classifier.classify_event(ev);
    if class == Classification::Unknown {
        return Err(Reject::new(
            RejectReason::UnknownCallType,
            format!(
                "code {:?} / text {:?} is in no code table of agency {}",
                ev.call_type_code, ev.call_type_text, ev.agency_id
            ),
        ));
    }
    let key = (ev.agency_id.clone(), ev.incident_id.clone());
    if let Some(st) = incidents.get(&key) {
        if ev.revision == st.last_revision {
            return Err(Reject::new(RejectReason::DuplicateRevision, format!("revision {} again", ev.revision)));
        }
        if ev.revision < st.last_revision {
            return Err(Reject::new(
                RejectReason::OutOfOrderRevision,
                format!("revision {} after {}", ev.revision, st.last_revision),
            ));
        }
    }
    let mark = mark_of(marks, &key).map(|m| (m.rule.clone(), m.at));
    let st = incidents.entry(key.clone()).or_insert_with(|| new_incident(sent, incident_ref, now));
    st.last_revision = ev.revision;
    st.last_seen = now;
    if let (None, Some((rule, at))) = (&st.blocked, mark) {
        // The incident's state expired, or was never restored; its mark did not.
        (st.blocked, st.blocked_at) = (Some(rule), Some(at));
    }
    let class = match (&st.blocked, class) {
        (None, Classification::Blocked { rule }) => {
            let first = format!("{rule}@revision:{}", ev.revision);
            marks.insert(key, Mark { rule: first.clone(), at: now });
            (st.blocked, st.blocked_at) = (Some(first), Some(now));
            Classification::Blocked { rule }
        }
        (Some(first), Classification::Blocked { rule }) => {
            Classification::Blocked { rule: format!("{rule};sticky:{first}") }
        }
        (Some(first), _) => Classification::Blocked { rule: format!("sticky:{first}") },
        (None, class) => class,
    };
    Ok((class, st))
}

/// The mark of an incident: its own, or one made by a record of its id that named no agency (a blocked
/// record whose agency could not be read marks the id under every agency).
fn mark_of<'m>(marks: &'m HashMap<(String, String), Mark>, key: &(String, String)) -> Option<&'m Mark> {
    marks.get(key).or_else(|| marks.get(&(String::new(), key.1.clone())))
}

/// Terminal: a closed incident, a blocked type, a type that is not (or no longer) a trigger, or a disabled
/// category stops whatever still records, with the outcome to audit.
fn terminal(
    ev: &CallForService,
    class: &Classification,
    cat_policy: Option<&crate::policy::CategoryPolicy>,
) -> Option<(StopReason, Outcome)> {
    if ev.status.is_terminal() {
        return Some((StopReason::IncidentClosed, Outcome::Closed));
    }
    match (class, cat_policy) {
        (Classification::Blocked { .. }, _) => Some((StopReason::Reclassified, Outcome::BlockedType)),
        (Classification::NotTrigger { .. }, _) => Some((StopReason::Reclassified, Outcome::NotTriggerType)),
        (Classification::Uncorroborated { .. }, _) => Some((StopReason::Reclassified, Outcome::Uncorroborated)),
        (_, None) => Some((StopReason::Reclassified, Outcome::CategoryDisabled)),
        _ => None,
    }
}

/// The policy of a trigger type's category, if that category is enabled.
fn enabled_policy<'p>(policy: &'p Policy, class: &Classification) -> Option<&'p crate::policy::CategoryPolicy> {
    match class {
        Classification::Trigger { category, .. } => policy.category(*category).filter(|p| p.enabled),
        _ => None,
    }
}

/// What the incident may ask of cameras, once it is admitted and live.
struct Scope<'a> {
    ask: consent::Ask<'a>,
    cat_policy: &'a crate::policy::CategoryPolicy,
    radius_m: f64,
    live_stream: bool,
    break_glass: bool,
}

/// Scope: the event is in the agency's area, inside both clocks (the backlog guard on the engine's clock:
/// how long the revision waited to be decided; the incident window on the CAD's own: how long after the call
/// it was emitted, so replay and service decide it identically), and the radius and k-cap it may use (a
/// live break-glass override widens both; each owner's consent still applies). `Err`: the outcome.
fn scope<'a>(
    policy: &'a Policy,
    agency: &'a crate::policy::Agency,
    ev: &CallForService,
    category: Category,
    cat_policy: &'a crate::policy::CategoryPolicy,
    st: &IncidentState,
    now: Millis,
) -> Result<Scope<'a>, Outcome> {
    let cfg = &policy.config;
    let loc = ev.location.expect("validated");
    if !agency.jurisdiction.contains(loc.point()) {
        return Err(Outcome::OutsideJurisdiction);
    }
    if now.saturating_sub(ev.emitted_at) > (cfg.max_lag_s as i64).saturating_mul(1000) {
        return Err(Outcome::RefusedStale);
    }
    if ev.emitted_at.saturating_sub(ev.received_at) > policy.window_ms(category) {
        return Err(Outcome::OutsideIncidentWindow);
    }
    let mut radius_m = (cat_policy.radius_m + loc.uncertainty_m).min(cfg.radius_cap_m);
    let mut max_cameras = cfg.max_cameras;
    let break_glass = st.break_glass.filter(|o| o.until > now);
    if let Some(ov) = break_glass {
        radius_m = radius_m.max(ov.radius_m);
        max_cameras = max_cameras.max(ov.max_cameras);
    }
    let budget = max_cameras.saturating_sub(st.started.len());
    Ok(Scope {
        ask: consent::Ask { category, jurisdiction: &agency.jurisdiction, now, budget },
        cat_policy,
        radius_m,
        live_stream: cat_policy.live_stream,
        break_glass: break_glass.is_some(),
    })
}

/// Select: every camera within the radius, nearest first, not already started for the incident, through
/// [`consent::exclusion`]; a camera it lets through is started (command, audit line, owner notice).
fn select(
    d: &mut Draft,
    st: &mut IncidentState,
    caps: &mut consent::Caps,
    scope: &Scope<'_>,
    cams: &(impl CameraSource + ?Sized),
    at: LatLon,
) {
    let mut ask = scope.ask;
    for cand in cams.within(at, scope.radius_m) {
        let cam = &*cand.camera;
        if st.started.contains_key(&cam.camera_id) {
            continue;
        }
        if let Some(reason) = consent::exclusion(cam, cand.distance_m, &ask, caps) {
            d.record.excluded.push(Excluded { camera_id: cam.camera_id.clone(), distance_m: cand.distance_m, reason });
            continue;
        }
        ask.budget -= 1;
        consent::bump_cap(caps, cam, ask.now);
        let secs = scope.cat_policy.record_seconds;
        st.started.insert(
            cam.camera_id.clone(),
            Started { until: ask.now.saturating_add(secs as i64 * 1000), stopped: false },
        );
        d.push_start(cam, cand.distance_m, secs, scope.live_stream && cam.consent.live_stream_allowed, ask.category);
    }
}

/// Plan: the outcome, from what this revision started and what the incident had started before.
fn plan(d: &Draft, had_started: bool) -> Outcome {
    let started_now = d.record.commanded.iter().any(|c| c.action == Action::Start);
    match (started_now, had_started) {
        (true, false) => Outcome::Triggered,
        (true, true) => Outcome::Extended,
        (false, true) => Outcome::NoNewCamera,
        (false, false) => Outcome::NoCameraInScope,
    }
}

/// A decision being built: the record, its commands and notices, and what every command carries.
struct Draft {
    record: DecisionRecord,
    commands: Vec<CameraCommand>,
    notices: Vec<OwnerNotice>,
    now: Millis,
    /// A command's validity (`command_ttl_s`), ms.
    ttl_ms: i64,
    how_to_stop: String,
}

impl Draft {
    fn new(record: DecisionRecord, now: Millis, cfg: &crate::policy::PolicyConfig) -> Self {
        Self {
            record,
            commands: vec![],
            notices: vec![],
            now,
            ttl_ms: (cfg.command_ttl_s as i64).saturating_mul(1000),
            how_to_stop: cfg.how_to_stop.clone(),
        }
    }

    fn finish(mut self, outcome: Outcome) -> Decision {
        self.record.outcome = outcome;
        Decision { record: self.record, commands: self.commands, notices: self.notices }
    }

    fn push_command(&mut self, camera_id: &str, action: Action, record_seconds: u32, live: bool, category: Category) {
        self.commands.push(CameraCommand {
            command_id: command_id(&self.record.incident_ref, camera_id, action),
            camera_id: camera_id.to_string(),
            action,
            incident_ref: self.record.incident_ref.clone(),
            category,
            record_seconds,
            live_stream: live,
            issued_at: self.now,
            expires_at: self.now.saturating_add(self.ttl_ms),
        });
    }

    fn push_start(&mut self, cam: &CameraRecord, distance_m: f64, record_seconds: u32, live: bool, category: Category) {
        self.push_command(&cam.camera_id, Action::Start, record_seconds, live, category);
        self.record.commanded.push(Commanded {
            camera_id: cam.camera_id.clone(),
            distance_m: Some(distance_m),
            action: Action::Start,
            stop_reason: None,
        });
        self.notices.push(OwnerNotice {
            owner_ref: cam.owner_ref.clone(),
            camera_id: cam.camera_id.clone(),
            category,
            area_h3: self.record.area_h3.clone().unwrap_or_default(),
            at: self.now,
            how_to_stop: self.how_to_stop.clone(),
            break_glass: self.record.break_glass,
        });
    }

    fn push_stop(&mut self, camera_id: &str, distance_m: Option<f64>, why: StopReason, category: Category) {
        self.push_command(camera_id, Action::Stop, 0, false, category);
        self.record.commanded.push(Commanded {
            camera_id: camera_id.to_string(),
            distance_m,
            action: Action::Stop,
            stop_reason: Some(why),
        });
    }

    /// STOP every camera of the incident that is still recording.
    fn stop_active(
        &mut self,
        st: &mut IncidentState,
        at: LatLon,
        category: Category,
        why: StopReason,
        cams: &(impl CameraSource + ?Sized),
    ) {
        self.stop_active_anywhere(st, Some(at), category, why, cams);
    }

    /// [`Draft::stop_active`] where the event may have no readable location: distances from the camera then
    /// stay unknown.
    fn stop_active_anywhere(
        &mut self,
        st: &mut IncidentState,
        at: Option<LatLon>,
        category: Category,
        why: StopReason,
        cams: &(impl CameraSource + ?Sized),
    ) {
        let now = self.now;
        for (id, s) in st.started.iter_mut().filter(|(_, s)| !s.stopped && s.until > now) {
            s.stopped = true;
            let dist = at.and_then(|at| cams.get(id).map(|c| crate::geodesy::distance_m(at, c.point())));
            self.push_stop(id, dist, why, category);
        }
    }

    /// STOP the incident's recording cameras whose owner withdrew consent for `category`, or that left the
    /// registry, since they were started.
    fn stop_withdrawn(
        &mut self,
        st: &mut IncidentState,
        at: LatLon,
        category: Category,
        cams: &(impl CameraSource + ?Sized),
    ) {
        let now = self.now;
        for (id, s) in st.started.iter_mut().filter(|(_, s)| !s.stopped && s.until > now) {
            let (dist, why) = match cams.get(id) {
                None => (None, StopReason::CameraRemoved),
                Some(c) if !c.consent.categories.contains(category) => {
                    (Some(crate::geodesy::distance_m(at, c.point())), StopReason::ConsentWithdrawn)
                }
                Some(_) => continue,
            };
            s.stopped = true;
            self.push_stop(id, dist, why, category);
        }
    }
}

/// Deterministic command id: SHA-256(incident_ref 0x1f camera_id 0x1f action), 128 bits, hex.
pub fn command_id(incident_ref: &str, camera_id: &str, action: Action) -> String {
    let mut h = Sha256::new();
    h.update(incident_ref.as_bytes());
    h.update([0x1f]);
    h.update(camera_id.as_bytes());
    h.update([0x1f]);
    h.update(action.as_str().as_bytes());
    format!("cmd_{}", hex::encode(&h.finalize()[..16]))
}

pub use crate::consent::in_quiet_hours;
