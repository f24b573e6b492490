//! Camera index: radius (250 m) and k-nearest queries at 100k, 1M and 10M cameras, rstar vs H3 vs brute
//! force; bulk-load time; bytes per camera.
//!
//! Layout: cameras in "cities" — discs of 10 km radius at ~100 cameras/km² (about 8% of households in a
//! US city), city centres spread over the contiguous US. Local density is the same at every size, so the
//! numbers show how a query scales with fleet size, not with crowding. Queries are centred within 50 m of
//! a random camera (incidents happen where people live).
//!
//! Before any timing, every backend must give the same answer as brute force on the same queries.
//!
//! Run: `cargo bench --bench index` (all sizes; ~10 GB RAM at 10M)
//!      `BENCH_SIZES=100000,1000000 cargo bench --bench index` (quicker)
//!      `BENCH_EXPORT_DIR=out/peer` also writes each size's cameras and queries (`lon lat` per line) for the
//!      peer comparison in benches/peers.sh (Redis, Tile38, PostGIS).

mod common;

use common::{disc, layout};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};
use trigger_core::{CameraRecord, LatLon};
use trigger_index::{
    BruteForceIndex, CameraIndex, H3Backend, H3Index, QPoint, RTreeBackend, RTreeIndex, SpatialBackend,
};

/// Counts live heap bytes, to measure what a structure holds (the `cap` crate's counting allocator: no
/// unsafe code of ours).
#[global_allocator]
static GLOBAL: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

const RADIUS_M: f64 = 250.0;
const K: usize = 8;

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().parse().expect("BENCH_SIZES: numbers")).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 10_000_000])
}

/// The same cameras and queries, for a peer to load (`lon lat` per line, 7 decimals).
fn export(dir: &std::path::Path, n: usize, cams: &[CameraRecord], qs: &[LatLon]) {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir).expect("export folder");
    let mut c = String::with_capacity(cams.len() * 24);
    for cam in cams {
        let _ = writeln!(c, "{:.7} {:.7}", cam.lon, cam.lat);
    }
    let mut q = String::new();
    for p in qs {
        let _ = writeln!(q, "{:.7} {:.7}", p.lon, p.lat);
    }
    std::fs::write(dir.join(format!("cameras-{n}.txt")), c).expect("export cameras");
    std::fs::write(dir.join(format!("queries-{n}.txt")), q).expect("export queries");
}

fn queries(cams: &[CameraRecord], n: usize) -> Vec<LatLon> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    (0..n)
        .map(|_| {
            let c = cams[rng.random_range(0..cams.len())].point();
            disc(&mut rng, c, 50.0)
        })
        .collect()
}

fn answer<B: SpatialBackend>(ix: &CameraIndex<B>, q: LatLon, k: Option<usize>) -> Vec<(String, u64)> {
    let hits = match k {
        Some(k) => ix.nearest(q, k, RADIUS_M),
        None => ix.within(q, RADIUS_M),
    };
    hits.into_iter().map(|h| (h.camera.camera_id.clone(), h.distance_m.to_bits())).collect()
}

/// Heap bytes held by what `f` builds (and keeps), per camera.
fn bytes_per<T>(n: usize, f: impl FnOnce() -> T) -> (T, f64) {
    let before = GLOBAL.allocated() as isize;
    let v = f();
    let after = GLOBAL.allocated() as isize;
    (v, (after - before) as f64 / n as f64)
}

fn bench(c: &mut Criterion) {
    for n in sizes() {
        let cams = layout(n);
        let qs = queries(&cams, 1000);
        if let Ok(dir) = std::env::var("BENCH_EXPORT_DIR") {
            export(std::path::Path::new(&dir), n, &cams, &qs);
        }
        let points: Vec<(u32, QPoint)> =
            cams.iter().enumerate().map(|(i, c)| (i as u32, QPoint::from_latlon(c.point()))).collect();
        let (rt, h3) = memory(n, &cams, &points);
        let brute = BruteForceIndex::bulk_load(cams.clone()).0;
        agree(n, &qs, &brute, &rt, &h3);
        radius_queries(c, n, &qs, &brute, &rt, &h3);
        knn_queries(c, n, &qs, &rt, &h3);
        if n <= 1_000_000 {
            let mut g = c.benchmark_group(format!("bulk_load/{n}"));
            g.sample_size(10);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new("rstar", n), |b| {
                b.iter_batched(|| points.clone(), RTreeBackend::bulk_load, BatchSize::LargeInput)
            });
            g.bench_function(BenchmarkId::new("h3", n), |b| {
                b.iter_batched(|| points.clone(), H3Backend::bulk_load, BatchSize::LargeInput)
            });
            g.finish();
        }
    }
}

/// Memory: the spatial structure alone, and the whole registry (records + id map + structure), printed;
/// returns the two indexes.
fn memory(n: usize, cams: &[CameraRecord], points: &[(u32, QPoint)]) -> (RTreeIndex, H3Index) {
    let t = Instant::now();
    let (rtree_only, rtree_b) = bytes_per(n, || RTreeBackend::bulk_load(points.to_vec()));
    let rtree_load = t.elapsed();
    let t = Instant::now();
    let (h3_only, h3_b) = bytes_per(n, || H3Backend::bulk_load(points.to_vec()));
    let h3_load = t.elapsed();
    drop((rtree_only, h3_only));
    let (rt, rt_total) = bytes_per(n, || RTreeIndex::bulk_load(cams.to_vec()).0);
    let (h3, h3_total) = bytes_per(n, || H3Index::bulk_load(cams.to_vec()).0);
    let records_b = {
        let (v, b) = bytes_per(n, || cams.to_vec());
        drop(v);
        b
    };
    println!(
        "index n={n}: bulk load rstar {:.2}s h3 {:.2}s | spatial bytes/camera rstar {rtree_b:.1} h3 {h3_b:.1} | \
         registry bytes/camera rstar {rt_total:.1} h3 {h3_total:.1} (of which records alone {records_b:.1})",
        rtree_load.as_secs_f64(),
        h3_load.as_secs_f64()
    );
    (rt, h3)
}

/// Equal answers before timing: rstar and H3 against brute force, radius and k-nearest.
fn agree(n: usize, qs: &[LatLon], brute: &BruteForceIndex, rt: &RTreeIndex, h3: &H3Index) {
    let checked = if n >= 10_000_000 { 50 } else { 200 };
    let mut hits = 0;
    for q in &qs[..checked] {
        let want = answer(brute, *q, None);
        hits += want.len();
        assert_eq!(answer(rt, *q, None), want, "rstar disagrees with brute force at {q:?}");
        assert_eq!(answer(h3, *q, None), want, "h3 disagrees with brute force at {q:?}");
        let want_k = answer(brute, *q, Some(K));
        assert_eq!(answer(rt, *q, Some(K)), want_k);
        assert_eq!(answer(h3, *q, Some(K)), want_k);
    }
    println!(
        "index n={n}: {checked} queries agree, {:.1} cameras per 250 m query on average",
        hits as f64 / checked as f64
    );
}

fn radius_queries(c: &mut Criterion, n: usize, qs: &[LatLon], brute: &BruteForceIndex, rt: &RTreeIndex, h3: &H3Index) {
    let mut g = c.benchmark_group(format!("radius_250m/{n}"));
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("rstar", |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            black_box(rt.within(qs[i], RADIUS_M).len())
        })
    });
    // What a peer's radius search answers (ids in distance order), without building records: the figure
    // compared with Redis, Tile38 and PostGIS (benches/peers.sh).
    let mut hits = Vec::new();
    g.bench_function("rstar_ids", |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            rt.within_slots(qs[i], RADIUS_M, &mut hits);
            black_box(hits.iter().map(|h| rt.id(h.slot).len()).sum::<usize>())
        })
    });
    g.bench_function("h3", |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            black_box(h3.within(qs[i], RADIUS_M).len())
        })
    });
    if n <= 1_000_000 {
        g.sample_size(10).measurement_time(Duration::from_secs(5));
        g.bench_function("brute_force", |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                black_box(brute.within(qs[i], RADIUS_M).len())
            })
        });
    }
    g.finish();
}

fn knn_queries(c: &mut Criterion, n: usize, qs: &[LatLon], rt: &RTreeIndex, h3: &H3Index) {
    let mut g = c.benchmark_group(format!("knn_8_within_250m/{n}"));
    let mut i = 0usize;
    g.bench_function("rstar", |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            black_box(rt.nearest(qs[i], K, RADIUS_M).len())
        })
    });
    g.bench_function("h3", |b| {
        b.iter(|| {
            i = (i + 1) % qs.len();
            black_box(h3.nearest(qs[i], K, RADIUS_M).len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
