//! The engine: decide() for one triggering event, the replay of the recorded CAD log (events/s), and signing
//! and verifying one camera command (the engine signs every command; the bridge verifies every one).
//!
//! Inputs are real: the Metro Nashville 2024 export (../shared, or the bundled week in fixtures/ when
//! ../shared is absent) with a seeded layout of 50,000 cameras around its events.
//!
//! Run: `cargo bench --bench engine`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dispatch_trigger::{cameras, config};
use std::hint::black_box;
use std::path::PathBuf;
use trigger_cad::pacing::event_time_order;
use trigger_cad::{decode, DecodeOptions, Format};
use trigger_core::{CallForService, Engine, Location, Status};
use trigger_index::RTreeIndex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bench(c: &mut Criterion) {
    let policy_path = root().join("config/policy.toml");
    let policy = config::load_policy(&policy_path).expect("policy");
    let profile = config::load_profile("nashville-mnpd", &policy_path).expect("profile");
    let full = root().join("../shared/data/cad/nashville_mnpd_calls_2024_sample.csv");
    let log = if full.exists() { full } else { root().join("fixtures/nashville-mnpd-2024-07-01_07.csv") };
    let data = std::fs::read(&log).expect("CAD log");
    let decoded = decode(Format::Csv, &data, Some(&profile), &DecodeOptions::default()).expect("decodes");
    let points: Vec<_> = decoded.events.iter().filter_map(|e| e.event.location.map(|l| l.point())).collect();
    let layout = cameras::generate(50_000, 42, &cameras::Placement::Around(points), profile.time_zone).expect("layout");
    let (index, _) = RTreeIndex::bulk_load(layout);

    // One shots-fired call in a dense part of the city: classify, jurisdiction, query, consent, k-cap, plan.
    let ev = CallForService {
        incident_id: "BENCH-1".into(),
        agency_id: "nashville-mnpd".into(),
        revision: 1,
        status: Status::New,
        call_type_code: "83".into(),
        call_type_text: "SHOTS FIRED".into(),
        priority: 1,
        location: Some(Location { lat: 36.1627, lon: -86.7816, uncertainty_m: 71.0 }),
        received_at: 1_720_000_000_000,
        emitted_at: 1_720_000_000_000,
        blocked: None,
        type_fields: vec![],
    };
    decide_one(c, &policy, &index, &ev);
    replay(c, &policy, &profile, &index, &log, &data, &decoded);
}

/// One triggering call, decided by a fresh engine each time.
fn decide_one(c: &mut Criterion, policy: &trigger_core::Policy, index: &RTreeIndex, ev: &CallForService) {
    let probe = Engine::new(policy.clone()).decide(ev, index, ev.emitted_at).expect("decides");
    println!(
        "decide/trigger_event: outcome {:?}, {} cameras commanded, {} excluded",
        probe.record.outcome,
        probe.commands.len(),
        probe.record.excluded.len()
    );
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    g.bench_function("trigger_event", |b| {
        b.iter_batched(
            || Engine::new(policy.clone()),
            |mut e| black_box(e.decide(ev, index, ev.emitted_at).is_ok()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The whole log: decode, order, decide every event.
fn replay(
    c: &mut Criterion,
    policy: &trigger_core::Policy,
    profile: &trigger_cad::CsvProfile,
    index: &RTreeIndex,
    log: &std::path::Path,
    data: &[u8],
    decoded: &trigger_cad::Decoded,
) {
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or("log").to_string();
    let rows = (decoded.events.len() + decoded.rejects.len()) as u64;
    println!("replay/{name}: {rows} rows, {} events", decoded.events.len());
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows));
    // Decode + event-time order + decide every event (no output files: that is I/O, not the engine).
    g.bench_function(format!("decode_and_decide/{name}"), |b| {
        b.iter(|| {
            let mut d = decode(Format::Csv, data, Some(profile), &DecodeOptions::default()).expect("decodes");
            event_time_order(&mut d.events);
            let mut e = Engine::new(policy.clone());
            let mut commands = 0usize;
            for de in &d.events {
                if let Ok(x) = e.decide(&de.event, index, de.event.emitted_at) {
                    commands += x.commands.len();
                }
            }
            black_box(commands)
        })
    });
    g.finish();
}

/// One command signed (the engine, per command) and verified (the bridge, per command).
fn signing(c: &mut Criterion) {
    use trigger_core::{Action, CameraCommand, Category, CommandKeys, CommandSigner};
    let cmd = CameraCommand {
        command_id: "0f3c2a9b41d7e8a6".into(),
        camera_id: "cam-004211".into(),
        action: Action::Start,
        incident_ref: "3f1e9c0a7b2d4e6f".into(),
        category: Category::ShotsFired,
        record_seconds: 600,
        live_stream: false,
        issued_at: 1_700_000_000_000,
        expires_at: 1_700_000_060_000,
    };
    let signer = CommandSigner::from_seed("engine-1", [7; 32]);
    let keys = CommandKeys::from_hex([("engine-1", signer.public_key_hex().as_str())]).unwrap();
    let sig = signer.sign(&cmd);
    let mut g = c.benchmark_group("command");
    g.bench_function("sign", |b| b.iter(|| black_box(signer.sign(black_box(&cmd)))));
    g.bench_function("verify", |b| b.iter(|| black_box(keys.verify(black_box(&cmd), Some(&sig), 0))));
    g.finish();
}

criterion_group!(benches, bench, signing);
criterion_main!(benches);
