//! The `eido-ws` source: a subscriber of the NENA standard for conveying EIDOs over a WebSocket
//! (NENA-STA-024; its messages as in the public schema `NENA911/WebSocket-Subscribe-Notify`,
//! `schema/websocket.yaml`). It connects over mutual TLS, subscribes for new incidents' EIDOs, and answers every
//! `event` with its `eventResponse` once the records it carried are acknowledged by Kafka: an event the
//! process dies holding is unanswered, and the notifier sends it again.
//!
//! A notifier replays the active incidents to every new subscription and resends what was not answered, so
//! the same document arrives more than once. The source remembers, per incident, the last revision it wrote
//! (an EIDO's revision is its last-update time: [`trigger_cad::eido::revision_at`]) and writes only newer
//! ones; that memory is the source's watermark, written with the records it stands for, so a restarted
//! process (or a new instance) skips exactly what is on the topic. A document older than the memory's horizon
//! is skipped too: nothing on the topic says whether it was written.
//!
//! A document the decoder refuses goes to the dead letters as the notifier's bytes and its event is answered
//! 400 with the reasons; a message that is not the schema's goes to the dead letters whole. Neither stops the
//! source. A notifier that refuses the connection, the certificate or the subscription, or falls silent, is
//! retried with backoff and said on `/readyz`.

use super::memory::{self, Admitted, Memory, Out, Seen};
use super::{count_written, open_sink, register, set_down, source_fault, Backoff, IngestConfig, Written};
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trigger_kafka::ingest::IngestSink;
use trigger_kafka::records::{source_dead_letter, DeadLetterRule};
use trigger_kafka::{wall_ms, Health};
use trigger_tls::TlsFiles;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// `[eido_ws]`: the notifier and the subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EidoWsSource {
    /// The source's name: the key of its watermark, the origin named in its dead letters.
    pub name: String,
    /// The notifier's WebSocket URL (`wss://notifier.psap.example/IncidentData/ent`).
    pub url: String,
    /// `[eido_ws.tls]`: the CA bundle the notifier's certificate must chain to (required), and the client
    /// certificate and key the notifier authenticates this subscriber by (mutual TLS).
    pub tls: TlsFiles,
    /// The WebSocket subprotocol to ask for (`Sec-WebSocket-Protocol`), when the notifier requires one.
    pub subprotocol: String,
    /// `requestAccepts` of the subscription (the EIDO MIME type and versions), when the notifier wants one.
    pub request_accepts: String,
    /// `minRate` of the subscription: the longest silence the notifier keeps, in seconds (0: not asked).
    pub min_rate_s: u32,
    /// `expires` asked of the subscription, in seconds; it is renewed at four fifths of what is granted.
    pub expires_s: u32,
    /// The agency the incidents belong to, when the documents do not say (empty: from the document).
    pub agency_id: String,
    /// How long the source remembers an incident's last revision: documents older than this are skipped.
    pub remember_hours: u32,
    /// A WebSocket ping after this many seconds without a message; a notifier silent for three times this
    /// long is reconnected to.
    pub keepalive_s: u32,
}

impl Default for EidoWsSource {
    fn default() -> Self {
        Self {
            name: "eido-ws".into(),
            url: String::new(),
            tls: TlsFiles::default(),
            subprotocol: String::new(),
            request_accepts: String::new(),
            min_rate_s: 0,
            expires_s: 3600,
            agency_id: String::new(),
            remember_hours: 24,
            keepalive_s: 20,
        }
    }
}

impl EidoWsSource {
    pub(super) fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.url.starts_with("wss://") {
            errs.push(format!("eido_ws.url {:?}: a wss:// URL (EIDOs travel over TLS only)", self.url));
        } else if let Err(e) = self.url.as_str().into_client_request() {
            errs.push(format!("eido_ws.url {:?}: {e}", self.url));
        }
        if self.tls.ca_bundle.is_none() {
            errs.push("eido_ws.tls.ca_bundle is not set: the notifier is verified against its CA bundle".into());
        }
        errs.extend(self.tls.validate("eido_ws.tls"));
        errs.extend(super::name_problem("eido_ws", &self.name));
        if self.expires_s < 60 || self.keepalive_s == 0 || self.remember_hours == 0 {
            errs.push("eido_ws.expires_s (at least 60), keepalive_s and remember_hours must be positive".into());
        }
        errs
    }
}

/// Messages from the notifier (the schema's `notifierMessage`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum FromNotifier {
    SubscribeResponse(SubscribeResponse),
    UnsubscribeResponse(serde::de::IgnoredAny),
    Response(StatusOf),
    Event(Event),
    Terminate(Terminate),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeResponse {
    subscription_id: Option<String>,
    expires: Option<u64>,
    status_code: u16,
    status_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusOf {
    request_id: String,
    status_code: u16,
    status_text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    transaction_id: String,
    #[serde(default)]
    notification: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Terminate {
    request_id: String,
    subscription_id: String,
}

/// The documents of one event against the memory: the new revisions, the refused, the skipped; and the
/// event's answer (200, or 400 naming the refusals). No I/O.
fn handle_event(
    src: &EidoWsSource,
    out: Out<'_>,
    memory: &mut Memory,
    horizon: u32,
    event: &Event,
) -> (Admitted, (u16, String)) {
    let opts = trigger_cad::DecodeOptions {
        agency_id: (!src.agency_id.is_empty()).then(|| src.agency_id.clone()),
        ..Default::default()
    };
    let mut all = Admitted::default();
    for (i, doc) in event.notification.iter().enumerate() {
        let mut decoded = trigger_cad::eido::decode(doc.get().as_bytes(), &opts);
        for r in &mut decoded.rejects {
            r.position = format!("transaction {} document {}", event.transaction_id, i + 1);
        }
        let a = memory::admit(memory, horizon, decoded, out);
        all.records.extend(a.records);
        all.written += a.written;
        all.skipped += a.skipped;
        all.refused.extend(a.refused);
        all.updated_us.extend(a.updated_us);
    }
    let mut reasons: Vec<&str> = all.refused.iter().map(|r| r.reason).collect();
    reasons.dedup();
    let status = if reasons.is_empty() {
        (200, "OK".to_string())
    } else {
        (400, format!("Bad Request: refused {}", reasons.join(", ")))
    };
    (all, status)
}

type Socket = WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// Why a session ended.
#[derive(Debug)]
enum Ended {
    /// Asked to stop.
    Stopped,
    /// The notifier: reconnect after a pause, with the same sink.
    Notifier(anyhow::Error),
    /// Kafka did not take a commit: a new sink from the stored watermark, then reconnect.
    Kafka(anyhow::Error),
}

/// Subscribe and write until `shutdown`; the notifier and the brokers are retried with backoff.
pub(super) fn run(cfg: &IngestConfig, src: &EidoWsSource, health: &Health, shutdown: &AtomicBool) -> Result<Written> {
    let tls = src.tls.client_config().context("eido_ws.tls")?;
    register(&src.name);
    let mut written = Written::default();
    let mut backoff = Backoff::new(cfg.ingest.retry_backoff_max_ms);
    let rule = DeadLetterRule { payload: cfg.ingest.dead_letter_payload, ..DeadLetterRule::default() };
    health.ready.store(true, Relaxed);
    'sink: while !shutdown.load(Relaxed) {
        let Some((mut sink, seen)) = open_sink(cfg, &src.name, Seen::default, health, &mut backoff, shutdown) else {
            break;
        };
        let out =
            Out { source: &src.name, cfs: &cfg.kafka.topics.cfs, dead_letter: &cfg.kafka.topics.dead_letter, rule };
        let mut session = Session { src, out, health, memory: Memory::from_seen(seen), requests: 0 };
        while !shutdown.load(Relaxed) {
            match session.run(&tls, &mut sink, &mut written, shutdown) {
                Ended::Stopped => break 'sink,
                Ended::Notifier(e) => {
                    source_fault(health, &src.name, format!("the EIDO notifier: {e:#}"));
                    backoff.wait(shutdown);
                }
                Ended::Kafka(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "Kafka did not take the records; starting again from the stored watermark");
                    set_down(health, Some(format!("Kafka does not acknowledge the records: {e:#}")));
                    backoff.wait(shutdown);
                    continue 'sink;
                }
            }
        }
    }
    health.ready.store(false, Relaxed);
    Ok(written)
}

/// One subscriber's state across connections.
struct Session<'a> {
    src: &'a EidoWsSource,
    out: Out<'a>,
    health: &'a Health,
    memory: Memory,
    requests: u64,
}

impl Session<'_> {
    /// Connect, subscribe and handle messages until the connection ends or `shutdown`.
    fn run(
        &mut self,
        tls: &Arc<rustls::ClientConfig>,
        sink: &mut IngestSink,
        written: &mut Written,
        shutdown: &AtomicBool,
    ) -> Ended {
        let mut ws = match connect(self.src, tls) {
            Ok(ws) => ws,
            Err(e) => return Ended::Notifier(e),
        };
        let (subscription, expires) = match self.subscribe(&mut ws) {
            Ok((id, expires)) => {
                tracing::info!(source = %self.src.name, subscription = %id, expires_s = expires, "subscribed");
                set_down(self.health, None);
                (id, expires)
            }
            Err(e) => return Ended::Notifier(e),
        };
        let renewal = Duration::from_secs(expires * 4 / 5);
        let (mut renew_at, mut heard, mut pinged) = (Instant::now() + renewal, Instant::now(), Instant::now());
        let keepalive = Duration::from_secs(u64::from(self.src.keepalive_s));
        loop {
            if shutdown.load(Relaxed) {
                let _ = ws.close(None);
                let _ = ws.flush();
                return Ended::Stopped;
            }
            let due = [Instant::now() >= renew_at, pinged.elapsed() > keepalive && heard.elapsed() > keepalive];
            if let Err(e) = self.timers(&mut ws, &subscription, due) {
                return Ended::Notifier(e);
            }
            renew_at = if due[0] { Instant::now() + renewal } else { renew_at };
            pinged = if due[1] { Instant::now() } else { pinged };
            if heard.elapsed() > keepalive * 3 {
                return Ended::Notifier(anyhow!("silent for {:?}", heard.elapsed()));
            }
            let bytes = match ws.read() {
                Ok(Message::Text(t)) => t.as_bytes().to_vec(),
                Ok(Message::Binary(b)) => b.to_vec(),
                Ok(Message::Close(frame)) => return Ended::Notifier(anyhow!("the notifier closed: {frame:?}")),
                Ok(_) => {
                    heard = Instant::now();
                    continue;
                }
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                    let _ = ws.flush();
                    continue;
                }
                Err(e) => return Ended::Notifier(anyhow!("the connection dropped: {e}")),
            };
            heard = Instant::now();
            if let Err(end) = self.message(&bytes, &mut ws, sink, written, shutdown) {
                return end;
            }
        }
    }

    /// What is due: `[renew the subscription, ping the notifier]`.
    fn timers(&mut self, ws: &mut Socket, subscription: &str, due: [bool; 2]) -> Result<()> {
        if due[0] {
            let renewal = json!({"subscribe": {"requestId": self.next_request(), "subscriptionId": subscription,
                "expires": self.src.expires_s}});
            self.send(ws, renewal)?;
        }
        if due[1] {
            ws.send(Message::Ping(Vec::new().into())).context("pinging the notifier")?;
        }
        Ok(())
    }

    /// One message from the notifier.
    fn message(
        &mut self,
        bytes: &[u8],
        ws: &mut Socket,
        sink: &mut IngestSink,
        written: &mut Written,
        shutdown: &AtomicBool,
    ) -> Result<(), Ended> {
        let msg = match serde_json::from_slice::<FromNotifier>(bytes) {
            Ok(m) => m,
            Err(e) => return self.unreadable(bytes, &e.to_string(), sink, written, shutdown),
        };
        match msg {
            FromNotifier::Event(event) => self.event(&event, ws, sink, written, shutdown),
            FromNotifier::SubscribeResponse(r) if r.status_code != 200 => {
                Err(Ended::Notifier(anyhow!("the renewal was refused: {} {}", r.status_code, r.status_text)))
            }
            FromNotifier::SubscribeResponse(_) | FromNotifier::UnsubscribeResponse(_) => Ok(()),
            FromNotifier::Response(r) => {
                tracing::warn!(request = %r.request_id, status = r.status_code, text = %r.status_text, "the notifier answered a request");
                Ok(())
            }
            FromNotifier::Terminate(t) => {
                let answer = json!({"terminateResponse": {"requestId": t.request_id,
                    "subscriptionId": t.subscription_id, "statusCode": 200, "statusText": "OK"}});
                let _ = self.send(ws, answer);
                Err(Ended::Notifier(anyhow!("the notifier ended subscription {}", t.subscription_id)))
            }
        }
    }

    /// An event: its records committed with the memory after them, then its answer.
    fn event(
        &mut self,
        event: &Event,
        ws: &mut Socket,
        sink: &mut IngestSink,
        written: &mut Written,
        shutdown: &AtomicBool,
    ) -> Result<(), Ended> {
        let horizon = memory::horizon(self.src.remember_hours);
        let mut after = self.memory.clone();
        let (a, status) = handle_event(self.src, self.out, &mut after, horizon, event);
        if !a.records.is_empty() {
            let mark = after.watermark(horizon);
            match super::commit(sink, self.health, &a.records, &mark, &|| shutdown.load(Relaxed)) {
                Ok(true) => {}
                Ok(false) => return Err(Ended::Stopped),
                Err(e) => return Err(Ended::Kafka(e.into())),
            }
            written.acknowledged(&a.updated_us);
        }
        let letters = a.refused.len() as u64;
        written.rows += a.documents();
        written.records += a.written;
        written.dead_letters += letters;
        written.skipped += a.skipped;
        count_written(&self.src.name, a.documents() as usize, letters);
        metrics::counter!("dispatch_trigger_ingest_skipped_total", "source" => self.src.name.clone())
            .increment(a.skipped);
        self.memory = after;
        let answer = json!({"eventResponse": {"transactionId": event.transaction_id,
            "statusCode": status.0, "statusText": status.1}});
        self.send(ws, answer).map_err(Ended::Notifier)
    }

    /// A message that is not the schema's: its bytes to the dead letters (nothing to answer).
    fn unreadable(
        &mut self,
        bytes: &[u8],
        why: &str,
        sink: &mut IngestSink,
        written: &mut Written,
        shutdown: &AtomicBool,
    ) -> Result<(), Ended> {
        let reason = trigger_core::RejectReason::MalformedJson.as_str();
        metrics::counter!("dispatch_trigger_ingest_rejects_total", "reason" => reason).increment(1);
        let letter =
            source_dead_letter(self.out.dead_letter, &self.src.name, "message", bytes, reason, why, self.out.rule);
        let mark = self.memory.watermark(memory::horizon(self.src.remember_hours));
        match super::commit(sink, self.health, &[letter], &mark, &|| shutdown.load(Relaxed)) {
            Ok(true) => {
                written.dead_letters += 1;
                count_written(&self.src.name, 0, 1);
                Ok(())
            }
            Ok(false) => Err(Ended::Stopped),
            Err(e) => Err(Ended::Kafka(e.into())),
        }
    }

    fn next_request(&mut self) -> String {
        self.requests += 1;
        format!("{}-{}-{}", self.src.name, wall_ms(), self.requests)
    }

    /// A new subscription, answered within 10 s: its id and the seconds granted.
    fn subscribe(&mut self, ws: &mut Socket) -> Result<(String, u64)> {
        let request_id = self.next_request();
        let mut body = json!({"requestId": request_id, "requestType": "EIDO", "requestSubType": "new",
            "expires": self.src.expires_s});
        if !self.src.request_accepts.is_empty() {
            body["requestAccepts"] = self.src.request_accepts.clone().into();
        }
        if self.src.min_rate_s > 0 {
            body["minRate"] = self.src.min_rate_s.into();
        }
        self.send(ws, json!({ "subscribe": body }))?;
        let by = Instant::now() + Duration::from_secs(10);
        while Instant::now() < by {
            match ws.read() {
                Ok(Message::Text(t)) => match serde_json::from_str::<FromNotifier>(t.as_str()) {
                    Ok(FromNotifier::SubscribeResponse(r)) => return subscribed(r, self.src.expires_s),
                    _ => anyhow::bail!("the notifier sent something before its subscribeResponse: {}", t.as_str()),
                },
                Ok(Message::Close(frame)) => anyhow::bail!("the notifier closed: {frame:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(e) => return Err(e).context("waiting for the subscribeResponse"),
            }
        }
        anyhow::bail!("no subscribeResponse within 10 s")
    }

    fn send(&self, ws: &mut Socket, msg: serde_json::Value) -> Result<()> {
        ws.send(Message::text(msg.to_string())).context("sending to the notifier")
    }
}

/// A subscribeResponse: the subscription's id and its granted seconds, or the refusal named.
fn subscribed(r: SubscribeResponse, asked: u32) -> Result<(String, u64)> {
    anyhow::ensure!(r.status_code == 200, "the subscription was refused: {} {}", r.status_code, r.status_text);
    let id = r.subscription_id.context("a subscribeResponse 200 without a subscriptionId")?;
    Ok((id, r.expires.unwrap_or(u64::from(asked)).max(60)))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// TCP, then TLS (the handshake completed here, so a certificate fault is named as one), then the WebSocket
/// upgrade.
fn connect(src: &EidoWsSource, tls: &Arc<rustls::ClientConfig>) -> Result<Socket> {
    let mut request = src.url.as_str().into_client_request().context("eido_ws.url")?;
    if !src.subprotocol.is_empty() {
        request.headers_mut().insert("Sec-WebSocket-Protocol", src.subprotocol.parse().context("subprotocol")?);
    }
    let uri = request.uri().clone();
    let host = uri.host().context("eido_ws.url has no host")?.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let addr = (host.as_str(), port).to_socket_addrs()?.next().with_context(|| format!("{host} has no address"))?;
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).with_context(|| format!("server name {host}"))?;
    let conn = rustls::ClientConnection::new(tls.clone(), name).context("TLS")?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).context("the TLS handshake")?;
    }
    let (mut ws, _) = tungstenite::client::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => anyhow!("the WebSocket upgrade: {e}"),
        tungstenite::HandshakeError::Interrupted(_) => anyhow!("the WebSocket upgrade timed out"),
    })?;
    // Short reads from here on: the loop looks at shutdown, renewals and keepalives between them.
    ws.get_mut().sock.set_read_timeout(Some(Duration::from_millis(250)))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(docs: &[&str]) -> Event {
        let notification = docs.iter().map(|d| RawValue::from_string(d.to_string()).unwrap()).collect();
        Event { transaction_id: "t1".into(), notification }
    }

    fn eido(id: &str, updated: &str) -> String {
        format!(
            r#"{{"incidentTrackingIdentifier":"{id}","lastUpdateTimeStamp":"{updated}",
            "incidentComponent":[{{"incidentTypeCommonRegistryText":"Shots Fired"}}],
            "locationComponent":[{{"locationByValue":"<gml:pos>36.16 -86.78</gml:pos>"}}]}}"#
        )
    }

    #[test]
    fn an_event_is_answered_400_naming_its_refusals_and_its_documents_keep_their_bytes() {
        let src = EidoWsSource { agency_id: "A".into(), ..Default::default() };
        let out = Out { source: "s", cfs: "cfs", dead_letter: "dlq", rule: DeadLetterRule::default() };
        let (a1, a2) = (eido("I1", "2026-12-03T10:00:00Z"), eido("I1", "2026-12-03T10:00:05Z"));
        let bad = r#"{"lastUpdateTimeStamp":"2026-12-03T10:00:00Z"}"#;
        let mut memory = Memory::default();
        let (a, status) = handle_event(&src, out, &mut memory, 0, &event(&[&a1, bad, &a1]));
        assert_eq!((a.written, a.skipped, a.refused.len()), (1, 1, 1), "{a:?}");
        assert_eq!(status, (400, "Bad Request: refused missing_incident_id".to_string()));
        assert_eq!(a.refused[0].position, "transaction t1 document 2");
        let letter = a.records.iter().find(|r| r.topic == "dlq").unwrap();
        assert_eq!(letter.payload.as_deref(), Some(bad.as_bytes()));
        let (a, status) = handle_event(&src, out, &mut memory, 0, &event(&[&a1, &a2]));
        assert_eq!((a.written, a.skipped, status.0), (1, 1, 200), "{a:?}");
    }

    /// The decoded CFS record of a written record.
    fn cfs_of(r: &trigger_kafka::OutRecord) -> trigger_core::CallForService {
        trigger_cad::pb::decode_one(r.payload.as_deref().unwrap(), &trigger_cad::DecodeOptions::default()).unwrap()
    }

    #[test]
    fn a_blocked_term_in_a_field_no_decoder_maps_travels_as_the_verdict_and_a_retype_is_never_skipped() {
        let src = EidoWsSource { agency_id: "A".into(), ..Default::default() };
        let out = Out { source: "s", cfs: "cfs", dead_letter: "dlq", rule: DeadLetterRule::default() };
        let first = eido("I1", "2026-12-03T10:00:00Z");
        // The same second (the same revision), retyped: its notes name a protest.
        let retyped =
            first.replacen('{', r#"{"notesComponent":[{"notesActionComment":"caller: PROTESTERS blocking road"}],"#, 1);
        let mut memory = Memory::default();
        let (a, status) = handle_event(&src, out, &mut memory, 0, &event(&[&first, &retyped]));
        assert_eq!((a.written, a.skipped, status.0), (2, 0, 200), "{a:?}");
        let ev = cfs_of(&a.records[1]);
        let b = ev.blocked.expect("the verdict travels with the revision");
        assert_eq!((b.term.as_str(), b.field.as_str()), ("PROTEST", "notesComponent[0].notesActionComment"));
        assert!(!String::from_utf8_lossy(a.records[1].payload.as_deref().unwrap()).contains("caller"));
        assert_eq!(cfs_of(&a.records[0]).blocked, None);
    }

    #[test]
    fn the_schemas_messages_read() {
        let m: FromNotifier = serde_json::from_str(
            r#"{"event":{"subscriptionId":"s","transactionId":"t","notification":[{"a":1},{"b":[2]}]}}"#,
        )
        .unwrap();
        let FromNotifier::Event(e) = m else { panic!("{m:?}") };
        assert_eq!(e.notification.iter().map(|d| d.get()).collect::<Vec<_>>(), [r#"{"a":1}"#, r#"{"b":[2]}"#]);
        let m: FromNotifier = serde_json::from_str(
            r#"{"subscribeResponse":{"requestId":"r","statusCode":403,"statusText":"Forbidden"}}"#,
        )
        .unwrap();
        let FromNotifier::SubscribeResponse(r) = m else { panic!("{m:?}") };
        assert_eq!(subscribed(r, 3600).unwrap_err().to_string(), "the subscription was refused: 403 Forbidden");
        assert!(serde_json::from_str::<FromNotifier>(r#"{"surprise":{}}"#).is_err());
    }

    #[test]
    fn the_configuration_is_checked() {
        let src = EidoWsSource { url: "ws://plain".into(), ..Default::default() };
        let errs = src.validate().join("\n");
        assert!(errs.contains("a wss:// URL") && errs.contains("ca_bundle is not set"), "{errs}");
    }
}
