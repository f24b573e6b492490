//! HTTP targets: Frigate's events API and Home Assistant's `camera.record` service.
//!
//! Status rule: 2xx delivered; 408, 429 and 5xx retriable; any other status permanent. No answer: a connection
//! never made (refused, unresolvable, a TLS handshake that failed, a connect timeout) is retriable, nothing was
//! sent; a request that left and got no answer (a timeout, a connection reset after sending) is in doubt.

use super::ha_stream::{wall_ms, Plan, Streams};
use super::{Target, TargetError};
use crate::journal::EventIds;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use trigger_core::Millis;
use trigger_core::{Action, CameraCommand};

/// The target's HTTP client: HTTPS (its `[target.tls]` trust, its peer probed at start-up) for an https://
/// URL, plain HTTP for http:// (a target on the bridge's own host or a trusted network).
fn agent(
    name: &str,
    url: &str,
    tls: &trigger_tls::TlsFiles,
    timeout: Duration,
    pooled: bool,
) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout / 2))
        .http_status_as_error(false);
    if !pooled {
        // A fresh connection per request: a connection the peer closed meanwhile can never swallow a request
        // (a peer that cannot be asked afterwards needs "not sent" told apart from "no answer").
        config = config.max_idle_connections(0).max_idle_connections_per_host(0);
    }
    let config = if url.starts_with("https://") {
        if tls.ca_bundle.is_none() {
            return Err(format!(
                "target {name}: an https:// URL needs tls.ca_bundle (the CA its certificate chains to)"
            ));
        }
        let (host, port) = super::tls::host_port(url, 443).map_err(|e| format!("target {name}: url {e}"))?;
        super::tls::checked(name, tls, &host, port, timeout)?;
        config.tls_config(super::tls::for_ureq(name, tls)?)
    } else if tls.is_set() {
        return Err(format!("target {name}: tls is set but the URL is not https://"));
    } else {
        config
    };
    Ok(config.build().into())
}

/// A request that got no answer: never sent (retriable) or sent and unanswered (in doubt).
fn unanswered(e: ureq::Error) -> TargetError {
    use ureq::{Error as E, Timeout as T};
    let not_sent = match &e {
        E::HostNotFound | E::ConnectionFailed | E::BadUri(_) | E::Tls(_) | E::Rustls(_) | E::TlsRequired => true,
        E::Timeout(T::Resolve | T::Connect) => true,
        E::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::NotFound
        ),
        _ => false,
    };
    if not_sent {
        TargetError::Retriable(e.to_string())
    } else {
        TargetError::InDoubt(format!("no answer: {e}"))
    }
}

/// The answer's body, or the failure by the status rule.
fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<String, TargetError> {
    let mut r = r.map_err(unanswered)?;
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
    /// Frigate's base URL: https://frigate.local:8971 (its authenticated port, over TLS), or
    /// http://frigate.local:5000 (its internal port, inside its own network).
    pub url: String,
    /// The event label; {label} is the command's category.
    #[serde(default = "default_label")]
    pub label: String,
    /// `[target.tls]`: for an https:// URL, the CA bundle Frigate's certificate chains to (required), and a
    /// client certificate and key when a proxy in front of it asks for one.
    #[serde(default)]
    pub tls: trigger_tls::TlsFiles,
    /// Frigate's authenticated API (port 8971): the user the bridge logs in as (`POST /api/login`), with the
    /// password from the environment variable `password_env`. Unset: the unauthenticated port.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
}

fn default_label() -> String {
    "{label}".into()
}

#[derive(Debug)]
pub(crate) struct Frigate {
    agent: ureq::Agent,
    url: String,
    label: String,
    session: Option<FrigateSession>,
}

impl Frigate {
    pub(crate) fn new(c: &FrigateConfig, timeout: Duration) -> Result<Self, String> {
        let agent = agent(&c.name, &c.url, &c.tls, timeout, true)?;
        let url = c.url.trim_end_matches('/').to_string();
        let session = match (&c.user, &c.password_env) {
            (None, None) => None,
            (Some(user), Some(var)) => {
                let password = std::env::var(var)
                    .map_err(|_| format!("frigate target {}: environment variable {var} is not set", c.name))?;
                let mut s = FrigateSession::new(user, password);
                // Logged in at start-up: wrong credentials stop the bridge here, by name; an unreachable
                // Frigate is logged into at its first delivery.
                match s.login(&agent, &url) {
                    Ok(()) | Err(TargetError::Retriable(_)) => {}
                    Err(e) => return Err(format!("frigate target {}: {e}", c.name)),
                }
                Some(s)
            }
            _ => return Err(format!("frigate target {}: user and password_env: both or neither", c.name)),
        };
        Ok(Self { agent, url, label: c.label.clone(), session })
    }

    /// A request with the session's token (logged in or refreshed first when due), logged in again and sent
    /// once more when Frigate answers 401.
    /// `cmd`: the command the request delivers (None for a lookup), checked to be still valid immediately
    /// before each request that carries it.
    fn send(
        &mut self,
        cmd: Option<&CameraCommand>,
        request: impl Fn(&ureq::Agent, Option<&str>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, TargetError> {
        let valid = || cmd.map_or(Ok(()), super::still_valid);
        let Some(session) = self.session.as_mut() else {
            valid()?;
            return answer(request(&self.agent, None));
        };
        let token = session.token(&self.agent, &self.url)?;
        valid()?;
        let r = request(&self.agent, Some(&token));
        if matches!(&r, Ok(resp) if resp.status().as_u16() == 401) {
            // Refused before it was acted on: sent again once, logged in again, while still valid.
            tracing::info!("frigate: 401, logging in again");
            session.login(&self.agent, &self.url)?;
            let token = session.token(&self.agent, &self.url)?;
            valid()?;
            return answer(request(&self.agent, Some(&token)));
        }
        answer(r)
    }

    fn start(&mut self, cmd: &CameraCommand, camera: &str, events: &mut dyn EventIds) -> Result<(), TargetError> {
        let label = super::fill(&self.label, cmd, camera);
        let body = serde_json::json!({
            "duration": cmd.record_seconds,
            "include_recording": true,
            "sub_label": format!("dispatch-trigger {}", cmd.command_id),
            "source_type": "api",
            "draw": {},
        });
        let url = format!("{}/api/events/{camera}/{label}/create", self.url);
        let text = self.send(Some(cmd), |agent, token| {
            with_token(agent.post(&url), token).header("Content-Type", "application/json").send(body.to_string())
        })?;
        let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(id) = reply.get("event_id").and_then(|v| v.as_str()) {
            // Frigate has the event: a journal that cannot say so leaves the command in doubt (looked up, never
            // simply created again).
            events
                .event_started(&cmd.camera_id, &cmd.incident_ref, id)
                .map_err(|e| TargetError::InDoubt(format!("created, not journaled: {e}")))?;
        }
        Ok(())
    }

    /// The event this command created, if Frigate has one: its sub label names the command.
    fn find_event(&mut self, cmd: &CameraCommand, camera: &str) -> Result<Option<String>, TargetError> {
        let url = format!("{}/api/events", self.url);
        let label = format!("dispatch-trigger {}", cmd.command_id);
        let text = self.send(None, |agent, token| {
            let req = with_token(agent.get(&url), token);
            req.query("cameras", camera).query("sub_label", &label).query("limit", "1").call()
        })?;
        let found: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TargetError::Retriable(e.to_string()))?;
        Ok(found.as_array().and_then(|a| a.first()).and_then(|e| e["id"].as_str()).map(str::to_string))
    }

    fn stop(&mut self, cmd: &CameraCommand, events: &mut dyn EventIds) -> Result<(), TargetError> {
        let Some(id) = events.open_event(&cmd.camera_id, &cmd.incident_ref) else {
            tracing::debug!(command_id = %cmd.command_id, "frigate: STOP with no open event (nothing to end)");
            return Ok(());
        };
        let url = format!("{}/api/events/{id}/end", self.url);
        let body = serde_json::json!({ "end_time": cmd.issued_at as f64 / 1000.0 });
        let sent = self.send(Some(cmd), |agent, token| {
            with_token(agent.put(&url), token).header("Content-Type", "application/json").send(body.to_string())
        });
        match sent {
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
    /// STOP is not (ending an event twice ends it once: [`Target::resend_is_harmless`]).
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

    fn resend_is_harmless(&self, cmd: &CameraCommand) -> bool {
        cmd.action == Action::Stop
    }
}

/// `Authorization: Bearer <token>` when there is one.
fn with_token<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => req.header("Authorization", &format!("Bearer {t}")),
        None => req,
    }
}

/// A session with Frigate's authenticated API: the JWT its login issues (the `frigate_token` cookie), sent as
/// a bearer token, renewed by logging in again once less than a third of its life is left.
pub(crate) struct FrigateSession {
    user: String,
    password: trigger_core::Secret,
    token: Option<(trigger_core::Secret, Millis, Millis)>,
}

impl std::fmt::Debug for FrigateSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrigateSession")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl FrigateSession {
    fn new(user: &str, password: String) -> Self {
        Self { user: user.to_string(), password: trigger_core::Secret::new(password), token: None }
    }

    /// The token to send: logged in first when there is none or it is due for renewal.
    fn token(&mut self, agent: &ureq::Agent, url: &str) -> Result<String, TargetError> {
        let now = wall_ms();
        let due = self.token.as_ref().is_none_or(|(_, issued, expires)| now >= expires - (expires - issued) / 3);
        if due {
            self.login(agent, url)?;
        }
        Ok(self.token.as_ref().map(|(t, _, _)| t.expose().to_string()).unwrap_or_default())
    }

    /// `POST /api/login`: the token from its `frigate_token` cookie, its expiry from the JWT's `exp`.
    fn login(&mut self, agent: &ureq::Agent, url: &str) -> Result<(), TargetError> {
        self.token = None;
        let body = serde_json::json!({ "user": self.user, "password": self.password.expose() });
        let r =
            agent.post(format!("{url}/api/login")).header("Content-Type", "application/json").send(body.to_string());
        let mut r = r.map_err(|e| TargetError::Retriable(format!("frigate login: {e}")))?;
        let status = r.status().as_u16();
        if status == 401 || status == 400 || status == 403 {
            return Err(TargetError::Permanent(format!(
                "frigate login refused (HTTP {status}): check user and password"
            )));
        }
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("frigate_token="))
            .map(|c| c.split(';').next().unwrap_or("").to_string());
        let _ = r.body_mut().read_to_string();
        let Some(token) = cookie.filter(|t| !t.is_empty()) else {
            return Err(TargetError::Retriable(format!("frigate login: HTTP {status} without a frigate_token cookie")));
        };
        let now = wall_ms();
        let expires = jwt_expiry(&token).unwrap_or(now + 3_600_000);
        self.token = Some((trigger_core::Secret::new(token), now, expires));
        Ok(())
    }
}

/// A JWT's `exp` claim, Unix ms (None: not a JWT with one).
fn jwt_expiry(token: &str) -> Option<Millis> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64().map(|s| s * 1000)
}

/// Home Assistant (`kind = "home_assistant"`): START calls the `camera.record` service for the camera's
/// entity (`POST /api/services/camera/record`, a long-lived access token from `token_env`) for
/// `record_seconds`. `camera.record` stops by itself after its duration and has no stop call, so STOP is
/// acknowledged without a request (counted as delivered, action stop), and cancels a continuation it made
/// due. Home Assistant records one clip per stream at a time: a START while this bridge records the camera is
/// delivered as an extension ([`super::ha_stream`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    pub name: String,
    /// Home Assistant's base URL: https://homeassistant.local:8123 (its `http:` integration with
    /// `ssl_certificate`, or a TLS proxy in front of it), or http:// on a trusted network only (the token travels
    /// in every request).
    pub url: String,
    /// The environment variable holding the long-lived access token (never the token itself).
    pub token_env: String,
    /// Where Home Assistant writes the clip; {camera_id} and {label} are filled in, {{ entity_id.name }} is
    /// Home Assistant's own template.
    #[serde(default = "default_filename")]
    pub filename: String,
    /// `[target.tls]`: for an https:// URL, the CA bundle Home Assistant's certificate chains to (required).
    #[serde(default)]
    pub tls: trigger_tls::TlsFiles,
}

fn default_filename() -> String {
    "/media/dispatch-trigger/{{ entity_id.name }}_{label}_{{ now().strftime('%Y%m%d-%H%M%S') }}.mp4".into()
}

pub(crate) struct HomeAssistant {
    call: Arc<RecordCall>,
    streams: Streams,
}

/// One `camera.record` call, as the lane and a continuation's thread make it.
struct RecordCall {
    agent: ureq::Agent,
    url: String,
    token: trigger_core::Secret,
    filename: String,
}

impl RecordCall {
    fn record(&self, cmd: &CameraCommand, camera: &str, seconds: u32) -> Result<(), TargetError> {
        let body = serde_json::json!({
            "entity_id": camera,
            "duration": seconds,
            "filename": super::fill(&self.filename, cmd, camera),
        });
        let url = format!("{}/api/services/camera/record", self.url);
        let req = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token.expose()))
            .header("Content-Type", "application/json");
        match answer(req.send(body.to_string())) {
            Err(TargetError::Retriable(e)) if e.contains("already recording") => Err(TargetError::Retriable(format!(
                "the stream is already recording, not for this bridge (retried until the command expires): {e}"
            ))),
            other => other.map(drop),
        }
    }

    /// A continuation: at `at`, record until `until` (whole seconds, never past it), retrying while the
    /// recording before it is still being written; unless cancelled first.
    fn continuation(
        self: Arc<Self>,
        cmd: CameraCommand,
        camera: String,
        at: Millis,
        until: Millis,
        stop: Arc<AtomicBool>,
        streams: Streams,
    ) {
        let run = move || {
            // Not before `at`, nor before the recording running then has ended as this bridge reckons it (from
            // Home Assistant's answer to the call that started it, which may have come after `at` was set).
            while wall_ms() < at.max(streams.running_until(&camera)) && !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            for _ in 0..60 {
                let now = wall_ms();
                let seconds = ((until - now) / 1000) as u32;
                if stop.load(Relaxed) || until - now < 1000 {
                    return;
                }
                match self.record(&cmd, &camera, seconds) {
                    Ok(()) => {
                        streams.started(&camera, wall_ms(), seconds);
                        return tracing::info!(camera, seconds, incident_ref = %cmd.incident_ref, "home assistant: the extension's continuation records");
                    }
                    Err(e) => tracing::debug!(camera, error = %e, "home assistant: continuation not taken yet"),
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            tracing::warn!(camera, incident_ref = %cmd.incident_ref, "home assistant: the continuation was never taken");
        };
        if let Err(e) = std::thread::Builder::new().name("ha-continuation".into()).spawn(run) {
            tracing::error!(error = %e, "home assistant: no thread for a continuation");
        }
    }
}

impl std::fmt::Debug for HomeAssistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.call;
        f.debug_struct("HomeAssistant").field("url", &c.url).field("token", &c.token).finish_non_exhaustive()
    }
}

impl HomeAssistant {
    pub(crate) fn new(c: &HomeAssistantConfig, timeout: Duration) -> Result<Self, String> {
        let token = std::env::var(&c.token_env).map_err(|_| {
            format!("home_assistant target {}: environment variable {} is not set", c.name, c.token_env)
        })?;
        let call = RecordCall {
            agent: agent(&c.name, &c.url, &c.tls, timeout, false)?,
            url: c.url.trim_end_matches('/').to_string(),
            token: trigger_core::Secret::new(token),
            filename: c.filename.clone(),
        };
        Ok(Self { call: Arc::new(call), streams: Streams::default() })
    }
}

impl Target for HomeAssistant {
    fn kind(&self) -> super::TargetKind {
        super::TargetKind::HomeAssistant
    }

    fn deliver(&mut self, cmd: &CameraCommand, camera: &str, _: &mut dyn EventIds) -> Result<(), TargetError> {
        let now = wall_ms();
        if cmd.action == Action::Stop {
            if self.streams.stop(camera, &cmd.incident_ref) {
                tracing::info!(camera, incident_ref = %cmd.incident_ref, "home assistant: STOP cancels the due continuation");
            }
            return Ok(());
        }
        match self.streams.plan(camera, now, cmd.record_seconds) {
            Plan::Record => {
                super::still_valid(cmd)?;
                match self.call.record(cmd, camera, cmd.record_seconds) {
                    // Running from no later than the answer: the end is reckoned from then, so the bridge never
                    // asks again before Home Assistant's recording is over.
                    Ok(()) => self.streams.started(camera, wall_ms(), cmd.record_seconds),
                    Err(e @ TargetError::InDoubt(_)) => {
                        // It may be recording: treated as recording, so no START asks again meanwhile.
                        self.streams.started(camera, wall_ms(), cmd.record_seconds);
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            Plan::Covered => {
                tracing::info!(camera, command_id = %cmd.command_id, "home assistant: an extension the running recording covers");
            }
            Plan::Continue { at, seconds } => {
                let until = at + i64::from(seconds) * 1000;
                let until = until.min(now + i64::from(cmd.record_seconds) * 1000);
                let stop = self.streams.continue_with(camera, &cmd.incident_ref, until);
                let streams = self.streams.clone();
                self.call.clone().continuation(cmd.clone(), camera.to_string(), at, until, stop, streams);
                tracing::info!(camera, command_id = %cmd.command_id, at, until, "home assistant: an extension, continued when the running recording ends");
            }
        }
        Ok(())
    }
}
