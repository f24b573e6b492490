//! MQTT: one QoS 1 publish per command, acknowledged by the broker (PUBACK) before it counts as delivered. The
//! bridge owns the session: a clean one, driven only while it delivers, dropped whole on any failure, so the
//! client library holds no copy it could send on its own.
//! Defaults follow Frigate's conventions: topics under `frigate/<camera name>/`, lower-case, JSON payloads.

use super::{fill, payload, Target, TargetError};
use crate::journal::EventIds;
use rumqttc::{Client, ConnectReturnCode, Connection, Event, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use trigger_core::{Action, CameraCommand};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub name: String,
    /// host:port of the broker.
    pub broker: String,
    /// Topic template: {camera} (the target's camera name), {camera_id}, {label}, {action}.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Also switch Frigate's own recording: "ON" on START, "OFF" on STOP, to frigate/{camera}/recordings/set.
    #[serde(default)]
    pub frigate_recordings_switch: bool,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    pub username: Option<String>,
    /// The environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// `[target.tls]`: MQTT over TLS: the broker verified against `ca_bundle` (its host name, sent as SNI, must
    /// be in its certificate), `cert` and `key` presented when the broker asks for a client certificate.
    #[serde(default)]
    pub tls: trigger_tls::TlsFiles,
}

fn default_topic() -> String {
    "frigate/{camera}/dispatch_trigger".into()
}

fn default_client_id() -> String {
    format!("dispatch-trigger-bridge-{}", std::process::id())
}

/// The broker closes a connection that says nothing for one and a half keep-alives; the bridge drives its
/// connection only while it delivers, so a connection idle longer than this is replaced before it is used.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
const IDLE_LIMIT: Duration = Duration::from_secs(20);

/// One connection to the broker: a clean session with its own client and event loop, driven only by the
/// deliverer (no thread of its own). Nothing in it outlives a failure: a connection that fails, or a publish
/// that is not acknowledged in time, drops the whole session, client queue and unacknowledged state with it,
/// so the library can never send a copy of its own later (on a reconnect, after the command expired).
struct Session {
    client: Client,
    conn: Connection,
    used: Instant,
}

impl Session {
    /// Events already waiting (a broker that closed the connection, a ping due): false when the connection is
    /// gone.
    fn alive(&mut self) -> bool {
        if self.used.elapsed() > IDLE_LIMIT {
            return false;
        }
        // A short wait, not a bare poll: the connection's runtime must turn to learn what the socket says.
        loop {
            match self.conn.recv_timeout(Duration::from_millis(2)) {
                Err(RecvTimeoutError::Timeout) => return true,
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }
}

pub(crate) struct Mqtt {
    options: MqttOptions,
    session: Option<Session>,
    topic: String,
    switch: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt").field("topic", &self.topic).field("switch", &self.switch).finish_non_exhaustive()
    }
}

impl Mqtt {
    pub(crate) fn connect(c: &MqttConfig, timeout: Duration) -> Result<Self, String> {
        let (host, port) =
            c.broker.rsplit_once(':').ok_or_else(|| format!("mqtt broker {:?}: not host:port", c.broker))?;
        let port: u16 = port.parse().map_err(|_| format!("mqtt broker {:?}: bad port", c.broker))?;
        let mut o = MqttOptions::new(&c.client_id, host, port);
        o.set_keep_alive(KEEP_ALIVE);
        // A clean session: the broker keeps nothing of the bridge's between connections either.
        o.set_clean_session(true);
        if c.tls.is_set() {
            let config = super::tls::checked(&c.name, &c.tls, host, port, timeout)?;
            o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(config)));
        }
        if let Some(user) = &c.username {
            let pass = match &c.password_env {
                Some(var) => std::env::var(var).map_err(|_| format!("mqtt: environment variable {var} is not set"))?,
                None => String::new(),
            };
            o.set_credentials(user, pass);
        }
        Ok(Self { options: o, session: None, topic: c.topic.clone(), switch: c.frigate_recordings_switch, timeout })
    }

    /// The connection to publish on: the current one if it is still up, else a new one, its CONNACK received.
    /// Nothing has been sent for a command when this fails.
    fn session(&mut self) -> Result<&mut Session, TargetError> {
        if !self.session.as_mut().is_some_and(Session::alive) {
            self.session = None;
            let (client, mut conn) = Client::new(self.options.clone(), 4);
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match conn.recv_timeout(left) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == ConnectReturnCode::Success => break,
                    Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => {
                        let refusal = format!("mqtt: the broker refused the connection: {:?}", a.code);
                        return Err(match a.code {
                            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                                TargetError::Permanent(refusal)
                            }
                            _ => TargetError::Retriable(refusal),
                        });
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(TargetError::Retriable(format!("mqtt connect: {e}"))),
                    Err(_) => return Err(TargetError::Retriable("mqtt connect: no CONNACK in time".into())),
                }
            }
            self.session = Some(Session { client, conn, used: Instant::now() });
        }
        Ok(self.session.as_mut().expect("just made"))
    }

    /// Publish at QoS 1 and wait for the broker's acknowledgement of that very packet, the command still valid
    /// immediately before. Anything short of the acknowledgement drops the session (and what it queued):
    /// before the publish was handed to the connection that is `Retriable` (nothing left), after it `InDoubt`.
    fn publish_acked(&mut self, cmd: &CameraCommand, topic: String, body: Vec<u8>) -> Result<(), TargetError> {
        super::still_valid(cmd)?;
        let timeout = self.timeout;
        let s = self.session()?;
        super::still_valid(cmd)?;
        if let Err(e) = s.client.try_publish(topic, QoS::AtLeastOnce, false, body) {
            self.session = None;
            return Err(TargetError::Retriable(format!("mqtt: {e}")));
        }
        let deadline = Instant::now() + timeout;
        let mut sent = None;
        let failure = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match s.conn.recv_timeout(left) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(id)))) if sent.is_none() => sent = Some(id),
                Ok(Ok(Event::Incoming(Packet::PubAck(a)))) if sent == Some(a.pkid) => {
                    s.used = Instant::now();
                    return Ok(());
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break format!("mqtt connection: {e}"),
                Err(RecvTimeoutError::Timeout) => break "no PUBACK in time".to_string(),
                Err(RecvTimeoutError::Disconnected) => break "mqtt event loop ended".to_string(),
            }
        };
        // The session goes, and with it every copy the library held: it is never flushed on a reconnect.
        self.session = None;
        // A failure inside the very step that wrote the publish hides its event: only a publish the event loop
        // never took (the broker had closed the connection before) is known not to have left.
        Err(TargetError::InDoubt(match sent {
            Some(id) => format!("{failure} (publish {id} sent)"),
            None => format!("{failure} (the publish may have been written)"),
        }))
    }
}

impl Target for Mqtt {
    fn kind(&self) -> super::TargetKind {
        super::TargetKind::Mqtt
    }

    fn deliver(&mut self, cmd: &CameraCommand, camera: &str, _: &mut dyn EventIds) -> Result<(), TargetError> {
        let body = serde_json::to_vec(&payload(cmd, camera)).expect("serialisable");
        self.publish_acked(cmd, fill(&self.topic, cmd, camera), body)?;
        if self.switch {
            let on = if cmd.action == Action::Start { "ON" } else { "OFF" };
            // The command is delivered; its switch is sent only while the command is still valid, and once.
            if let Err(e) = self.publish_acked(cmd, format!("frigate/{camera}/recordings/set"), on.as_bytes().to_vec())
            {
                tracing::warn!(command_id = %cmd.command_id, error = %e, "mqtt: the recordings switch was not confirmed");
            }
        }
        Ok(())
    }
}
