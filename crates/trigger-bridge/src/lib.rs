//! trigger-bridge: from the commands topic to real recorders.
//!
//! Each command record goes through [`Bridge::submit`]: decode (named `malformed` if it is not a command the
//! engine writes), verify the engine's signature and key id ([`trigger_core::CommandKeys`]), look the camera
//! up among the ones this bridge serves, refuse it if it has expired or would live longer than allowed, skip it
//! if it already reached an end (the [`journal::Journal`] of finished command ids, persisted across restarts,
//! kept by time), hold it back while a copy of the same command is still being delivered, then hand it to its
//! target's lane ([`lanes`]), which drives the target: the expiry checked before every attempt, retriable
//! failures retried with backoff while the command is valid, an attempt without an answer looked up or ended
//! in doubt, never simply repeated. Lanes run concurrently, one per target, keeping each camera's commands in
//! order: a failing target delays only its own commands. [`Bridge::finished`] collects what the lanes
//! finished. Every outcome is counted; no bad record stops the bridge. No Kafka here: the binary feeds records
//! in (trigger-kafka's `CommandFeed`) and stores a record's offset once it and every record before it finished
//! with an outcome other than `Interrupted`, or were parked ([`Bridge::park`]).

pub mod journal;
mod lanes;
pub mod targets;
pub mod telemetry;

use journal::Journal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use targets::{TargetConfig, TargetKind};
use trigger_core::{CameraCommand, CommandKeys, Millis};

/// The wall clock, Unix ms.
pub(crate) fn wall_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// `[bridge]`: where the journal lives and how deliveries are tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeOptions {
    /// The journal of finished commands (dedup across restarts) and open Frigate events.
    pub state_dir: PathBuf,
    /// How many finished command ids are kept beyond their time (each id is kept, by time, at least
    /// `max_command_life_s` plus `clock_skew_ms` after it finished, whatever this says).
    pub dedup_window: usize,
    /// fsync the journal after each entry (a power cut then loses nothing; a SIGKILL never does).
    pub fsync: bool,
    /// One delivery attempt's limit.
    pub attempt_timeout_ms: u64,
    /// Longest pause between attempts (doubling from 50 ms).
    pub retry_backoff_max_ms: u64,
    /// The longest life a command may have, `expires_at - issued_at`: the engine's record window and delivery
    /// TTL fit well inside. A validly signed command that would live longer is refused as `too_long_lived`.
    pub max_command_life_s: u64,
    /// How far ahead of this bridge's clock a command's `issued_at` may lie (clocks differ); further is refused
    /// as `issued_in_future`.
    pub clock_skew_ms: u64,
    /// Records the binary holds behind an unfinished one before it parks that one in the journal and stores
    /// offsets past it: a stuck target's backlog waits in its own lane, never in front of other targets.
    pub park_after_records: usize,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("bridge-state"),
            dedup_window: 100_000,
            fsync: true,
            attempt_timeout_ms: 3_000,
            retry_backoff_max_ms: 5_000,
            max_command_life_s: 3_600,
            clock_skew_ms: 30_000,
            park_after_records: 1_000,
        }
    }
}

/// `[[camera]]`: one camera this bridge serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraEntry {
    /// The registry's camera_id.
    pub id: String,
    /// The `[[target]]` that drives it.
    pub target: String,
    /// The target's own name for it: Frigate camera name, Home Assistant entity id, ZoneMinder monitor id
    /// (default: the camera_id).
    pub name: Option<String>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target acknowledged it.
    Delivered { kind: TargetKind },
    /// Refused before any delivery, for a [`Refusal`].
    Refused { reason: Refusal, detail: String },
    /// Retried until it expired, then dropped.
    Expired { kind: TargetKind, last_error: String },
    /// A permanent error (another try would fail the same way).
    Failed { kind: TargetKind, error: String },
    /// Sent once without an answer, to a target that cannot be asked whether it has it: never sent again.
    InDoubt { kind: TargetKind, error: String },
    /// Shutdown came while retrying, or the journal could not be written: not finished, its offset must not
    /// be stored (the next run retries it).
    Interrupted,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Refused { .. } => "refused",
            Self::Expired { .. } => "expired",
            Self::Failed { .. } => "failed",
            Self::InDoubt { .. } => "in_doubt",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Why a command was refused before any delivery: a closed set, named by [`Refusal::as_str`] in metrics and
/// logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// Not a command the engine writes (undecodable, an unknown action or category, no id, an id that is not
    /// plain ASCII).
    Malformed,
    Unsigned,
    /// Signed by a key this bridge does not list.
    UnknownKey,
    /// The signature does not match the command.
    BadSignature,
    Expired,
    /// A camera this bridge does not serve.
    UnknownCamera,
    /// Already finished, or in flight: a record read again after a restart, a second copy of a record, a
    /// replay.
    Replayed,
    /// Validly signed, but `expires_at - issued_at` exceeds `max_command_life_s`.
    TooLongLived,
    /// Validly signed, but issued further ahead of this bridge's clock than `clock_skew_ms` allows.
    IssuedInFuture,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Malformed,
        Refusal::Unsigned,
        Refusal::UnknownKey,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::UnknownCamera,
        Refusal::Replayed,
        Refusal::TooLongLived,
        Refusal::IssuedInFuture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Unsigned => "unsigned",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::UnknownCamera => "unknown_camera",
            Refusal::Replayed => "replayed",
            Refusal::TooLongLived => "too_long_lived",
            Refusal::IssuedInFuture => "issued_in_future",
        }
    }

    /// The verifier's refusal, in the bridge's terms.
    pub fn of(r: &trigger_core::CommandRefusal) -> Self {
        use trigger_core::CommandRefusal as R;
        match r {
            R::Unsigned => Refusal::Unsigned,
            R::UnknownKey(_) => Refusal::UnknownKey,
            R::BadSignature => Refusal::BadSignature,
            R::Expired { .. } => Refusal::Expired,
            R::Replayed(_) => Refusal::Replayed,
        }
    }
}

/// A bridge that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("camera {camera:?} names target {target:?}, which is not configured")]
    UnknownTarget { camera: String, target: String },
    #[error("target {0:?} is configured twice")]
    DuplicateTarget(String),
    #[error("camera {0:?} is listed twice")]
    DuplicateCamera(String),
    #[error("no public key to verify commands with ([[verify.key]])")]
    NoKeys,
    #[error("target {name}: {error}")]
    Target { name: String, error: String },
    #[error("journal in {dir}: {error}")]
    Journal { dir: String, error: std::io::Error },
}

/// What [`Bridge::submit`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Finished at once (refused, or the journal could not be written: `Interrupted`).
    Finished(Outcome),
    /// Handed to its target's lane; [`Bridge::finished`] reports it under this ticket.
    Queued(u64),
}

pub struct Bridge {
    keys: CommandKeys,
    cameras: HashMap<String, (usize, String)>,
    /// One lane per target, in the order of the targets.
    lanes: Vec<lanes::Lane>,
    done: Receiver<lanes::Done>,
    shared: lanes::Shared,
    next_ticket: u64,
    opts: BridgeOptions,
    /// Commands handed to a lane and not finished, by id: the ticket, and the tickets of later copies of the
    /// same command waiting for its outcome (at most one copy of a command is ever in a lane).
    in_flight: HashMap<String, (u64, Vec<u64>)>,
    /// The command id of each ticket in a lane.
    tickets: HashMap<u64, String>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("keys", &self.keys.len())
            .field("cameras", &self.cameras.len())
            .field("lanes", &self.lanes.len())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        for lane in &mut self.lanes {
            lane.jobs.take();
        }
        for lane in &mut self.lanes {
            if let Some(h) = lane.thread.take() {
                let _ = h.join();
            }
        }
    }
}

fn refused(reason: Refusal, detail: impl Into<String>) -> Outcome {
    Outcome::Refused { reason, detail: detail.into() }
}

/// A command id goes into the journal as one field of one line.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Each served camera: its target's index and its name there.
fn camera_map(
    cameras: &[CameraEntry],
    by_name: &HashMap<String, usize>,
) -> Result<HashMap<String, (usize, String)>, SetupError> {
    let mut map = HashMap::new();
    for c in cameras {
        let &t = by_name
            .get(&c.target)
            .ok_or_else(|| SetupError::UnknownTarget { camera: c.id.clone(), target: c.target.clone() })?;
        if map.insert(c.id.clone(), (t, c.name.clone().unwrap_or_else(|| c.id.clone()))).is_some() {
            return Err(SetupError::DuplicateCamera(c.id.clone()));
        }
    }
    Ok(map)
}

/// The journal of the state directory, saying what the last run left in doubt.
fn open_journal(opts: &BridgeOptions, now: fn() -> Millis) -> Result<Journal, SetupError> {
    let journal = Journal::open_with_clock(&opts.state_dir, opts.dedup_window, opts.fsync, now)
        .map_err(|error| SetupError::Journal { dir: opts.state_dir.display().to_string(), error })?;
    if journal.in_doubt_count() > 0 {
        tracing::warn!(
            commands = journal.in_doubt_count(),
            "commands begun by the last run and not finished (it stopped mid-delivery): delivered again when re-read"
        );
    }
    Ok(journal)
}

impl Bridge {
    /// A bridge whose lanes read the time from `now` (Unix ms; the wall clock in the service). Commands the
    /// last run parked (their offsets stored, not finished) are taken up again at once; their outcomes come
    /// from [`Bridge::finished`] under tickets no record of this run holds.
    pub fn new(
        keys: CommandKeys,
        targets: &[TargetConfig],
        cameras: &[CameraEntry],
        opts: BridgeOptions,
        now: fn() -> Millis,
    ) -> Result<Self, SetupError> {
        if keys.is_empty() {
            return Err(SetupError::NoKeys);
        }
        let mut by_name = HashMap::new();
        let mut built = Vec::new();
        let timeout = Duration::from_millis(opts.attempt_timeout_ms);
        for t in targets {
            if by_name.insert(t.name().to_string(), built.len()).is_some() {
                return Err(SetupError::DuplicateTarget(t.name().into()));
            }
            built.push(t.build(timeout).map_err(|error| SetupError::Target { name: t.name().into(), error })?);
        }
        let map = camera_map(cameras, &by_name)?;
        let journal = open_journal(&opts, now)?;
        let parked = journal.parked();
        let shared = lanes::Shared {
            journal: Arc::new(Mutex::new(journal)),
            stop: Arc::new(AtomicBool::new(false)),
            now,
            backoff_max: Duration::from_millis(opts.retry_backoff_max_ms),
        };
        let (done_tx, done) = std::sync::mpsc::channel();
        let mut lanes = Vec::with_capacity(built.len());
        for (i, target) in built.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            let (done_tx, shared) = (done_tx.clone(), shared.clone());
            let handle = std::thread::Builder::new()
                .name(format!("bridge-lane-{i}"))
                .spawn(move || lanes::run(target, rx, done_tx, shared))
                .map_err(|e| SetupError::Target { name: targets[i].name().into(), error: e.to_string() })?;
            lanes.push(lanes::Lane { jobs: Some(tx), thread: Some(handle) });
        }
        let mut bridge = Self {
            keys,
            cameras: map,
            lanes,
            done,
            shared,
            next_ticket: 0,
            opts,
            in_flight: HashMap::new(),
            tickets: HashMap::new(),
        };
        if !parked.is_empty() {
            tracing::info!(commands = parked.len(), "taking up the commands the last run parked");
        }
        for (_, record) in parked {
            // Refused now (expired since): ended in the journal by submit; else back in its lane.
            let _ = bridge.submit(&record);
        }
        Ok(bridge)
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.shared.journal.lock().expect("not poisoned")
    }

    /// How long a finished id is remembered from now: past any command's longest allowed life.
    fn keep_until(&self) -> Millis {
        let life = self.opts.max_command_life_s.saturating_mul(1000).saturating_add(self.opts.clock_skew_ms);
        (self.shared.now)().saturating_add(Millis::try_from(life).unwrap_or(Millis::MAX))
    }

    /// Everything between decoding and a delivery: the command's target and camera name, or why it is refused.
    fn admit(
        &self,
        cmd: &CameraCommand,
        sig: Option<&trigger_core::CommandSignature>,
        now: Millis,
    ) -> Result<(usize, String), Outcome> {
        if !plain_id(&cmd.command_id) {
            return Err(refused(Refusal::Malformed, format!("command id {:?} is not plain ASCII", cmd.command_id)));
        }
        self.keys.verify(cmd, sig, now).map_err(|r| refused(Refusal::of(&r), r.to_string()))?;
        let max_life = Millis::try_from(self.opts.max_command_life_s.saturating_mul(1000)).unwrap_or(Millis::MAX);
        let life = cmd.expires_at.saturating_sub(cmd.issued_at);
        if life > max_life {
            return Err(refused(
                Refusal::TooLongLived,
                format!("command {} would live {life} ms, more than the {max_life} ms allowed", cmd.command_id),
            ));
        }
        let skew = Millis::try_from(self.opts.clock_skew_ms).unwrap_or(Millis::MAX);
        if cmd.issued_at > now.saturating_add(skew) {
            return Err(refused(
                Refusal::IssuedInFuture,
                format!(
                    "command {} issued at {}, more than {skew} ms after this bridge's clock ({now})",
                    cmd.command_id, cmd.issued_at
                ),
            ));
        }
        let Some((target, name)) = self.cameras.get(&cmd.camera_id).cloned() else {
            return Err(refused(
                Refusal::UnknownCamera,
                format!("camera {:?} is not served by this bridge", cmd.camera_id),
            ));
        };
        if self.journal().finished(&cmd.command_id) {
            return Err(refused(Refusal::Replayed, format!("command {} already reached an end", cmd.command_id)));
        }
        Ok((target, name))
    }

    /// A command left in doubt by the last run and refused now (it has expired since): it ends here, so the
    /// journal does not carry it forever.
    fn end_doubt(&mut self, command_id: &str, o: &Outcome) {
        if self.in_flight.contains_key(command_id) {
            return;
        }
        let keep_until = self.keep_until();
        let mut journal = self.journal();
        if journal.in_doubt(command_id) {
            if let Err(e) = journal.done(command_id, o.label(), keep_until) {
                tracing::error!(error = %e, "journal write failed");
            }
        }
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket - 1
    }

    /// Take one record of the commands topic: refuse it at once, or hand it to its target's lane (see the crate
    /// documentation). A command is recorded as begun in the journal before any delivery. A second copy of a
    /// command still in a lane is never handed to one: it waits for the first's outcome and is then refused as
    /// `replayed` (or interrupted with it).
    pub fn submit(&mut self, bytes: &[u8]) -> Submitted {
        let (cmd, sig) = match trigger_cad::commands::decode_command(bytes) {
            Ok(x) => x,
            Err(e) => return Submitted::Finished(self.count(refused(Refusal::Malformed, e.to_string()), None)),
        };
        let (target, name) = match self.admit(&cmd, sig.as_ref(), (self.shared.now)()) {
            Ok(x) => x,
            Err(o) => {
                self.end_doubt(&cmd.command_id, &o);
                return Submitted::Finished(self.count(o, None));
            }
        };
        if self.in_flight.contains_key(&cmd.command_id) {
            let ticket = self.ticket();
            self.in_flight.get_mut(&cmd.command_id).expect("in flight").1.push(ticket);
            return Submitted::Queued(ticket);
        }
        let in_doubt = self.journal().in_doubt(&cmd.command_id);
        if !in_doubt {
            if let Err(e) = self.journal().begin(&cmd.command_id) {
                tracing::error!(error = %e, "journal write failed: not delivering without a record of it");
                return Submitted::Finished(Outcome::Interrupted);
            }
        }
        let ticket = self.ticket();
        let id = cmd.command_id.clone();
        let job = lanes::Job { ticket, cmd, name, in_doubt };
        match self.lanes[target].jobs.as_ref().map(|tx| tx.send(job).is_ok()) {
            Some(true) => {
                self.in_flight.insert(id.clone(), (ticket, vec![]));
                self.tickets.insert(ticket, id);
                Submitted::Queued(ticket)
            }
            // A lane that is gone (its thread panicked): nothing is delivered, the record is retried next run.
            _ => Submitted::Finished(Outcome::Interrupted),
        }
    }

    /// Park the command under `ticket` (still in its lane): its record is written to the journal, so its offset
    /// may be stored now; a restart takes it up from the journal. `Ok(false)`: not in a lane (it finished, its
    /// outcome is on its way); an error: the journal could not be written.
    pub fn park(&mut self, ticket: u64, record: &[u8]) -> std::io::Result<bool> {
        let Some(id) = self.tickets.get(&ticket).cloned() else { return Ok(false) };
        self.journal().park(&id, record).inspect_err(|e| {
            tracing::error!(error = %e, command_id = %id, "journal write failed: not parked");
        })?;
        Ok(true)
    }

    /// The commands the lanes finished since the last call, waiting up to `wait` for the first: each recorded
    /// in the journal (but `Interrupted`), counted and logged; with them, the copies that waited for them.
    pub fn finished(&mut self, wait: Duration) -> Vec<(u64, Outcome)> {
        let first = match self.done.recv_timeout(wait) {
            Ok(d) => d,
            Err(_) => return vec![],
        };
        let mut out = Vec::new();
        for d in std::iter::once(first).chain(std::iter::from_fn(|| self.done.try_recv().ok())) {
            self.tickets.remove(&d.ticket);
            let copies = self.in_flight.remove(&d.cmd.command_id).map(|(_, c)| c).unwrap_or_default();
            if d.outcome != Outcome::Interrupted {
                let keep_until = self.keep_until();
                if let Err(e) = self.journal().done(&d.cmd.command_id, d.outcome.label(), keep_until) {
                    tracing::error!(error = %e, command_id = %d.cmd.command_id, "journal write failed");
                }
            }
            for copy in copies {
                let o = match d.outcome {
                    Outcome::Interrupted => Outcome::Interrupted,
                    _ => refused(
                        Refusal::Replayed,
                        format!("a second copy of command {}, read while the first was in flight", d.cmd.command_id),
                    ),
                };
                out.push((copy, self.count(o, None)));
            }
            let at = (self.shared.now)();
            out.push((d.ticket, self.count(d.outcome, Some((&d.cmd, at)))));
        }
        out
    }

    /// End every retry: the lanes report each command they still hold as `Interrupted`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Relaxed);
    }

    /// One record, start to end: [`Bridge::submit`], then wait for its outcome (commands the lanes finish
    /// meanwhile for other tickets are recorded and counted, and dropped).
    pub fn handle(&mut self, bytes: &[u8]) -> Outcome {
        let ticket = match self.submit(bytes) {
            Submitted::Finished(o) => return o,
            Submitted::Queued(t) => t,
        };
        loop {
            if let Some((_, o)) = self.finished(Duration::from_millis(50)).into_iter().find(|(t, _)| *t == ticket) {
                return o;
            }
        }
    }

    /// Count and log an outcome.
    fn count(&self, o: Outcome, cmd: Option<(&CameraCommand, Millis)>) -> Outcome {
        telemetry::outcome(&o, cmd);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use trigger_core::{Action, Category, CommandSigner};

    fn bridge(dir: &std::path::Path, signer: &CommandSigner) -> Bridge {
        let keys = CommandKeys::from_hex([(signer.key_id(), signer.public_key_hex().as_str())]).unwrap();
        // A zmtrigger target connects on first delivery: nothing listens, nothing is needed here.
        let zm: TargetConfig = serde_json::from_value(serde_json::json!(
            {"kind": "zmtrigger", "name": "zm", "address": "127.0.0.1:9"}
        ))
        .unwrap();
        let cam = CameraEntry { id: "cam-1".into(), target: "zm".into(), name: None };
        let opts = BridgeOptions { state_dir: dir.to_path_buf(), fsync: false, ..BridgeOptions::default() };
        Bridge::new(keys, &[zm], &[cam], opts, || 5_000).unwrap()
    }

    #[test]
    fn a_command_left_in_doubt_that_expired_since_ends_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CommandSigner::from_seed("k", [1; 32]);
        {
            let mut j = Journal::open(dir.path(), 10, false).unwrap();
            j.begin("c-1").unwrap(); // the last run died here
        }
        let mut b = bridge(dir.path(), &signer);
        let cmd = CameraCommand {
            command_id: "c-1".into(),
            camera_id: "cam-1".into(),
            action: Action::Start,
            incident_ref: "i".into(),
            category: Category::Burglary,
            record_seconds: 60,
            live_stream: false,
            issued_at: 1_000,
            expires_at: 2_000,
        };
        let bytes = trigger_cad::commands::command_to_pb(&cmd, Some(&signer)).encode_to_vec();
        let o = b.handle(&bytes);
        assert!(matches!(o, Outcome::Refused { reason: Refusal::Expired, .. }), "{o:?}");
        drop(b);
        let j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(!j.in_doubt("c-1") && j.finished("c-1"));
    }
}
