//! Registry updates at heartbeat rate while decisions continue.
//!
//! N cameras (default 10M: the shared city layout, plus 50,000 around the real Nashville calls), then on one
//! thread, as the service's loop does: apply a block of registry updates through the service's own decode +
//! apply (`trigger_kafka::registry::apply`, protobuf bytes in), then decide the next real trigger event; repeat.
//! The update mix: 70% heartbeats (`CameraStatus` online flips), 15% small moves (a `CameraRecord` ~20 m
//! away), 10% consent changes (radius and categories), 5% removals (tombstones). Reports updates/s (time
//! in decode + apply only), `decide` p50/p99 idle and under that load, the ratio, and the process RSS.
//!
//! Run: `cargo bench --bench registry` (10M cameras, ~6 GB RAM peak while building)
//!      `BENCH_CAMERAS=1000000 cargo bench --bench registry` (quicker)

mod common;

use dispatch_trigger::{cameras, config};
use hdrhistogram::Histogram;
use prost::Message as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;
use trigger_cad::{decode, DecodeOptions, Format};
use trigger_core::{CallForService, Category, Engine};
use trigger_index::RTreeIndex;
use trigger_kafka::codec::{camera_to_pb, status_to_pb, CameraStatus};
use trigger_kafka::registry::{apply, Applied, Feed};

/// Updates applied between two decisions.
fn block() -> usize {
    std::env::var("BENCH_BLOCK").ok().and_then(|s| s.parse().ok()).unwrap_or(200)
}

struct Update {
    feed: Feed,
    key: String,
    payload: Option<Vec<u8>>,
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn updates(cams: &[trigger_core::CameraRecord], n: usize) -> Vec<Update> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|k| {
            let c = &cams[rng.random_range(0..cams.len())];
            let key = c.camera_id.clone();
            let roll = rng.random_range(0..100);
            let record = |c: &trigger_core::CameraRecord| Some(camera_to_pb(c).encode_to_vec());
            let (feed, payload) = match roll {
                0..70 => {
                    let st = CameraStatus { camera_id: key.clone(), online: rng.random(), last_seen_ms: k as i64 };
                    (Feed::Status, Some(status_to_pb(&st).encode_to_vec()))
                }
                70..85 => {
                    let mut m = c.clone();
                    m.lat += rng.random_range(-2e-4..2e-4);
                    m.lon += rng.random_range(-2e-4..2e-4);
                    (Feed::Registry, record(&m))
                }
                85..95 => {
                    let mut m = c.clone();
                    // The radii an app offers, not arbitrary numbers: consents are interned.
                    m.consent.max_radius_m = [100.0, 150.0, 200.0, 250.0, 300.0, 400.0][rng.random_range(0..6)];
                    m.consent.categories = [Category::Burglary, Category::Shooting].into_iter().collect();
                    (Feed::Registry, record(&m))
                }
                _ => (Feed::Registry, None),
            };
            Update { feed, key, payload }
        })
        .collect()
}

fn trigger_events(policy_path: &std::path::Path) -> (Vec<CallForService>, chrono_tz::Tz) {
    let profile = config::load_profile("nashville-mnpd", policy_path).expect("profile");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let full = root.join("../shared/data/cad/nashville_mnpd_calls_2024_sample.csv");
    let log = if full.exists() { full } else { root.join("fixtures/nashville-mnpd-2024-07-01_07.csv") };
    let data = std::fs::read(&log).expect("CAD log");
    let mut d = decode(Format::Csv, &data, Some(&profile), &DecodeOptions::default()).expect("decodes");
    trigger_cad::pacing::event_time_order(&mut d.events);
    (d.events.into_iter().map(|e| e.event).collect(), profile.time_zone)
}

/// Decide `events` with a fresh engine; before each, apply the next block of `ups` through the registry path
/// (the index borrowed mutably between decisions, as in the service's loop). Returns the decide-time
/// histogram (ns), what was applied and the time spent applying (ns).
fn run(
    index: &mut RTreeIndex,
    policy: &trigger_core::Policy,
    events: &[CallForService],
    ups: &[Update],
) -> (Histogram<u64>, Applied, u128) {
    let mut engine = Engine::new(policy.clone());
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut applied, mut apply_ns) = (Applied::default(), 0u128);
    let mut blocks = ups.chunks(block());
    for ev in events {
        let t = Instant::now();
        for u in blocks.next().unwrap_or_default() {
            let _ = apply(index, u.feed, &u.key, u.payload.as_deref(), &mut applied);
        }
        apply_ns += t.elapsed().as_nanos();
        let t = Instant::now();
        let _ = std::hint::black_box(engine.decide(ev, &*index, ev.emitted_at));
        hist.record(t.elapsed().as_nanos().max(1) as u64).expect("recorded");
    }
    (hist, applied, apply_ns)
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn main() {
    let n: usize = std::env::var("BENCH_CAMERAS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let policy_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/policy.toml");
    let policy = config::load_policy(&policy_path).expect("policy");
    let (events, tz) = trigger_events(&policy_path);
    let points: Vec<_> = events.iter().filter_map(|e| e.location.map(|l| l.point())).collect();
    let mut cams = cameras::generate(50_000, 42, &cameras::Placement::Around(points), tz).expect("layout");
    // The fleet around them, with ids of its own.
    cams.extend(common::layout(n.saturating_sub(cams.len())).into_iter().map(|mut c| {
        c.camera_id.insert_str(0, "fleet-");
        c
    }));
    let t = Instant::now();
    let (mut index, errors) = RTreeIndex::bulk_load(cams.iter().cloned());
    assert!(errors.is_empty());
    println!("registry bench: {} cameras bulk-loaded in {:.1} s", index.len(), t.elapsed().as_secs_f64());
    let ups = updates(&cams, 4_000_000);
    drop(cams);
    println!("registry bench: RSS with the index and 4M encoded updates: {:.0} MB", rss_mb());

    // The same events, in event-time order, idle and then with the next block of updates before each.
    let m = events.len().min(ups.len() / block());
    let (idle, _, _) = run(&mut index, &policy, &events[..m], &[]);
    let (loaded, applied, apply_ns) = run(&mut index, &policy, &events[..m], &ups[..m * block()]);
    let (next, decided) = (m * block(), m);
    let per_s = next as f64 / (apply_ns as f64 / 1e9);
    println!(
        "registry bench: {next} updates applied at {per_s:.0}/s on one core (decode + apply; {} upserts, {} removals, \
         {} heartbeats, {} heartbeats ignored, {} bad), {decided} decisions between them",
        applied.upserts, applied.removals, applied.status, applied.status_ignored, applied.bad
    );
    println!(
        "registry bench: decide p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs idle ({} events) | p50 {:.1} µs, p99 {:.1} µs, \
         p99.9 {:.1} µs under load ({} updates between decisions) | p99 ratio {:.2}",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&idle, 0.999),
        idle.len(),
        pct(&loaded, 0.5),
        pct(&loaded, 0.99),
        pct(&loaded, 0.999),
        block(),
        pct(&loaded, 0.99) / pct(&idle, 0.99)
    );
    println!("registry bench: RSS at the end: {:.0} MB, {} cameras", rss_mb(), index.len());
}
