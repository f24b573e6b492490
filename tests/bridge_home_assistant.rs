//! Home Assistant's one recording per stream, against a peer written here from Home Assistant's REST API
//! (`POST /api/services/camera/record`) and its stream component's rule: while a camera's recording runs, another
//! `camera.record` for it fails with "Stream already recording to ...!" (HTTP 500). A START for a camera the
//! bridge is already recording is delivered as an extension: covered by the running recording, or continued
//! when it ends for the rest of the command's window only; a STOP cancels the continuation it serves.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trigger_bridge::journal::Journal;
use trigger_bridge::targets::{HomeAssistantConfig, TargetConfig};
use trigger_core::{Action, CameraCommand, Category};

/// A recording the peer ran: its entity, when it started (ms after the test began) and for how long (s).
type Ran = Vec<(String, u128, u64)>;

/// The peer: one recorder per entity; a record call while it runs is refused as Home Assistant refuses it.
fn home_assistant(t0: Instant) -> (String, Arc<Mutex<Ran>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
    let ran: Arc<Mutex<Ran>> = Arc::default();
    let log = ran.clone();
    std::thread::spawn(move || {
        let mut busy_until: std::collections::HashMap<String, Instant> = Default::default();
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let call: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let entity = call["entity_id"].as_str().unwrap_or_default().to_string();
            let duration = call["duration"].as_u64().unwrap_or(30);
            let now = Instant::now();
            let (code, reply) = match busy_until.get(&entity) {
                Some(until) if *until > now => {
                    (500, "500 Internal Server Error: Stream already recording to /media/clip.mp4!".to_string())
                }
                _ => {
                    busy_until.insert(entity.clone(), now + Duration::from_secs(duration));
                    log.lock().unwrap().push((entity, now.duration_since(t0).as_millis(), duration));
                    (200, "[]".to_string())
                }
            };
            let _ = req.respond(tiny_http::Response::from_string(reply).with_status_code(code));
        }
    });
    (url, ran)
}

fn command(id: &str, incident: &str, action: Action, seconds: u32) -> CameraCommand {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    CameraCommand {
        command_id: id.into(),
        camera_id: "cam-1".into(),
        action,
        incident_ref: incident.into(),
        category: Category::ShotsFired,
        record_seconds: seconds,
        live_stream: false,
        issued_at: now,
        expires_at: now + 60_000,
    }
}

#[test]
fn a_start_during_a_recording_extends_it_to_its_own_window_and_no_further() {
    let t0 = Instant::now();
    let (url, log) = home_assistant(t0);
    std::env::set_var("BRIDGE_HA_STREAM_TOKEN", "token");
    let config = TargetConfig::HomeAssistant(HomeAssistantConfig {
        name: "ha".into(),
        url,
        token_env: "BRIDGE_HA_STREAM_TOKEN".into(),
        filename: "/media/clip.mp4".into(),
        tls: Default::default(),
    });
    let state = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(state.path(), 100, false).unwrap();
    let mut ha = config.build(Duration::from_secs(5)).unwrap();
    let camera = "camera.front_door";
    // Incident 1 records 3 s; incident 2 asks 1 s later for 4 s: 3 s more than the running recording.
    ha.deliver(&command("c1", "inc-1", Action::Start, 3), camera, &mut journal).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let asked_2 = t0.elapsed().as_millis();
    ha.deliver(&command("c2", "inc-2", Action::Start, 4), camera, &mut journal).expect("delivered as an extension");
    // Incident 3 asks for 1 s: covered, nothing called.
    ha.deliver(&command("c3", "inc-3", Action::Start, 1), camera, &mut journal).unwrap();
    // A second camera is its own stream.
    ha.deliver(&command("c4", "inc-4", Action::Start, 2), "camera.yard", &mut journal).unwrap();
    std::thread::sleep(Duration::from_millis(5500));
    let ran = log.lock().unwrap().clone();
    let front: Vec<_> = ran.iter().filter(|r| r.0 == camera).collect();
    assert_eq!(front.len(), 2, "the recording, then the continuation: {ran:?}");
    let (first, next) = (front[0], front[1]);
    assert_eq!(first.2, 3);
    assert!(next.1 >= first.1 + 3000, "the continuation starts when the running recording ends: {ran:?}");
    let ends = next.1 + u128::from(next.2) * 1000;
    let window_end = asked_2 + 4000;
    assert!(ends <= window_end + 50, "recorded past incident 2's window: ends {ends} ms, window {window_end} ms");
    assert!(ends + 1500 >= window_end, "incident 2's window not covered: ends {ends} ms, window {window_end} ms");
    assert_eq!(ran.iter().filter(|r| r.0 == "camera.yard").count(), 1, "{ran:?}");

    // A STOP for the incident a continuation serves cancels it.
    let before = ran.len();
    ha.deliver(&command("c5", "inc-5", Action::Start, 2), camera, &mut journal).unwrap();
    ha.deliver(&command("c6", "inc-6", Action::Start, 5), camera, &mut journal).unwrap();
    ha.deliver(&command("c7", "inc-6", Action::Stop, 5), camera, &mut journal).unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let after: Vec<_> = log.lock().unwrap()[before..].to_vec();
    assert_eq!(after.len(), 1, "incident 6's continuation ran after its STOP: {after:?}");
    assert_eq!(after[0].2, 2, "{after:?}");
}
