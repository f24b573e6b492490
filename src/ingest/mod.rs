//! `ingest`: a long-running process beside `serve` that brings a city's live CAD feed onto the CFS topic,
//! through the same profiles the offline replay reads its exports with. Configuration (`--config FILE`, then
//! `DT_INGEST_*` environment variables) names the cluster, the process's endpoints and log, and the source;
//! `sql` polls a CAD reporting database ([`sql`]). Each source keeps its position on the watermark topic,
//! written with the records it stands for ([`trigger_kafka::ingest`]).

pub mod sql;

use crate::runtime::{self, layered, HttpSection, LogSection};
use anyhow::Result;
use figment::providers::Env;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use trigger_kafka::records::DeadLetterPayload;
use trigger_kafka::{Health, KafkaSettings};

/// `[ingest]`: what every source shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestOptions {
    /// Longest pause between retries of a source or a broker that does not answer (they start at 100 ms and
    /// double).
    pub retry_backoff_max_ms: u64,
    /// What a dead letter keeps of the refused input (`original`, `redacted`, `digest`).
    pub dead_letter_payload: DeadLetterPayload,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { retry_backoff_max_ms: 5000, dead_letter_payload: DeadLetterPayload::Original }
    }
}

/// The whole `ingest` configuration (docs/connecting-a-cad.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The cluster, the CFS, dead-letter and watermark topics, the delivery mode (exactly-once: records and
    /// watermark in one transaction).
    pub kafka: KafkaSettings,
    pub http: HttpSection,
    pub log: LogSection,
    pub ingest: IngestOptions,
    /// A CAD reporting database, polled (the source, once its `connection` is set).
    pub sql: sql::SqlSource,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings { group_id: "dispatch-trigger-ingest".into(), ..KafkaSettings::default() },
            http: HttpSection { listen: "0.0.0.0:9897".into() },
            log: LogSection::default(),
            ingest: IngestOptions::default(),
            sql: sql::SqlSource::default(),
        }
    }
}

impl IngestConfig {
    /// Defaults, then `file`, then `DT_INGEST_*` variables (double underscore between levels:
    /// `DT_INGEST_SQL__PASSWORD`).
    pub fn load(file: &Path) -> Result<Self> {
        Self::load_with_env(file, Env::prefixed("DT_INGEST_").split("__"))
    }

    pub fn load_with_env(file: &Path, env: Env) -> Result<Self> {
        let cfg: IngestConfig = layered::load("ingest configuration", Some(file), env)?;
        let mut errs = cfg.kafka.validate();
        errs.extend(runtime::validate(&cfg.http, &cfg.log));
        if cfg.sql.connection.trim().is_empty() {
            errs.push("no source: configure [sql] (its connection, profile and query)".into());
        } else {
            errs.extend(cfg.sql.validate());
        }
        layered::check("ingest configuration", errs)?;
        Ok(cfg)
    }
}

/// Run the configured source until `shutdown` is set; returns what it wrote.
pub fn run(cfg: &IngestConfig, policy: &Path, health: &Health, shutdown: &AtomicBool) -> Result<sql::Written> {
    health.partitionless.store(true, Relaxed);
    sql::run(cfg, &cfg.sql, policy, health, shutdown)
}

/// Retries of one thing that does not answer: 100 ms, doubling up to the configured pause.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max_ms: u64) -> Self {
        Self { next: Duration::from_millis(100), max: Duration::from_millis(max_ms.max(100)) }
    }

    /// Sleep the next pause (waking early on `shutdown`), then double it.
    pub(crate) fn wait(&mut self, shutdown: &AtomicBool) {
        crate::runtime::sleep_unless(self.next, shutdown);
        self.next = (self.next * 2).min(self.max);
    }

    pub(crate) fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_loads_and_every_problem_is_named() {
        let env = || Env::prefixed("DT_TEST_NOTHING_");
        let shipped = IngestConfig::load_with_env(Path::new("config/ingest.toml"), env());
        assert!(shipped.is_ok(), "{shipped:?}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ingest.toml");
        std::fs::write(&f, "[sql]\nconection = \"x\"\nquery = \"SELECT 1 WHERE $1 < $2\"\n[ingest]\nretry = 1\n")
            .unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        for want in ["\"ingest.retry\"", "\"sql.conection\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        std::fs::write(&f, "[sql]\nconnection = \"host=x\"\nquery = \"SELECT 1 WHERE $1 < $2\"\nname = \"a b\"\n")
            .unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        for want in ["sql.profile is empty", "does not use $3", "sql.name \"a b\""] {
            assert!(e.contains(want), "{want} missing from: {e}");
        }
        std::fs::write(&f, "[kafka]\nbootstrap_servers = \"x:9092\"\n").unwrap();
        let e = IngestConfig::load_with_env(&f, env()).unwrap_err().to_string();
        assert!(e.contains("no source"), "{e}");
    }
}
