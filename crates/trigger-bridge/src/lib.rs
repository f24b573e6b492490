//! trigger-bridge: from the commands topic to real recorders.
//!
//! Each command record goes through [`Bridge::handle`]: decode (named `malformed` if it is not a command the
//! engine writes), verify the engine's signature and key id ([`trigger_core::CommandKeys`]), look the camera
//! up among the ones this bridge serves, refuse it if it has expired, skip it if it already reached an end
//! (the [`journal::Journal`] of finished command ids, persisted across restarts), then drive the camera's
//! target, retrying retriable failures with backoff until the command expires. Every outcome is counted; no
//! bad record stops the bridge. No Kafka here: the binary feeds records in (trigger-kafka's `CommandFeed`)
//! and stores each record's offset only after `handle` returned an outcome other than `Interrupted`.

pub mod journal;
pub mod targets;

use journal::Journal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use targets::{Target, TargetConfig, TargetError};
use trigger_core::{CameraCommand, CommandKeys, Millis};

/// `[bridge]`: where the journal lives and how deliveries are tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeOptions {
    /// The journal of finished commands (dedup across restarts) and open Frigate events.
    pub state_dir: PathBuf,
    /// How many finished command ids are remembered (size above the commands one bridge sees while a command
    /// is valid: a command older than that has expired anyway).
    pub dedup_window: usize,
    /// fsync the journal after each entry (a power cut then loses nothing; a SIGKILL never does).
    pub fsync: bool,
    /// One delivery attempt's limit.
    pub attempt_timeout_ms: u64,
    /// Longest pause between attempts (doubling from 50 ms).
    pub retry_backoff_max_ms: u64,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("bridge-state"),
            dedup_window: 100_000,
            fsync: true,
            attempt_timeout_ms: 3_000,
            retry_backoff_max_ms: 5_000,
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
    Delivered { kind: &'static str },
    /// Refused before any delivery: malformed, unsigned, unknown_key, bad_signature, expired,
    /// unknown_camera, or replayed (already finished: a re-read after a restart, or a replay).
    Refused { reason: &'static str, detail: String },
    /// Retried until it expired, then dropped.
    Expired { kind: &'static str, last_error: String },
    /// A permanent error (another try would fail the same way).
    Failed { kind: &'static str, error: String },
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
            Self::Interrupted => "interrupted",
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

pub struct Bridge {
    keys: CommandKeys,
    cameras: HashMap<String, (usize, String)>,
    targets: Vec<Box<dyn Target>>,
    journal: Journal,
    opts: BridgeOptions,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("keys", &self.keys.len())
            .field("cameras", &self.cameras.len())
            .field("targets", &self.targets)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn refused(reason: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome::Refused { reason, detail: detail.into() }
}

/// A command id goes into the journal as one field of one line.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Bridge {
    pub fn new(
        keys: CommandKeys,
        targets: &[TargetConfig],
        cameras: &[CameraEntry],
        opts: BridgeOptions,
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
        let mut map = HashMap::new();
        for c in cameras {
            let &t = by_name
                .get(&c.target)
                .ok_or_else(|| SetupError::UnknownTarget { camera: c.id.clone(), target: c.target.clone() })?;
            if map.insert(c.id.clone(), (t, c.name.clone().unwrap_or_else(|| c.id.clone()))).is_some() {
                return Err(SetupError::DuplicateCamera(c.id.clone()));
            }
        }
        let journal = Journal::open(&opts.state_dir, opts.dedup_window, opts.fsync)
            .map_err(|error| SetupError::Journal { dir: opts.state_dir.display().to_string(), error })?;
        if journal.in_doubt_count() > 0 {
            tracing::warn!(
                commands = journal.in_doubt_count(),
                "commands begun by the last run and not finished (it stopped mid-delivery): delivered again when re-read"
            );
        }
        Ok(Self { keys, cameras: map, targets: built, journal, opts })
    }

    /// Everything between decoding and a delivery: the command's target and camera name, or why it is refused.
    fn admit(
        &self,
        cmd: &CameraCommand,
        sig: Option<&trigger_core::CommandSignature>,
        now: Millis,
    ) -> Result<(usize, String), Outcome> {
        if !plain_id(&cmd.command_id) {
            return Err(refused("malformed", format!("command id {:?} is not plain ASCII", cmd.command_id)));
        }
        self.keys.verify(cmd, sig, now).map_err(|r| refused(r.as_str(), r.to_string()))?;
        let Some((target, name)) = self.cameras.get(&cmd.camera_id).cloned() else {
            return Err(refused("unknown_camera", format!("camera {:?} is not served by this bridge", cmd.camera_id)));
        };
        if self.journal.finished(&cmd.command_id) {
            return Err(refused("replayed", format!("command {} already reached an end", cmd.command_id)));
        }
        Ok((target, name))
    }

    /// A command left in doubt by the last run and refused now (it has expired since): it ends here, so the
    /// journal does not carry it forever.
    fn end_doubt(&mut self, command_id: &str, o: &Outcome) {
        if self.journal.in_doubt(command_id) {
            if let Err(e) = self.journal.done(command_id, o.label()) {
                tracing::error!(error = %e, "journal write failed");
            }
        }
    }

    /// One record of the commands topic, start to end (see the crate documentation). `now` is the wall
    /// clock; `stop` ends retrying early (the outcome is then `Interrupted`).
    pub fn handle(&mut self, bytes: &[u8], now: &dyn Fn() -> Millis, stop: &AtomicBool) -> Outcome {
        let (cmd, sig) = match trigger_cad::commands::decode_command(bytes) {
            Ok(x) => x,
            Err(e) => return self.count(refused(e.reason(), e.to_string()), None),
        };
        let (target, name) = match self.admit(&cmd, sig.as_ref(), now()) {
            Ok(x) => x,
            Err(o) => {
                self.end_doubt(&cmd.command_id, &o);
                return self.count(o, None);
            }
        };
        let in_doubt = self.journal.in_doubt(&cmd.command_id);
        if !in_doubt {
            if let Err(e) = self.journal.begin(&cmd.command_id) {
                tracing::error!(error = %e, "journal write failed: not delivering without a record of it");
                return Outcome::Interrupted;
            }
        }
        let outcome = match in_doubt.then(|| self.resolve_doubt(&cmd, target, &name)).flatten() {
            Some(o) => o,
            None => self.deliver(&cmd, target, &name, now, stop),
        };
        if outcome != Outcome::Interrupted {
            if let Err(e) = self.journal.done(&cmd.command_id, outcome.label()) {
                tracing::error!(error = %e, command_id = %cmd.command_id, "journal write failed");
            }
        }
        self.count(outcome, Some((&cmd, now())))
    }

    /// A command the last run began and did not finish: ask the target whether it has it. `Some` outcome: it
    /// has (nothing is sent again); `None`: deliver (it has not, or it cannot tell, which is logged).
    fn resolve_doubt(&mut self, cmd: &CameraCommand, t: usize, name: &str) -> Option<Outcome> {
        let kind = self.targets[t].kind();
        let (resolution, outcome) = match self.targets[t].already_has(cmd, name, &mut self.journal) {
            Some(true) => ("already_delivered", Some(Outcome::Delivered { kind })),
            Some(false) => ("not_delivered", None),
            None => ("delivered_again", None),
        };
        metrics::counter!("dispatch_trigger_bridge_in_doubt_total", "resolution" => resolution).increment(1);
        if resolution == "delivered_again" {
            tracing::warn!(command_id = %cmd.command_id, kind, "delivering again a command the last run began and did not finish (the target cannot be asked)");
        } else {
            tracing::info!(command_id = %cmd.command_id, kind, resolution, "a command the last run began and did not finish");
        }
        outcome
    }

    /// Try until delivered, failed for good, expired, or told to stop.
    fn deliver(
        &mut self,
        cmd: &CameraCommand,
        t: usize,
        name: &str,
        now: &dyn Fn() -> Millis,
        stop: &AtomicBool,
    ) -> Outcome {
        let kind = self.targets[t].kind();
        let mut backoff = Duration::from_millis(50);
        let max = Duration::from_millis(self.opts.retry_backoff_max_ms.max(50));
        loop {
            let last_error = match self.targets[t].deliver(cmd, name, &mut self.journal) {
                Ok(()) => return Outcome::Delivered { kind },
                Err(TargetError::Permanent(error)) => return Outcome::Failed { kind, error },
                Err(TargetError::Retriable(e)) => e,
            };
            metrics::counter!("dispatch_trigger_bridge_retries_total", "kind" => kind).increment(1);
            tracing::debug!(command_id = %cmd.command_id, error = %last_error, "delivery failed; retrying");
            if now() + backoff.as_millis() as Millis > cmd.expires_at {
                return Outcome::Expired { kind, last_error };
            }
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until {
                if stop.load(Relaxed) {
                    return Outcome::Interrupted;
                }
                std::thread::sleep(Duration::from_millis(10).min(backoff));
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Count and log an outcome.
    fn count(&self, o: Outcome, cmd: Option<(&CameraCommand, Millis)>) -> Outcome {
        match &o {
            Outcome::Delivered { kind } => {
                let (c, at) = cmd.expect("a delivered command");
                let action = targets::action_word(c.action);
                metrics::counter!("dispatch_trigger_bridge_delivered_total", "kind" => *kind, "action" => action)
                    .increment(1);
                let s = (at - c.issued_at).max(0) as f64 / 1000.0;
                metrics::histogram!("dispatch_trigger_bridge_issued_to_delivered_seconds").record(s);
                tracing::info!(command_id = %c.command_id, camera_id = %c.camera_id, kind, action, "delivered");
            }
            Outcome::Refused { reason, detail } => {
                metrics::counter!("dispatch_trigger_bridge_refused_total", "reason" => *reason).increment(1);
                if *reason == "unknown_camera" || *reason == "replayed" {
                    tracing::debug!(reason, detail, "refused");
                } else {
                    tracing::warn!(reason, detail, "refused");
                }
            }
            Outcome::Expired { kind, last_error } => {
                metrics::counter!("dispatch_trigger_bridge_expired_total", "kind" => *kind).increment(1);
                tracing::warn!(kind, last_error, "expired while retrying: dropped");
            }
            Outcome::Failed { kind, error } => {
                metrics::counter!("dispatch_trigger_bridge_failed_total", "kind" => *kind).increment(1);
                tracing::warn!(kind, error, "failed");
            }
            Outcome::Interrupted => {}
        }
        o
    }

    /// Every refusal reason (metric label values).
    pub const REFUSALS: [&'static str; 7] =
        ["malformed", "unsigned", "unknown_key", "bad_signature", "expired", "unknown_camera", "replayed"];
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
        Bridge::new(keys, &[zm], &[cam], opts).unwrap()
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
        let o = b.handle(&bytes, &|| 5_000, &AtomicBool::new(false));
        assert!(matches!(o, Outcome::Refused { reason: "expired", .. }), "{o:?}");
        drop(b);
        let j = Journal::open(dir.path(), 10, false).unwrap();
        assert!(!j.in_doubt("c-1") && j.finished("c-1"));
    }
}
