//! Both index implementations against a brute-force oracle built on geo's Haversine distance, under random
//! sequences of upserts, removals, consent changes and queries — including points at the antimeridian, at
//! both poles, and many cameras at one location.

use geo::{Distance, Haversine, Point};
use proptest::prelude::*;
use std::collections::BTreeMap;
use trigger_core::{CameraRecord, Category, Consent, LatLon};
use trigger_index::{quantize, CameraIndex, H3Index, RTreeIndex, SpatialBackend, StatusChange};

/// Places where spherical geometry bites, plus an ordinary city.
const ANCHORS: [(f64, f64); 6] = [
    (36.16, -86.78),    // Nashville
    (0.0, 179.9995),    // on the antimeridian, equator
    (-16.5, -179.999),  // Fiji, west of the antimeridian
    (89.9995, 10.0),    // next to the North Pole
    (-89.9999, -120.0), // next to the South Pole
    (0.0001, 0.0001),   // next to (0, 0)
];

fn point() -> impl Strategy<Value = (f64, f64)> {
    (0..ANCHORS.len(), -0.02f64..0.02, -0.02f64..0.02).prop_map(|(a, dlat, dlon)| {
        let (lat, lon) = ANCHORS[a];
        let lat = (lat + dlat).clamp(-90.0, 90.0);
        let mut lon = lon + dlon * 3.0;
        if lon > 180.0 {
            lon -= 360.0;
        }
        if lon < -180.0 {
            lon += 360.0;
        }
        (lat, lon)
    })
}

fn camera(id: usize, (lat, lon): (f64, f64)) -> CameraRecord {
    owned_camera(id, (lat, lon), 0)
}

fn owned_camera(id: usize, (lat, lon): (f64, f64), owner: u8) -> CameraRecord {
    CameraRecord {
        camera_id: format!("cam-{id:03}"),
        owner_ref: format!("owner-{id}-{}", "x".repeat(owner as usize)),
        lat,
        lon,
        consent: Consent {
            categories: [Category::Burglary].into_iter().collect(),
            max_radius_m: 300.0,
            quiet_hours: None,
            daily_cap: 3,
            live_stream_allowed: false,
        },
        online: true,
        updated_at: 0,
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A camera (re)placed, with one of a few owner refs (a new owner rewrites the packed strings).
    Upsert(usize, (f64, f64), u8),
    /// Several cameras at exactly one location.
    Pile(usize, usize, (f64, f64)),
    Remove(usize),
    Consent(usize, f64),
    /// A heartbeat: online or not, at a time.
    Status(usize, bool, i64),
    Within((f64, f64), f64),
    Nearest((f64, f64), usize, f64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..60, point(), 0u8..3).prop_map(|(i, p, o)| Op::Upsert(i, p, o)),
        1 => (0usize..60, 1usize..6, point()).prop_map(|(i, n, p)| Op::Pile(i, n, p)),
        2 => (0usize..60).prop_map(Op::Remove),
        1 => (0usize..60, 0.0f64..500.0).prop_map(|(i, r)| Op::Consent(i, r)),
        2 => (0usize..60, any::<bool>(), -10i64..1_000_000).prop_map(|(i, on, at)| Op::Status(i, on, at)),
        3 => (point(), 0.0f64..3000.0).prop_map(|(p, r)| Op::Within(p, r)),
        2 => (point(), 0usize..10, 0.0f64..3000.0).prop_map(|(p, k, r)| Op::Nearest(p, k, r)),
    ]
}

/// The oracle: every camera, geo's Haversine, sorted by (distance, id).
fn oracle(model: &BTreeMap<String, CameraRecord>, c: (f64, f64), r: f64) -> Vec<(String, f64)> {
    let center = Point::new(c.1, c.0);
    let mut v: Vec<(String, f64)> = model
        .values()
        .map(|cam| {
            let q = quantize(LatLon::new(cam.lat, cam.lon));
            (cam.camera_id.clone(), Haversine.distance(center, Point::new(q.lon, q.lat)))
        })
        .filter(|(_, d)| *d <= r)
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn answer<B: SpatialBackend>(ix: &CameraIndex<B>, c: (f64, f64), r: f64, k: Option<usize>) -> Vec<(String, f64)> {
    let center = LatLon::new(c.0, c.1);
    let hits = match k {
        Some(k) => ix.nearest(center, k, r),
        None => ix.within(center, r),
    };
    hits.into_iter().map(|h| (h.camera.camera_id.clone(), h.distance_m)).collect()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rtree = RTreeIndex::new();
    let mut h3 = H3Index::new();
    h3.backend_mut().set_scan_threshold(usize::MAX); // always walk the grid disk
    let mut h3_default = H3Index::new(); // the production setting (scan when cheaper)
                                         // Loaded as at start-up: changes reach the records only until the first query builds the structure.
    let mut loaded = RTreeIndex::new();
    loaded.start_loading();
    let mut model: BTreeMap<String, CameraRecord> = BTreeMap::new();
    for op in ops {
        if matches!(op, Op::Within(..) | Op::Nearest(..)) {
            loaded.finish_loading();
        }
        match op {
            Op::Upsert(i, p, o) => {
                let c = owned_camera(i, p, o);
                loaded.upsert(c.clone()).unwrap();
                rtree.upsert(c.clone()).unwrap();
                h3.upsert(c.clone()).unwrap();
                h3_default.upsert(c.clone()).unwrap();
                model.insert(c.camera_id.clone(), c);
            }
            Op::Pile(i, n, p) => {
                for j in i..i + n {
                    let c = camera(j, p);
                    loaded.upsert(c.clone()).unwrap();
                    rtree.upsert(c.clone()).unwrap();
                    h3.upsert(c.clone()).unwrap();
                    h3_default.upsert(c.clone()).unwrap();
                    model.insert(c.camera_id.clone(), c);
                }
            }
            Op::Remove(i) => {
                let id = format!("cam-{i:03}");
                let expect = model.remove(&id).is_some();
                prop_assert_eq!(rtree.remove(&id).is_some(), expect);
                prop_assert_eq!(loaded.remove(&id).is_some(), expect);
                prop_assert_eq!(h3.remove(&id).is_some(), expect);
                prop_assert_eq!(h3_default.remove(&id).is_some(), expect);
            }
            Op::Consent(i, r) => {
                let id = format!("cam-{i:03}");
                if let Some(m) = model.get_mut(&id) {
                    m.consent.max_radius_m = r;
                    let c = m.consent;
                    for changed in [rtree.set_consent(&id, c), h3.set_consent(&id, c), loaded.set_consent(&id, c)] {
                        prop_assert!(changed);
                    }
                    prop_assert_eq!(rtree.get(&id).unwrap().consent.max_radius_m, r);
                    prop_assert_eq!(h3.get(&id).unwrap().consent.max_radius_m, r);
                }
            }
            Op::Status(i, online, at) => {
                let id = format!("cam-{i:03}");
                let expect = match model.get_mut(&id) {
                    None => StatusChange::UnknownCamera,
                    Some(m) if at < m.updated_at => StatusChange::Stale,
                    Some(m) => {
                        (m.online, m.updated_at) = (online, at);
                        StatusChange::Applied
                    }
                };
                prop_assert_eq!(rtree.set_status(&id, online, at), expect);
                prop_assert_eq!(h3.set_status(&id, online, at), expect);
                prop_assert_eq!(h3_default.set_status(&id, online, at), expect);
                prop_assert_eq!(loaded.set_status(&id, online, at), expect);
            }
            Op::Within(c, r) => {
                let want = oracle(&model, c, r);
                prop_assert_eq!(&answer(&rtree, c, r, None), &want, "rstar within {:?} {}", c, r);
                prop_assert_eq!(&answer(&h3, c, r, None), &want, "h3 within {:?} {}", c, r);
                prop_assert_eq!(&answer(&h3_default, c, r, None), &want);
                prop_assert_eq!(&answer(&loaded, c, r, None), &want, "loaded within");
            }
            Op::Nearest(c, k, r) => {
                let mut want = oracle(&model, c, r);
                want.truncate(k);
                prop_assert_eq!(&answer(&rtree, c, r, Some(k)), &want, "rstar knn");
                prop_assert_eq!(&answer(&h3, c, r, Some(k)), &want, "h3 knn");
                prop_assert_eq!(&answer(&loaded, c, r, Some(k)), &want, "loaded knn");
            }
        }
        prop_assert_eq!(rtree.len(), model.len());
        prop_assert_eq!(h3.len(), model.len());
        prop_assert_eq!(loaded.len(), model.len());
        // The packed records give back exactly what was put in (coordinates quantised).
        for (id, m) in &model {
            let mut want = m.clone();
            let q = quantize(m.point());
            (want.lat, want.lon) = (q.lat, q.lon);
            prop_assert_eq!(rtree.get(id), Some(want.clone()));
            prop_assert_eq!(h3.get(id), Some(want.clone()));
            prop_assert_eq!(loaded.get(id), Some(want));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn indexes_agree_with_the_haversine_oracle(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }

    /// A bulk-loaded index answers like one built by upserts.
    #[test]
    fn bulk_load_equals_upserts(pts in prop::collection::vec(point(), 0..200), c in point(), r in 0.0f64..5000.0) {
        let cams: Vec<_> = pts.iter().enumerate().map(|(i, p)| camera(i, *p)).collect();
        let (bulk, errs) = RTreeIndex::bulk_load(cams.clone());
        prop_assert!(errs.is_empty());
        let (bulk_h3, _) = H3Index::bulk_load(cams.clone());
        let mut one_by_one = RTreeIndex::new();
        for cam in cams.clone() {
            one_by_one.upsert(cam).unwrap();
        }
        let model: BTreeMap<_, _> = cams.into_iter().map(|c| (c.camera_id.clone(), c)).collect();
        let want = oracle(&model, c, r);
        prop_assert_eq!(&answer(&bulk, c, r, None), &want);
        prop_assert_eq!(&answer(&bulk_h3, c, r, None), &want);
        prop_assert_eq!(&answer(&one_by_one, c, r, None), &want);
    }
}

#[test]
fn whole_earth_and_tiny_radii() {
    let cams: Vec<_> = ANCHORS.iter().enumerate().map(|(i, p)| camera(i, *p)).collect();
    let (rt, _) = RTreeIndex::bulk_load(cams.clone());
    let (h3, _) = H3Index::bulk_load(cams.clone());
    let model: BTreeMap<_, _> = cams.into_iter().map(|c| (c.camera_id.clone(), c)).collect();
    for r in [0.0, 1e-3, 25_000_000.0] {
        for c in ANCHORS {
            let want = oracle(&model, c, r);
            assert_eq!(answer(&rt, c, r, None), want);
            assert_eq!(answer(&h3, c, r, None), want);
        }
    }
    // A camera's own location at radius 0 finds it.
    assert_eq!(answer(&rt, ANCHORS[0], 0.0, None).len(), 1);
}

#[test]
fn invalid_cameras_are_refused_with_a_reason() {
    let mut ix = RTreeIndex::new();
    for (lat, lon) in [(f64::NAN, 0.0), (91.0, 0.0), (0.0, 181.0), (0.0, 0.0)] {
        let err = ix.upsert(camera(1, (lat, lon))).unwrap_err();
        assert!(err.to_string().contains("cam-001"), "{err}");
    }
    let (ix, errs) = RTreeIndex::bulk_load([camera(1, (0.0, 0.0)), camera(2, (36.0, -86.0))]);
    assert_eq!((ix.len(), errs.len()), (1, 1));
    // Ids and owner refs are stored with a one-byte (ASCII) length: longer ones are refused by name, not cut.
    let mut ix = RTreeIndex::new();
    let mut long = camera(3, (36.0, -86.0));
    long.owner_ref = "é".repeat(64);
    let err = ix.upsert(long.clone()).unwrap_err();
    assert_eq!(err.reason(), "too_long", "{err}");
    assert!(err.to_string().contains("owner_ref is 128 bytes (at most 127)"), "{err}");
    long.owner_ref = "o".repeat(127);
    long.camera_id = format!("{}c", "é".repeat(63));
    ix.upsert(long.clone()).unwrap();
    assert_eq!(ix.get(&long.camera_id).map(|c| c.owner_ref), Some(long.owner_ref));
}

#[test]
fn moving_a_camera_moves_it_in_the_index() {
    let mut ix = H3Index::new();
    ix.upsert(camera(1, (36.16, -86.78))).unwrap();
    ix.upsert(camera(1, (40.0, -80.0))).unwrap();
    assert_eq!(ix.len(), 1);
    assert!(ix.within(LatLon::new(36.16, -86.78), 1000.0).is_empty());
    assert_eq!(ix.within(LatLon::new(40.0, -80.0), 1.0).len(), 1);
}
