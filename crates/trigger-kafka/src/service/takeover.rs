//! Taking over partitions: the audit chain head of each and the incident state from the committed changelog
//! (both delivery modes), read when the partitions are assigned, before any of their events is planned.

use super::Service;
use crate::KafkaError;
use prost::Message as _;
use std::time::{Duration, Instant};
use trigger_core::IncidentSnapshot;
use trigger_index::SpatialBackend;
use trigger_proto::v1 as pb;

impl<B: SpatialBackend> Service<'_, B> {
    /// Continue each partition's audit chain from the last record of its audit partition.
    pub(super) fn resume_chains(&mut self, parts: &[i32]) -> Result<(), KafkaError> {
        for &partition in parts {
            let audit = &self.settings.topics.audit;
            let last = crate::inspect::last_record(&self.settings, audit, partition, self.eos())?;
            let head = match last.and_then(|r| r.payload) {
                Some(bytes) => {
                    pb::ActivationRecord::decode(bytes.as_slice())
                        .map_err(|e| KafkaError::AuditTail { partition, error: e.to_string() })?
                        .hash
                }
                None => trigger_audit::GENESIS.to_string(),
            };
            tracing::info!(partition, head = %head, "audit chain resumed");
            self.planner.resume_chain(partition, head);
        }
        Ok(())
    }

    /// Take over the incident state of newly assigned partitions from the changelog (committed records only).
    pub(super) fn restore_partitions(&mut self, parts: &[i32]) -> Result<(), KafkaError> {
        let t = Instant::now();
        let topic = self.settings.topics.changelog.clone();
        let records = crate::inspect::read_partitions(&self.settings, &topic, parts, true, Duration::from_secs(120))?;
        let mut restored = 0usize;
        for r in records {
            match r.payload.as_deref().map(serde_json::from_slice::<IncidentSnapshot>) {
                Some(Ok(snap)) => {
                    self.planner.restored(snap.agency_id.clone(), snap.incident_id.clone(), r.partition);
                    self.engine.restore_incident(snap);
                    restored += 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "unreadable incident state")
                }
                None => {
                    if let Some((a, i)) = r.key.as_deref().and_then(crate::records::parse_incident_key) {
                        self.engine.forget_incident(a, i);
                    }
                }
            }
        }
        tracing::info!(partitions = ?parts, records = restored, seconds = t.elapsed().as_secs_f64(), "incident state restored");
        Ok(())
    }
}
