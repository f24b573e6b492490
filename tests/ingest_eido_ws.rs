//! The `eido-ws` source against a NENA-STA-024 notifier written here from the public schema
//! (NENA911/WebSocket-Subscribe-Notify, `schema/websocket.yaml`): it accepts WebSocket connections over
//! mutual TLS (certificates this test makes with `openssl`), answers `subscribe` with `subscribeResponse`,
//! replays every active incident's latest EIDO to each new subscription, and sends again every `event` not
//! answered by an `eventResponse`. The documents are the bundled NENA EIDO sample with fresh identifiers and
//! times. The source is killed at random moments and the connection dropped mid-stream; the oracle is what
//! this test sent and what it reads back from the topics.

mod common;

use common::tls::Certs;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// What the notifier holds: the active incidents, what is still to send, what was sent and not answered.
#[derive(Default)]
struct State {
    /// Incident id -> its latest document (replayed to each new subscription).
    active: BTreeMap<String, String>,
    /// Events to send: their documents (or, `raw`, one text frame as it is).
    queue: VecDeque<Outgoing>,
    /// Transaction id -> its documents, sent and not answered (sent again on the next subscription).
    unanswered: BTreeMap<String, Vec<String>>,
    /// (transaction id, status code, status text) of every eventResponse.
    answers: Vec<(String, u64, String)>,
    subscriptions: usize,
    /// Handshakes refused, with rustls's reason.
    refused: Vec<String>,
    /// Drop the connection, without reading further, once this many more events are sent.
    drop_after: Option<usize>,
    next_transaction: u64,
}

enum Outgoing {
    Event(Vec<String>),
    Raw(String),
}

#[derive(Clone)]
struct Notifier {
    state: Arc<Mutex<State>>,
    port: u16,
}

type Ws = tungstenite::WebSocket<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>;

impl Notifier {
    /// Listening on 127.0.0.1 with `server.crt`, requiring a client certificate from `ca.pem`.
    fn start(certs: &Certs) -> Notifier {
        let files = trigger_tls::TlsFiles {
            ca_bundle: Some(certs.path("ca.pem")),
            cert: Some(certs.path("server.crt")),
            key: Some(certs.path("server.key")),
        };
        let tls = files.server_config().expect("the notifier's TLS");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let n = Notifier { state: Arc::default(), port: listener.local_addr().unwrap().port() };
        let accepting = n.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (me, tls) = (accepting.clone(), tls.clone());
                std::thread::spawn(move || me.connection(tcp, tls));
            }
        });
        n
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn connection(&self, tcp: TcpStream, tls: Arc<rustls::ServerConfig>) {
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut stream = rustls::StreamOwned::new(rustls::ServerConnection::new(tls).unwrap(), tcp);
        while stream.conn.is_handshaking() {
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                self.state().refused.push(e.to_string());
                return;
            }
        }
        let Ok(mut ws) = tungstenite::accept(stream) else { return };
        if !self.subscription(&mut ws) {
            return;
        }
        ws.get_mut().sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        // The initial replay, then what was not answered, then the queue.
        let (active, again): (Vec<String>, Vec<(String, Vec<String>)>) = {
            let s = self.state();
            (s.active.values().cloned().collect(), s.unanswered.clone().into_iter().collect())
        };
        for doc in active {
            if self.send_event(&mut ws, None, vec![doc]).is_err() {
                return;
            }
        }
        for (tx, docs) in again {
            if self.send_event(&mut ws, Some(tx), docs).is_err() {
                return;
            }
        }
        self.serve(ws);
    }

    /// The subscribe request, answered 200 (anything else ends the connection).
    fn subscription(&self, ws: &mut Ws) -> bool {
        let Ok(Message::Text(t)) = ws.read() else { return false };
        let m: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        let sub = &m["subscribe"];
        assert_eq!(sub["requestType"], "EIDO", "{m}");
        assert_eq!(sub["requestSubType"], "new", "{m}");
        let n = {
            let mut s = self.state();
            s.subscriptions += 1;
            s.subscriptions
        };
        let answer = serde_json::json!({"subscribeResponse": {"requestId": sub["requestId"],
            "subscriptionId": format!("sub-{n}"), "expires": 3600, "statusCode": 200, "statusText": "OK"}});
        ws.send(Message::text(answer.to_string())).is_ok()
    }

    fn serve(&self, mut ws: Ws) {
        loop {
            let next = self.state().queue.pop_front();
            match next {
                Some(Outgoing::Event(docs)) => {
                    if self.send_event(&mut ws, None, docs).is_err() {
                        return;
                    }
                    let mut s = self.state();
                    if let Some(left) = s.drop_after.as_mut() {
                        *left -= 1;
                        if *left == 0 {
                            s.drop_after = None;
                            let _ = ws.get_mut().sock.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                }
                Some(Outgoing::Raw(text)) if ws.send(Message::text(text.clone())).is_err() => return,
                Some(Outgoing::Raw(_)) => {}
                None => {}
            }
            match ws.read() {
                Ok(Message::Text(t)) => self.answered(t.as_str()),
                Ok(Message::Close(_)) => return,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }

    fn send_event(&self, ws: &mut Ws, tx: Option<String>, docs: Vec<String>) -> tungstenite::Result<()> {
        let tx = {
            let mut s = self.state();
            let tx = tx.unwrap_or_else(|| {
                s.next_transaction += 1;
                format!("tx-{}", s.next_transaction)
            });
            for d in &docs {
                if let Some(id) = serde_json::from_str::<serde_json::Value>(d).ok().and_then(|v| incident_of(&v)) {
                    s.active.insert(id, d.clone());
                }
            }
            s.unanswered.insert(tx.clone(), docs.clone());
            tx
        };
        let notification = format!("[{}]", docs.join(","));
        let text =
            format!(r#"{{"event":{{"subscriptionId":"sub","transactionId":"{tx}","notification":{notification}}}}}"#);
        ws.send(Message::text(text))
    }

    fn answered(&self, text: &str) {
        let m: serde_json::Value = serde_json::from_str(text).unwrap();
        if let Some(r) = m.get("eventResponse") {
            let tx = r["transactionId"].as_str().unwrap().to_string();
            let mut s = self.state();
            s.unanswered.remove(&tx);
            s.answers.push((tx, r["statusCode"].as_u64().unwrap(), r["statusText"].as_str().unwrap_or("").into()));
        }
    }

    fn push(&self, docs: Vec<String>) {
        self.state().queue.push_back(Outgoing::Event(docs));
    }

    /// Until everything queued is sent and answered (true), or `within` passes.
    fn settled(&self, within: Duration) -> bool {
        let by = Instant::now() + within;
        while Instant::now() < by {
            {
                let s = self.state();
                if s.queue.is_empty() && s.unanswered.is_empty() && s.drop_after.is_none() {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

fn incident_of(v: &serde_json::Value) -> Option<String> {
    v.get("incidentTrackingIdentifier").and_then(|i| i.as_str()).map(str::to_string)
}

/// An ingest.toml for the notifier: `ca` trusted, `client` presented (a certificate and key name in `certs`).
fn config(dir: &Path, kafka: &str, name: &str, n: &Notifier, certs: &Certs, ca: &str, client: &str) -> (PathBuf, u16) {
    let http = common::unique::port();
    let path = dir.join(format!("{name}.toml"));
    let p = |f: String| certs.path(&f).display().to_string();
    std::fs::write(
        &path,
        format!(
            "{kafka}[http]\nlisten = \"127.0.0.1:{http}\"\n[ingest]\nretry_backoff_max_ms = 500\n\
             [eido_ws]\nname = \"{name}\"\nurl = \"wss://127.0.0.1:{}/IncidentData/ent\"\n\
             [eido_ws.tls]\nca_bundle = {:?}\ncert = {:?}\nkey = {:?}\n",
            n.port,
            p(ca.to_string()),
            p(format!("{client}.crt")),
            p(format!("{client}.key")),
        ),
    )
    .unwrap();
    (path, http)
}

#[test]
fn a_notifier_that_drops_replays_and_resends_gets_each_revision_once_over_mutual_tls() {
    let Some(broker) = common::Broker::apache() else { return };
    let mut settings = broker.settings(1);
    settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
    let kafka = common::kafka_section(&settings);
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let notifier = Notifier::start(&certs);
    let template = common::eido_template();
    let seed: u64 = std::env::var("ADVERSARY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("ADVERSARY_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let base = common::now_ms() / 1000 * 1000 - 600_000;
    let sent: std::cell::RefCell<BTreeSet<(String, u32)>> = Default::default();
    let doc = |n: usize, step: i64| -> String {
        let at = base + step * 1000;
        sent.borrow_mut().insert((common::eido_incident(n), common::revision_of(at)));
        common::eido_document(&template, n, at)
    };
    let (cfg, _) = config(dir.path(), &kafka, "eido-ws", &notifier, &certs, "ca.pem", "client");
    let log = dir.path().join("ingest.log");
    let mut child = common::ingest(&cfg, &log, &[]);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    // Events, one with a document the decoder refuses and one with a document that is no object.
    let bad = r#"{"LastUpdateTimeStamp":"2026-01-01T00:00:00Z","incidentComponent":[]}"#.to_string();
    notifier.push(vec![doc(0, 0), doc(1, 0)]);
    notifier.push(vec![doc(2, 0)]);
    notifier.push(vec![bad.clone(), doc(0, 1)]);
    notifier.push(vec!["\"oops\"".into()]);
    assert!(notifier.settled(Duration::from_secs(60)), "not answered; log:\n{}", logged());

    // A drop mid-stream: three events sent, the connection dropped before their answers.
    notifier.state().drop_after = Some(3);
    for (n, step) in [(1, 1), (3, 0), (2, 1), (4, 0)] {
        notifier.push(vec![doc(n, step)]);
    }
    assert!(notifier.settled(Duration::from_secs(60)), "not answered after the drop; log:\n{}", logged());
    assert!(notifier.state().subscriptions >= 2, "no second subscription");
    let before_kills = sent.borrow().clone();

    // SIGKILLs at random moments while events flow; each restart gets the replay and the unanswered again.
    for step in 2..5 {
        for n in 0..5 {
            notifier.push(vec![doc(n, step)]);
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        child = common::ingest(&cfg, &log, &[]);
    }
    notifier.state().queue.push_back(Outgoing::Raw("{not the schema".into()));
    assert!(notifier.settled(Duration::from_secs(90)), "not answered after the kills; log:\n{}", logged());

    // SIGTERM: the source finishes what it holds and exits 0.
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit {status}; log:\n{}", logged());

    // The oracle: what was sent, and the topics. Each revision at most once, each incident's in order and its
    // last one there; every revision sent before the kills there (after a kill, the notifier's replay of an
    // incident's latest state may come before the resend of an older one, which is then out of date).
    let got = common::revisions_on_topic(&settings);
    let sent = sent.into_inner();
    let distinct: BTreeSet<(String, u32)> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), got.len(), "a revision written twice: {got:?}");
    assert!(distinct.is_subset(&sent), "the topic holds revisions the notifier never sent: {got:?}");
    assert!(before_kills.is_subset(&distinct), "a revision sent before the kills is missing: {got:?}");
    let mut last: BTreeMap<&str, u32> = BTreeMap::new();
    for (id, rev) in &got {
        assert!(last.insert(id, *rev).is_none_or(|before| before < *rev), "{id}: out of order on the topic: {got:?}");
    }
    for (id, rev) in &sent {
        assert!(last[id.as_str()] >= *rev, "{id}: its last revision {rev} is not on the topic: {got:?}");
    }
    let letters =
        trigger_kafka::inspect::read_topic(&settings, &settings.topics.dead_letter, true, Duration::from_secs(30))
            .unwrap();
    let payloads: BTreeMap<String, String> = letters
        .iter()
        .map(|r| {
            let p = String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).to_string();
            let reason = String::from_utf8_lossy(r.header("dt.reject.reason").unwrap_or_default()).to_string();
            (p, reason)
        })
        .collect();
    let want: BTreeMap<String, String> = [
        (bad.clone(), "missing_incident_id".to_string()),
        ("\"oops\"".to_string(), "malformed_json".to_string()),
        ("{not the schema".to_string(), "malformed_json".to_string()),
    ]
    .into();
    assert_eq!(payloads, want, "the dead letters are the refused documents and message, as sent");
    assert_eq!(letters.len(), 3, "a refusal dead-lettered twice: {letters:?}");
    let s = notifier.state();
    let refused: Vec<_> = s.answers.iter().filter(|a| a.1 != 200).collect();
    assert_eq!(refused.len(), 2, "{:?}", s.answers);
    assert!(refused.iter().all(|a| a.1 == 400 && a.2.contains("Bad Request")), "{refused:?}");
    assert!(refused.iter().any(|a| a.2.contains("missing_incident_id")), "{refused:?}");
}

#[test]
fn a_notifier_that_is_not_there_or_without_the_right_certificate_is_named_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let notifier = Notifier::start(&certs);
    // No broker is needed to be refused: the source says so on /readyz while Kafka is not there either.
    let Some(broker) = common::Broker::apache() else { return };
    let kafka = common::kafka_section(&broker.settings(1));
    for (name, ca, client, want) in [
        ("wrong-ca", "other-ca.pem", "client", "invalid peer certificate: UnknownIssuer"),
        ("rogue-client", "ca.pem", "rogue-client", "fatal alert"),
    ] {
        let (cfg, port) = config(dir.path(), &kafka, name, &notifier, &certs, ca, client);
        let log = dir.path().join(format!("{name}.log"));
        let _child = common::ingest(&cfg, &log, &[]);
        let said = common::readyz_saying(port, "EIDO notifier", Duration::from_secs(30));
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(said.contains(" 503 ") && said.contains(want), "{name}: {said}\nlog:\n{logged}");
    }
    // A notifier that is not there: named on /readyz, each failed attempt counted, retried.
    let closed = common::unique::port();
    let nobody = Notifier { state: Arc::default(), port: closed };
    let (cfg, port) = config(dir.path(), &kafka, "unreachable", &nobody, &certs, "ca.pem", "client");
    let _child = common::ingest(&cfg, &dir.path().join("unreachable.log"), &[]);
    let said = common::readyz_saying(port, "EIDO notifier", Duration::from_secs(30));
    assert!(said.contains(" 503 ") && said.to_lowercase().contains("refused"), "{said}");
    let counted = || {
        let metrics = common::http_get(port, "/metrics").unwrap_or_default();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("dispatch_trigger_ingest_source_errors_total{source=\"unreachable\"} "))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    let retried = "a second failed attempt, counted (the failed attempts are counted and retried)";
    common::wait_for(retried, Duration::from_secs(30), || counted().is_some_and(|n| n >= 2));
    let s = notifier.state();
    assert_eq!(s.subscriptions, 0, "a subscriber without the right certificate subscribed");
    assert!(
        s.refused.iter().any(|r| r.contains("UnknownCA") || r.contains("invalid peer certificate")),
        "{:?}",
        s.refused
    );
}

#[test]
fn a_broker_outage_longer_than_a_transaction_waits_loses_no_event_and_writes_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, settings)) = common::own_eos_cluster(dir.path(), "eido-outage") else { return };
    let certs = Certs::make(dir.path());
    let notifier = Notifier::start(&certs);
    let template = common::eido_template();
    let base = common::now_ms() / 1000 * 1000 - 600_000;
    let mut sent = BTreeSet::new();
    let mut doc = |n: usize, step: i64| -> String {
        let at = base + step * 1000;
        sent.insert((common::eido_incident(n), common::revision_of(at)));
        common::eido_document(&template, n, at)
    };
    let (cfg, http) =
        config(dir.path(), &common::kafka_section(&settings), "eido-ws", &notifier, &certs, "ca.pem", "client");
    let log = dir.path().join("ingest.log");
    let _child = common::ingest(&cfg, &log, &[]);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    for n in 0..5 {
        notifier.push(vec![doc(n, 0)]);
    }
    assert!(notifier.settled(Duration::from_secs(60)), "not answered; log:\n{}", logged());
    let before = common::revisions_on_topic(&settings);

    // The broker stops while events arrive, for longer than a transaction's commit waits (60 s: it is aborted,
    // the sink opened anew, the notifier subscribed to again and its unanswered events sent again). /readyz
    // names Kafka once a write has waited `broker_grace_ms` (10 s), and still at 75 s.
    common::ingest_broker_outage(&broker, http, || {
        for step in 1..3 {
            for n in 0..5 {
                notifier.push(vec![doc(n, step)]);
            }
        }
    });
    assert!(notifier.settled(Duration::from_secs(180)), "not answered after the outage; log:\n{}", logged());

    // Every revision at most once, nothing the notifier did not send, each incident's in order up to its last
    // (a replay of an incident's latest state may come before the resend of an older event, then out of date).
    let got = common::revisions_on_topic(&settings);
    let distinct: BTreeSet<(String, u32)> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), got.len(), "a revision written twice: {got:?}");
    assert!(distinct.is_subset(&sent), "the topic holds revisions the notifier never sent: {got:?}");
    assert_eq!(before.len(), 5, "before the outage: {before:?}");
    assert_eq!(got[..5], before[..], "what was on the topic before the outage stays first");
    let mut last: BTreeMap<&str, u32> = BTreeMap::new();
    for (id, rev) in &got {
        assert!(last.insert(id, *rev).is_none_or(|b| b < *rev), "{id}: out of order on the topic: {got:?}");
    }
    for (id, rev) in &sent {
        assert!(last[id.as_str()] >= *rev, "{id}: its last revision {rev} is not on the topic: {got:?}");
    }
    let s = notifier.state();
    assert!(s.answers.iter().all(|a| a.1 == 200), "{:?}", s.answers);
}
