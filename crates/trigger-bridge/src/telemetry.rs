//! Every metric the bridge exports and its log line, as typed events: label values come from closed sets
//! ([`Refusal`](crate::Refusal), the target kinds, the in-doubt resolutions).

use crate::targets::TargetKind;
use crate::{Outcome, Refusal};
use trigger_core::CameraCommand;

/// Every counter at zero (each refusal reason, each target kind's outcomes, each in-doubt resolution), so a
/// dashboard and the alerting rules see each series before its first event.
pub fn register() {
    for r in Refusal::ALL {
        metrics::counter!("dispatch_trigger_bridge_refused_total", "reason" => r.as_str()).increment(0);
    }
    for kind in [TargetKind::Mqtt, TargetKind::Frigate, TargetKind::HomeAssistant, TargetKind::Zmtrigger] {
        let kind = kind.as_str();
        for action in ["start", "stop"] {
            metrics::counter!("dispatch_trigger_bridge_delivered_total", "kind" => kind, "action" => action)
                .increment(0);
        }
        metrics::counter!("dispatch_trigger_bridge_expired_total", "kind" => kind).increment(0);
        metrics::counter!("dispatch_trigger_bridge_failed_total", "kind" => kind).increment(0);
        metrics::counter!("dispatch_trigger_bridge_retries_total", "kind" => kind).increment(0);
    }
    for d in [Doubt::AlreadyDelivered, Doubt::NotDelivered, Doubt::DeliveredAgain, Doubt::NotSentAgain] {
        metrics::counter!("dispatch_trigger_bridge_in_doubt_total", "resolution" => d.as_str()).increment(0);
    }
}

/// An outcome counted and logged; `cmd` is the command and the instant it finished (a delivered command).
pub(crate) fn outcome(o: &Outcome, cmd: Option<(&CameraCommand, trigger_core::Millis)>) {
    match o {
        Outcome::Delivered { kind } => {
            let kind = kind.as_str();
            let (c, at) = cmd.expect("a delivered command");
            let action = crate::targets::action_word(c.action);
            metrics::counter!("dispatch_trigger_bridge_delivered_total", "kind" => kind, "action" => action)
                .increment(1);
            let s = (at - c.issued_at).max(0) as f64 / 1000.0;
            metrics::histogram!("dispatch_trigger_bridge_issued_to_delivered_seconds").record(s);
            tracing::info!(command_id = %c.command_id, camera_id = %c.camera_id, kind, action, "delivered");
        }
        Outcome::Refused { reason, detail } => {
            metrics::counter!("dispatch_trigger_bridge_refused_total", "reason" => reason.as_str()).increment(1);
            // Commands for other bridges' cameras, and records read again after a restart, are routine.
            if matches!(reason, Refusal::UnknownCamera | Refusal::Replayed) {
                tracing::debug!(reason = reason.as_str(), detail, "refused");
            } else {
                tracing::warn!(reason = reason.as_str(), detail, "refused");
            }
        }
        Outcome::Expired { kind, last_error } => {
            let kind = kind.as_str();
            metrics::counter!("dispatch_trigger_bridge_expired_total", "kind" => kind).increment(1);
            tracing::warn!(kind, last_error, "expired while retrying: dropped");
        }
        Outcome::Failed { kind, error } => {
            let kind = kind.as_str();
            metrics::counter!("dispatch_trigger_bridge_failed_total", "kind" => kind).increment(1);
            tracing::warn!(kind, error, "failed");
        }
        Outcome::InDoubt { kind, error } => {
            let kind = kind.as_str();
            tracing::warn!(kind, error, "ended in doubt: sent once, never again");
        }
        Outcome::Interrupted => {}
    }
}

/// A delivery that failed in a way worth retrying.
pub(crate) fn retry(kind: TargetKind, command_id: &str, error: &str) {
    metrics::counter!("dispatch_trigger_bridge_retries_total", "kind" => kind.as_str()).increment(1);
    tracing::debug!(command_id, error, "delivery failed; retrying");
}

/// How a command in doubt was settled: one the last run began and did not finish, or one whose attempt got
/// no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doubt {
    /// The target has it: nothing is sent again.
    AlreadyDelivered,
    /// The target has not: it is delivered.
    NotDelivered,
    /// Left by the last run, the target cannot be asked: it is delivered again.
    DeliveredAgain,
    /// Sent by this run without an answer, the target cannot be asked: not sent again, it ends in doubt.
    NotSentAgain,
}

impl Doubt {
    fn as_str(self) -> &'static str {
        match self {
            Doubt::AlreadyDelivered => "already_delivered",
            Doubt::NotDelivered => "not_delivered",
            Doubt::DeliveredAgain => "delivered_again",
            Doubt::NotSentAgain => "not_sent_again",
        }
    }
}

pub(crate) fn in_doubt(resolution: Doubt, command_id: &str, kind: TargetKind) {
    let kind = kind.as_str();
    metrics::counter!("dispatch_trigger_bridge_in_doubt_total", "resolution" => resolution.as_str()).increment(1);
    if resolution == Doubt::DeliveredAgain {
        tracing::warn!(
            command_id,
            kind,
            "delivering again a command the last run began and did not finish (the target cannot be asked)"
        );
    } else if resolution == Doubt::NotSentAgain {
        tracing::warn!(
            command_id,
            kind,
            "an attempt got no answer and the target cannot be asked: not sent again (it may or may not have it)"
        );
    } else {
        let resolution = resolution.as_str();
        tracing::info!(command_id, kind, resolution, "a command in doubt, looked up");
    }
}
