//! The `http_push` source: an HTTPS endpoint CAD vendors push to. `POST /v1/eido` takes an EIDO document (or
//! an array, or one per line); `POST /v1/cfs` takes the CallForService JSON of the JSONL format, one per line.
//! Clients are authenticated by mutual TLS (`tls.ca_bundle`: a certificate from it is required at the
//! handshake), by a bearer token (`DT_INGEST_HTTP_PUSH__TOKEN`), or both; one of them is required.
//!
//! A request is answered only once Kafka has acknowledged what it carried: 200 with what was written and what
//! was already there (a revision pushed again is not written again: the source's memory, as in
//! [`super::memory`]); 400 naming each refused document's reason (its bytes on the dead-letter topic, the
//! documents around it written); 401 without the credentials; 413 for a body over `max_body_bytes` (its first
//! bytes dead-lettered); 503 while Kafka does not take the records (the vendor retries; nothing was answered
//! 2xx). Requests are written by one writer, in batches, each batch and the memory after it in one transaction
//! with `exactly_once`.

use super::memory::{self, Admitted, Memory, Out, Refused, Seen};
use super::{count_written, open_sink, register, set_down, Backoff, IngestConfig, Written};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use trigger_cad::{DecodeOptions, Decoded};
use trigger_core::{Reject, RejectReason, Secret};
use trigger_kafka::ingest::IngestSink;
use trigger_kafka::records::DeadLetterRule;
use trigger_kafka::{wall_ms, Health};
use trigger_tls::TlsFiles;

/// `[http_push]`: the endpoint, its TLS and its clients' credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPushSource {
    /// The source's name: the key of its memory, the origin named in its dead letters.
    pub name: String,
    /// Where the endpoint listens (host:port).
    pub listen: String,
    /// `[http_push.tls]`: the server's certificate and key (required); `ca_bundle`: clients must present a
    /// certificate that chains to it (mutual TLS).
    pub tls: TlsFiles,
    /// The bearer token clients send (`Authorization: Bearer ...`), from the environment:
    /// `DT_INGEST_HTTP_PUSH__TOKEN`. Never printed.
    pub token: Option<Secret>,
    /// The agency the incidents belong to, when the input does not say (empty: from the input).
    pub agency_id: String,
    /// The largest body taken; a larger one is refused 413.
    pub max_body_bytes: usize,
    /// How long the source remembers an incident's last revision: older input is skipped.
    pub remember_hours: u32,
    /// The most requests one transaction carries.
    pub batch_requests: usize,
}

impl Default for HttpPushSource {
    fn default() -> Self {
        Self {
            name: "http-push".into(),
            listen: String::new(),
            tls: TlsFiles::default(),
            token: None,
            agency_id: String::new(),
            max_body_bytes: 1 << 20,
            remember_hours: 24,
            batch_requests: 256,
        }
    }
}

impl HttpPushSource {
    pub(super) fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            errs.push(format!("http_push.listen {:?} is not an address (host:port)", self.listen));
        }
        if self.tls.cert.is_none() || self.tls.key.is_none() {
            errs.push("http_push.tls.cert and key are required: the endpoint speaks HTTPS only".into());
        }
        errs.extend(self.tls.validate("http_push.tls"));
        if self.tls.ca_bundle.is_none() && self.token.as_ref().is_none_or(|t| t.expose().is_empty()) {
            errs.push(
                "http_push: no client authentication: set tls.ca_bundle (mutual TLS) or the token \
                 (DT_INGEST_HTTP_PUSH__TOKEN), or both"
                    .into(),
            );
        }
        errs.extend(super::name_problem("http_push", &self.name));
        if self.max_body_bytes == 0 || self.remember_hours == 0 || self.batch_requests == 0 {
            errs.push("http_push.max_body_bytes, remember_hours and batch_requests must be positive".into());
        }
        errs
    }
}

/// What a request's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Eido,
    Cfs,
}

/// One request, decoded, waiting for the writer.
struct Job {
    decoded: Decoded,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

/// What a request is answered.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
}

impl Answer {
    fn of(a: &Admitted) -> Answer {
        let (written, duplicates) = (a.written, a.skipped);
        if a.refused.is_empty() {
            Answer { status: StatusCode::OK, body: json!({"written": written, "duplicates": duplicates}) }
        } else {
            let rejects: Vec<&Refused> = a.refused.iter().collect();
            let body = json!({"rejects": rejects, "written": written, "duplicates": duplicates});
            Answer { status: StatusCode::BAD_REQUEST, body }
        }
    }

    fn error(status: StatusCode, error: impl Into<String>) -> Answer {
        Answer { status, body: json!({"error": error.into()}) }
    }
}

/// The request side, shared by every connection.
struct Front {
    jobs: mpsc::SyncSender<Job>,
    token: Option<Secret>,
    opts: DecodeOptions,
    max_body: usize,
}

/// Serve the endpoint and write what it takes until `shutdown`.
pub(super) fn run(cfg: &IngestConfig, src: &HttpPushSource, health: &Health, shutdown: &AtomicBool) -> Result<Written> {
    let tls = src.tls.server_config().context("http_push.tls")?;
    let listener =
        std::net::TcpListener::bind(&src.listen).with_context(|| format!("http_push.listen {}", src.listen))?;
    listener.set_nonblocking(true)?;
    register(&src.name);
    let (jobs, queue) = mpsc::sync_channel(4096);
    let opts = DecodeOptions {
        agency_id: (!src.agency_id.is_empty()).then(|| src.agency_id.clone()),
        max_message_bytes: src.max_body_bytes,
    };
    let front = Arc::new(Front { jobs, token: src.token.clone(), opts, max_body: src.max_body_bytes });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.spawn(serve(listener, tokio_rustls::TlsAcceptor::from(tls), front));
    tracing::info!(source = %src.name, listen = %src.listen, "accepting pushes");
    let written = write(cfg, src, &queue, health, shutdown);
    runtime.shutdown_timeout(Duration::from_secs(1));
    // What arrived after the last batch was not written: its clients are told to retry.
    while let Ok(job) = queue.try_recv() {
        let _ = job.reply.send(Answer::error(StatusCode::SERVICE_UNAVAILABLE, "stopping: retry"));
    }
    Ok(written)
}

/// Accept connections: TLS (the client's certificate checked when configured), then HTTP/1.1.
async fn serve(listener: std::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor, front: Arc<Front>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "http_push.listen"),
    };
    loop {
        let Ok((tcp, peer)) = listener.accept().await else { continue };
        // An answer is written as it is ready: without this, its last segment waits for the client's delayed
        // acknowledgement of the one before (Nagle), some 40 ms.
        let _ = tcp.set_nodelay(true);
        let (acceptor, front) = (acceptor.clone(), front.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return refused(&peer, "tls", &e.to_string()),
                Err(_) => return refused(&peer, "tls", "no TLS handshake within 10 s"),
            };
            let service = hyper::service::service_fn(move |req| handle(req, front.clone()));
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// A client refused before its request was read (`why`: `tls`, `no_token`, `wrong_token`), counted.
fn refused(peer: &std::net::SocketAddr, why: &'static str, detail: &str) {
    metrics::counter!("dispatch_trigger_ingest_push_refused_total", "why" => why).increment(1);
    tracing::warn!(peer = %peer, why, detail, "a push client was refused");
}

async fn handle(req: Request<Incoming>, front: Arc<Front>) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/eido") => take(req, Format::Eido, &front).await,
        (&Method::POST, "/v1/cfs") => take(req, Format::Cfs, &front).await,
        (_, "/v1/eido" | "/v1/cfs") => Answer::error(StatusCode::METHOD_NOT_ALLOWED, "POST only"),
        _ => Answer::error(StatusCode::NOT_FOUND, "POST /v1/eido or /v1/cfs"),
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.body.to_string())));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("valid"));
    if answer.status == StatusCode::UNAUTHORIZED {
        headers.insert(hyper::header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
    }
    Ok(response)
}

/// A push: authorised, read (up to the limit), decoded, handed to the writer, answered once written.
async fn take(req: Request<Incoming>, format: Format, front: &Front) -> Answer {
    if let Err(why) = authorised(req.headers(), front.token.as_ref()) {
        metrics::counter!("dispatch_trigger_ingest_push_refused_total", "why" => why).increment(1);
        return Answer::error(StatusCode::UNAUTHORIZED, why);
    }
    let (body, whole) = read_capped(req.into_body(), front.max_body).await;
    let decoded = if !whole {
        let mut d = Decoded::default();
        let source = trigger_cad::Source { position: "body".into(), bytes: body };
        let reject = Reject::new(RejectReason::OversizedMessage, format!("over {} bytes", front.max_body));
        d.rejects.push(trigger_cad::Rejected::new(&source, reject));
        d
    } else {
        decode(&body, format, &front.opts)
    };
    let (reply, answered) = tokio::sync::oneshot::channel();
    if front.jobs.try_send(Job { decoded, reply }).is_err() {
        return Answer::error(StatusCode::SERVICE_UNAVAILABLE, "the writer is behind: retry");
    }
    match answered.await {
        Ok(a) if !whole && a.status == StatusCode::BAD_REQUEST => Answer { status: StatusCode::PAYLOAD_TOO_LARGE, ..a },
        Ok(a) => a,
        Err(_) => Answer::error(StatusCode::SERVICE_UNAVAILABLE, "stopping: retry"),
    }
}

/// The body's first `max` bytes, and whether that was all of it.
async fn read_capped(mut body: Incoming, max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                out.extend_from_slice(&data[..max - out.len()]);
                return (out, false);
            }
            out.extend_from_slice(&data);
        }
    }
    (out, true)
}

fn decode(body: &[u8], format: Format, opts: &DecodeOptions) -> Decoded {
    let mut d = match format {
        Format::Eido => trigger_cad::eido::decode(body, opts),
        Format::Cfs => trigger_cad::jsonl::decode(body, opts),
    };
    if d.events.is_empty() && d.rejects.is_empty() {
        let source = trigger_cad::Source { position: "body".into(), bytes: body.to_vec() };
        let reject = Reject::new(RejectReason::MalformedJson, "no document in the body");
        d.rejects.push(trigger_cad::Rejected::new(&source, reject));
    }
    d
}

/// `Authorization: Bearer <token>` when a token is configured (compared in constant time).
fn authorised(headers: &hyper::HeaderMap, token: Option<&Secret>) -> Result<(), &'static str> {
    let Some(token) = token.filter(|t| !t.expose().is_empty()) else { return Ok(()) };
    let given = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no_token")?;
    let (a, b) = (given.trim().as_bytes(), token.expose().as_bytes());
    let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differ {
        Err("wrong_token")
    } else {
        Ok(())
    }
}

/// The writer: batches of requests, each committed with the memory after it, then answered.
fn write(
    cfg: &IngestConfig,
    src: &HttpPushSource,
    queue: &mpsc::Receiver<Job>,
    health: &Health,
    shutdown: &AtomicBool,
) -> Written {
    let mut written = Written::default();
    let mut backoff = Backoff::new(cfg.ingest.retry_backoff_max_ms);
    let rule = DeadLetterRule { payload: cfg.ingest.dead_letter_payload, ..DeadLetterRule::default() };
    let out = Out { source: &src.name, cfs: &cfg.kafka.topics.cfs, dead_letter: &cfg.kafka.topics.dead_letter, rule };
    while !shutdown.load(Relaxed) {
        let Some((mut sink, seen)) = open_sink(cfg, &src.name, Seen::default, health, &mut backoff, shutdown) else {
            break;
        };
        health.ready.store(true, Relaxed);
        let mut memory = Memory::from_seen(seen);
        while !shutdown.load(Relaxed) {
            let Ok(first) = queue.recv_timeout(Duration::from_millis(200)) else { continue };
            let mut jobs = vec![first];
            jobs.extend(std::iter::from_fn(|| queue.try_recv().ok()).take(src.batch_requests - 1));
            if let Err(e) = commit(&mut sink, &mut memory, jobs, (src, out, health), &mut written, shutdown) {
                tracing::warn!(error = %e, "Kafka did not take the records; starting again from the stored watermark");
                set_down(health, Some(format!("Kafka does not acknowledge the records: {e}")));
                backoff.wait(shutdown);
                break;
            }
            set_down(health, None);
            backoff.reset();
        }
    }
    health.ready.store(false, Relaxed);
    written
}

/// One batch: admitted against the memory, committed with the memory after it, each request answered.
fn commit(
    sink: &mut IngestSink,
    memory: &mut Memory,
    jobs: Vec<Job>,
    (src, out, health): (&HttpPushSource, Out<'_>, &Health),
    written: &mut Written,
    shutdown: &AtomicBool,
) -> Result<(), String> {
    let horizon = memory::horizon(src.remember_hours);
    let mut after = memory.clone();
    let admitted: Vec<(Job, Admitted)> = jobs
        .into_iter()
        .map(|mut job| {
            let decoded = std::mem::take(&mut job.decoded);
            let a = memory::admit(&mut after, horizon, decoded, out);
            (job, a)
        })
        .collect();
    let records: Vec<_> = admitted.iter().flat_map(|(_, a)| a.records.iter().cloned()).collect();
    let outcome = if records.is_empty() {
        Ok(true)
    } else {
        let mark = after.watermark(horizon);
        super::commit(sink, health, &records, &mark, &|| shutdown.load(Relaxed)).map_err(|e| e.to_string())
    };
    match outcome {
        Ok(true) => {
            *memory = after;
            for (job, a) in admitted {
                account(written, &a, &src.name);
                let _ = job.reply.send(Answer::of(&a));
            }
            Ok(())
        }
        Ok(false) => {
            for (job, _) in admitted {
                let _ = job.reply.send(Answer::error(StatusCode::SERVICE_UNAVAILABLE, "stopping: retry"));
            }
            Ok(())
        }
        Err(e) => {
            for (job, _) in admitted {
                let _ = job.reply.send(Answer::error(StatusCode::SERVICE_UNAVAILABLE, format!("Kafka: {e}; retry")));
            }
            Err(e)
        }
    }
}

/// One answered request, counted.
fn account(written: &mut Written, a: &Admitted, source: &str) {
    written.acknowledged(&a.updated_us);
    written.rows += a.documents();
    written.records += a.written;
    written.dead_letters += a.refused.len() as u64;
    written.skipped += a.skipped;
    count_written(source, a.documents() as usize, a.refused.len() as u64);
    metrics::counter!("dispatch_trigger_ingest_skipped_total", "source" => source.to_string()).increment(a.skipped);
    metrics::gauge!("dispatch_trigger_ingest_last_write_timestamp_seconds", "source" => source.to_string())
        .set(wall_ms() as f64 / 1e3);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_naming_a_blocked_type_in_a_field_no_decoder_maps_is_written_with_the_verdict() {
        let body = br#"{"incident_id":"I9","agency_id":"A","revision":3,"status":"dispatched","call_type_code":"83","call_type_text":"SHOTS FIRED","location":{"lat":36.16,"lon":-86.78},"received_at":1764756000000,"emitted_at":1764756000000,"vendor_remarks":"ICE agents on scene"}"#;
        let decoded = decode(body, Format::Cfs, &DecodeOptions::default());
        let out = memory::Out { source: "s", cfs: "cfs", dead_letter: "dlq", rule: DeadLetterRule::default() };
        let mut m = memory::Memory::default();
        let a = memory::admit(&mut m, 0, decoded, out);
        // Pushed again as it was: a repeat, skipped. Retyped at the same revision with a block: written.
        let again = memory::admit(&mut m, 0, decode(body, Format::Cfs, &DecodeOptions::default()), out);
        assert_eq!((a.written, again.written, again.skipped), (1, 0, 1));
        let plain = String::from_utf8_lossy(body).replace(r#","vendor_remarks":"ICE agents on scene""#, "");
        let mut fresh = memory::Memory::default();
        let first = memory::admit(&mut fresh, 0, decode(plain.as_bytes(), Format::Cfs, &DecodeOptions::default()), out);
        let retyped = memory::admit(&mut fresh, 0, decode(body, Format::Cfs, &DecodeOptions::default()), out);
        assert_eq!((first.written, retyped.written), (1, 1));
        let ev =
            trigger_cad::pb::decode_one(a.records[0].payload.as_deref().unwrap(), &DecodeOptions::default()).unwrap();
        let b = ev.blocked.expect("the verdict travels");
        assert_eq!((b.term.as_str(), b.field.as_str()), ("ICE", "vendor_remarks"));
    }

    #[test]
    fn a_token_is_required_when_configured_and_compared_whole() {
        let mut h = hyper::HeaderMap::new();
        let t = Secret::new("s3cret-token");
        assert_eq!(authorised(&h, Some(&t)), Err("no_token"));
        assert_eq!(authorised(&h, None), Ok(()));
        h.insert(hyper::header::AUTHORIZATION, "Bearer s3cret-toke".parse().unwrap());
        assert_eq!(authorised(&h, Some(&t)), Err("wrong_token"));
        h.insert(hyper::header::AUTHORIZATION, "Bearer s3cret-token".parse().unwrap());
        assert_eq!(authorised(&h, Some(&t)), Ok(()));
        h.insert(hyper::header::AUTHORIZATION, "Basic s3cret-token".parse().unwrap());
        assert_eq!(authorised(&h, Some(&t)), Err("no_token"));
    }

    #[test]
    fn the_configuration_needs_https_and_a_client_authentication() {
        let src = HttpPushSource { listen: "127.0.0.1:8443".into(), ..Default::default() };
        let errs = src.validate().join("\n");
        assert!(errs.contains("HTTPS only") && errs.contains("no client authentication"), "{errs}");
        let body = decode(b"  \n", Format::Eido, &DecodeOptions::default());
        assert_eq!(body.rejects[0].reason, RejectReason::MalformedJson);
    }
}
