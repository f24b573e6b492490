//! Crash test, on Apache Kafka and on the mock cluster: the service binary as a child process; the child is
//! SIGKILLed at several points while calls for service stream in, and restarted. At-least-once means no
//! command is lost, and every duplicate carries the same command_id (a camera can drop it). The last child
//! is stopped with SIGTERM and must exit 0.

mod common;

use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trigger_core::{Action, CallForService, CameraRecord, Engine, Status};
use trigger_kafka::{inspect, Publisher};
use trigger_proto::v1 as pb;

const BIN: &str = env!("CARGO_BIN_EXE_dispatch-trigger");
const CAMERAS: usize = 4;
const EVENTS: usize = 240;

fn camera(i: usize) -> CameraRecord {
    common::camera(&format!("cam-{i}"), 20.0 + 30.0 * i as f64)
}

fn event(i: usize) -> CallForService {
    common::shots_fired(&format!("CRASH-{i}"), 1, Status::New)
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("service binary starts")
}

crate::on_every_broker! {
fn sigkill_at_several_points_loses_no_command_and_duplicates_share_their_id(b: &Broker) {
    if common::fast_tier_skips("a fault test (the service SIGKILLed three times)") {
        return;
    }
    let settings = b.settings(3);
    let mut p = Publisher::new(&settings).unwrap();
    for i in 0..CAMERAS {
        p.camera(&settings.topics.registry, &camera(i)).unwrap();
    }
    p.wait().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    let port = common::unique::port();
    std::fs::write(
        &config,
        format!(
            "policy = \"config/policy.toml\"\n{}\
             [kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [service]\npoll_timeout_ms = 20\n[http]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"warn\"\n",
            common::kafka_section(&settings)
        ),
    )
    .unwrap();

    std::thread::scope(|s| {
        // Calls stream in at ~80/s for the whole test, across kills and restarts.
        let sender = s.spawn(|| {
            let mut p = Publisher::new(&settings).unwrap();
            for i in 0..EVENTS {
                p.cfs(&settings.topics.cfs, &event(i)).unwrap();
                if i % 8 == 7 {
                    p.wait().unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            p.wait().unwrap();
        });
        // Three children killed at different points of their run: mid-stream, just after start-up, later.
        for (n, wait_for) in [(1, 40_i64), (2, 1), (3, 120)].into_iter() {
            let mut child = spawn(&config);
            let base = inspect::topic_record_count(&settings, &settings.topics.commands).unwrap();
            let t = Instant::now();
            while inspect::topic_record_count(&settings, &settings.topics.commands).unwrap() < base + wait_for
                && t.elapsed() < Duration::from_secs(30)
            {
                assert!(child.try_wait().unwrap().is_none(), "child {n} exited by itself");
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
        sender.join().unwrap();
    });

    // A last child finishes the stream; then SIGTERM.
    let policy = dispatch_trigger::config::load_policy(std::path::Path::new("config/policy.toml")).unwrap();
    let engine = Engine::new(policy);
    let expected: BTreeSet<(String, String)> = (0..EVENTS)
        .flat_map(|i| {
            let r = engine.incident_ref("nashville-mnpd", &format!("CRASH-{i}"));
            (0..CAMERAS).map(move |c| (r.clone(), format!("cam-{c}")))
        })
        .collect();
    let mut child = spawn(&config);
    let t = Instant::now();
    let cmds = loop {
        let cmds = common::commands(&settings, false);
        let got: BTreeSet<(String, String)> = cmds
            .iter()
            .filter(|c| c.action == Action::Start)
            .map(|c| (c.incident_ref.clone(), c.camera_id.clone()))
            .collect();
        if expected.is_subset(&got) {
            break cmds;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "{} of {} STARTs after restarts", got.len(), expected.len());
        assert!(child.try_wait().unwrap().is_none(), "the last child exited by itself");
        std::thread::sleep(Duration::from_millis(200));
    };
    // SIGTERM only once the last child has installed its handlers (it serves /healthz after them): a signal
    // before that would end it the default way.
    while common::http_get(port, "/healthz").is_none_or(|r| !r.contains(" 200 ")) {
        assert!(t.elapsed() < Duration::from_secs(120), "the last child never served /healthz");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM: finish the batch, commit, exit 0 (got {exit:?})");

    // No command lost (checked above); every duplicate is the same command.
    let mut ids: BTreeMap<(String, String, Action), BTreeSet<String>> = BTreeMap::new();
    for c in &cmds {
        ids.entry((c.incident_ref.clone(), c.camera_id.clone(), c.action)).or_default().insert(c.command_id.clone());
    }
    for (k, v) in &ids {
        assert_eq!(v.len(), 1, "{k:?} was commanded under different ids: {v:?}");
    }
    assert!(cmds.iter().all(|c| c.action == Action::Start));

    // The audit chain of every partition survived the kills: each restart resumed it from the last record
    // that reached the broker.
    let audit = inspect::read_topic(&settings, &settings.topics.audit, false, Duration::from_secs(30)).unwrap();
    let mut parts: BTreeMap<i32, Vec<Result<pb::ActivationRecord, String>>> = BTreeMap::new();
    for r in audit {
        parts
            .entry(r.partition)
            .or_default()
            .push(Ok(pb::ActivationRecord::decode(r.payload.as_deref().unwrap()).unwrap()));
    }
    assert_eq!(parts.len(), 3);
    for (p, recs) in &parts {
        let v = trigger_audit::verify(recs, Some(trigger_audit::GENESIS));
        assert!(v.is_ok(), "audit partition {p}: {v:?}");
    }
    eprintln!(
        "{} commands for {} distinct (incident, camera): {} duplicates",
        cmds.len(),
        ids.len(),
        cmds.len() - ids.len()
    );
}
}
