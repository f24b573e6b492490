//! Delivery lanes: one thread per target, so a failing target delays only its own commands.
//!
//! A lane keeps a queue per camera, in the order the commands arrived (a camera's commands are delivered in
//! order: START before STOP). It makes one attempt at a time, always for the camera whose head command is due
//! soonest; a retriable failure puts that camera into backoff (doubling from 50 ms up to the configured
//! maximum) and the lane goes on with its other cameras meanwhile, so a failing camera holds its target only
//! for the length of each attempt, never for its backoff. Commands of different targets never wait for each
//! other. Every finished command is reported on the `done` channel; when told to stop, a lane reports every
//! command it still holds as `Interrupted` (its offset is not stored: the next run retries it).

use crate::journal::{EventIds, Journal};
use crate::targets::{Target, TargetError};
use crate::telemetry::Doubt;
use crate::Outcome;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trigger_core::{CameraCommand, Millis};

/// A lane as the bridge holds it: where its commands go (None once closed) and its thread.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) jobs: Option<Sender<Job>>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

/// A command handed to a lane.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) ticket: u64,
    pub(crate) cmd: CameraCommand,
    /// The target's own name for the camera.
    pub(crate) name: String,
    /// Begun by the last run and not finished: ask the target first whether it has it.
    pub(crate) in_doubt: bool,
}

/// A command a lane finished with.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) ticket: u64,
    pub(crate) cmd: CameraCommand,
    pub(crate) outcome: Outcome,
}

/// What a lane shares with the bridge.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) journal: Arc<Mutex<Journal>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) now: fn() -> Millis,
    pub(crate) backoff_max: Duration,
}

/// The journal as a target sees it, locked for each call only (not for a whole delivery).
struct Events<'a>(&'a Mutex<Journal>);

impl EventIds for Events<'_> {
    fn open_event(&self, camera_id: &str, incident_ref: &str) -> Option<String> {
        self.0.lock().expect("not poisoned").open_event(camera_id, incident_ref)
    }
    fn event_started(&mut self, camera_id: &str, incident_ref: &str, event_id: &str) -> std::io::Result<()> {
        self.0.lock().expect("not poisoned").event_started(camera_id, incident_ref, event_id)
    }
    fn event_ended(&mut self, camera_id: &str, incident_ref: &str) -> std::io::Result<()> {
        self.0.lock().expect("not poisoned").event_ended(camera_id, incident_ref)
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How often an idle lane looks at the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// One camera's queue in a lane.
#[derive(Debug)]
struct Camera {
    queue: VecDeque<Job>,
    /// When the head command may be tried (after a failed attempt: its backoff).
    due: Instant,
    backoff: Duration,
    /// The head command was tried at least once (its doubt, if any, was resolved).
    tried: bool,
    /// The head command's last attempt left it in doubt (sent, no answer): why.
    doubt: Option<String>,
    /// The head command's last failure.
    last_error: Option<String>,
}

/// Run a lane until the bridge drops its sender.
pub(crate) fn run(mut target: Box<dyn Target>, jobs: Receiver<Job>, done: Sender<Done>, shared: Shared) {
    let mut cameras: BTreeMap<String, Camera> = BTreeMap::new();
    loop {
        if shared.stop.load(Relaxed) {
            interrupt_all(&mut cameras, &done);
        }
        let due = cameras.values().filter(|c| !c.queue.is_empty()).map(|c| c.due).min();
        let wait = due.map_or(IDLE_WAIT, |d| d.saturating_duration_since(Instant::now()).min(IDLE_WAIT));
        match jobs.recv_timeout(wait) {
            Ok(job) => {
                let c = cameras.entry(job.cmd.camera_id.clone()).or_insert_with(|| Camera {
                    queue: VecDeque::new(),
                    due: Instant::now(),
                    backoff: FIRST_BACKOFF,
                    tried: false,
                    doubt: None,
                    last_error: None,
                });
                c.queue.push_back(job);
                continue;
            }
            // The bridge is gone: nobody waits for what is left.
            Err(RecvTimeoutError::Disconnected) => {
                interrupt_all(&mut cameras, &done);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let next = cameras.iter_mut().filter(|(_, c)| !c.queue.is_empty() && c.due <= now).min_by_key(|(_, c)| c.due);
        if let Some((_, camera)) = next {
            if let Some(d) = attempt(target.as_mut(), camera, &shared) {
                let _ = done.send(d);
            }
        }
    }
}

/// Every command the lane holds ends `Interrupted`.
fn interrupt_all(cameras: &mut BTreeMap<String, Camera>, done: &Sender<Done>) {
    for c in cameras.values_mut() {
        for job in c.queue.drain(..) {
            let _ = done.send(Done { ticket: job.ticket, cmd: job.cmd, outcome: Outcome::Interrupted });
        }
    }
}

/// One attempt at the camera's head command: `Some` when it finished.
///
/// The command's expiry is checked immediately before anything is sent: a command reaches its camera only
/// while it is valid. An attempt that leaves it in doubt (sent, no answer) is never simply repeated: the target
/// is asked first where it can be (Frigate looks its sub label up); where it cannot, the command ends in doubt
/// (at most once wins), unless a second copy changes nothing there.
fn attempt(target: &mut dyn Target, camera: &mut Camera, shared: &Shared) -> Option<Done> {
    let job = camera.queue.front().expect("a due camera has a command");
    let kind = target.kind();
    let mut events = Events(&shared.journal);
    let first = !std::mem::replace(&mut camera.tried, true);
    let outcome = 'outcome: {
        if first && job.in_doubt {
            if let Some(o) = resolve_doubt(target, &job.cmd, &job.name, &mut events) {
                break 'outcome o;
            }
        }
        if let Some(doubt) = camera.doubt.take() {
            match target.already_has(&job.cmd, &job.name, &mut events) {
                Some(true) => {
                    crate::telemetry::in_doubt(Doubt::AlreadyDelivered, &job.cmd.command_id, kind);
                    break 'outcome Outcome::Delivered { kind };
                }
                Some(false) => crate::telemetry::in_doubt(Doubt::NotDelivered, &job.cmd.command_id, kind),
                None if target.resend_is_harmless(&job.cmd) => {}
                None => {
                    crate::telemetry::in_doubt(Doubt::NotSentAgain, &job.cmd.command_id, kind);
                    break 'outcome Outcome::InDoubt { kind, error: doubt };
                }
            }
        }
        if (shared.now)() >= job.cmd.expires_at {
            let last_error = camera.last_error.take().unwrap_or_else(|| "expired before it could be sent".into());
            break 'outcome Outcome::Expired { kind, last_error };
        }
        match target.deliver(&job.cmd, &job.name, &mut events) {
            Ok(()) => Outcome::Delivered { kind },
            Err(TargetError::Permanent(error)) => Outcome::Failed { kind, error },
            Err(e @ (TargetError::Retriable(_) | TargetError::InDoubt(_))) => {
                let (last_error, doubt) = match e {
                    TargetError::InDoubt(d) => (d.clone(), Some(d)),
                    TargetError::Retriable(r) | TargetError::Permanent(r) => (r, None),
                };
                crate::telemetry::retry(kind, &job.cmd.command_id, &last_error);
                let worth_waiting = (shared.now)() + camera.backoff.as_millis() as Millis <= job.cmd.expires_at;
                if doubt.is_some() || worth_waiting {
                    // In doubt: asked after the backoff even past the expiry (a lookup sends nothing).
                    camera.doubt = doubt;
                    camera.last_error = Some(last_error);
                    camera.due = Instant::now() + camera.backoff;
                    camera.backoff = (camera.backoff * 2).min(shared.backoff_max.max(FIRST_BACKOFF));
                    return None;
                }
                Outcome::Expired { kind, last_error }
            }
        }
    };
    let job = camera.queue.pop_front().expect("the head command");
    (camera.due, camera.backoff, camera.tried, camera.doubt, camera.last_error) =
        (Instant::now(), FIRST_BACKOFF, false, None, None);
    Some(Done { ticket: job.ticket, cmd: job.cmd, outcome })
}

/// A command the last run began and did not finish: ask the target whether it has it. `Some` outcome: it
/// has (nothing is sent again); `None`: deliver (it has not, or it cannot tell, which is logged).
fn resolve_doubt(
    target: &mut dyn Target,
    cmd: &CameraCommand,
    name: &str,
    events: &mut dyn EventIds,
) -> Option<Outcome> {
    let kind = target.kind();
    let (resolution, outcome) = match target.already_has(cmd, name, events) {
        Some(true) => (Doubt::AlreadyDelivered, Some(Outcome::Delivered { kind })),
        Some(false) => (Doubt::NotDelivered, None),
        None => (Doubt::DeliveredAgain, None),
    };
    crate::telemetry::in_doubt(resolution, &cmd.command_id, kind);
    outcome
}
