//! The topics the service reads and writes: names, and the one list of them.

use serde::{Deserialize, Serialize};

/// Topic names. Defaults follow `<domain>.<what>.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Calls for service (protobuf `CallForService`, key = agency/incident).
    pub cfs: String,
    /// Camera registry (compacted; protobuf `CameraRecord`, key = camera_id; tombstone = removed / opted out).
    pub registry: String,
    /// Camera liveness at heartbeat rate (compacted; protobuf `CameraStatus`, key = camera_id). Never consent:
    /// see ARCHITECTURE.md "Registry and status". Optional: a deployment without the topic runs without it.
    pub status: String,
    /// Camera commands (protobuf `CameraCommand`, key = camera_id).
    pub commands: String,
    /// One decision record per decided event (protobuf `ActivationRecord`, key = incident_ref).
    pub audit: String,
    /// Owner notices (protobuf `OwnerNotice`, key = owner_ref).
    pub notices: String,
    /// Refused input: the original bytes, the reason in headers.
    pub dead_letter: String,
    /// Exactly-once mode: incident state (compacted, co-partitioned with `cfs`: same partition count, written
    /// to the partition of the event that changed it).
    pub changelog: String,
    /// Who decides: one partition, never written; the instance that holds it in the group `<group_id>.leader`
    /// is the deployment's one decider (see `trigger_kafka::leader`).
    pub leader: String,
    /// `ingest`: where each live CAD source keeps how far it has read (compacted, one partition, key = the
    /// source's name), written with the records it stands for.
    pub watermark: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            cfs: "cad.cfs.v1".into(),
            registry: "camera.registry.v1".into(),
            status: "camera.status.v1".into(),
            commands: "camera.commands.v1".into(),
            audit: "dispatch.audit.v1".into(),
            notices: "owner.notices.v1".into(),
            dead_letter: "cad.cfs.dlq.v1".into(),
            changelog: "dispatch-trigger.incident-state.v1".into(),
            leader: "dispatch-trigger.leader.v1".into(),
            watermark: "dispatch-trigger.ingest-watermark.v1".into(),
        }
    }
}

impl Topics {
    /// Every topic with the name of its setting (`kafka.topics.<setting>`): the one list of them.
    pub fn named(&self) -> [(&'static str, &str); 10] {
        [
            ("cfs", &self.cfs),
            ("registry", &self.registry),
            ("status", &self.status),
            ("commands", &self.commands),
            ("audit", &self.audit),
            ("notices", &self.notices),
            ("dead_letter", &self.dead_letter),
            ("changelog", &self.changelog),
            ("leader", &self.leader),
            ("watermark", &self.watermark),
        ]
    }

    pub fn all(&self) -> [&str; 10] {
        self.named().map(|(_, t)| t)
    }

    /// The default names, each followed by `.{tag}`: the topics of one run (a demo, a benchmark, a test) on a
    /// broker that other runs share.
    pub fn tagged(tag: &str) -> Self {
        let mut t = Self::default();
        for name in t.each_mut() {
            name.push('.');
            name.push_str(tag);
        }
        t
    }

    /// Every topic name, to rewrite.
    pub fn each_mut(&mut self) -> [&mut String; 10] {
        let t = self;
        [
            &mut t.cfs,
            &mut t.registry,
            &mut t.status,
            &mut t.commands,
            &mut t.audit,
            &mut t.notices,
            &mut t.dead_letter,
            &mut t.changelog,
            &mut t.leader,
            &mut t.watermark,
        ]
    }

    /// What the service writes for every decided or refused event: commands, audit, notices, dead letters.
    pub fn outputs(&self) -> [&str; 4] {
        [&self.commands, &self.audit, &self.notices, &self.dead_letter]
    }
}
