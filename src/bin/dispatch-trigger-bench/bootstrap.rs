//! `bootstrap`: how long `serve` takes to read a national registry at start-up, next to a bare consumer
//! reading the same topic, and what the process holds once it has.
//!
//! One run: publish N generated cameras (the national fleet layout) into a registry topic of its own (deleted
//! after the run unless kept; a kept one can be read again, [`Registry::Reuse`]); read it
//! to its end with a bare consumer (the follower's client settings, every partition from the beginning,
//! payloads touched, nothing decoded); then start `dispatch-trigger serve` as a child process on the same
//! topics and time it from spawn to `/readyz` 200 (the service is ready only once the registry is read to
//! its end), reading its RSS then. `serve` runs as the deploy manifests run it, with glibc's malloc tuned
//! ([`DEPLOYED_MALLOC`], unless the caller's environment sets them): two arenas, since librdkafka's threads
//! otherwise keep freed fetch buffers in arenas of their own, and a fixed mmap threshold, so buffers over 128 KiB
//! go back to the system when freed.

use crate::BootstrapArgs;
use anyhow::{bail, Context, Result};
use dispatch_trigger::cameras::{generate, Placement};
use dispatch_trigger::kafka_tools::{delete_topics_or_warn, publish_cameras, NOT_STOPPED};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};
use trigger_kafka::{wall_ms, KafkaSettings, Topics};

/// `dispatch-trigger-bench bootstrap`: one row, printed as a table (and written as JSON with --out).
pub(crate) fn run(policy: &Path, a: BootstrapArgs) -> Result<()> {
    let registry = match a.reuse {
        Some(tag) => Registry::Reuse(tag),
        None => Registry::Publish { cameras: a.cameras, partitions: a.partitions, keep: a.keep },
    };
    let row = bench_bootstrap(&a.bootstrap, registry, policy)?;
    println!("| cameras | partitions | topic MB | bare consumer s | serve ready s | ratio | serve RSS MB | RSS bytes/camera |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        row.cameras,
        row.partitions,
        row.topic_mb,
        row.bare_consumer_s,
        row.serve_ready_s,
        row.ratio,
        row.serve_rss_mb,
        row.serve_rss_bytes_per_camera
    );
    if let Some(out) = &a.out {
        crate::write_json(out, &row)?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct BootstrapRow {
    cameras: usize,
    partitions: i32,
    topic_mb: f64,
    bare_consumer_s: f64,
    serve_ready_s: f64,
    /// Of which reading the registry and status topics (the service's own log line).
    serve_registry_read_s: f64,
    ratio: f64,
    serve_rss_mb: f64,
    serve_rss_bytes_per_camera: f64,
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200")
}

/// glibc's malloc settings for `serve`, as deploy/Dockerfile and deploy/k8s set them.
const DEPLOYED_MALLOC: [(&str, &str); 2] = [("MALLOC_ARENA_MAX", "2"), ("MALLOC_MMAP_THRESHOLD_", "131072")];

/// Start `serve` on `settings`' topics; time spawn → /readyz 200; its RSS then. The child is stopped after.
/// Returns (spawn to ready, the service's registry + status read, RSS MB).
fn serve_until_ready(settings: &KafkaSettings, policy: &Path) -> Result<(f64, f64, f64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = std::env::temp_dir().join(format!("dispatch-trigger-{}.serve.toml", settings.group_id));
    let t = &settings.topics;
    let topics: String = t.named().iter().map(|(k, v)| format!("{k} = {v:?}\n")).collect();
    let text = format!(
        "[kafka]\nbootstrap_servers = {:?}\ngroup_id = {:?}\n[kafka.topics]\n{topics}[http]\nlisten = {addr:?}\n\
         [service]\nregistry_bootstrap_timeout_s = 3600\n[log]\nlevel = \"info\"\n",
        settings.bootstrap_servers, settings.group_id
    );
    std::fs::write(&cfg, text)?;
    let log = cfg.with_extension("log");
    let started = Instant::now();
    let mut child = std::process::Command::new(dispatch_trigger_binary()?)
        .arg("--policy")
        .arg(policy)
        .args(["serve", "--config"])
        .arg(&cfg)
        .envs(DEPLOYED_MALLOC.iter().map(|(k, v)| (*k, std::env::var(k).unwrap_or_else(|_| v.to_string()))))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting serve")?;
    let result = (|| {
        while !ready(&addr) {
            if let Some(status) = child.try_wait()? {
                bail!("serve exited before it was ready: {status}");
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "serve not ready in an hour");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((started.elapsed().as_secs_f64(), rss_mb(child.id())?))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = (std::fs::remove_file(&cfg), std::fs::remove_file(&log));
    let (ready_s, rss) = result.with_context(|| format!("serve's log:\n{logged}"))?;
    // The service's own measure of the registry read (its log line "camera registry loaded").
    let read_s = logged
        .lines()
        .filter(|l| l.contains("camera registry loaded"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("seconds")?.as_f64())
        .sum();
    Ok((ready_s, read_s, rss))
}

/// The `dispatch-trigger` binary beside this one (cargo builds both into the same folder).
fn dispatch_trigger_binary() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name(format!("dispatch-trigger{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(bin.exists(), "{} not found: build it first (cargo build --release)", bin.display());
    Ok(bin)
}

/// What `bootstrap` reads: a registry it publishes, or one an earlier run left (its topics' prefix).
#[derive(Debug, Clone)]
enum Registry {
    /// Publish a fleet; `keep`: leave its topics for `Reuse` (else they are deleted once measured).
    Publish {
        cameras: usize,
        partitions: i32,
        keep: bool,
    },
    Reuse(String),
}

fn bench_bootstrap(bootstrap: &str, registry: Registry, policy: &Path) -> Result<BootstrapRow> {
    let label = match &registry {
        Registry::Publish { .. } => format!("boot-{}", wall_ms()),
        Registry::Reuse(label) => label.clone(),
    };
    let settings = KafkaSettings {
        bootstrap_servers: bootstrap.to_string(),
        group_id: format!("{label}-{}", wall_ms()),
        topics: Topics::tagged(&label),
        ..KafkaSettings::default()
    };
    let (cameras, delete_after) = match registry {
        Registry::Publish { cameras, partitions, keep } => {
            publish_fleet(&settings, cameras, partitions)?;
            if keep {
                eprintln!("the registry is kept: read it again with --reuse {label}");
            }
            (cameras, !keep)
        }
        Registry::Reuse(_) => {
            let n = trigger_kafka::inspect::topic_record_count(&settings, &settings.topics.registry)
                .with_context(|| format!("reading the registry of {label:?}"))?;
            (n as usize, false)
        }
    };
    let row = measure(&settings, cameras, policy);
    if delete_after {
        delete_topics_or_warn(&settings, &settings.topics.all());
    }
    row
}

/// The bare consumer, then `serve`, on `settings`' registry of `cameras` cameras.
fn measure(settings: &KafkaSettings, cameras: usize, policy: &Path) -> Result<BootstrapRow> {
    let partitions = trigger_kafka::inspect::partition_count(settings, &settings.topics.registry)? as i32;
    let t = Instant::now();
    let (records, bytes) =
        trigger_kafka::inspect::read_to_end_bare(settings, &settings.topics.registry, Duration::from_secs(3600))?;
    let bare = t.elapsed().as_secs_f64();
    anyhow::ensure!(records == cameras as u64, "the bare consumer read {records} records, not {cameras}");
    eprintln!("bare consumer: {records} records in {bare:.1} s");
    let (ready_s, read_s, rss) = serve_until_ready(settings, policy)?;
    eprintln!("serve: ready in {ready_s:.1} s (registry read in {read_s:.1} s), RSS {rss:.0} MB");
    Ok(BootstrapRow {
        cameras,
        partitions,
        topic_mb: (bytes as f64 / 1e6 * 10.0).round() / 10.0,
        bare_consumer_s: (bare * 100.0).round() / 100.0,
        serve_ready_s: (ready_s * 100.0).round() / 100.0,
        serve_registry_read_s: (read_s * 100.0).round() / 100.0,
        ratio: (ready_s / bare * 100.0).round() / 100.0,
        serve_rss_mb: rss.round(),
        serve_rss_bytes_per_camera: (rss * 1024.0 * 1024.0 / cameras as f64).round(),
    })
}

/// Create `settings`' topics and publish `cameras` generated cameras into its registry.
fn publish_fleet(settings: &KafkaSettings, cameras: usize, partitions: i32) -> Result<()> {
    trigger_kafka::admin::create_topics(settings, &settings.topics, 1, partitions, 1)?;
    // Generated and published in slices, so the generator's records never all sit in memory at once.
    let t = Instant::now();
    let bar = dispatch_trigger::progress_bar(cameras as u64, "cameras published");
    let slice = 1_000_000;
    for (k, start) in (0..cameras).step_by(slice).enumerate() {
        let mut cams = generate(slice.min(cameras - start), 1000 + k as u64, &Placement::Fleet, chrono_tz::UTC)?;
        for c in &mut cams {
            c.camera_id = format!("cam-{k:03}-{}", &c.camera_id[4..]);
        }
        publish_cameras(settings, &cams, &NOT_STOPPED)?;
        bar.inc(cams.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!("published {cameras} cameras in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
