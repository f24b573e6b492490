//! Taking over partitions: the audit chain head of each, the incident state from the committed changelog
//! (both delivery modes) and, at-least-once, the commands already sent, read before any event is planned.

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

    /// At-least-once: the commands sent in the last two days, into the engine after the changelog (see
    /// `Engine::restore_sent`): a decider killed after its commands were acknowledged and before the incident
    /// state that stands for them leaves the changelog behind what cameras were told. (Exactly-once writes both
    /// in one transaction.)
    pub(super) fn restore_sent(&mut self) -> Result<(), KafkaError> {
        const TWO_DAYS_MS: i64 = 2 * 86_400_000;
        let t = Instant::now();
        let topic = self.settings.topics.commands.clone();
        let since = crate::wall_ms() - TWO_DAYS_MS;
        let records = crate::inspect::read_topic_since(&self.settings, &topic, since, false, Duration::from_secs(120))?;
        let mut sent = Vec::with_capacity(records.len());
        for r in &records {
            let Some((c, _)) = r.payload.as_deref().and_then(|b| trigger_cad::commands::decode_command(b).ok()) else {
                continue;
            };
            let owner_day =
                self.index.get(&c.camera_id).map(|cam| trigger_core::consent::owner_day(&cam.consent, c.issued_at));
            sent.push(trigger_core::SentCommand {
                incident_ref: c.incident_ref,
                camera_id: c.camera_id,
                action: c.action,
                issued_at: c.issued_at,
                record_seconds: c.record_seconds,
                owner_day,
            });
        }
        sent.sort_by_key(|c| c.issued_at);
        self.engine.restore_sent(&sent);
        tracing::info!(commands = sent.len(), seconds = t.elapsed().as_secs_f64(), "commands already sent restored");
        Ok(())
    }
}
