//! ZoneMinder's zmtrigger (`kind = "zmtrigger"`): one line per command on a TCP connection to zmtrigger.pl,
//! `monitor|on+N|score|cause|text` on START (record for N seconds), `monitor|off|score|cause|text` on STOP.
//! zmtrigger does not answer; a line is delivered once written. The connection is kept and re-opened after a
//! failure. A write that fails did not end its line (zmtrigger acts on whole lines only): nothing was
//! delivered, it is retried.

use super::{Target, TargetError};
use crate::journal::EventIds;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use trigger_core::{Action, CameraCommand};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZmTriggerConfig {
    pub name: String,
    /// host:port of zmtrigger's TCP listener (6802 by default in zmtrigger.pl).
    pub address: String,
    #[serde(default = "default_score")]
    pub score: u32,
    /// The cause ZoneMinder shows (at most 32 characters).
    #[serde(default = "default_cause")]
    pub cause: String,
}

fn default_score() -> u32 {
    100
}

fn default_cause() -> String {
    "dispatch-trigger".into()
}

#[derive(Debug)]
pub(crate) struct ZmTrigger {
    config: ZmTriggerConfig,
    timeout: Duration,
    conn: Option<TcpStream>,
}

impl ZmTrigger {
    pub(crate) fn new(c: &ZmTriggerConfig, timeout: Duration) -> Self {
        Self { config: c.clone(), timeout, conn: None }
    }

    fn connect(&self) -> Result<TcpStream, TargetError> {
        let addr = (self.config.address.to_socket_addrs().map_err(|e| TargetError::Retriable(e.to_string()))?)
            .next()
            .ok_or_else(|| {
            TargetError::Permanent(format!("zmtrigger address {:?} resolves to nothing", self.config.address))
        })?;
        let s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| TargetError::Retriable(e.to_string()))?;
        s.set_write_timeout(Some(self.timeout)).map_err(|e| TargetError::Retriable(e.to_string()))?;
        s.set_nodelay(true).map_err(|e| TargetError::Retriable(e.to_string()))?;
        Ok(s)
    }
}

/// A write to a connection the peer has closed would still succeed once (and the line be lost): look first.
fn still_open(c: &TcpStream) -> bool {
    if c.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match c.peek(&mut [0u8; 1]) {
        Ok(n) => n > 0,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    open && c.set_nonblocking(false).is_ok()
}

/// The protocol's separator may not appear inside a field.
fn field(s: &str) -> String {
    s.replace(['|', '\n', '\r'], " ")
}

/// The line for one command.
pub(crate) fn line(cmd: &CameraCommand, monitor: &str, score: u32, cause: &str) -> String {
    let action = match cmd.action {
        Action::Start => format!("on+{}", cmd.record_seconds),
        Action::Stop => "off".into(),
    };
    let cause: String = field(cause).chars().take(32).collect();
    let text = field(&format!("{} {}", cmd.category.as_str(), cmd.command_id));
    format!("{}|{action}|{score}|{cause}|{text}\n", field(monitor))
}

impl Target for ZmTrigger {
    fn kind(&self) -> super::TargetKind {
        super::TargetKind::Zmtrigger
    }

    fn deliver(&mut self, cmd: &CameraCommand, monitor: &str, _: &mut dyn EventIds) -> Result<(), TargetError> {
        let text = line(cmd, monitor, self.config.score, &self.config.cause);
        let mut conn = match self.conn.take().filter(still_open) {
            Some(c) => c,
            None => self.connect()?,
        };
        super::still_valid(cmd)?;
        conn.write_all(text.as_bytes())
            .and_then(|_| conn.flush())
            .map_err(|e| TargetError::Retriable(e.to_string()))?;
        self.conn = Some(conn);
        Ok(())
    }
}
