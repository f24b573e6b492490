//! What the bridge drives: one [`Target`] per configured `[[target]]`, each speaking one real protocol.
//! A target reports how a delivery failed so the bridge knows whether to try again ([`TargetError`]).

mod ha_stream;
mod http;
mod mqtt;
mod tls;
mod zm;

use crate::journal::EventIds;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use trigger_core::{Action, CameraCommand};

pub use http::{FrigateConfig, HomeAssistantConfig};
pub use mqtt::MqttConfig;
pub use zm::ZmTriggerConfig;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not delivered, and worth another try: the peer cannot have acted on it (the connection was refused or
    /// never made, or the peer answered HTTP 408/429/5xx).
    #[error("retriable: {0}")]
    Retriable(String),
    /// Another try would fail the same way (HTTP 4xx other than 408/429: bad token, unknown camera).
    #[error("permanent: {0}")]
    Permanent(String),
    /// The request left and no answer came (a timeout, a connection lost after sending, a publish the broker
    /// did not acknowledge): the peer may have acted on it. Never simply sent again: the target is asked
    /// first where it can be ([`Target::already_has`]), and where it cannot the command ends in doubt.
    #[error("in doubt: {0}")]
    InDoubt(String),
}

/// What protocol a target speaks: a closed set, named by [`TargetKind::as_str`] in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Mqtt,
    Frigate,
    HomeAssistant,
    Zmtrigger,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Mqtt => "mqtt",
            TargetKind::Frigate => "frigate",
            TargetKind::HomeAssistant => "home_assistant",
            TargetKind::Zmtrigger => "zmtrigger",
        }
    }
}

/// One configured target.
pub trait Target: Send + std::fmt::Debug {
    fn kind(&self) -> TargetKind;
    /// Make `camera` (the target's own name for the camera) start or stop as `cmd` says.
    fn deliver(&mut self, cmd: &CameraCommand, camera: &str, events: &mut dyn EventIds) -> Result<(), TargetError>;

    /// Asked after a crash left `cmd` in doubt (begun, not recorded as done): does the target already have it?
    /// `Some(true)` it has (not delivered again), `Some(false)` it has not, `None` it cannot tell (the default:
    /// MQTT, Home Assistant and zmtrigger keep no record to ask; the command is delivered again).
    fn already_has(&mut self, _cmd: &CameraCommand, _camera: &str, _events: &mut dyn EventIds) -> Option<bool> {
        None
    }

    /// Whether `cmd` may be sent again after an attempt left it in doubt and the target cannot be asked: only
    /// where a second copy changes nothing (Frigate's STOP: ending an event twice ends it once).
    fn resend_is_harmless(&self, _cmd: &CameraCommand) -> bool {
        false
    }
}

/// The wall clock, Unix ms.
pub(crate) use crate::wall_ms;

/// Checked immediately before every request or publish a target makes for `cmd`: nothing leaves once the
/// command has expired (the lane then ends it `expired`).
pub(crate) fn still_valid(cmd: &CameraCommand) -> Result<(), TargetError> {
    if wall_ms() >= cmd.expires_at {
        return Err(TargetError::Retriable(format!("expired at {} before it could be sent", cmd.expires_at)));
    }
    Ok(())
}

/// `[[target]]`: a name the cameras refer to, and its kind with the kind's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetConfig {
    Mqtt(MqttConfig),
    Frigate(FrigateConfig),
    HomeAssistant(HomeAssistantConfig),
    Zmtrigger(ZmTriggerConfig),
}

impl TargetConfig {
    pub fn name(&self) -> &str {
        match self {
            Self::Mqtt(c) => &c.name,
            Self::Frigate(c) => &c.name,
            Self::HomeAssistant(c) => &c.name,
            Self::Zmtrigger(c) => &c.name,
        }
    }

    /// Connect (or prepare to) the target; `timeout` bounds each delivery attempt.
    pub fn build(&self, timeout: Duration) -> Result<Box<dyn Target>, String> {
        Ok(match self {
            Self::Mqtt(c) => Box::new(mqtt::Mqtt::connect(c, timeout)?),
            Self::Frigate(c) => Box::new(http::Frigate::new(c, timeout)?),
            Self::HomeAssistant(c) => Box::new(http::HomeAssistant::new(c, timeout)?),
            Self::Zmtrigger(c) => Box::new(zm::ZmTrigger::new(c, timeout)),
        })
    }
}

/// `start` | `stop`.
pub(crate) fn action_word(a: Action) -> &'static str {
    match a {
        Action::Start => "start",
        Action::Stop => "stop",
    }
}

/// The JSON every MQTT message carries (and Frigate's sub label is made from): the command's fields, the
/// target's camera name, no caller data (the command has none).
pub(crate) fn payload(cmd: &CameraCommand, camera: &str) -> serde_json::Value {
    serde_json::json!({
        "type": action_word(cmd.action),
        "camera": camera,
        "camera_id": cmd.camera_id,
        "command_id": cmd.command_id,
        "label": cmd.category.as_str(),
        "record_seconds": cmd.record_seconds,
        "live_stream": cmd.live_stream,
        "incident_ref": cmd.incident_ref,
        "issued_at_ms": cmd.issued_at,
        "expires_at_ms": cmd.expires_at,
    })
}

/// `{camera}`, `{camera_id}`, `{label}` and `{action}` filled in.
pub(crate) fn fill(template: &str, cmd: &CameraCommand, camera: &str) -> String {
    template
        .replace("{camera}", camera)
        .replace("{camera_id}", &cmd.camera_id)
        .replace("{label}", cmd.category.as_str())
        .replace("{action}", action_word(cmd.action))
}
