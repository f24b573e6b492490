//! `bridge`: a separate process (same binary) between the commands topic and the cameras' recorders. Its
//! configuration (`--config FILE`, then `DT_BRIDGE_*` environment variables) names the Kafka cluster,
//! the engine's public keys, the targets and the cameras it serves; `trigger_bridge` does the work, this
//! module wires it to the Kafka feed, /metrics /healthz /readyz and the signals.

use crate::keys::PublicKey;
use crate::runtime::{self, layered, HttpSection, LogSection};
use anyhow::{bail, Result};
use figment::providers::Env;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use trigger_bridge::targets::TargetConfig;
use trigger_bridge::{Bridge, BridgeOptions, CameraEntry, Outcome, Submitted};
use trigger_kafka::command_feed::CommandFeed;
use trigger_kafka::{wall_ms, Health, KafkaSettings};

/// `[verify]`: the public keys commands must be signed with (several while a key rotates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySection {
    pub key: Vec<PublicKey>,
}

/// The whole bridge configuration (docs/driving-cameras.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// The cluster and the commands topic (`topics.commands`); `group_id` is the bridge's own group.
    pub kafka: KafkaSettings,
    pub http: HttpSection,
    pub log: LogSection,
    pub bridge: BridgeOptions,
    pub verify: VerifySection,
    pub target: Vec<TargetConfig>,
    pub camera: Vec<CameraEntry>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        let kafka = KafkaSettings { group_id: "dispatch-trigger-bridge".into(), ..KafkaSettings::default() };
        Self {
            kafka,
            http: HttpSection { listen: "0.0.0.0:9899".into() },
            log: LogSection::default(),
            bridge: BridgeOptions::default(),
            verify: VerifySection::default(),
            target: vec![],
            camera: vec![],
        }
    }
}

impl BridgeConfig {
    /// Defaults, then `file`, then `DT_BRIDGE_*` environment variables (double underscore between levels:
    /// `DT_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD`); serve's `DT_*` variables are not the bridge's.
    pub fn load(file: &Path) -> Result<Self> {
        Self::load_with_env(file, Env::prefixed("DT_BRIDGE_").split("__"))
    }

    pub fn load_with_env(file: &Path, env: Env) -> Result<Self> {
        let cfg: BridgeConfig = layered::load("bridge configuration", Some(file), env)?;
        let mut errs = cfg.kafka.validate();
        errs.extend(runtime::validate(&cfg.http, &cfg.log));
        layered::check("bridge configuration", errs)?;
        Ok(cfg)
    }
}

/// What a run did, by outcome (refusals by reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BridgeStats {
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    /// Sent once without an answer to a target that cannot be asked: never sent again.
    pub in_doubt: u64,
    pub refused: BTreeMap<String, u64>,
}

impl BridgeStats {
    fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Expired { .. } => self.expired += 1,
            Outcome::InDoubt { .. } => self.in_doubt += 1,
            Outcome::Refused { reason, .. } => *self.refused.entry(reason.as_str().to_string()).or_default() += 1,
            Outcome::Interrupted => {}
        }
    }
}

/// A record taken from the feed, in the order read, and what became of it (None: its lane has it).
struct InFlight {
    record: trigger_kafka::command_feed::CommandRecord,
    ticket: Option<u64>,
    outcome: Option<Outcome>,
    /// Parked in the journal: its offset may be stored although its lane still has it.
    parked: bool,
}

/// Run the bridge until `shutdown` is set: hand records to the target lanes as they come, store each record's
/// offset once it and every record before it finished or was parked, and at shutdown end the retries still
/// running (those records are read again by the next run, or taken up from the journal if parked). No count of
/// records caps the reading: when more than `park_after_records` wait behind an unfinished record, that one is
/// parked in the journal and the offsets move past it, so one stuck target never holds up another. Returns
/// counts.
pub fn run(cfg: &BridgeConfig, health: &Health, shutdown: &AtomicBool) -> Result<BridgeStats> {
    let keys = crate::keys::command_keys(&cfg.verify.key)?;
    let mut bridge = Bridge::new(keys, &cfg.target, &cfg.camera, cfg.bridge.clone(), wall_ms)?;
    trigger_bridge::telemetry::register();
    let feed = CommandFeed::open(&cfg.kafka)?;
    health.ready.store(true, Relaxed);
    tracing::info!(cameras = cfg.camera.len(), targets = cfg.target.len(), topic = %cfg.kafka.topics.commands, "bridge ready");
    let mut stats = BridgeStats::default();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let park_after = cfg.bridge.park_after_records.max(1);
    while !shutdown.load(Relaxed) {
        let wait = if in_flight.is_empty() { Duration::from_millis(100) } else { Duration::from_millis(5) };
        if let Some(record) = feed.poll(wait, health) {
            health.broker_seen_ms.store(wall_ms(), Relaxed);
            let (ticket, outcome) = match bridge.submit(&record.payload) {
                Submitted::Finished(o) => (None, Some(o)),
                Submitted::Queued(t) => (Some(t), None),
            };
            in_flight.push_back(InFlight { record, ticket, outcome, parked: false });
        }
        collect(&mut bridge, &mut in_flight, Duration::ZERO, &mut stats);
        if in_flight.len() > park_after && !park_head(&mut bridge, &mut in_flight) {
            bail!(
                "the bridge's journal in {} cannot be written (see the log): stopping",
                cfg.bridge.state_dir.display()
            );
        }
        if !store_finished(&feed, &mut in_flight, health, &mut stats)? {
            // Not a shutdown: the journal could not be written. Delivering without it would lose the dedup.
            bail!(
                "the bridge's journal in {} cannot be written (see the log): stopping",
                cfg.bridge.state_dir.display()
            );
        }
    }
    // Retries end now; every record handed to a lane comes back, finished or interrupted.
    bridge.stop();
    // A lane answers within its attempt in progress; a lane that never does (its thread died) is not waited for:
    // its records stay unfinished and are read again.
    let deadline = std::time::Instant::now() + Duration::from_millis(cfg.bridge.attempt_timeout_ms + 5_000);
    while in_flight.iter().any(|r| r.outcome.is_none() && !r.parked) && std::time::Instant::now() < deadline {
        collect(&mut bridge, &mut in_flight, Duration::from_millis(100), &mut stats);
    }
    store_finished(&feed, &mut in_flight, health, &mut stats)?;
    health.ready.store(false, Relaxed);
    feed.close()?;
    Ok(stats)
}

/// Put the lanes' outcomes on their records; a parked record's (its offset stored already), or a record's the
/// last run parked, is counted here.
fn collect(bridge: &mut Bridge, in_flight: &mut VecDeque<InFlight>, wait: Duration, stats: &mut BridgeStats) {
    for (ticket, outcome) in bridge.finished(wait) {
        match in_flight.iter_mut().find(|r| r.ticket == Some(ticket)) {
            Some(r) if !r.parked => r.outcome = Some(outcome),
            _ => stats.count(&outcome),
        }
    }
}

/// Park the unfinished records at the head of the queue until one has finished or fewer than the bound
/// wait: their lanes keep them, the journal holds their records, and their offsets may be stored. False: the
/// journal could not be written.
fn park_head(bridge: &mut Bridge, in_flight: &mut VecDeque<InFlight>) -> bool {
    for r in in_flight.iter_mut() {
        match (r.outcome.is_some() || r.parked, r.ticket) {
            (true, _) => {}
            (false, Some(ticket)) => {
                match bridge.park(ticket, &r.record.payload) {
                    Ok(true) => r.parked = true,
                    // Finished meanwhile: its outcome is on its way.
                    Ok(false) => return true,
                    Err(_) => return false,
                }
                tracing::info!(
                    offset = r.record.offset,
                    "an unfinished command parked in the journal: offsets move past it"
                );
                return true;
            }
            (false, None) => return true,
        }
    }
    true
}

/// Store the offsets of the finished records at the head of the queue, in order, up to the first one still in
/// a lane or interrupted. False: an interrupted record at the head (the journal could not be written, or the
/// bridge is stopping).
fn store_finished(
    feed: &CommandFeed,
    in_flight: &mut VecDeque<InFlight>,
    health: &Health,
    stats: &mut BridgeStats,
) -> Result<bool> {
    while let Some(head) = in_flight.front() {
        if head.parked {
            feed.done(&head.record)?;
            health.handled.fetch_add(1, Relaxed);
            in_flight.pop_front();
            continue;
        }
        match &head.outcome {
            None => return Ok(true),
            Some(Outcome::Interrupted) => return Ok(false),
            Some(o) => {
                feed.done(&head.record)?;
                health.handled.fetch_add(1, Relaxed);
                stats.count(o);
                in_flight.pop_front();
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_loads_and_every_unknown_key_is_named() {
        let shipped = BridgeConfig::load_with_env(Path::new("config/bridge.toml"), Env::prefixed("DT_TEST_NOTHING_"));
        assert!(shipped.is_ok(), "{shipped:?}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bridge.toml");
        std::fs::write(
            &f,
            "colour = \"blue\"\n[bridge]\nstate_dri = \"x\"\n[kafka]\nbootstrap = \"y\"\n[http]\nlisten = \"nowhere\"\n",
        )
        .unwrap();
        let e = BridgeConfig::load_with_env(&f, Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        for want in ["\"colour\"", "\"bridge.state_dri\"", "\"kafka.bootstrap\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        std::fs::write(&f, "[http]\nlisten = \"nowhere\"\n[log]\nlevel = \"=?=\"\n").unwrap();
        let e = BridgeConfig::load_with_env(&f, Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        for want in ["http.listen", "log.level"] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
    }
}
