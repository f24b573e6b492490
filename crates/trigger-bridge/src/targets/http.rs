//! HTTP targets: Frigate's events API and Home Assistant's `camera.record` service.
//!
//! Status rule: 2xx delivered; 408, 429 and 5xx retriable; any other status permanent; no answer (refused,
//! reset, timeout) retriable.

use super::{Target, TargetError};
use crate::journal::EventIds;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use trigger_core::{Action, CameraCommand};

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

/// The answer's body, or the failure by the status rule.
fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<String, TargetError> {
    let mut r = r.map_err(|e| TargetError::Retriable(e.to_string()))?;
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    match status {
        200..=299 => Ok(body),
        408 | 429 | 500..=599 => Err(TargetError::Retriable(format!("HTTP {status}: {}", body.trim()))),
        _ => Err(TargetError::Permanent(format!("HTTP {status}: {}", body.trim()))),
    }
}

/// Frigate (`kind = "frigate"`): START creates a manual event of `record_seconds` on the camera
/// (`POST /api/events/{camera}/{label}/create`), STOP ends it (`PUT /api/events/{event_id}/end`). The event id
/// Frigate answers is kept in the journal, so a STOP after a restart still ends the right event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrigateConfig {
    pub name: String,
    /// Frigate's base URL, e.g. http://frigate.local:5000.
    pub url: String,
    /// The event label; {label} is the command's category.
    #[serde(default = "default_label")]
    pub label: String,
}

fn default_label() -> String {
    "{label}".into()
}

#[derive(Debug)]
pub(crate) struct Frigate {
    agent: ureq::Agent,
    url: String,
    label: String,
}

impl Frigate {
    pub(crate) fn new(c: &FrigateConfig, timeout: Duration) -> Self {
        Self { agent: agent(timeout), url: c.url.trim_end_matches('/').to_string(), label: c.label.clone() }
    }

    fn start(&self, cmd: &CameraCommand, camera: &str, events: &mut dyn EventIds) -> Result<(), TargetError> {
        let label = super::fill(&self.label, cmd, camera);
        let body = serde_json::json!({
            "duration": cmd.record_seconds,
            "include_recording": true,
            "sub_label": format!("dispatch-trigger {}", cmd.command_id),
            "source_type": "api",
            "draw": {},
        });
        let url = format!("{}/api/events/{camera}/{label}/create", self.url);
        let text = answer(self.agent.post(&url).header("Content-Type", "application/json").send(body.to_string()))?;
        let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(id) = reply.get("event_id").and_then(|v| v.as_str()) {
            events
                .event_started(&cmd.camera_id, &cmd.incident_ref, id)
                .map_err(|e| TargetError::Retriable(e.to_string()))?;
        }
        Ok(())
    }

    /// The event this command created, if Frigate has one: its sub label names the command.
    fn find_event(&self, cmd: &CameraCommand, camera: &str) -> Result<Option<String>, TargetError> {
        let url = format!("{}/api/events", self.url);
        let label = format!("dispatch-trigger {}", cmd.command_id);
        let req = self.agent.get(&url).query("cameras", camera).query("sub_label", &label).query("limit", "1");
        let text = answer(req.call())?;
        let found: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TargetError::Retriable(e.to_string()))?;
        Ok(found.as_array().and_then(|a| a.first()).and_then(|e| e["id"].as_str()).map(str::to_string))
    }

    fn stop(&self, cmd: &CameraCommand, events: &mut dyn EventIds) -> Result<(), TargetError> {
        let Some(id) = events.open_event(&cmd.camera_id, &cmd.incident_ref) else {
            tracing::debug!(command_id = %cmd.command_id, "frigate: STOP with no open event (nothing to end)");
            return Ok(());
        };
        let url = format!("{}/api/events/{id}/end", self.url);
        let body = serde_json::json!({ "end_time": cmd.issued_at as f64 / 1000.0 });
        match answer(self.agent.put(&url).header("Content-Type", "application/json").send(body.to_string())) {
            // Frigate answers 404 for an event that already ended (its duration ran out): nothing left to end.
            Ok(_) | Err(TargetError::Permanent(_)) => {
                events.event_ended(&cmd.camera_id, &cmd.incident_ref).map_err(|e| TargetError::Retriable(e.to_string()))
            }
            Err(e) => Err(e),
        }
    }
}

impl Target for Frigate {
    fn kind(&self) -> super::TargetKind {
        super::TargetKind::Frigate
    }

    fn deliver(&mut self, cmd: &CameraCommand, camera: &str, events: &mut dyn EventIds) -> Result<(), TargetError> {
        match cmd.action {
            Action::Start => self.start(cmd, camera, events),
            Action::Stop => self.stop(cmd, events),
        }
    }

    /// A START in doubt is looked up (`GET /api/events?cameras=..&sub_label=dispatch-trigger <command_id>`); a
    /// STOP is not (ending an event twice ends it once).
    fn already_has(&mut self, cmd: &CameraCommand, camera: &str, events: &mut dyn EventIds) -> Option<bool> {
        if cmd.action == Action::Stop {
            return None;
        }
        match self.find_event(cmd, camera) {
            Ok(Some(id)) => Some(events.event_started(&cmd.camera_id, &cmd.incident_ref, &id).is_ok()),
            Ok(None) => Some(false),
            Err(e) => {
                tracing::warn!(command_id = %cmd.command_id, error = %e, "frigate: cannot look the command up");
                None
            }
        }
    }
}

/// Home Assistant (`kind = "home_assistant"`): START calls the `camera.record` service for the camera's
/// entity (`POST /api/services/camera/record`, a long-lived access token from `token_env`) for
/// `record_seconds`. `camera.record` stops by itself after its duration and has no stop call, so STOP is
/// acknowledged without a request (counted as delivered, action stop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    pub name: String,
    /// Home Assistant's base URL, e.g. http://homeassistant.local:8123.
    pub url: String,
    /// The environment variable holding the long-lived access token (never the token itself).
    pub token_env: String,
    /// Where Home Assistant writes the clip; {camera_id} and {label} are filled in, {{ entity_id.name }} is
    /// Home Assistant's own template.
    #[serde(default = "default_filename")]
    pub filename: String,
}

fn default_filename() -> String {
    "/media/dispatch-trigger/{{ entity_id.name }}_{label}_{{ now().strftime('%Y%m%d-%H%M%S') }}.mp4".into()
}

pub(crate) struct HomeAssistant {
    agent: ureq::Agent,
    url: String,
    token: trigger_core::Secret,
    filename: String,
}

impl std::fmt::Debug for HomeAssistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeAssistant").field("url", &self.url).field("token", &self.token).finish_non_exhaustive()
    }
}

impl HomeAssistant {
    pub(crate) fn new(c: &HomeAssistantConfig, timeout: Duration) -> Result<Self, String> {
        let token = std::env::var(&c.token_env).map_err(|_| {
            format!("home_assistant target {}: environment variable {} is not set", c.name, c.token_env)
        })?;
        Ok(Self {
            agent: agent(timeout),
            url: c.url.trim_end_matches('/').to_string(),
            token: trigger_core::Secret::new(token),
            filename: c.filename.clone(),
        })
    }
}

impl Target for HomeAssistant {
    fn kind(&self) -> super::TargetKind {
        super::TargetKind::HomeAssistant
    }

    fn deliver(&mut self, cmd: &CameraCommand, camera: &str, _: &mut dyn EventIds) -> Result<(), TargetError> {
        if cmd.action == Action::Stop {
            return Ok(());
        }
        let body = serde_json::json!({
            "entity_id": camera,
            "duration": cmd.record_seconds,
            "filename": super::fill(&self.filename, cmd, camera),
        });
        let url = format!("{}/api/services/camera/record", self.url);
        let req = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token.expose()))
            .header("Content-Type", "application/json");
        answer(req.send(body.to_string())).map(drop)
    }
}
