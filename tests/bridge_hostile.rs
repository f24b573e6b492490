//! The bridge against hostile peers. Each case's oracle is what the peer received, against what the commands
//! said (never the bridge's own counters): a command reaches its camera at most once, and never once it has
//! expired, whatever the peer does.
//!
//! Peers: Debian's Mosquitto (plain and TLS), killed and restarted mid-stream, read back with
//! `mosquitto_sub`; Frigate and Home Assistant written here from their public APIs (Frigate's
//! `POST /api/events/{camera}/{label}/create` and its lookup by sub label, Home Assistant's `camera.record` and
//! its one recording per stream), answering slowly, just under and just over the attempt limit, never, or
//! refusing; a zmtrigger listener. Commands are signed with a listed key, some of them forged to live for
//! years. The last cases run the whole bridge on Kafka: a record produced twice in a row, and one failing
//! long-lived command ahead of many healthy ones.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trigger_bridge::targets::TargetConfig;
use trigger_bridge::{Bridge, BridgeOptions, CameraEntry, Outcome, Refusal, Submitted};
use trigger_core::{Action, CameraCommand, Category, CommandKeys, CommandSigner, Millis};

const KEY_ID: &str = "hostile-test";

fn signer() -> CommandSigner {
    CommandSigner::from_seed(KEY_ID, [9; 32])
}

fn keys() -> CommandKeys {
    let s = signer();
    CommandKeys::from_hex([(s.key_id(), s.public_key_hex().as_str())]).unwrap()
}

fn now_ms() -> Millis {
    trigger_kafka::wall_ms()
}

fn command(id: &str, camera: &str, action: Action, valid_ms: i64) -> CameraCommand {
    let now = now_ms();
    CameraCommand {
        command_id: id.into(),
        camera_id: camera.into(),
        action,
        incident_ref: format!("inc-{id}"),
        category: Category::ShotsFired,
        record_seconds: 60,
        live_stream: false,
        issued_at: now,
        expires_at: now + valid_ms,
    }
}

fn signed(c: &CameraCommand) -> Vec<u8> {
    use prost::Message;
    trigger_cad::commands::command_to_pb(c, Some(&signer())).encode_to_vec()
}

fn options(dir: &std::path::Path, attempt_ms: u64) -> BridgeOptions {
    BridgeOptions {
        state_dir: dir.to_path_buf(),
        fsync: false,
        attempt_timeout_ms: attempt_ms,
        retry_backoff_max_ms: 200,
        ..BridgeOptions::default()
    }
}

fn target(json: serde_json::Value) -> TargetConfig {
    serde_json::from_value(json).unwrap()
}

fn cameras(target: &str, ids: &[&str]) -> Vec<CameraEntry> {
    ids.iter().map(|id| CameraEntry { id: id.to_string(), target: target.into(), name: None }).collect()
}

/// Submit every record (at `gap` intervals), then wait for every outcome: by ticket order, the records'.
fn run(bridge: &mut Bridge, records: &[Vec<u8>], gap: Duration) -> Vec<Outcome> {
    let mut slots: Vec<Option<Outcome>> = vec![None; records.len()];
    let mut tickets = HashMap::new();
    let take = |bridge: &mut Bridge, slots: &mut Vec<Option<Outcome>>, tickets: &HashMap<u64, usize>| {
        for (t, o) in bridge.finished(Duration::from_millis(20)) {
            if let Some(&i) = tickets.get(&t) {
                slots[i] = Some(o);
            }
        }
    };
    for (i, r) in records.iter().enumerate() {
        match bridge.submit(r) {
            Submitted::Finished(o) => slots[i] = Some(o),
            Submitted::Queued(t) => {
                tickets.insert(t, i);
            }
        }
        let until = Instant::now() + gap;
        while Instant::now() < until {
            take(bridge, &mut slots, &tickets);
        }
    }
    let t = Instant::now();
    while slots.iter().any(Option::is_none) {
        assert!(t.elapsed() < Duration::from_secs(120), "outcomes: {slots:?}");
        take(bridge, &mut slots, &tickets);
    }
    slots.into_iter().map(Option::unwrap).collect()
}

/// What a peer received: when (Unix ms) and the command id it carried.
type Received = Arc<Mutex<Vec<(Millis, String)>>>;

/// Every command id received more than once, and every one received at or after its command's expiry.
fn violations(received: &[(Millis, String)], commands: &[CameraCommand]) -> (Vec<String>, Vec<String>) {
    let expiry: HashMap<&str, Millis> = commands.iter().map(|c| (c.command_id.as_str(), c.expires_at)).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut late = Vec::new();
    for (at, id) in received {
        *count.entry(id).or_default() += 1;
        let expires_at = expiry.get(id.as_str()).copied().unwrap_or(Millis::MAX);
        // A loopback hop between the bridge's last check and the peer's clock: well under this.
        if *at > expires_at + 200 {
            late.push(format!("{id} received {} ms after it expired", at - expires_at));
        }
    }
    let twice = count.into_iter().filter(|(_, n)| *n > 1).map(|(id, n)| format!("{id} x{n}")).collect();
    (twice, late)
}

fn assert_at_most_once_never_late(what: &str, received: &Received, commands: &[CameraCommand]) {
    let got = received.lock().unwrap().clone();
    let (twice, late) = violations(&got, commands);
    assert!(twice.is_empty(), "{what}: received more than once: {twice:?}");
    assert!(late.is_empty(), "{what}: received after expiry: {late:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Peers.

/// How the Frigate peer answers a create.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with an event id, after this long.
    After(Duration),
    /// Never (the connection is held open).
    Never,
    /// This status, at once.
    Status(u16),
}

/// Frigate's events API: every create recorded as it arrives (Frigate creates the event then, whatever
/// becomes of its answer), lookups by sub label answered from them at once (or never, `lookups_hang`).
struct Frigate {
    url: String,
    creates: Received,
    lookups: Arc<AtomicUsize>,
}

fn frigate(answer: Answer, lookups_hang: bool) -> Frigate {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
    let creates: Received = Default::default();
    let lookups = Arc::new(AtomicUsize::new(0));
    let events: Arc<Mutex<Vec<(String, String)>>> = Default::default(); // (sub label, event id)
    let (c, l) = (creates.clone(), lookups.clone());
    std::thread::spawn(move || {
        for (n, mut req) in server.incoming_requests().enumerate() {
            let (creates, lookups, events) = (c.clone(), l.clone(), events.clone());
            std::thread::spawn(move || {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let url = req.url().to_string();
                if req.method() == &tiny_http::Method::Get {
                    lookups.fetch_add(1, Relaxed);
                    if lookups_hang {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    let label = url
                        .split(['?', '&'])
                        .find_map(|kv| kv.strip_prefix("sub_label="))
                        .unwrap_or_default()
                        .replace('+', " ")
                        .replace("%20", " ");
                    let found: Vec<_> = events
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(l, _)| *l == label)
                        .map(|(_, id)| serde_json::json!({ "id": id }))
                        .collect();
                    let _ = req.respond(tiny_http::Response::from_string(serde_json::Value::Array(found).to_string()));
                    return;
                }
                if !url.ends_with("/create") {
                    let _ = req.respond(tiny_http::Response::from_string("{}"));
                    return;
                }
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let label = v["sub_label"].as_str().unwrap_or_default().to_string();
                let id = label.trim_start_matches("dispatch-trigger ").to_string();
                let event = format!("ev-{n}");
                match answer {
                    Answer::Status(s) => {
                        creates.lock().unwrap().push((now_ms(), id));
                        let r = tiny_http::Response::from_string("{\"success\":false}").with_status_code(s);
                        let _ = req.respond(r);
                        return;
                    }
                    _ => {
                        creates.lock().unwrap().push((now_ms(), id));
                        events.lock().unwrap().push((label, event.clone()));
                    }
                }
                match answer {
                    Answer::After(d) => std::thread::sleep(d),
                    _ => std::thread::sleep(Duration::from_secs(3600)),
                }
                let reply = format!("{{\"success\":true,\"event_id\":\"{event}\"}}");
                let _ = req.respond(tiny_http::Response::from_string(reply));
            });
        }
    });
    Frigate { url, creates, lookups }
}

fn frigate_target(url: &str) -> TargetConfig {
    target(serde_json::json!({"kind": "frigate", "name": "fr", "url": url}))
}

/// A zmtrigger listener: every line, when it arrived and the command id at its end.
fn zm_listener() -> (u16, Received) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lines: Received = Default::default();
    let out = lines.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().map_while(Result::ok) {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(conn).lines().map_while(Result::ok) {
                    let id = line.rsplit(' ').next().unwrap_or_default().to_string();
                    out.lock().unwrap().push((now_ms(), id));
                }
            });
        }
    });
    (port, lines)
}

fn zm_target(port: u16) -> TargetConfig {
    target(serde_json::json!({"kind": "zmtrigger", "name": "zm", "address": format!("127.0.0.1:{port}")}))
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/usr/local/sbin";
    path.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}

/// Mosquitto on a fixed port (so it can be killed and started again on it), and a `mosquitto_sub` on
/// `frigate/#` that reconnects by itself, recording each message's arrival and command id.
struct Mosquitto {
    conf: std::path::PathBuf,
    port: u16,
    broker: Option<std::process::Child>,
    sub: std::process::Child,
    received: Received,
    /// The last probe the subscriber received.
    probes: Arc<AtomicUsize>,
    /// mosquitto_sub's and mosquitto_pub's TLS arguments.
    sub_tls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.sub.kill();
        let _ = self.sub.wait();
        self.stop();
    }
}

impl Mosquitto {
    /// None when Mosquitto is not installed (and not required).
    fn start(tls: Option<&common::tls::Certs>) -> Option<Self> {
        let (Some(_), Some(_)) = (which("mosquitto"), which("mosquitto_sub")) else {
            assert!(std::env::var("MOSQUITTO_REQUIRED").is_err(), "mosquitto is required");
            eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto mosquitto-clients)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = common::unique::port();
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
        let mut sub_tls = vec![];
        if let Some(c) = tls {
            let p = |f: &str| c.path(f).display().to_string();
            text += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n{}",
                p("ca.pem"),
                p("server.crt"),
                p("server.key"),
                // As root, Mosquitto drops to its own user before it reads the key, which it could not read then.
                if running_as_root() { "user root\n" } else { "" }
            );
            sub_tls = vec![
                "--cafile".to_string(),
                p("ca.pem"),
                "--cert".into(),
                p("client.crt"),
                "--key".into(),
                p("client.key"),
            ];
        }
        std::fs::write(&conf, text).unwrap();
        let mut m = Mosquitto {
            conf,
            port,
            broker: None,
            sub: std::process::Command::new("true").spawn().unwrap(),
            received: Default::default(),
            probes: Default::default(),
            sub_tls: vec![],
            _dir: dir,
        };
        m.sub_tls = sub_tls;
        m.restart();
        Some(m)
    }

    /// A fresh `mosquitto_sub` (the oracle, not under test: started again with the broker rather than relied
    /// on to reconnect by itself), subscribed once a probe comes back.
    fn subscribe(&mut self) {
        let _ = self.sub.kill();
        let _ = self.sub.wait();
        let mut sub = std::process::Command::new(which("mosquitto_sub").unwrap())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "frigate/#", "-q", "1", "-i"])
            .arg(common::unique::name("sub"))
            .args(&self.sub_tls)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = sub.stdout.take().unwrap();
        let (received, probes) = (self.received.clone(), self.probes.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let id = v["command_id"].as_str().unwrap_or(&line).to_string();
                if let Some(probe) = v["probe"].as_u64() {
                    probes.store(probe as usize, Relaxed);
                    continue;
                }
                received.lock().unwrap().push((now_ms(), id));
            }
        });
        self.sub = sub;
        self.wait_subscribed();
    }

    /// Until the subscriber receives a probe published now.
    fn wait_subscribed(&self) {
        let pub_bin = which("mosquitto_pub").expect("mosquitto_pub (mosquitto-clients)");
        static PROBE: AtomicUsize = AtomicUsize::new(1);
        let t = Instant::now();
        loop {
            let n = PROBE.fetch_add(1, Relaxed);
            assert!(t.elapsed() < Duration::from_secs(20), "mosquitto_sub did not subscribe");
            let _ = std::process::Command::new(&pub_bin)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "frigate/probe", "-q", "1", "-m"])
                .arg(format!("{{\"probe\":{n}}}"))
                .args(&self.sub_tls)
                .stderr(std::process::Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
            if self.probes.load(Relaxed) == n {
                return;
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut b) = self.broker.take() {
            let _ = b.kill(); // SIGKILL: no goodbye to its clients
            let _ = b.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        let child = std::process::Command::new(which("mosquitto").unwrap())
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.broker = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.subscribe();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn mqtt_target(m: &Mosquitto, certs: Option<&common::tls::Certs>) -> TargetConfig {
    let mut t = serde_json::json!({
        "kind": "mqtt", "name": "mq", "broker": format!("127.0.0.1:{}", m.port),
        "client_id": common::unique::name("bridge"),
    });
    if let Some(c) = certs {
        t["tls"] = serde_json::json!({
            "ca_bundle": c.path("ca.pem"), "cert": c.path("client.crt"), "key": c.path("client.key"),
        });
    }
    target(t)
}

// ---------------------------------------------------------------------------------------------------------
// Never after expiry, at any layer.

/// A Frigate answering each create in 1.5 s, just under the 2 s attempt limit, one lane: the commands queued
/// behind the slow ones expire while they wait, and none is sent once it has (they are counted expired).
#[test]
fn a_slow_peer_just_under_the_limit_never_receives_an_expired_command() {
    let peer = frigate(Answer::After(Duration::from_millis(1500)), false);
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..6).map(|i| format!("cam-{i}")).collect();
    let cams: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut bridge =
        Bridge::new(keys(), &[frigate_target(&peer.url)], &cameras("fr", &cams), options(dir.path(), 2_000), now_ms)
            .unwrap();
    let commands: Vec<_> = cams.iter().map(|c| command(&format!("slow-{c}"), c, Action::Start, 4_000)).collect();
    let records: Vec<_> = commands.iter().map(signed).collect();
    let outcomes = run(&mut bridge, &records, Duration::ZERO);
    assert_at_most_once_never_late("frigate", &peer.creates, &commands);
    let delivered = outcomes.iter().filter(|o| matches!(o, Outcome::Delivered { .. })).count();
    let expired = outcomes.iter().filter(|o| matches!(o, Outcome::Expired { .. })).count();
    assert!(delivered >= 1 && expired >= 1, "some delivered in time, the rest expired waiting: {outcomes:?}");
    assert_eq!(peer.creates.lock().unwrap().len(), delivered, "the peer saw only what was delivered");
}

/// A Frigate that takes the create and never answers, and whose lookups hang too: each command is sent once,
/// its attempt is in doubt, the lookup cannot tell, and it is never sent again (nor after its expiry).
#[test]
fn a_hanging_peer_receives_each_command_at_most_once() {
    let peer = frigate(Answer::Never, true);
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::new(
        keys(),
        &[frigate_target(&peer.url)],
        &cameras("fr", &["cam-a", "cam-b"]),
        options(dir.path(), 500),
        now_ms,
    )
    .unwrap();
    let commands: Vec<_> = (0..4)
        .map(|i| command(&format!("hang-{i}"), if i % 2 == 0 { "cam-a" } else { "cam-b" }, Action::Start, 3_000))
        .collect();
    let outcomes = run(&mut bridge, &commands.iter().map(signed).collect::<Vec<_>>(), Duration::ZERO);
    assert_at_most_once_never_late("frigate", &peer.creates, &commands);
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::InDoubt { .. } | Outcome::Expired { .. })), "{outcomes:?}");
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::InDoubt { .. })), "{outcomes:?}");
}

/// A peer that refuses everything (503) is retried until the command expires and never after; a peer that
/// is not there at all (connection refused) likewise, with nothing received.
#[test]
fn a_refusing_peer_is_retried_until_expiry_and_never_after() {
    let peer = frigate(Answer::Status(503), false);
    let dir = tempfile::tempdir().unwrap();
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let targets = [
        frigate_target(&peer.url),
        target(serde_json::json!({"kind": "frigate", "name": "gone", "url": format!("http://127.0.0.1:{gone}")})),
    ];
    let mut cams = cameras("fr", &["cam-a"]);
    cams.extend(cameras("gone", &["cam-gone"]));
    let mut bridge = Bridge::new(keys(), &targets, &cams, options(dir.path(), 1_000), now_ms).unwrap();
    let commands =
        [command("refused-1", "cam-a", Action::Start, 1_500), command("nobody-1", "cam-gone", Action::Start, 1_500)];
    let outcomes = run(&mut bridge, &commands.iter().map(signed).collect::<Vec<_>>(), Duration::ZERO);
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Expired { .. })), "{outcomes:?}");
    let got = peer.creates.lock().unwrap().clone();
    assert!(got.len() >= 2, "retried: {got:?}");
    assert!(got.iter().all(|(at, _)| *at <= commands[0].expires_at + 200), "a retry after expiry: {got:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(peer.creates.lock().unwrap().len(), got.len(), "nothing after the outcome");
}

/// Mosquitto killed mid-stream and started again: every command reaches the subscriber at most once and
/// never after its expiry. The bridge owns its MQTT session (clean, dropped whole on a failure), so no
/// attempt's copy waits in a client queue to be flushed on a reconnect. Then a longer outage than the
/// commands live: none of them ever arrives.
fn broker_restarted_mid_stream(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let certs = tls.then(|| common::tls::Certs::make(dir.path()));
    let Some(mut m) = Mosquitto::start(certs.as_ref()) else { return };
    let state = dir.path().join("state");
    let cams: Vec<String> = (0..4).map(|i| format!("cam-{i}")).collect();
    let cam_refs: Vec<&str> = cams.iter().map(String::as_str).collect();
    let mut bridge = Bridge::new(
        keys(),
        &[mqtt_target(&m, certs.as_ref())],
        &cameras("mq", &cam_refs),
        options(&state, 1_000),
        now_ms,
    )
    .unwrap();
    // Submitted 100 ms apart, each valid 1.5 s from its turn (issued ahead within the skew allowance).
    let commands: Vec<_> = (0..40)
        .map(|i| {
            let mut c = command(&format!("mq-{i:02}"), cam_refs[i % 4], Action::Start, 1_500);
            (c.issued_at, c.expires_at) = (c.issued_at + i as i64 * 100, c.expires_at + i as i64 * 100);
            c
        })
        .collect();
    let records: Vec<_> = commands.iter().map(signed).collect();
    let stop = AtomicBool::new(false);
    let outcomes = std::thread::scope(|s| {
        let restarts = s.spawn(|| {
            // Down twice while the stream flows: ~1 s, then ~3 s (longer than a command lives).
            for down in [1_000, 3_000] {
                std::thread::sleep(Duration::from_millis(600));
                m.stop();
                std::thread::sleep(Duration::from_millis(down));
                if stop.load(Relaxed) {
                    break;
                }
                m.restart();
            }
        });
        let o = run(&mut bridge, &records, Duration::from_millis(100));
        stop.store(true, Relaxed);
        restarts.join().unwrap();
        o
    });
    if m.broker.is_none() {
        m.restart();
    }
    m.wait_subscribed();
    // Whatever a client queue might still flush, it would do on this reconnect: give it the chance.
    let late = command("mq-after", "cam-0", Action::Start, 30_000);
    let after = run(&mut bridge, &[signed(&late)], Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1_500));
    let mut all = commands.clone();
    all.push(late);
    assert_at_most_once_never_late(if tls { "mqtt over TLS" } else { "mqtt" }, &m.received, &all);
    let got = m.received.lock().unwrap().clone();
    assert!(matches!(after[0], Outcome::Delivered { .. }), "{after:?}");
    let delivered = outcomes.iter().filter(|o| matches!(o, Outcome::Delivered { .. })).count();
    assert!(delivered >= 5, "the stream went on around the outages: {outcomes:?}");
    // What the subscriber saw, the bridge delivered (or left in doubt): nothing it ended expired ever arrived.
    let not_sent: Vec<&str> = commands
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| !matches!(o, Outcome::Delivered { .. } | Outcome::InDoubt { .. }))
        .map(|(c, _)| c.command_id.as_str())
        .collect();
    let arrived_anyway: Vec<_> = got.iter().filter(|(_, id)| not_sent.contains(&id.as_str())).collect();
    assert!(arrived_anyway.is_empty(), "ended without delivery, yet received: {arrived_anyway:?}");
    eprintln!(
        "mqtt{}: 40 commands, broker killed twice: {delivered} delivered, {} expired, {} in doubt; {} received",
        if tls { " over TLS" } else { "" },
        outcomes.iter().filter(|o| matches!(o, Outcome::Expired { .. })).count(),
        outcomes.iter().filter(|o| matches!(o, Outcome::InDoubt { .. })).count(),
        got.len()
    );
}

#[test]
fn mosquitto_restarted_mid_stream_each_command_at_most_once_never_late() {
    broker_restarted_mid_stream(false);
}

#[test]
fn mosquitto_over_tls_restarted_mid_stream_each_command_at_most_once_never_late() {
    broker_restarted_mid_stream(true);
}

/// The broker down for longer than a command lives: the bridge ends it expired, and when the broker comes
/// back nothing of it is ever published.
#[test]
fn a_command_that_expires_while_the_broker_is_down_never_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut m) = Mosquitto::start(None) else { return };
    let mut bridge =
        Bridge::new(keys(), &[mqtt_target(&m, None)], &cameras("mq", &["cam-0"]), options(dir.path(), 500), now_ms)
            .unwrap();
    let warm = command("warm", "cam-0", Action::Start, 10_000);
    assert!(matches!(run(&mut bridge, &[signed(&warm)], Duration::ZERO)[0], Outcome::Delivered { .. }));
    m.stop();
    let doomed = command("doomed", "cam-0", Action::Start, 1_500);
    let o = run(&mut bridge, &[signed(&doomed)], Duration::ZERO);
    assert!(matches!(o[0], Outcome::Expired { .. }), "{o:?}");
    m.restart();
    let next = command("next", "cam-0", Action::Start, 10_000);
    assert!(matches!(run(&mut bridge, &[signed(&next)], Duration::ZERO)[0], Outcome::Delivered { .. }));
    std::thread::sleep(Duration::from_millis(1_500));
    let got: Vec<String> = m.received.lock().unwrap().iter().map(|(_, id)| id.clone()).collect();
    assert!(!got.iter().any(|id| id == "doomed"), "the expired command arrived after the broker came back: {got:?}");
    assert_eq!(got.iter().filter(|id| *id == "next").count(), 1, "{got:?}");
}

/// An MQTT broker that accepts the connection and every publish but never acknowledges one (no PUBACK): it
/// records each PUBLISH it reads (and answers pings).
fn broker_without_pubacks() -> (u16, Received) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Received = Default::default();
    let out = got.clone();
    std::thread::spawn(move || {
        for mut conn in l.incoming().map_while(Result::ok) {
            let out = out.clone();
            std::thread::spawn(move || loop {
                let mut first = [0u8; 1];
                if conn.read_exact(&mut first).is_err() {
                    return;
                }
                let (mut len, mut shift) = (0usize, 0);
                loop {
                    let mut b = [0u8; 1];
                    if conn.read_exact(&mut b).is_err() {
                        return;
                    }
                    len |= ((b[0] & 0x7f) as usize) << shift;
                    shift += 7;
                    if b[0] & 0x80 == 0 {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                if conn.read_exact(&mut body).is_err() {
                    return;
                }
                match first[0] >> 4 {
                    1 => drop(conn.write_all(&[0x20, 0x02, 0x00, 0x00])), // CONNECT → CONNACK accepted
                    3 => {
                        let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                        let qos = (first[0] >> 1) & 3;
                        let payload = &body[2 + topic_len + if qos > 0 { 2 } else { 0 }..];
                        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
                        out.lock().unwrap().push((now_ms(), v["command_id"].as_str().unwrap_or_default().to_string()));
                    }
                    12 => drop(conn.write_all(&[0xd0, 0x00])), // PINGREQ → PINGRESP
                    _ => {}
                }
            });
        }
    });
    (port, got)
}

/// A broker that takes every publish and acknowledges none: each command is published once, in doubt, and
/// never again (no retry, no copy flushed by a reconnect), and never after its expiry.
#[test]
fn a_broker_that_never_acknowledges_gets_each_command_once() {
    let (port, got) = broker_without_pubacks();
    let dir = tempfile::tempdir().unwrap();
    let mq = target(serde_json::json!({"kind": "mqtt", "name": "mq", "broker": format!("127.0.0.1:{port}")}));
    let mut bridge =
        Bridge::new(keys(), &[mq], &cameras("mq", &["cam-1", "cam-2"]), options(dir.path(), 500), now_ms).unwrap();
    let commands: Vec<_> = (0..4)
        .map(|i| command(&format!("noack-{i}"), if i % 2 == 0 { "cam-1" } else { "cam-2" }, Action::Start, 2_000))
        .collect();
    let outcomes = run(&mut bridge, &commands.iter().map(signed).collect::<Vec<_>>(), Duration::ZERO);
    // Past every expiry, with a fresh command through the same target: a queue would flush now.
    std::thread::sleep(Duration::from_millis(2_000));
    let after = command("noack-after", "cam-1", Action::Start, 5_000);
    run(&mut bridge, &[signed(&after)], Duration::ZERO);
    std::thread::sleep(Duration::from_millis(500));
    let mut all = commands.clone();
    all.push(after);
    assert_at_most_once_never_late("mqtt without PUBACKs", &got, &all);
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::InDoubt { .. } | Outcome::Expired { .. })), "{outcomes:?}");
    assert!(!got.lock().unwrap().is_empty(), "published at all");
}

// ---------------------------------------------------------------------------------------------------------
// A timeout is in doubt, not a failure.

/// A Frigate answering in 1.5 s, just over the 1 s attempt limit: the create is in doubt, the bridge looks
/// the command's sub label up before anything else, finds the event, and never creates a second one.
#[test]
fn just_over_the_limit_the_event_is_looked_up_not_created_again() {
    let peer = frigate(Answer::After(Duration::from_millis(1500)), false);
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::new(
        keys(),
        &[frigate_target(&peer.url)],
        &cameras("fr", &["cam-a", "cam-b"]),
        options(dir.path(), 1_000),
        now_ms,
    )
    .unwrap();
    let commands =
        [command("over-1", "cam-a", Action::Start, 20_000), command("over-2", "cam-b", Action::Start, 20_000)];
    let outcomes = run(&mut bridge, &commands.iter().map(signed).collect::<Vec<_>>(), Duration::ZERO);
    assert_at_most_once_never_late("frigate", &peer.creates, &commands);
    assert_eq!(peer.creates.lock().unwrap().len(), 2, "each command created its event once");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Delivered { .. })), "found by the lookup: {outcomes:?}");
    assert!(peer.lookups.load(Relaxed) >= 2, "looked up, not assumed");
}

/// Home Assistant cannot be asked: a `camera.record` that got no answer is not called again.
#[test]
fn a_home_assistant_that_does_not_answer_is_asked_once() {
    let (url, calls, _refused) = home_assistant(Some(Duration::from_secs(3600)));
    std::env::set_var("HOSTILE_HA_TOKEN", "t");
    let ha = target(
        serde_json::json!({"kind": "home_assistant", "name": "ha", "url": url, "token_env": "HOSTILE_HA_TOKEN"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::new(keys(), &[ha], &cameras("ha", &["cam-1"]), options(dir.path(), 500), now_ms).unwrap();
    let c = command("ha-hang", "cam-1", Action::Start, 3_000);
    let o = run(&mut bridge, &[signed(&c)], Duration::ZERO);
    assert!(matches!(o[0], Outcome::InDoubt { .. }), "{o:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls.lock().unwrap().len(), 1, "{:?}", calls.lock().unwrap());
}

// ---------------------------------------------------------------------------------------------------------
// At most once per command id, also while it is in flight.

/// The same signed record twice in a row (a producer's retry), for every kind of peer, and while the first
/// copy is still in flight (a slow Frigate): each peer receives it once; the second copy waits for the first's
/// outcome and is refused as replayed, nothing logged as "delivering again".
#[test]
fn a_record_submitted_twice_in_a_row_reaches_its_peer_once() {
    let (zm_port, zm) = zm_listener();
    let slow = frigate(Answer::After(Duration::from_millis(300)), false);
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::start(None);
    let mut targets = vec![zm_target(zm_port), frigate_target(&slow.url)];
    let mut cams = cameras("zm", &["cam-zm-1", "cam-zm-2"]);
    cams.extend(cameras("fr", &["cam-fr-1", "cam-fr-2"]));
    if let Some(m) = &m {
        targets.push(mqtt_target(m, None));
        cams.extend(cameras("mq", &["cam-mq-1", "cam-mq-2"]));
    }
    let mut bridge = Bridge::new(keys(), &targets, &cams, options(dir.path(), 2_000), now_ms).unwrap();
    let mut commands = vec![];
    let mut records = vec![];
    for (i, c) in cams.iter().enumerate() {
        let cmd = command(&format!("twice-{i}"), &c.id, Action::Start, 30_000);
        records.push(signed(&cmd));
        records.push(signed(&cmd));
        commands.push(cmd);
    }
    let outcomes = run(&mut bridge, &records, Duration::ZERO);
    for pair in outcomes.chunks(2) {
        assert!(matches!(pair[0], Outcome::Delivered { .. }), "{outcomes:?}");
        assert!(matches!(&pair[1], Outcome::Refused { reason: Refusal::Replayed, .. }), "{outcomes:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_at_most_once_never_late("zmtrigger", &zm, &commands);
    assert_at_most_once_never_late("frigate", &slow.creates, &commands);
    assert_eq!(zm.lock().unwrap().len() + slow.creates.lock().unwrap().len(), 4);
    if let Some(m) = &m {
        assert_at_most_once_never_late("mqtt", &m.received, &commands);
        assert_eq!(m.received.lock().unwrap().len(), 2);
    }
}

// ---------------------------------------------------------------------------------------------------------
// A command's life is bounded.

/// Validly signed commands that would live ten years, or were issued ten years ahead, are refused by name;
/// a forged long-lived one is refused for its signature; the ordinary command beside them is delivered. The
/// replay window keeps an id for its time, not its count: a long-lived (allowed) command replayed after many
/// others is still refused.
#[test]
fn long_lived_and_future_commands_are_refused_and_ids_are_kept_by_time() {
    let (zm_port, zm) = zm_listener();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), 1_000);
    opts.dedup_window = 5;
    let mut bridge = Bridge::new(keys(), &[zm_target(zm_port)], &cameras("zm", &["cam-1"]), opts, now_ms).unwrap();
    let year = 365 * 24 * 3_600_000_i64;
    let mut decade = command("decade", "cam-1", Action::Start, 10 * year);
    decade.record_seconds = 60;
    let mut future = command("future", "cam-1", Action::Start, 60_000);
    future.issued_at += 10 * year;
    future.expires_at += 10 * year;
    let forged = {
        use prost::Message;
        let c = command("forged", "cam-1", Action::Start, 10 * year);
        let other = CommandSigner::from_seed(KEY_ID, [1; 32]);
        trigger_cad::commands::command_to_pb(&c, Some(&other)).encode_to_vec()
    };
    let hour = command("an-hour", "cam-1", Action::Start, 3_600_000);
    let o = run(&mut bridge, &[signed(&decade), signed(&future), forged, signed(&hour)], Duration::ZERO);
    assert!(matches!(&o[0], Outcome::Refused { reason: Refusal::TooLongLived, .. }), "{o:?}");
    assert!(matches!(&o[1], Outcome::Refused { reason: Refusal::IssuedInFuture, .. }), "{o:?}");
    assert!(matches!(&o[2], Outcome::Refused { reason: Refusal::BadSignature, .. }), "{o:?}");
    assert!(matches!(&o[3], Outcome::Delivered { .. }), "{o:?}");
    // Twenty more commands roll a count-based window of 5 over many times; the hour-long one stays known.
    let more: Vec<_> =
        (0..20).map(|i| signed(&command(&format!("more-{i}"), "cam-1", Action::Start, 60_000))).collect();
    run(&mut bridge, &more, Duration::ZERO);
    drop(bridge);
    let mut opts = options(dir.path(), 1_000);
    opts.dedup_window = 5;
    let mut bridge = Bridge::new(keys(), &[zm_target(zm_port)], &cameras("zm", &["cam-1"]), opts, now_ms).unwrap();
    let o = run(&mut bridge, &[signed(&hour)], Duration::ZERO);
    assert!(matches!(&o[0], Outcome::Refused { reason: Refusal::Replayed, .. }), "{o:?}");
    std::thread::sleep(Duration::from_millis(300));
    let got: Vec<String> = zm.lock().unwrap().iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(got.iter().filter(|id| *id == "an-hour").count(), 1, "{got:?}");
    assert!(!got.iter().any(|id| id == "decade" || id == "future" || id == "forged"), "{got:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Home Assistant asked once per stream.

/// Home Assistant's rule, as its stream component has it: one recording per entity; `camera.record` while one
/// runs fails "Stream already recording". Every call is recorded: (received ms, entity, duration), and every
/// refusal. `hang`: never answer.
#[allow(clippy::type_complexity)]
fn home_assistant(hang: Option<Duration>) -> (String, Arc<Mutex<Vec<(Millis, String, u64)>>>, Arc<AtomicUsize>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
    let calls: Arc<Mutex<Vec<(Millis, String, u64)>>> = Default::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let (log, no) = (calls.clone(), refused.clone());
    std::thread::spawn(move || {
        let busy: Arc<Mutex<HashMap<String, Millis>>> = Default::default();
        for mut req in server.incoming_requests() {
            let (log, no, busy) = (log.clone(), no.clone(), busy.clone());
            std::thread::spawn(move || {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let call: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let entity = call["entity_id"].as_str().unwrap_or_default().to_string();
                let duration = call["duration"].as_u64().unwrap_or(30);
                let now = now_ms();
                let running = {
                    let mut b = busy.lock().unwrap();
                    let running = b.get(&entity).is_some_and(|until| *until > now);
                    if !running {
                        b.insert(entity.clone(), now + duration as Millis * 1000);
                        log.lock().unwrap().push((now, entity.clone(), duration));
                    }
                    running
                };
                if let Some(h) = hang {
                    std::thread::sleep(h);
                }
                let r = if running {
                    no.fetch_add(1, Relaxed);
                    tiny_http::Response::from_string(
                        "500 Internal Server Error: Stream already recording to /media/x.mp4!",
                    )
                    .with_status_code(500)
                } else {
                    tiny_http::Response::from_string("[]")
                };
                let _ = req.respond(r);
            });
        }
    });
    (url, calls, refused)
}

/// Many STARTs for two cameras, in bursts, some covered by the running recording and some extending it: the
/// bridge never calls `camera.record` while its own recording of that camera runs (no "already recording"
/// refusal), never two at once, and never records past the last command's window.
#[test]
fn home_assistant_is_asked_once_per_stream() {
    let (url, calls, refused) = home_assistant(None);
    std::env::set_var("HOSTILE_HA_TOKEN", "t");
    let ha = target(
        serde_json::json!({"kind": "home_assistant", "name": "ha", "url": url, "token_env": "HOSTILE_HA_TOKEN"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cams = cameras("ha", &["cam-1", "cam-2"]);
    cams[0].name = Some("camera.front".into());
    cams[1].name = Some("camera.yard".into());
    let mut bridge = Bridge::new(keys(), &[ha], &cams, options(dir.path(), 2_000), now_ms).unwrap();
    let t0 = now_ms();
    let mut records = vec![];
    let mut last_window_end = 0;
    for i in 0..24 {
        let mut c = command(&format!("ha-{i}"), if i % 2 == 0 { "cam-1" } else { "cam-2" }, Action::Start, 30_000);
        c.incident_ref = format!("inc-{}", i % 5);
        c.record_seconds = 1 + (i % 3) as u32;
        last_window_end = last_window_end.max(now_ms() + i64::from(c.record_seconds) * 1000 + (i as i64) * 250);
        records.push(signed(&c));
    }
    let outcomes = run(&mut bridge, &records, Duration::from_millis(250));
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Delivered { .. })), "{outcomes:?}");
    std::thread::sleep(Duration::from_millis(4_500));
    let got = calls.lock().unwrap().clone();
    assert_eq!(refused.load(Relaxed), 0, "camera.record called while the bridge's own recording ran: {got:?}");
    for entity in ["camera.front", "camera.yard"] {
        let mine: Vec<_> = got.iter().filter(|c| c.1 == entity).collect();
        assert!(!mine.is_empty(), "{entity}: {got:?}");
        for w in mine.windows(2) {
            assert!(w[1].0 >= w[0].0 + w[0].2 as Millis * 1000, "{entity}: two at once: {mine:?}");
        }
        let end = mine.iter().map(|c| c.0 + c.2 as Millis * 1000).max().unwrap();
        assert!(
            end <= last_window_end + 1_000,
            "{entity} recorded past every window: ends {} ms after start",
            end - t0
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// The whole bridge on Kafka.

fn bridge_toml(settings: &trigger_kafka::KafkaSettings, state: &std::path::Path, extra: &str) -> String {
    format!(
        "[kafka]\nbootstrap_servers = {:?}\ngroup_id = {:?}\n[kafka.topics]\ncommands = {:?}\n\
         [http]\nlisten = \"\"\n[log]\nformat = \"json\"\n\
         [bridge]\nstate_dir = {:?}\nfsync = false\nattempt_timeout_ms = 1000\nretry_backoff_max_ms = 400\n\
         park_after_records = 50\n\
         [[verify.key]]\nid = {KEY_ID:?}\npublic_key = {:?}\n{extra}",
        settings.bootstrap_servers,
        format!("{}-bridge", settings.group_id),
        settings.topics.commands,
        state.display().to_string(),
        signer().public_key_hex(),
    )
}

fn produce(settings: &trigger_kafka::KafkaSettings, records: &[Vec<u8>]) {
    let mut p = trigger_kafka::Publisher::new(settings).unwrap();
    for bytes in records {
        p.raw(&settings.topics.commands, b"one-key", bytes).unwrap();
    }
    p.wait().unwrap();
}

crate::on_every_broker! {
/// The same record produced twice in a row on the topic (for a zmtrigger camera, which cannot be asked): the
/// camera receives it once, in one run, with no "delivering again".
fn a_record_produced_twice_on_the_topic_reaches_the_camera_once(broker: &Broker) {
    let settings = broker.settings(1);
    let (zm_port, zm) = zm_listener();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[target]]\nname = \"zm\"\nkind = \"zmtrigger\"\naddress = \"127.0.0.1:{zm_port}\"\n\
         [[camera]]\nid = \"cam-1\"\ntarget = \"zm\"\nname = \"1\"\n[[camera]]\nid = \"cam-2\"\ntarget = \"zm\"\nname = \"2\"\n"
    );
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, bridge_toml(&settings, &dir.path().join("state"), &extra)).unwrap();
    let cfg = dispatch_trigger::bridge::BridgeConfig::load(&file).unwrap();
    let commands: Vec<_> = (0..10).map(|i| command(&format!("dup-{i}"), if i % 2 == 0 { "cam-1" } else { "cam-2" }, Action::Start, 60_000)).collect();
    let records: Vec<_> = commands.iter().flat_map(|c| [signed(c), signed(c)]).collect();
    produce(&settings, &records);
    let health = trigger_kafka::Health::default();
    let stop = AtomicBool::new(false);
    let stats = std::thread::scope(|s| {
        let h = s.spawn(|| dispatch_trigger::bridge::run(&cfg, &health, &stop));
        let t = Instant::now();
        while health.handled.load(Relaxed) < records.len() as u64 {
            assert!(t.elapsed() < Duration::from_secs(60) && !h.is_finished(), "handled {}", health.handled.load(Relaxed));
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Relaxed);
        h.join().unwrap().unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_at_most_once_never_late("zmtrigger", &zm, &commands);
    assert_eq!(zm.lock().unwrap().len(), 10);
    assert_eq!((stats.delivered, stats.refused.get("replayed").copied()), (10, Some(10)), "{stats:?}");
}

/// One long-lived command to a failing target at the head of the topic, then many healthy ones for another
/// target, well past the point where records wait behind it (`park_after_records`): every healthy command is
/// delivered while the failing one is still retried, and the offsets move past it (it is parked in the
/// journal). Stopped and started again, the bridge takes the parked command up from its journal (the topic
/// is not read again from it): the failing peer sees it attempted again, the healthy camera nothing twice.
fn one_failing_long_lived_command_does_not_hold_up_the_others(broker: &Broker) {
    let settings = broker.settings(1);
    let bad = frigate(Answer::Status(503), false);
    let (zm_port, zm) = zm_listener();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[target]]\nname = \"bad\"\nkind = \"frigate\"\nurl = {:?}\n\
         [[target]]\nname = \"zm\"\nkind = \"zmtrigger\"\naddress = \"127.0.0.1:{zm_port}\"\n\
         [[camera]]\nid = \"cam-bad\"\ntarget = \"bad\"\nname = \"bad\"\n\
         [[camera]]\nid = \"cam-ok\"\ntarget = \"zm\"\nname = \"7\"\n",
        bad.url
    );
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, bridge_toml(&settings, &dir.path().join("state"), &extra)).unwrap();
    let cfg = dispatch_trigger::bridge::BridgeConfig::load(&file).unwrap();
    let doomed = command("doomed", "cam-bad", Action::Start, 3_600_000);
    let healthy: Vec<_> = (0..2_000).map(|i| command(&format!("ok-{i:04}"), "cam-ok", Action::Start, 3_600_000)).collect();
    let mut records = vec![signed(&doomed)];
    records.extend(healthy.iter().map(signed));
    produce(&settings, &records);
    let run_until = |done: &dyn Fn(&trigger_kafka::Health) -> bool| {
        let health = trigger_kafka::Health::default();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| dispatch_trigger::bridge::run(&cfg, &health, &stop));
            let t = Instant::now();
            while !done(&health) {
                assert!(t.elapsed() < Duration::from_secs(120) && !h.is_finished(), "zm got {}", zm.lock().unwrap().len());
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Relaxed);
            h.join().unwrap().unwrap()
        })
    };
    run_until(&|h| zm.lock().unwrap().len() == healthy.len() && h.handled.load(Relaxed) == records.len() as u64);
    assert!(now_ms() < doomed.expires_at, "the failing command is still valid, still unfinished");
    let tried = bad.creates.lock().unwrap().len();
    assert!(tried >= 1, "the failing command was tried");
    // Started again: the parked command resumes from the journal, nothing of the topic is read again.
    run_until(&|_| bad.creates.lock().unwrap().len() > tried);
    std::thread::sleep(Duration::from_millis(300));
    assert_at_most_once_never_late("zmtrigger", &zm, &healthy);
    assert_eq!(zm.lock().unwrap().len(), healthy.len());
}
}
