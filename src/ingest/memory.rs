//! What the pushed sources (`eido_ws`, `http_push`) remember: each incident's last revision written. A
//! notifier's replay, a resend, a vendor's retry or two instances of one push all offer the same revision again;
//! only a newer one is written. The memory is the source's watermark, stored with the records it stands for
//! ([`trigger_kafka::ingest::IngestSink`]), so a restarted process skips exactly what is on the topic. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use trigger_cad::Decoded;
use trigger_kafka::records::{cfs_key, source_dead_letter, DeadLetterRule};
use trigger_kafka::{wall_ms, OutRecord};

/// The memory as stored on the watermark topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Seen {
    /// (agency, incident, revision, its time: seconds since 2020-01-01).
    incidents: Vec<(String, String, u32, u32)>,
    /// (agency, incident) whose record naming a blocked type was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blocked: Vec<(String, String)>,
}

/// The memory in use: (agency, incident) -> (last revision written, its time in seconds since 2020-01-01),
/// and the incidents whose record naming a blocked type was written.
#[derive(Debug, Clone, Default)]
pub(super) struct Memory(HashMap<(String, String), (u32, u32)>, std::collections::HashSet<(String, String)>);

impl Memory {
    pub(super) fn from_seen(seen: Seen) -> Self {
        Self(
            seen.incidents.into_iter().map(|(a, i, r, t)| ((a, i), (r, t))).collect(),
            seen.blocked.into_iter().collect(),
        )
    }

    /// What is stored: the incidents updated at or after `horizon`; older ones are forgotten.
    pub(super) fn to_seen(&self, horizon: u32) -> Seen {
        let mut incidents: Vec<_> = self
            .0
            .iter()
            .filter(|(_, (_, t))| *t >= horizon)
            .map(|((a, i), (r, t))| (a.clone(), i.clone(), *r, *t))
            .collect();
        incidents.sort();
        let mut blocked: Vec<_> =
            self.1.iter().filter(|k| self.0.get(*k).is_some_and(|(_, t)| *t >= horizon)).cloned().collect();
        blocked.sort();
        Seen { incidents, blocked }
    }

    /// Its stored form, as the watermark's bytes.
    pub(super) fn watermark(&self, horizon: u32) -> Vec<u8> {
        serde_json::to_vec(&self.to_seen(horizon)).expect("serialisable")
    }
}

/// The time (seconds since 2020-01-01) before which a source no longer remembers: `remember_hours` ago.
pub(super) fn horizon(remember_hours: u32) -> u32 {
    trigger_cad::eido::revision_at(wall_ms() - i64::from(remember_hours) * 3_600_000)
}

/// Where admitted records go and how refusals are written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Out<'a> {
    pub(super) source: &'a str,
    pub(super) cfs: &'a str,
    pub(super) dead_letter: &'a str,
    pub(super) rule: DeadLetterRule,
}

/// A refused document: where it was, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Refused {
    pub(super) position: String,
    pub(super) reason: &'static str,
    pub(super) detail: String,
}

/// What one input became.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// The new revisions' CFS records, then the refused documents' dead letters.
    pub(super) records: Vec<OutRecord>,
    pub(super) written: u64,
    /// Offered again (a revision already written) or older than the memory's horizon.
    pub(super) skipped: u64,
    pub(super) refused: Vec<Refused>,
    /// The last update of each document written (Unix µs).
    pub(super) updated_us: Vec<i64>,
}

impl Admitted {
    pub(super) fn documents(&self) -> u64 {
        self.written + self.skipped + self.refused.len() as u64
    }
}

/// Decoded input against `memory`: each revision newer than the one remembered becomes a record (and is
/// remembered); an older or repeated one is skipped — unless it is the first of its incident to name a
/// blocked type, which is written whatever its revision (the engine marks the incident whatever the
/// revision: a retyped revision must not hide its block behind the number of the one before); each refusal
/// becomes a dead letter with the input's bytes.
pub(super) fn admit(memory: &mut Memory, horizon: u32, decoded: Decoded, out: Out<'_>) -> Admitted {
    let mut a = Admitted::default();
    for d in decoded.events {
        let ev = d.event;
        let key = (ev.agency_id.clone(), ev.incident_id.clone());
        let at = trigger_cad::eido::revision_at(ev.emitted_at);
        let known = at < horizon || memory.0.get(&key).is_some_and(|(r, _)| *r >= ev.revision);
        let first_block = ev.blocked.is_some() && !memory.1.contains(&key);
        if known && !first_block {
            a.skipped += 1;
            continue;
        }
        if ev.blocked.is_some() {
            memory.1.insert(key.clone());
        }
        if !known {
            memory.0.insert(key, (ev.revision, at));
        }
        a.written += 1;
        a.updated_us.push(ev.emitted_at * 1000);
        a.records.push(OutRecord::keyed(out.cfs, cfs_key(&ev), Some(super::cfs_bytes(&ev))));
    }
    for r in decoded.rejects {
        let reason = r.reason.as_str();
        metrics::counter!("dispatch_trigger_ingest_rejects_total", "reason" => reason).increment(1);
        let position = r.position;
        a.records.push(source_dead_letter(
            out.dead_letter,
            out.source,
            &position,
            &r.original,
            reason,
            &r.detail,
            out.rule,
        ));
        a.refused.push(Refused { position, reason, detail: r.detail });
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use trigger_cad::DecodeOptions;

    fn eido(id: &str, updated: &str) -> String {
        format!(
            r#"{{"incidentTrackingIdentifier":"{id}","lastUpdateTimeStamp":"{updated}",
            "incidentComponent":[{{"incidentTypeCommonRegistryText":"Shots Fired"}}],
            "locationComponent":[{{"locationByValue":"<gml:pos>36.16 -86.78</gml:pos>"}}]}}"#
        )
    }

    fn decoded(docs: &[&str]) -> Decoded {
        let opts = DecodeOptions { agency_id: Some("A".into()), ..Default::default() };
        let mut all = Decoded::default();
        for d in docs {
            let one = trigger_cad::eido::decode(d.as_bytes(), &opts);
            all.events.extend(one.events);
            all.rejects.extend(one.rejects);
        }
        all
    }

    fn out() -> Out<'static> {
        Out { source: "s", cfs: "cfs", dead_letter: "dlq", rule: DeadLetterRule::default() }
    }

    #[test]
    fn a_revision_is_written_once_and_refusals_are_dead_letters_with_their_bytes() {
        let (a1, a2) = (eido("I1", "2026-12-03T10:00:00Z"), eido("I1", "2026-12-03T10:00:05Z"));
        let bad = r#"{"lastUpdateTimeStamp":"2026-12-03T10:00:00Z"}"#;
        let mut memory = Memory::default();
        let a = admit(&mut memory, 0, decoded(&[&a1, bad, &a1]), out());
        assert_eq!((a.written, a.skipped, a.refused.len(), a.records.len()), (1, 1, 1, 2), "{a:?}");
        assert_eq!(a.refused[0].reason, "missing_incident_id");
        let letter = a.records.iter().find(|r| r.topic == "dlq").unwrap();
        assert_eq!(letter.payload.as_deref(), Some(bad.as_bytes()));
        // The repeat is skipped; a newer revision is not.
        let a = admit(&mut memory, 0, decoded(&[&a1, &a2]), out());
        assert_eq!((a.written, a.skipped), (1, 1), "{a:?}");
        // The memory survives its stored form; older than the horizon is skipped and forgotten.
        let mut stored = Memory::from_seen(serde_json::from_slice(&memory.watermark(0)).unwrap());
        assert_eq!(admit(&mut stored, 0, decoded(&[&a2]), out()).skipped, 1);
        assert!(memory.to_seen(u32::MAX).incidents.is_empty());
        let a = admit(&mut Memory::default(), u32::MAX, decoded(&[&a2]), out());
        assert_eq!((a.written, a.skipped), (0, 1));
    }
}
