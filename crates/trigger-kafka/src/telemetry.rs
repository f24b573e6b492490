//! Every metric the service exports, and the log line that goes with it, emitted in one place as typed events
//! (vector's `internal_events` is the model). Label values come from closed sets: outcomes, reject reasons,
//! exclusion reasons, actions, stages, registry update kinds, camera problems, produce-error classes and
//! librdkafka error codes. Names are documented in docs/operating.md (the `/metrics` row of its endpoint table).

use crate::produce_rule::ErrorClass;
use crate::registry::{Applied, BadRegistryRecord};
use rdkafka::types::RDKafkaErrorCode;
use trigger_core::{Count, Decision, Outcome, RejectReason};

/// A stage of an event's way through the service (`dispatch_trigger_stage_seconds{stage}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// CAD emitted the revision -> the service polled it.
    CadToPoll,
    /// `Engine::decide`.
    Decide,
    /// The batch's outputs produced -> every acknowledgement (or the transaction committed).
    ProduceAck,
    /// CFS record timestamp -> every output acknowledged.
    EndToEnd,
    /// CAD emitted the revision -> every output acknowledged.
    CadEmittedToAck,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::CadToPoll => "cad_to_poll",
            Stage::Decide => "decide",
            Stage::ProduceAck => "produce_ack",
            Stage::EndToEnd => "end_to_end",
            Stage::CadEmittedToAck => "cad_emitted_to_ack",
        }
    }
}

pub fn stage(stage: Stage, seconds: f64) {
    metrics::histogram!("dispatch_trigger_stage_seconds", "stage" => stage.as_str()).record(seconds.max(0.0));
}

/// Every counter that only moves on a fault created at zero (incrementing by nothing: a count already there
/// stays), and the gauges likewise: a dashboard and the alerting rules (deploy/) see each series from the first
/// scrape, not from its first event.
pub fn register() {
    for name in [
        "dispatch_trigger_consumer_recreated_total",
        "dispatch_trigger_consumer_errors_total",
        "dispatch_trigger_registry_sync_timeouts_total",
        "dispatch_trigger_delivery_retries_total",
        "dispatch_trigger_refused_stale_total",
        "dispatch_trigger_outside_incident_window_total",
        "dispatch_trigger_events_total",
        "dispatch_trigger_owner_notices_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for class in [ErrorClass::Retriable, ErrorClass::Permanent, ErrorClass::Fatal] {
        // An empty label is no label in Prometheus: the class's total before any error has a code.
        metrics::counter!("dispatch_trigger_produce_errors_total", "class" => class.as_str(), "code" => "")
            .increment(0);
    }
    for source in ["cfs", "registry"] {
        metrics::counter!("dispatch_trigger_dead_letters_total", "source" => source).increment(0);
    }
    for round_trip in ["taken", "skipped"] {
        metrics::counter!("dispatch_trigger_registry_round_trips_total", "round_trip" => round_trip).increment(0);
    }
    for action in ["start", "stop"] {
        metrics::counter!("dispatch_trigger_commands_total", "action" => action).increment(0);
    }
    // Gauges created at 0 if no run of this process has set them yet (incrementing by nothing changes none).
    metrics::gauge!("dispatch_trigger_cad_silent").increment(0.0);
    metrics::gauge!("dispatch_trigger_incidents_in_state").increment(0.0);
}

/// Whether the instance is ready (`Health::readiness`): set at each scrape, so it always says what /readyz says.
pub fn ready(ready: bool) {
    metrics::gauge!("dispatch_trigger_ready").set(if ready { 1.0 } else { 0.0 });
}

/// The membership watchdog closed the CFS consumer and created it anew.
pub fn consumer_recreated() {
    metrics::counter!("dispatch_trigger_consumer_recreated_total").increment(1);
}

pub fn consumer_error(error: &rdkafka::error::KafkaError) {
    metrics::counter!("dispatch_trigger_consumer_errors_total").increment(1);
    tracing::warn!(%error, "CFS consumer error (librdkafka retries)");
}

/// Strict registry sync, per batch: the round trip taken, or skipped (no event of the batch could touch a camera).
pub fn registry_round_trip(taken: bool) {
    let round_trip = if taken { "taken" } else { "skipped" };
    metrics::counter!("dispatch_trigger_registry_round_trips_total", "round_trip" => round_trip).increment(1);
}

pub fn registry_sync_timeout() {
    metrics::counter!("dispatch_trigger_registry_sync_timeouts_total").increment(1);
    tracing::warn!("registry not confirmed current before a batch (deciding with what has arrived)");
}

pub fn registry_applied(a: Applied, cameras: usize) {
    let kinds = [
        ("upsert", a.upserts),
        ("removal", a.removals),
        ("bad", a.bad),
        ("status", a.status),
        ("status_ignored", a.status_ignored),
    ];
    for (kind, n) in kinds {
        if n > 0 {
            metrics::counter!("dispatch_trigger_registry_updates_total", "kind" => kind).increment(n);
        }
    }
    metrics::gauge!("dispatch_trigger_cameras").set(cameras as f64);
}

pub fn registry_rejected(b: &BadRegistryRecord) {
    tracing::warn!(
        topic = %b.topic,
        partition = b.partition,
        offset = b.offset,
        reason = b.reason.as_str(),
        detail = %b.detail,
        "bad registry or status record: dead-lettered (a bad registry record takes the camera out of the index)"
    );
    metrics::counter!("dispatch_trigger_registry_rejects_total", "reason" => b.reason.as_str()).increment(1);
    metrics::counter!("dispatch_trigger_dead_letters_total", "source" => "registry").increment(1);
}

/// The CAD feed went silent (`silent_s` without a call) or came back (`None`).
pub fn cad_silence(silent_s: Option<u64>, topic: &str) {
    match silent_s {
        Some(silent_s) => {
            tracing::warn!(silent_s, topic, "no call for service received: is the CAD feed down?");
            metrics::gauge!("dispatch_trigger_cad_silent").set(1.0);
        }
        None => {
            tracing::info!("calls for service are arriving again");
            metrics::gauge!("dispatch_trigger_cad_silent").set(0.0);
        }
    }
}

pub fn seconds_since_last_cfs(seconds: f64) {
    metrics::gauge!("dispatch_trigger_seconds_since_last_cfs").set(seconds);
}

pub fn produce_error(topic: &str, code: RDKafkaErrorCode, class: ErrorClass) {
    let code_label = format!("{code:?}");
    metrics::counter!("dispatch_trigger_produce_errors_total", "class" => class.as_str(), "code" => code_label)
        .increment(1);
    tracing::warn!(topic, code = ?code, class = class.as_str(), "delivery failed");
}

pub fn delivery_retries(n: usize) {
    metrics::counter!("dispatch_trigger_delivery_retries_total").increment(n as u64);
}

/// An event taken from the CFS topic (decided or refused).
pub fn event_taken() {
    metrics::counter!("dispatch_trigger_events_total").increment(1);
}

/// A CFS record refused: dead-lettered with its reason.
pub fn refused(reason: RejectReason, partition: i32, offset: i64) {
    metrics::counter!("dispatch_trigger_rejects_total", "reason" => reason.as_str()).increment(1);
    metrics::counter!("dispatch_trigger_dead_letters_total", "source" => "cfs").increment(1);
    tracing::debug!(reason = reason.as_str(), partition, offset, "refused");
}

/// A decision: its outcome, exclusions, commands and notices ([`trigger_core::counts`]).
pub fn decided(d: &Decision) {
    trigger_core::counts(d, |c| match c {
        Count::Decision(o) => {
            metrics::counter!("dispatch_trigger_decisions_total", "outcome" => o.as_str()).increment(1);
            match o {
                Outcome::RefusedStale => metrics::counter!("dispatch_trigger_refused_stale_total").increment(1),
                Outcome::OutsideIncidentWindow => {
                    metrics::counter!("dispatch_trigger_outside_incident_window_total").increment(1)
                }
                _ => {}
            }
        }
        Count::Exclusion(x) => {
            metrics::counter!("dispatch_trigger_exclusions_total", "reason" => x.as_str()).increment(1)
        }
        Count::Command(a) => metrics::counter!("dispatch_trigger_commands_total", "action" => a.as_str()).increment(1),
        Count::Notices(n) => metrics::counter!("dispatch_trigger_owner_notices_total").increment(n),
    });
}

pub fn incidents_in_state(n: usize) {
    metrics::gauge!("dispatch_trigger_incidents_in_state").set(n as f64);
}
