//! `serve`: its configuration (the `[service]`, `[kafka]`, `[signing]` ... sections) and the Kafka service
//! with its camera index. The process around it (logs, endpoints, signals) is `runtime`'s.

use crate::runtime::{self, layered, HttpSection, LogSection};
use anyhow::Result;
use figment::providers::Env;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trigger_core::Engine;
use trigger_kafka::{BatchObserver, Health, KafkaSettings, RunStats, Service, ServiceOptions};

pub use crate::index::IndexKind;

/// The `[service]` section: `trigger_kafka::ServiceOptions`, deserialised directly.
pub type ServiceSection = ServiceOptions;
pub use trigger_kafka::options::RegistrySync;

/// The whole `serve` configuration. Layers: built-in defaults, then the TOML file, then `DT_*` environment
/// variables (`DT_KAFKA__BOOTSTRAP_SERVERS=...`: double underscore between levels). Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Policy file (relative paths: to the working directory).
    pub policy: PathBuf,
    pub index: IndexKind,
    pub kafka: KafkaSettings,
    pub service: ServiceSection,
    pub http: HttpSection,
    pub log: LogSection,
    pub signing: crate::keys::SigningSection,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            policy: PathBuf::from(crate::config::DEFAULT_POLICY),
            index: IndexKind::default(),
            kafka: KafkaSettings::default(),
            service: ServiceSection::default(),
            http: HttpSection::default(),
            log: LogSection::default(),
            signing: Default::default(),
        }
    }
}

impl ServeConfig {
    /// Defaults, then `file` (if given), then the environment. Every problem is reported at once.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        // DT_BRIDGE_* and DT_INGEST_* configure the bridge and the live CAD source, not the service.
        let theirs = |k: &str| ["bridge_", "ingest_"].iter().any(|p| k.to_ascii_lowercase().starts_with(p));
        Self::load_with_env(file, Env::prefixed("DT_").filter(move |k| !theirs(k.as_str())).split("__"))
    }

    pub fn load_with_env(file: Option<&Path>, env: Env) -> Result<Self> {
        let cfg: ServeConfig = layered::load("configuration", file, env)?;
        layered::check("configuration", cfg.validate())?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errs = self.kafka.validate();
        errs.extend(self.service.validate());
        errs.extend(runtime::validate(&self.http, &self.log));
        errs
    }
}

/// Run the service until `shutdown` is set.
pub fn run(cfg: &ServeConfig, health: &Health, shutdown: &AtomicBool) -> Result<RunStats> {
    run_observed(cfg, health, shutdown, None)
}

/// [`run`], telling `observer` what every batch cost.
pub fn run_observed(
    cfg: &ServeConfig,
    health: &Health,
    shutdown: &AtomicBool,
    observer: Option<&BatchObserver<'_>>,
) -> Result<RunStats> {
    let policy = crate::config::load_policy(&cfg.policy)?;
    for w in policy.warnings() {
        tracing::warn!(warning = %w, "policy");
    }
    for a in &policy.config.agencies {
        tracing::info!(agency = %a.id, classification = %policy.classification_digest(&a.id), "classification in force");
    }
    let job = Serve { cfg, engine: Engine::new(policy), health, shutdown, signer: cfg.signing.signer()?, observer };
    // The registry topic fills the index: it starts empty.
    let (stats, _) = crate::index::with_index(cfg.index, vec![], job);
    Ok(stats?)
}

/// The service, once the index of the configured backend exists.
struct Serve<'a> {
    cfg: &'a ServeConfig,
    engine: Engine,
    health: &'a Health,
    shutdown: &'a AtomicBool,
    signer: Arc<trigger_core::CommandSigner>,
    observer: Option<&'a BatchObserver<'a>>,
}

impl crate::index::IndexJob for Serve<'_> {
    type Output = Result<RunStats, trigger_kafka::KafkaError>;
    fn run<B: trigger_index::SpatialBackend>(
        mut self,
        mut index: trigger_index::CameraIndex<B>,
        _: crate::index::IndexKind,
    ) -> Self::Output {
        let cfg = self.cfg;
        let service = Service::new(cfg.kafka.clone(), cfg.service.clone(), &mut self.engine, &mut index, self.health)
            .signed_by(self.signer);
        match self.observer {
            Some(o) => service.observed_by(o).run(self.shutdown),
            None => service.run(self.shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn layers_file_then_environment_and_reports_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("serve.toml");
        std::fs::write(&f, "[kafka]\nbootstrap_servers = \"file:9092\"\ngroup_id = \"from-file\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("DT_KAFKA__BOOTSTRAP_SERVERS", "env:9092");
            jail.set_env("DT_BRIDGE_KAFKA__GROUP_ID", "the-bridge's, not the service's");
            jail.set_env("DT_INGEST_SQL__PASSWORD", "the live source's, not the service's");
            let c = ServeConfig::load(Some(&f)).unwrap();
            assert_eq!(c.kafka.bootstrap_servers, "env:9092", "environment wins over the file");
            assert_eq!(c.kafka.group_id, "from-file", "file wins over defaults");
            assert_eq!(c.service.max_batch, ServiceSection::default().max_batch, "defaults fill the rest");
            Ok(())
        });

        std::fs::write(
            &f,
            "colour = \"blue\"\n[service]\nmax_batch = 0\n[http]\nlisten = \"nowhere\"\n[kafka.producer]\nacks = \"1\"\n",
        )
        .unwrap();
        let e = ServeConfig::load_with_env(Some(&f), Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        assert!(e.contains("colour"), "unknown key named: {e}");
        // Every unknown key at once, at any depth; raw librdkafka properties take any key.
        std::fs::write(
            &f,
            "colour = \"blue\"\n[service]\nmax_bach = 5\n[kafka]\nbootstrap = \"x\"\n[kafka.topics]\ncfs_topic = \"y\"\n[kafka.producer]\n\"linger.ms\" = \"5\"\n",
        )
        .unwrap();
        let e = ServeConfig::load_with_env(Some(&f), Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        for want in ["\"colour\"", "\"service.max_bach\"", "\"kafka.bootstrap\"", "\"kafka.topics.cfs_topic\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        assert!(!e.contains("linger"), "{e}");
        std::fs::write(&f, "[service]\nmax_batch = 0\n[http]\nlisten = \"nowhere\"\n[kafka.producer]\nacks = \"1\"\n")
            .unwrap();
        let e = ServeConfig::load_with_env(Some(&f), Env::prefixed("DT_TEST_NOTHING_")).unwrap_err().to_string();
        for want in ["max_batch", "http.listen", "\"acks\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
    }
}
