//! The `http_push` source against real HTTPS clients: `curl` (libcurl over OpenSSL, Debian's package) with a
//! client certificate from the trusted CA, one from another CA, none; a right, a wrong and no bearer token. The
//! documents are the bundled NENA EIDO sample with fresh identifiers and times. The source is killed at random
//! moments while clients push and retry; the oracle is what the clients sent, what they were answered, and the
//! topics read back.

mod common;

use common::tls::Certs;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TOKEN: &str = "push-token-5ad1f0";

/// Who a client is: its certificate (a name in the test's certificates, or none) and its token.
#[derive(Clone, Copy)]
struct Client<'a> {
    cert: Option<&'a str>,
    token: Option<&'a str>,
}

const GOOD: Client<'static> = Client { cert: Some("client"), token: Some(TOKEN) };

/// `curl` POSTs `body` to `path`: the status (0: no HTTP answer, the TLS handshake failed) and the body or
/// curl's error.
fn push(certs: &Certs, port: u16, path: &str, body: &[u8], who: Client<'_>) -> (u16, String) {
    push_waiting(certs, port, path, body, who, 30)
}

/// `push`, the client waiting up to `seconds` for its answer.
fn push_waiting(certs: &Certs, port: u16, path: &str, body: &[u8], who: Client<'_>, seconds: u32) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", &seconds.to_string(), "--cacert"]).arg(certs.path("ca.pem"));
    if let Some(c) = who.cert {
        cmd.arg("--cert").arg(certs.path(&format!("{c}.crt"))).arg("--key").arg(certs.path(&format!("{c}.key")));
    }
    if let Some(t) = who.token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    cmd.args(["-H", "Content-Type: application/json", "--data-binary", "@-", "-w", "\n%{http_code}"]);
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("curl");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (answer, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    let code: u16 = code.trim().parse().unwrap_or(0);
    if code == 0 {
        return (0, String::from_utf8_lossy(&o.stderr).to_string());
    }
    (code, answer.to_string())
}

/// Push until answered 200, retrying a 503 or no answer after `pause_ms` (anything else fails the test, as does
/// no 200 within `deadline_s`); each answer counted. The client waits `wait_s` for each answer.
fn push_until_ok(
    certs: &Certs,
    port: u16,
    body: &[u8],
    answers: &Mutex<BTreeMap<u16, usize>>,
    wait_s: u32,
    deadline_s: u64,
    pause_ms: u64,
) {
    let by = Instant::now() + Duration::from_secs(deadline_s);
    loop {
        let (code, said) = push_waiting(certs, port, "/v1/eido", body, GOOD, wait_s);
        *answers.lock().unwrap().entry(code).or_default() += 1;
        if code == 200 {
            return;
        }
        assert!(code == 0 || code == 503, "{code}: {said}");
        assert!(Instant::now() < by, "never answered 200: {said}");
        std::thread::sleep(Duration::from_millis(pause_ms));
    }
}

fn config(dir: &Path, kafka: &str, certs: &Certs) -> (std::path::PathBuf, u16, u16) {
    let (http, listen) = (common::unique::port(), common::unique::port());
    let path = dir.join("push.toml");
    let p = |f: &str| certs.path(f).display().to_string();
    std::fs::write(
        &path,
        format!(
            "{kafka}[http]\nlisten = \"127.0.0.1:{http}\"\n[ingest]\nretry_backoff_max_ms = 500\n\
             [http_push]\nlisten = \"127.0.0.1:{listen}\"\nmax_body_bytes = 65536\n\
             [http_push.tls]\ncert = {:?}\nkey = {:?}\nca_bundle = {:?}\n",
            p("server.crt"),
            p("server.key"),
            p("ca.pem"),
        ),
    )
    .unwrap();
    (path, http, listen)
}

fn ready(port: u16) {
    let said = common::readyz_saying(port, " 200 ", Duration::from_secs(60));
    assert!(said.contains(" 200 "), "the push source never became ready: {said}");
}

#[test]
fn pushes_are_answered_once_kafka_has_them_written_once_each_and_refused_by_name() {
    let Some(broker) = common::Broker::apache() else { return };
    let mut settings = broker.settings(1);
    settings.delivery = trigger_kafka::Delivery::ExactlyOnce;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let (cfg, http, port) = config(dir.path(), &common::kafka_section(&settings), &certs);
    let log = dir.path().join("push.log");
    let env = [("DT_INGEST_HTTP_PUSH__TOKEN", TOKEN)];
    let mut child = common::ingest(&cfg, &log, &env);
    ready(http);
    let template = common::eido_template();
    let base = common::now_ms() / 1000 * 1000 - 600_000;
    let doc = |n: usize, step: i64| common::eido_document(&template, n, base + step * 1000);
    let rev = |step: i64| common::revision_of(base + step * 1000);

    // Credentials: only a client with the CA's certificate and the token is heard.
    let first = doc(0, 0);
    for (who, want) in [
        (Client { cert: Some("client"), token: None }, 401),
        (Client { cert: Some("client"), token: Some("push-token-5ad1f1") }, 401),
        (Client { cert: None, token: Some(TOKEN) }, 0),
        (Client { cert: Some("rogue-client"), token: Some(TOKEN) }, 0),
    ] {
        let (code, said) = push(&certs, port, "/v1/eido", first.as_bytes(), who);
        assert_eq!(code, want, "{said}");
    }
    assert!(common::revisions_on_topic(&settings).is_empty(), "a refused client's push was written");
    // A 200 means the record is on the topic already (read committed).
    let (code, said) = push(&certs, port, "/v1/eido", first.as_bytes(), GOOD);
    assert_eq!((code, said.as_str()), (200, r#"{"duplicates":0,"written":1}"#));
    assert_eq!(common::revisions_on_topic(&settings), [(common::eido_incident(0), rev(0))]);
    let (code, said) = push(&certs, port, "/v1/eido", first.as_bytes(), GOOD);
    assert_eq!((code, said.as_str()), (200, r#"{"duplicates":1,"written":0}"#), "pushed again: not written again");

    // Bad input: named, its bytes dead-lettered, the documents around it written.
    let bad = r#"{"LastUpdateTimeStamp":"2026-01-01T00:00:00Z","incidentComponent":[]}"#;
    let (code, said) = push(&certs, port, "/v1/eido", format!("[{},{bad}]", doc(1, 0)).as_bytes(), GOOD);
    assert_eq!(code, 400, "{said}");
    assert!(said.contains("missing_incident_id") && said.contains(r#""written":1"#), "{said}");
    let cfs_line = format!(
        r#"{{"incident_id":"J1","agency_id":"A","revision":1,"status":"new","location":{{"lat":36.16,"lon":-86.78}},"received_at":{base},"emitted_at":{base}}}"#
    );
    let (code, said) = push(&certs, port, "/v1/cfs", format!("{{oops\n{cfs_line}\n").as_bytes(), GOOD);
    assert_eq!(code, 400, "{said}");
    assert!(said.contains("malformed_json") && said.contains("line 1"), "{said}");
    let (code, said) = push(&certs, port, "/v1/eido", &vec![b' '; 100_000], GOOD);
    assert_eq!(code, 413, "{said}");
    assert!(said.contains("oversized_message"), "{said}");
    let (code, _) = push(&certs, port, "/v1/elsewhere", b"{}", GOOD);
    assert_eq!(code, 404);

    // Clients push and retry while the source is killed at random moments.
    let seed: u64 = std::env::var("ADVERSARY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("ADVERSARY_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sent: Mutex<BTreeSet<(String, u32)>> = Mutex::new(BTreeSet::from([(common::eido_incident(0), rev(0))]));
    sent.lock().unwrap().insert((common::eido_incident(1), rev(0)));
    let answers: Mutex<BTreeMap<u16, usize>> = Mutex::default();
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (sent, answers, certs, doc) = (&sent, &answers, &certs, &doc);
                s.spawn(move || {
                    for i in 0..12 {
                        let (n, step) = (2 + c * 100 + i % 4, 1 + i as i64 / 4);
                        let body = doc(n, step);
                        sent.lock().unwrap().insert((common::eido_incident(n), rev(step)));
                        push_until_ok(certs, port, body.as_bytes(), answers, 30, 120, 200);
                        // Paced, so that the kills land while the clients push (a commit takes milliseconds).
                        std::thread::sleep(Duration::from_millis(80));
                    }
                })
            })
            .collect();
        let mut kills = 0;
        while kills < 3 || !clients.iter().all(|c| c.is_finished()) {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..900)));
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            child = common::ingest(&cfg, &log, &env);
            kills += 1;
        }
        for c in clients {
            c.join().unwrap();
        }
        eprintln!("{kills} SIGKILLs");
    });
    eprintln!("answers while killed: {:?}", answers.lock().unwrap());
    // The last instance up (a SIGTERM before its handler is installed would kill it, as any process).
    ready(http);

    // SIGTERM: the source finishes what it holds and exits 0.
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit {status}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());

    // The oracle: what the clients sent, the topics.
    let got = common::revisions_on_topic(&settings);
    let distinct: BTreeSet<(String, u32)> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), got.len(), "a revision written twice: {got:?}");
    let mut want = sent.into_inner().unwrap();
    want.insert(("J1".into(), 1));
    assert_eq!(distinct, want, "the topic holds other revisions than the clients were answered 200 for");
    let letters =
        trigger_kafka::inspect::read_topic(&settings, &settings.topics.dead_letter, true, Duration::from_secs(30))
            .unwrap();
    let payloads: BTreeSet<Vec<u8>> = letters.iter().map(|r| r.payload.clone().unwrap_or_default()).collect();
    assert!(payloads.contains(bad.as_bytes()) && payloads.contains(&b"{oops"[..]), "{letters:?}");
    assert!(
        payloads.iter().any(|p| p.len() == 65536 && p.iter().all(|b| *b == b' ')),
        "the oversized body's first bytes"
    );
    assert_eq!(letters.len(), 3, "{letters:?}");
}

#[test]
fn a_broker_outage_mid_push_loses_nothing_and_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, settings)) = common::own_eos_cluster(dir.path(), "push-outage") else { return };
    let certs = Certs::make(dir.path());
    let (cfg, http, port) = config(dir.path(), &common::kafka_section(&settings), &certs);
    let log = dir.path().join("push.log");
    let _child = common::ingest(&cfg, &log, &[("DT_INGEST_HTTP_PUSH__TOKEN", TOKEN)]);
    ready(http);
    let template = common::eido_template();
    let base = common::now_ms() / 1000 * 1000 - 600_000;
    let sent: Mutex<BTreeSet<(String, u32)>> = Mutex::default();
    let answers: Mutex<BTreeMap<u16, usize>> = Mutex::default();
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..3)
            .map(|c| {
                let (sent, answers, certs, template) = (&sent, &answers, &certs, &template);
                s.spawn(move || {
                    for i in 0..10 {
                        let (n, at) = (c * 100 + i, base + i as i64 * 1000);
                        sent.lock().unwrap().insert((common::eido_incident(n), common::revision_of(at)));
                        let body = common::eido_document(template, n, at);
                        // Waiting longer than a commit does: the answer a failed transaction gets is seen.
                        push_until_ok(certs, port, body.as_bytes(), answers, 150, 300, 500);
                        std::thread::sleep(Duration::from_millis(300));
                    }
                })
            })
            .collect();
        // The broker stops mid-stream (once the first pushes are on the topic) for longer than a client waits
        // and than a transaction's commit waits.
        common::wait_for("the first pushes on the CFS topic", Duration::from_secs(60), || {
            trigger_kafka::inspect::topic_record_count(&settings, &settings.topics.cfs).is_ok_and(|n| n > 0)
        });
        common::ingest_broker_outage(&broker, http, || {});
        for c in clients {
            c.join().unwrap();
        }
    });
    eprintln!("answers through the outage: {:?}", answers.lock().unwrap());
    let got = common::revisions_on_topic(&settings);
    let distinct: BTreeSet<(String, u32)> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), got.len(), "a revision written twice: {got:?}");
    assert_eq!(distinct, sent.into_inner().unwrap(), "the topic holds other revisions than the clients pushed");
}
