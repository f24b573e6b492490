//! The bridge's targets over TLS against real peers: Mosquitto (Debian's package) with a TLS listener that
//! requires a client certificate, and an HTTPS server speaking Frigate's and Home Assistant's APIs (written here:
//! rustls over TCP, the two endpoints the bridge calls). Certificates are made here with `openssl`. A target
//! whose peer does not verify, or that the peer refuses, is refused when the bridge starts, with the peer's
//! reason by name.

mod common;

use common::tls::Certs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trigger_bridge::journal::Journal;
use trigger_bridge::targets::{FrigateConfig, HomeAssistantConfig, MqttConfig, TargetConfig};
use trigger_core::{Action, CameraCommand, Category};
use trigger_tls::TlsFiles;

const TIMEOUT: Duration = Duration::from_secs(5);

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/usr/local/sbin";
    path.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}

struct Broker(Child, u16);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mosquitto with one TLS listener presenting `server` (a certificate name) and requiring a client
/// certificate from `ca.pem`; None when Mosquitto is not installed (and not required).
fn mosquitto(certs: &Certs, server: &str) -> Option<Broker> {
    if common::fast_tier_skips("Mosquitto with a TLS listener") {
        return None;
    }
    let Some(bin) = which("mosquitto") else {
        assert!(std::env::var("MOSQUITTO_REQUIRED").is_err(), "mosquitto is required (apt-get install mosquitto)");
        eprintln!("skipped: mosquitto is not installed");
        return None;
    };
    let port = common::unique::port();
    let conf = certs.path(&format!("mosquitto-{server}.conf"));
    let p = |f: &str| certs.path(f).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             allow_anonymous true\npersistence false\n{}",
            p("ca.pem"),
            p(&format!("{server}.crt")),
            p(&format!("{server}.key")),
            // As root, Mosquitto drops to its own user before it reads the key, which this test's files do not
            // let it read: it keeps the test's user.
            if running_as_root() { "user root\n" } else { "" }
        ),
    )
    .unwrap();
    let child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let broker = Broker(child, port);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(broker);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("mosquitto did not listen on {port}");
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn files(certs: &Certs, ca: &str, client: Option<&str>) -> TlsFiles {
    TlsFiles {
        ca_bundle: Some(certs.path(ca)),
        cert: client.map(|c| certs.path(&format!("{c}.crt"))),
        key: client.map(|c| certs.path(&format!("{c}.key"))),
    }
}

fn mqtt(port: u16, tls: TlsFiles) -> TargetConfig {
    TargetConfig::Mqtt(MqttConfig {
        name: "mqtt-tls".into(),
        broker: format!("127.0.0.1:{port}"),
        topic: "frigate/{camera}/dispatch_trigger".into(),
        frigate_recordings_switch: false,
        client_id: common::unique::name("bridge-tls-test"),
        username: None,
        password_env: None,
        tls,
    })
}

fn command() -> CameraCommand {
    let now = common::now_ms();
    CameraCommand {
        command_id: "cmd-tls-1".into(),
        camera_id: "cam-1".into(),
        action: Action::Start,
        category: Category::ShotsFired,
        record_seconds: 60,
        live_stream: false,
        incident_ref: "inc-1".into(),
        issued_at: now,
        expires_at: now + 60_000,
    }
}

/// Build `target` and deliver one START: the start-up refusal, or the delivery's outcome.
fn deliver(target: &TargetConfig, journal: &mut Journal) -> Result<(), String> {
    let mut t = target.build(TIMEOUT)?;
    t.deliver(&command(), "front_door", journal).map_err(|e| e.to_string())
}

#[test]
fn mqtt_over_tls_delivers_and_every_bad_certificate_is_refused_at_start_up_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let state = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(state.path(), 100, false).unwrap();
    let Some(good) = mosquitto(&certs, "server") else { return };
    let Some(expired) = mosquitto(&certs, "expired-server") else { return };
    let Some(elsewhere) = mosquitto(&certs, "wrong-name-server") else { return };
    // Acknowledged by the broker (PUBACK) over TLS with our client certificate.
    deliver(&mqtt(good.1, files(&certs, "ca.pem", Some("client"))), &mut journal).expect("delivered over TLS");
    for (port, ca, client, reason) in [
        (good.1, "other-ca.pem", Some("client"), "UnknownIssuer"),
        (expired.1, "ca.pem", Some("client"), "Expired"),
        (elsewhere.1, "ca.pem", Some("client"), "not valid for name"),
        (good.1, "ca.pem", None, "fatal alert"),
        (good.1, "ca.pem", Some("rogue-client"), "fatal alert"),
    ] {
        let Err(e) = mqtt(port, files(&certs, ca, client)).build(TIMEOUT) else {
            panic!("{ca} / {client:?} on port {port}: started");
        };
        assert!(e.contains("mqtt-tls") && e.contains(reason), "{ca} / {client:?}: {e}");
    }
}

/// One HTTP request as the HTTPS peer read it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    authorization: Option<String>,
    body: String,
}

/// An answer: status, extra headers, body.
type Reply = (u16, Vec<String>, String);
type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// Frigate's event create and Home Assistant's `camera.record`, unauthenticated.
fn open_api(req: &Seen) -> Reply {
    let body = if req.line.contains("/create") { r#"{"success":true,"event_id":"ev-1"}"# } else { "[]" };
    (200, vec![], body.to_string())
}

/// An HTTPS server presenting `server.crt`: answers each request with `handler`, records each.
fn https_peer(certs: &Certs, handler: Handler) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let files = TlsFiles { ca_bundle: None, cert: Some(certs.path("server.crt")), key: Some(certs.path("server.key")) };
    let config = files.server_config().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let (log, handler) = (log.clone(), handler.clone());
            std::thread::spawn(move || {
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                while let Some(req) = read_request(&mut tls) {
                    let (status, headers, body) = handler(&req);
                    log.lock().unwrap().push(req);
                    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(answer.as_bytes()).and_then(|_| tls.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// An HTTP/1.1 request (its line, its Authorization header; the body read by Content-Length and dropped).
fn read_request(stream: &mut impl Read) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen { line: line.trim_end().to_string(), authorization, body: String::from_utf8_lossy(&body).into() })
}

fn frigate(port: u16, tls: TlsFiles) -> TargetConfig {
    TargetConfig::Frigate(FrigateConfig {
        name: "frigate-tls".into(),
        url: format!("https://127.0.0.1:{port}"),
        label: "{label}".into(),
        tls,
        user: None,
        password_env: None,
    })
}

/// Frigate's authenticated API as its documentation describes it: `POST /api/login` with the user and
/// password issues a JWT (cookie `frigate_token`) that expires after `LIFETIME_S`; every other call needs it
/// as a bearer token, else 401. `revoked` makes every token issued so far invalid (Frigate restarted with a
/// new secret).
#[derive(Default)]
struct FrigateAuth {
    issued: Vec<(String, i64)>,
    logins: usize,
    refused: usize,
    revoked: usize,
}

const LIFETIME_S: i64 = 3;

fn authenticated(auth: &Mutex<FrigateAuth>, req: &Seen) -> Reply {
    use base64::Engine as _;
    let mut a = auth.lock().unwrap();
    if req.line.starts_with("POST /api/login ") {
        let creds: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        if creds["user"] != "bridge" || creds["password"] != "frigate-pw-8812" {
            return (401, vec![], r#"{"message":"Login failed"}"#.into());
        }
        a.logins += 1;
        let exp = common::now_ms() / 1000 + LIFETIME_S;
        let claims = serde_json::json!({"sub": "bridge", "exp": exp, "n": a.logins}).to_string();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.sig", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(&claims));
        a.issued.push((token.clone(), exp * 1000));
        let cookie = format!("Set-Cookie: frigate_token={token}; Path=/; HttpOnly; Secure; SameSite=Lax");
        return (200, vec![cookie], String::new());
    }
    let now = common::now_ms();
    let given = req.authorization.as_deref().and_then(|h| h.strip_prefix("Bearer "));
    let revoked = a.revoked;
    let valid =
        a.issued.iter().enumerate().any(|(i, (t, exp))| Some(t.as_str()) == given && *exp > now && i >= revoked);
    if !valid {
        a.refused += 1;
        return (401, vec![], r#"{"message":"Unauthorized"}"#.into());
    }
    open_api(req)
}

fn frigate_login(port: u16, certs: &Certs, password_env: &str) -> TargetConfig {
    TargetConfig::Frigate(FrigateConfig {
        name: "frigate-auth".into(),
        url: format!("https://127.0.0.1:{port}"),
        label: "{label}".into(),
        tls: files(certs, "ca.pem", None),
        user: Some("bridge".into()),
        password_env: Some(password_env.into()),
    })
}

#[test]
fn frigates_authenticated_api_logs_in_renews_before_expiry_and_again_after_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let state = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(state.path(), 100, false).unwrap();
    let auth: Arc<Mutex<FrigateAuth>> = Arc::default();
    let a = auth.clone();
    let (port, seen) = https_peer(&certs, Arc::new(move |req| authenticated(&a, req)));
    std::env::set_var("BRIDGE_TLS_TEST_FRIGATE_PW", "frigate-pw-8812");
    std::env::set_var("BRIDGE_TLS_TEST_FRIGATE_BAD_PW", "not-it");
    let Err(e) = frigate_login(port, &certs, "BRIDGE_TLS_TEST_FRIGATE_BAD_PW").build(TIMEOUT) else {
        panic!("started with a wrong password")
    };
    assert!(e.contains("frigate-auth") && e.contains("login refused"), "{e}");

    let mut target = frigate_login(port, &certs, "BRIDGE_TLS_TEST_FRIGATE_PW").build(TIMEOUT).unwrap();
    assert_eq!(auth.lock().unwrap().logins, 1, "logged in at start-up");
    target.deliver(&command(), "front_door", &mut journal).unwrap();
    // Within the last third of the token's life: renewed before it is used, so Frigate refuses nothing.
    std::thread::sleep(Duration::from_millis(2200));
    target.deliver(&command(), "front_door", &mut journal).unwrap();
    let counts = |a: &Mutex<FrigateAuth>| {
        let a = a.lock().unwrap();
        (a.logins, a.refused)
    };
    assert_eq!(counts(&auth), (2, 0));
    // Frigate forgets every token: the 401 is answered by logging in again, and the call goes through.
    {
        let mut a = auth.lock().unwrap();
        a.revoked = a.issued.len();
    }
    target.deliver(&command(), "front_door", &mut journal).unwrap();
    assert_eq!(counts(&auth), (3, 1));
    // The in-doubt lookup uses the same session.
    assert_eq!(target.already_has(&command(), "front_door", &mut journal), Some(false));
    assert_eq!(auth.lock().unwrap().refused, 1);
    let seen = seen.lock().unwrap();
    let creates = seen.iter().filter(|s| s.line.contains("/create")).count();
    assert_eq!(creates, 4, "three deliveries, one of them sent twice around its 401: {seen:?}");
    assert!(seen.iter().all(|s| !s.line.contains("frigate-pw-8812")), "the password in a URL");
}

fn home_assistant(port: u16, tls: TlsFiles) -> TargetConfig {
    TargetConfig::HomeAssistant(HomeAssistantConfig {
        name: "ha-tls".into(),
        url: format!("https://127.0.0.1:{port}"),
        token_env: "BRIDGE_TLS_TEST_HA_TOKEN".into(),
        filename: "/media/x.mp4".into(),
        tls,
    })
}

#[test]
fn frigate_and_home_assistant_over_https_and_an_untrusted_one_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let state = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(state.path(), 100, false).unwrap();
    std::env::set_var("BRIDGE_TLS_TEST_HA_TOKEN", "ha-long-lived-token");
    let (port, seen) = https_peer(&certs, Arc::new(open_api));
    let trusted = files(&certs, "ca.pem", None);
    deliver(&frigate(port, trusted.clone()), &mut journal).expect("Frigate over HTTPS");
    deliver(&home_assistant(port, trusted), &mut journal).expect("Home Assistant over HTTPS");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s.line.starts_with("POST /api/events/front_door/shots_fired/create ")), "{seen:?}");
    let record = seen.iter().find(|s| s.line.starts_with("POST /api/services/camera/record ")).expect("camera.record");
    assert_eq!(record.authorization.as_deref(), Some("Bearer ha-long-lived-token"));
    let Err(e) = frigate(port, files(&certs, "other-ca.pem", None)).build(TIMEOUT) else { panic!("started") };
    assert!(e.contains("frigate-tls") && e.contains("UnknownIssuer"), "{e}");
    let Err(e) = home_assistant(port, TlsFiles::default()).build(TIMEOUT) else { panic!("started") };
    assert!(e.contains("needs tls.ca_bundle"), "{e}");
}
