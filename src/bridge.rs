//! `bridge`: a separate process (same binary) between the commands topic and the cameras' recorders. Its
//! configuration (`--config FILE`, then `DT_BRIDGE_*` environment variables) names the Kafka cluster,
//! the engine's public keys, the targets and the cameras it serves; `trigger_bridge` does the work, this
//! module wires it to the Kafka feed, /metrics /healthz /readyz and the signals.

use crate::serve::{HttpSection, LogSection};
use crate::signing::PublicKey;
use anyhow::{bail, Result};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use trigger_bridge::targets::TargetConfig;
use trigger_bridge::{Bridge, BridgeOptions, CameraEntry, Outcome};
use trigger_kafka::command_feed::CommandFeed;
use trigger_kafka::{wall_ms, Health, KafkaSettings};

/// `[verify]`: the public keys commands must be signed with (several while a key rotates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySection {
    pub key: Vec<PublicKey>,
}

/// The whole bridge configuration (README, "Driving cameras: the bridge").
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
        if !file.exists() {
            bail!("config file {} does not exist", file.display());
        }
        let fig = Figment::from(Serialized::defaults(BridgeConfig::default()))
            .merge(Toml::file_exact(file))
            .merge(Env::prefixed("DT_BRIDGE_").split("__"));
        let cfg: BridgeConfig = fig.extract().map_err(|e| {
            let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("invalid bridge configuration:\n  - {}", all.join("\n  - "))
        })?;
        let errs = cfg.kafka.validate();
        if !errs.is_empty() {
            bail!("invalid bridge configuration:\n  - {}", errs.join("\n  - "));
        }
        Ok(cfg)
    }
}

/// What a run did, by outcome (refusals by reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BridgeStats {
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    pub refused: BTreeMap<String, u64>,
}

impl BridgeStats {
    fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Expired { .. } => self.expired += 1,
            Outcome::Refused { reason, .. } => *self.refused.entry((*reason).to_string()).or_default() += 1,
            Outcome::Interrupted => {}
        }
    }
}

/// Run the bridge until `shutdown` is set: finish (or interrupt) the command in hand, commit, return counts.
pub fn run(cfg: &BridgeConfig, health: &Health, shutdown: &AtomicBool) -> Result<BridgeStats> {
    let keys = crate::signing::command_keys(&cfg.verify.key)?;
    let mut bridge = Bridge::new(keys, &cfg.target, &cfg.camera, cfg.bridge.clone())?;
    for r in Bridge::REFUSALS {
        metrics::counter!("dispatch_trigger_bridge_refused_total", "reason" => r).absolute(0);
    }
    let feed = CommandFeed::open(&cfg.kafka)?;
    health.ready.store(true, Relaxed);
    tracing::info!(cameras = cfg.camera.len(), targets = cfg.target.len(), topic = %cfg.kafka.topics.commands, "bridge ready");
    let mut stats = BridgeStats::default();
    while !shutdown.load(Relaxed) {
        let Some(m) = feed.poll(Duration::from_millis(100), health) else { continue };
        health.broker_seen_ms.store(wall_ms(), Relaxed);
        let outcome = bridge.handle(&m.payload, &wall_ms, shutdown);
        if outcome == Outcome::Interrupted {
            if shutdown.load(Relaxed) {
                break;
            }
            // Not a shutdown: the journal could not be written. Delivering without it would lose the dedup.
            bail!(
                "the bridge's journal in {} cannot be written (see the log): stopping",
                cfg.bridge.state_dir.display()
            );
        }
        feed.done(&m)?;
        health.handled.fetch_add(1, Relaxed);
        stats.count(&outcome);
    }
    health.ready.store(false, Relaxed);
    feed.close()?;
    Ok(stats)
}
