//! `demo --bridge`: the bridge beside the service, driving an in-process HTTP sink that speaks Frigate's events
//! API, and the latency from a call leaving the CAD to the camera's recorder being called.
//!
//! The join: each START the sink receives names its command (Frigate's sub label); the commands topic gives
//! that command's incident reference and issue time; the CFS topic gives each incident's revisions and the
//! instant each left the CAD (`emitted_at`, set when the demo sent it). The revision that caused a command is
//! the incident's latest one emitted at or before the command was issued.

use super::Percentiles;
use crate::bridge::{BridgeConfig, BridgeStats};
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use trigger_bridge::targets::{FrigateConfig, TargetConfig};
use trigger_bridge::CameraEntry;
use trigger_core::{CameraRecord, Engine};
use trigger_kafka::KafkaSettings;

/// One START the sink received: wall clock (Unix µs) and the command id.
type Arrival = (i64, String);

/// A Frigate stand-in on 127.0.0.1: answers every request as Frigate does, records each START's arrival; or,
/// `failing`, answers 503 to every request (a recorder that is down) and only counts them.
#[derive(Debug)]
pub struct Sink {
    pub url: String,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl Sink {
    pub fn start(failing: bool) -> Result<Self> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("demo sink: {e}"))?;
        let url = format!("http://{}", server.server_addr());
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Default::default();
        let seen = arrivals.clone();
        std::thread::Builder::new().name("demo-sink".into()).spawn(move || {
            for (n, mut req) in server.incoming_requests().enumerate() {
                let at = trigger_kafka::wall_us();
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                if failing {
                    seen.lock().expect("sink lock").push((at, String::new()));
                    let _ = req.respond(tiny_http::Response::from_string("unavailable").with_status_code(503));
                    continue;
                }
                if req.url().ends_with("/create") {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let label = v["sub_label"].as_str().unwrap_or_default();
                    let id = label.trim_start_matches("dispatch-trigger ").to_string();
                    seen.lock().expect("sink lock").push((at, id));
                }
                let reply = format!(r#"{{"success":true,"event_id":"demo-{n}"}}"#);
                let _ = req.respond(tiny_http::Response::from_string(reply));
            }
        })?;
        Ok(Self { url, arrivals })
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().expect("sink lock").clone()
    }
}

/// The bridge of the demo: every camera of the layout served by the sink (every fourth by `failing`, if
/// given), the service's key trusted.
pub fn config(
    settings: &KafkaSettings,
    cams: &[CameraRecord],
    sink: &Sink,
    failing: Option<&Sink>,
    public_key: &str,
) -> BridgeConfig {
    let kafka = KafkaSettings { group_id: format!("{}-bridge", settings.group_id), ..settings.clone() };
    let mut cfg = BridgeConfig { kafka, ..Default::default() };
    cfg.http.listen = String::new();
    cfg.bridge.state_dir = std::env::temp_dir().join(format!("dispatch-trigger-demo-bridge-{}", std::process::id()));
    cfg.bridge.fsync = false;
    cfg.verify.key = vec![crate::keys::PublicKey { id: "demo".into(), public_key: public_key.into() }];
    let target = |name: &str, s: &Sink| {
        TargetConfig::Frigate(FrigateConfig {
            name: name.into(),
            url: s.url.clone(),
            label: "{label}".into(),
            tls: Default::default(),
            user: None,
            password_env: None,
        })
    };
    let (healthy, down) = ("frigate-sink", "frigate-failing");
    cfg.target = std::iter::once(target(healthy, sink)).chain(failing.map(|f| target(down, f))).collect();
    cfg.camera = cams
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let to = if failing.is_some() && i % 4 == 0 { down } else { healthy };
            CameraEntry { id: c.camera_id.clone(), target: to.into(), name: None }
        })
        .collect();
    cfg
}

#[derive(Debug, Serialize)]
pub struct BridgeSummary {
    pub target: String,
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    pub refused: std::collections::BTreeMap<String, u64>,
    /// STARTs joined to the CAD revision that caused them (see the module documentation); with a failing
    /// target, those of the healthy one.
    pub starts_measured: usize,
    /// Calls the failing target answered 503 (with `--failing-target`).
    pub failing_target_calls: Option<usize>,
    /// The CFS record left the CAD -> the camera's recorder was called, milliseconds.
    pub cad_to_target_ms: Option<Percentiles>,
    /// The engine issued the command -> the camera's recorder was called, milliseconds.
    pub issued_to_target_ms: Option<Percentiles>,
}

/// The bridge's counts and the two latencies, from the sink and the topics read back.
pub fn summary(
    settings: &KafkaSettings,
    engine: &Engine,
    sink: &Sink,
    failing: Option<&Sink>,
    stats: BridgeStats,
) -> Result<BridgeSummary> {
    let read =
        |topic: &str| trigger_kafka::inspect::read_topic(settings, topic, true, std::time::Duration::from_secs(30));
    let mut commands = HashMap::new();
    for r in read(&settings.topics.commands)? {
        if let Ok((c, _)) = trigger_cad::commands::decode_command(r.payload.as_deref().unwrap_or_default()) {
            commands.insert(c.command_id, (c.incident_ref, c.issued_at));
        }
    }
    let mut emitted: HashMap<String, Vec<i64>> = HashMap::new();
    for r in read(&settings.topics.cfs)? {
        if let Ok(ev) = trigger_cad::pb::decode_one(r.payload.as_deref().unwrap_or_default(), &Default::default()) {
            emitted.entry(engine.incident_ref(&ev.agency_id, &ev.incident_id)).or_default().push(ev.emitted_at);
        }
    }
    let new = || hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut cad, mut issued) = (new(), new());
    for (at_us, id) in sink.arrivals() {
        let Some((incident, issued_at)) = commands.get(&id) else { continue };
        let cause = emitted.get(incident).and_then(|v| v.iter().filter(|e| **e <= *issued_at).max());
        if let Some(emitted_at) = cause {
            cad.saturating_record((at_us - emitted_at * 1000).max(1) as u64);
            issued.saturating_record((at_us - issued_at * 1000).max(1) as u64);
        }
    }
    Ok(BridgeSummary {
        target: format!("in-process HTTP sink speaking Frigate's events API at {}", sink.url),
        delivered: stats.delivered,
        failed: stats.failed,
        expired: stats.expired,
        refused: stats.refused,
        starts_measured: cad.len() as usize,
        failing_target_calls: failing.map(|f| f.arrivals().len()),
        cad_to_target_ms: Percentiles::of(&cad, 1e3),
        issued_to_target_ms: Percentiles::of(&issued, 1e3),
    })
}
