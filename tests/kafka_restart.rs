//! What a restart must not forget, in the default (at-least-once) delivery mode: the service binary starts a
//! camera for an incident, is SIGKILLed, and restarts. The incident's CLOSED revision then stops the camera
//! (the restarted instance knows it is recording), and a second incident nearby is refused the camera by its
//! owner's daily cap of 1 (the restarted instance knows today's count). The oracle reads the commands and
//! audit topics.

mod common;

use prost::Message as _;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trigger_core::{Action, Engine, Status};
use trigger_kafka::{inspect, KafkaSettings, Publisher};
use trigger_proto::v1 as pb;

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(common::BIN)
        .current_dir(common::root())
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// (incident_ref, camera, action) of every command on the topic.
fn commands(settings: &KafkaSettings) -> BTreeSet<(String, String, Action)> {
    common::commands(settings, false).into_iter().map(|c| (c.incident_ref, c.camera_id, c.action)).collect()
}

/// Wait until `ok` holds of the audit topic's records.
fn audited(settings: &KafkaSettings, ok: impl Fn(&[pb::ActivationRecord]) -> bool) -> Vec<pb::ActivationRecord> {
    let t = Instant::now();
    loop {
        let records: Vec<pb::ActivationRecord> =
            inspect::read_topic(settings, &settings.topics.audit, false, Duration::from_secs(10))
                .unwrap()
                .iter()
                .map(|r| pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap())
                .collect();
        if ok(&records) {
            return records;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "not audited in time: {records:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn send(settings: &KafkaSettings, ev: &trigger_core::CallForService) {
    let mut p = Publisher::new(settings).unwrap();
    p.cfs(&settings.topics.cfs, ev).unwrap();
    p.wait().unwrap();
}

crate::on_every_broker! {
fn a_restart_in_at_least_once_mode_keeps_recording_cameras_and_daily_counts(broker: &Broker) {
    if common::fast_tier_skips("a fault test (the service SIGKILLed and restarted)") {
        return;
    }
    let settings = broker.settings(1);
    let mut cam = common::camera("cam-capped", 30.0);
    cam.consent.daily_cap = 1;
    let mut p = Publisher::new(&settings).unwrap();
    p.camera(&settings.topics.registry, &cam).unwrap();
    p.wait().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "policy = \"{}\"\n{}[service]\npoll_timeout_ms = 20\n[http]\nlisten = \"\"\n[log]\nlevel = \"info\"\n",
            common::root().join("config/policy.toml").display(),
            common::kafka_section(&settings)
        ),
    )
    .unwrap();
    let engine = Engine::new(dispatch_trigger::config::load_policy(&common::root().join("config/policy.toml")).unwrap());
    let (first, second) = (engine.incident_ref("nashville-mnpd", "R-1"), engine.incident_ref("nashville-mnpd", "R-2"));

    let mut child = spawn(&config, &dir.path().join("1.log"));
    send(&settings, &common::shots_fired("R-1", 1, Status::New));
    audited(&settings, |r| r.iter().any(|a| a.incident_ref == first && a.cameras_started == 1));
    // The START's state is acknowledged after its outputs: once it is on the changelog, kill without a goodbye.
    common::wait_for("the START's state on the changelog", Duration::from_secs(60), || {
        inspect::topic_record_count(&settings, &settings.topics.changelog).is_ok_and(|n| n >= 1)
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let mut child = spawn(&config, &dir.path().join("2.log"));
    send(&settings, &common::shots_fired("R-1", 2, Status::Closed));
    send(&settings, &common::shots_fired("R-2", 1, Status::New));
    let records = audited(&settings, |r| r.iter().any(|a| a.incident_ref == second));
    child.kill().unwrap();
    child.wait().unwrap();

    let cmds = commands(&settings);
    assert!(cmds.contains(&(first.clone(), "cam-capped".into(), Action::Stop)), "the restart forgot the camera is recording: {cmds:?}");
    assert!(!cmds.contains(&(second.clone(), "cam-capped".into(), Action::Start)), "the restart forgot today's count: {cmds:?}");
    let r2 = records.iter().find(|a| a.incident_ref == second).unwrap();
    assert!(r2.excluded.iter().any(|x| x.camera_id == "cam-capped" && x.reason == "daily_cap"), "{r2:#?}");
}
}
