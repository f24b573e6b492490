//! `push`: how long a CAD vendor's push to `ingest`'s `http_push` source waits for its answer, which comes only
//! once Kafka has acknowledged the record: each request one call (`POST /v1/cfs`, CallForService JSON) over
//! HTTPS with a bearer token, at the offered rate, to the source running in this process on a broker of the
//! caller's. Two figures: the client's request -> 200, and the source's own measure (the call's `emitted_at`
//! -> its commit returning, `dispatch_trigger_ingest_row_to_ack_seconds`). The server's certificate is made
//! for the run with the `openssl` tool.

use crate::PushArgs;
use anyhow::{Context, Result};
use dispatch_trigger::ingest::{http_push::HttpPushSource, IngestConfig, Written};
use dispatch_trigger::kafka_tools::{delete_topics_or_warn, Percentiles};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use trigger_core::{CallForService, Location, Secret, Status};
use trigger_kafka::{wall_ms, Health, KafkaSettings};

const TOKEN: &str = "dispatch-trigger-bench";

/// `dispatch-trigger-bench push`: one row of figures.
pub(crate) fn run(a: PushArgs) -> Result<()> {
    let tag = format!("push-{}", wall_ms());
    let settings = crate::tagged_cluster(&a.bootstrap, &tag, a.at_least_once)?;
    let dir = std::env::temp_dir().join(format!("dispatch-trigger-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let measured = certificate(&dir).and_then(|()| measure(&a, &settings, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    delete_topics_or_warn(&settings, &settings.topics.all());
    let (client, written) = measured?;
    let c = Percentiles::of(&client, 1e3).context("no push answered")?;
    let s = Percentiles::of(&written.row_to_ack_us, 1e3).context("no record acknowledged")?;
    let delivery = if a.at_least_once { "at-least-once" } else { "exactly-once" };
    println!("| pushes | delivery | request -> 200 p50 ms | p99 ms | max ms | call emitted -> record acknowledged p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    println!("| {} | {delivery} | {} | {} | {} | {} | {} |", written.records, c.p50, c.p99, c.max, s.p50, s.p99);
    Ok(())
}

/// A self-signed server certificate for 127.0.0.1 (`cert.pem`, `key.pem`), not a CA, as rustls requires.
fn certificate(dir: &Path) -> Result<()> {
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .output()
        .context("running openssl (Debian's openssl package) to make the server's certificate")?;
    anyhow::ensure!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The source on a thread, one client pushing at the offered rate; the client's latencies and the source's.
fn measure(a: &PushArgs, settings: &KafkaSettings, dir: &Path) -> Result<(hdrhistogram::Histogram<u64>, Written)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut source = HttpPushSource {
        listen: format!("127.0.0.1:{port}"),
        token: Some(Secret::new(TOKEN)),
        ..HttpPushSource::default()
    };
    source.tls.cert = Some(dir.join("cert.pem"));
    source.tls.key = Some(dir.join("key.pem"));
    let mut cfg = IngestConfig { kafka: settings.clone(), http_push: source, ..IngestConfig::default() };
    cfg.http.listen = String::new();
    let (health, stop) = (Health::default(), AtomicBool::new(false));
    let policy = dispatch_trigger::config::default_policy();
    let agent = client(&dir.join("cert.pem"))?;
    std::thread::scope(|s| {
        let running = s.spawn(|| dispatch_trigger::ingest::run(&cfg, &policy, &health, &stop));
        let by = Instant::now() + Duration::from_secs(60);
        while !health.ready.load(Relaxed) && Instant::now() < by && !running.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let pushed = push(a, &agent, port);
        stop.store(true, Relaxed);
        let written = running.join().expect("source thread")?;
        Ok((pushed?, written))
    })
}

/// An HTTPS client trusting only the run's certificate.
fn client(cert: &Path) -> Result<ureq::Agent> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let pem = std::fs::read(cert)?;
    let root = Certificate::from_pem(&pem).context("the run's certificate")?.to_owned();
    let tls = TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::new_with_certs(&[root])).build();
    Ok(ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().new_agent())
}

/// `a.pushes` calls at `a.rate` per second, each its own request; each request's latency to its 200.
fn push(a: &PushArgs, agent: &ureq::Agent, port: u16) -> Result<hdrhistogram::Histogram<u64>> {
    let mut h = hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)?;
    let url = format!("https://127.0.0.1:{port}/v1/cfs");
    let started = Instant::now();
    for i in 0..a.pushes {
        let due = started + Duration::from_secs_f64(i as f64 / a.rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let now = wall_ms();
        let call = CallForService {
            incident_id: format!("P{i:06}"),
            agency_id: "bench-pd".into(),
            revision: trigger_cad::eido::revision_at(now),
            status: Status::New,
            call_type_code: "83".into(),
            call_type_text: "SHOTS FIRED".into(),
            priority: 1,
            location: Some(Location { lat: 36.16, lon: -86.78, uncertainty_m: 10.0 }),
            received_at: now,
            emitted_at: now,
            blocked: None,
            type_fields: vec![],
        };
        let body = trigger_cad::jsonl::encode([&call]);
        let t = Instant::now();
        let answer = agent.post(&url).header("Authorization", format!("Bearer {TOKEN}")).send(&body[..]);
        let status = answer.with_context(|| format!("push {i}"))?.status();
        anyhow::ensure!(status == 200, "push {i} answered {status}");
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    Ok(h)
}
