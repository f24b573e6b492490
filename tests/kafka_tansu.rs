//! End to end against a second, independent Kafka implementation: the `tansu` broker (installed from
//! crates.io by .ci/run). Topics are created through the Kafka admin API, cameras published, the service run
//! at-least-once, good and bad calls for service produced; commands and dead letters are read back.
//!
//! Without a tansu binary (TANSU_BIN, or `tansu` on PATH or in ~/.cargo/bin) the test says so and passes,
//! unless TANSU_REQUIRED=1 (CI sets it), where a missing broker fails it.

mod common;

use dispatch_trigger::serve::{self, ServeConfig};
use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_core::{Action, Status};
use trigger_kafka::{inspect, Health, KafkaSettings, Publisher};

fn tansu_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu")).ok();
    let on_path = std::env::var("PATH")
        .ok()
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).find(|f| f.is_file()));
    on_path.or(home.filter(|h| h.is_file()))
}

struct Broker(Child);
impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tansu(bin: &PathBuf) -> (Broker, String) {
    let port = common::unique::port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    let broker = Broker(child);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "tansu is not listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, format!("127.0.0.1:{port}"))
}

#[test]
fn at_least_once_end_to_end_on_tansu() {
    if common::fast_tier_skips("the tansu broker") {
        return;
    }
    let Some(bin) = tansu_bin() else {
        assert!(std::env::var("TANSU_REQUIRED").is_err(), "TANSU_REQUIRED is set but no tansu binary was found");
        eprintln!("tansu is not installed (cargo install tansu --features dynostore,libsql): not run here");
        return;
    };
    let (_broker, bootstrap) = start_tansu(&bin);
    let settings = KafkaSettings {
        bootstrap_servers: bootstrap,
        group_id: common::unique::name("tansu-e2e"),
        ..KafkaSettings::default()
    };
    let created = trigger_kafka::admin::create_topics(&settings, &settings.topics, 3, 1, 1).expect("topics created");
    assert_eq!(created.len(), settings.topics.all().len(), "every topic created: {created:?}");

    let mut p = Publisher::new(&settings).unwrap();
    for i in 0..3 {
        p.camera(&settings.topics.registry, &common::camera(&format!("cam-{i}"), 30.0 + 40.0 * i as f64)).unwrap();
    }
    p.wait().unwrap();

    let mut cfg = ServeConfig { kafka: settings.clone(), ..ServeConfig::default() };
    cfg.http.listen = String::new();
    cfg.service.poll_timeout_ms = 20;
    let (health, stop) = (Health::default(), AtomicBool::new(false));
    let n = 30;
    let stats = std::thread::scope(|s| {
        let svc = s.spawn(|| serve::run(&cfg, &health, &stop));
        let t = Instant::now();
        while !health.ready.load(Relaxed) {
            assert!(!svc.is_finished(), "the service stopped: {:?}", svc.join().unwrap().err());
            assert!(t.elapsed() < Duration::from_secs(60), "not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut p = Publisher::new(&settings).unwrap();
        for i in 0..n {
            p.cfs(&settings.topics.cfs, &common::shots_fired(&format!("T-{i}"), 1, Status::New)).unwrap();
            if i % 10 == 5 {
                p.raw(&settings.topics.cfs, b"bad", b"\xff\xff not protobuf").unwrap();
            }
        }
        p.wait().unwrap();
        let t = Instant::now();
        while health.handled.load(Relaxed) < (n + 3) as u64 {
            assert!(t.elapsed() < Duration::from_secs(90), "handled {} of {}", health.handled.load(Relaxed), n + 3);
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Relaxed);
        svc.join().unwrap().expect("service ran")
    });
    assert_eq!(stats.events, (n + 3) as u64);
    assert_eq!(stats.rejects.get("malformed_protobuf"), Some(&3));

    let cmds = common::commands(&settings, false);
    let started: BTreeSet<(String, String)> = cmds
        .iter()
        .filter(|c| c.action == Action::Start)
        .map(|c| (c.incident_ref.clone(), c.camera_id.clone()))
        .collect();
    assert_eq!(started.len(), n * 3, "every incident started all three cameras");
    let dlq = inspect::read_topic(&settings, &settings.topics.dead_letter, false, Duration::from_secs(30)).unwrap();
    assert_eq!(dlq.len(), 3);
    assert!(dlq.iter().all(|m| m.payload.as_deref() == Some(&b"\xff\xff not protobuf"[..])));
}
