//! MQTT: one QoS 1 publish per command, acknowledged by the broker (PUBACK) before it counts as delivered.
//! Defaults follow Frigate's conventions: topics under `frigate/<camera name>/`, lower-case, JSON payloads.

use super::{fill, payload, Target, TargetError};
use crate::journal::EventIds;
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;
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

/// What the event loop tells the deliverer.
#[derive(Debug)]
enum Loop {
    /// A publish left with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    Error(String),
}

pub(crate) struct Mqtt {
    client: Client,
    acks: Receiver<Loop>,
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
        o.set_keep_alive(Duration::from_secs(15));
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
        let (client, mut connection) = Client::new(o, 64);
        let (tx, acks) = mpsc::channel();
        // The event loop: acknowledgements to the deliverer; connection errors reported, then reconnected.
        std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                for ev in connection.iter() {
                    let sent = match ev {
                        Ok(Event::Outgoing(Outgoing::Publish(id))) => tx.send(Loop::Sent(id)),
                        Ok(Event::Incoming(Packet::PubAck(a))) => tx.send(Loop::Acked(a.pkid)),
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let r = tx.send(Loop::Error(e.to_string()));
                            std::thread::sleep(Duration::from_millis(200));
                            r
                        }
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { client, acks, topic: c.topic.clone(), switch: c.frigate_recordings_switch, timeout })
    }

    /// Publish at QoS 1 and wait for the broker's acknowledgement of that very packet.
    fn publish_acked(&mut self, topic: String, body: Vec<u8>) -> Result<(), TargetError> {
        while self.acks.try_recv().is_ok() {} // news of earlier, timed-out attempts
                                              // try_: while the broker is away, requests queue up to the client's capacity; never block on a full queue.
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, body)
            .map_err(|e| TargetError::Retriable(e.to_string()))?;
        let deadline = std::time::Instant::now() + self.timeout;
        let mut sent = None;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(Loop::Sent(id)) if sent.is_none() => sent = Some(id),
                Ok(Loop::Acked(id)) if sent == Some(id) => return Ok(()),
                Ok(Loop::Error(e)) => return Err(TargetError::Retriable(format!("mqtt connection: {e}"))),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Err(TargetError::Retriable("no PUBACK in time".into())),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(TargetError::Retriable("mqtt event loop ended".into()))
                }
            }
        }
    }
}

impl Target for Mqtt {
    fn kind(&self) -> super::TargetKind {
        super::TargetKind::Mqtt
    }

    fn deliver(&mut self, cmd: &CameraCommand, camera: &str, _: &mut dyn EventIds) -> Result<(), TargetError> {
        let body = serde_json::to_vec(&payload(cmd, camera)).expect("serialisable");
        self.publish_acked(fill(&self.topic, cmd, camera), body)?;
        if self.switch {
            let on = if cmd.action == Action::Start { "ON" } else { "OFF" };
            self.publish_acked(format!("frigate/{camera}/recordings/set"), on.as_bytes().to_vec())?;
        }
        Ok(())
    }
}
