//! trigger-index: the in-memory camera index.
//!
//! One API, [`CameraIndex`], over interchangeable spatial backends:
//! - [`RTreeBackend`]: an rstar R-tree of grid buckets (the cameras of one 0.004° cell each); a radius query
//!   becomes one or two bounding boxes on the sphere (split at the antimeridian, widened to all longitudes
//!   near a pole).
//! - [`H3Backend`]: an h3o cell map; a radius query becomes a grid disk of cells sized to cover the circle.
//! - [`BruteForce`]: every camera is a candidate (the reference, and the benches' baseline).
//!
//! A backend only proposes candidates (a superset). `CameraIndex` filters them with the one distance
//! function of the system (`trigger_core::geodesy::distance_m`, geo's Haversine, here through
//! `DistanceFrom`: the same bits, the origin's cosine once, a cheap pre-test first) and sorts by
//! (distance, camera_id), so every backend gives the same answer, bit for bit.
//!
//! Locations are stored quantised to 1e-7 degree (at most 1.1 cm): 8 bytes a point. `get()` returns the
//! record with its quantised coordinates, so what the index answers is what it says it holds.
//!
//! Records are stored packed (`store.rs`: fixed-size columns by slot, ids and owner refs in one arena,
//! consents interned) and rebuilt for the cameras a query returns: about 60 bytes a camera in all at 10M
//! cameras (BENCHMARKS.md), where owned `CameraRecord`s cost over 300.

mod backends;
mod store;

pub use backends::{BruteForce, H3Backend, RTreeBackend};

use backends::bounding_boxes;
use std::borrow::Cow;
use store::Store;
use trigger_core::geodesy::DistanceFrom;
use trigger_core::{CameraRecord, CameraRef, CameraSource, Candidate, Consent, LatLon};

/// Dense handle of a camera inside the index.
pub type Slot = u32;

/// A location in 1e-7 degree units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QPoint {
    pub lat: i32,
    pub lon: i32,
}

const Q: f64 = 1e7;

impl QPoint {
    pub fn from_latlon(p: LatLon) -> Self {
        Self { lat: (p.lat * Q).round() as i32, lon: (p.lon * Q).round() as i32 }
    }
    pub fn to_latlon(self) -> LatLon {
        LatLon::new(self.lat as f64 / Q, self.lon as f64 / Q)
    }
}

/// Round a location the way the index stores it.
pub fn quantize(p: LatLon) -> LatLon {
    QPoint::from_latlon(p).to_latlon()
}

/// What a spatial structure must do: keep slots by point and propose candidates. `candidates` may propose
/// extra slots, never miss one; it gets the query and its bounding boxes (`bounding_boxes`), and uses either.
pub trait SpatialBackend: Send {
    const NAME: &'static str;
    fn bulk_load(items: Vec<(Slot, QPoint)>) -> Self;
    fn insert(&mut self, slot: Slot, p: QPoint);
    fn remove(&mut self, slot: Slot, p: QPoint) -> bool;
    fn candidates(&self, center: LatLon, radius_m: f64, boxes: &[[f64; 4]], out: &mut impl FnMut(Slot, QPoint));
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error("camera {camera_id:?}: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidCamera { camera_id: String, problems: Vec<trigger_core::CameraProblem> },
}

impl IndexError {
    /// The named reason of the first problem (dead-letter headers, metrics labels).
    pub fn reason(&self) -> &'static str {
        match self {
            IndexError::InvalidCamera { problems, .. } => problems.first().map_or("invalid_camera", |p| p.reason()),
        }
    }
}

/// The camera registry in memory: packed records by slot ([`store`](self)), located by a spatial backend.
pub struct CameraIndex<B> {
    backend: B,
    store: Store,
    /// Between `start_loading` and `finish_loading`: changes reach the records only.
    loading: bool,
}

impl<B> std::fmt::Debug for CameraIndex<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraIndex")
            .field("cameras", &self.store.len())
            .field("backend", &std::any::type_name::<B>())
            .finish()
    }
}

pub type RTreeIndex = CameraIndex<RTreeBackend>;
pub type H3Index = CameraIndex<H3Backend>;
pub type BruteForceIndex = CameraIndex<BruteForce>;

/// The one validation of every camera entry (`trigger_core::camera`): what fails is never indexed.
fn check(rec: &CameraRef<'_>) -> Result<(), IndexError> {
    let problems = trigger_core::camera_ref_problems(rec);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(IndexError::InvalidCamera { camera_id: rec.camera_id.to_string(), problems })
    }
}

/// What a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Applied,
    /// Older than the camera's record or last status: ignored.
    Stale,
    /// No such camera in the registry (not yet, or no longer): ignored.
    UnknownCamera,
}

/// A hit of a query: a slot and its great-circle distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub slot: Slot,
    pub distance_m: f64,
}

impl<B: SpatialBackend> CameraIndex<B> {
    /// Load many cameras at once (faster than upserts for a fresh index). Later duplicates of an id win.
    /// Invalid records are returned, not loaded.
    pub fn bulk_load(records: impl IntoIterator<Item = CameraRecord>) -> (Self, Vec<IndexError>) {
        let mut errors = Vec::new();
        let mut store = Store::new();
        for record in records {
            let r = record.view();
            if let Err(e) = check(&r) {
                errors.push(e);
                continue;
            }
            store.upsert(&r, QPoint::from_latlon(r.point()));
        }
        let mut index = Self { backend: B::bulk_load(Vec::new()), store, loading: true };
        index.finish_loading();
        (index, errors)
    }

    /// Start a bulk load into this index (a registry read from its beginning at start-up): upserts and
    /// removals change the records only, and the spatial structure is built once by [`finish_loading`]
    /// (faster than an insertion per camera, and the slots renumbered in space order). No query may run
    /// in between.
    ///
    /// [`finish_loading`]: Self::finish_loading
    pub fn start_loading(&mut self) {
        self.loading = true;
    }

    /// Make room for `cameras` cameras in all before a bulk load of about that many (the records of a
    /// registry topic). Answers are the same without it; loading is faster with it.
    pub fn reserve(&mut self, cameras: usize) {
        self.store.reserve(cameras);
    }

    /// Build the spatial structure over every camera (see [`start_loading`](Self::start_loading)).
    pub fn finish_loading(&mut self) {
        if !std::mem::take(&mut self.loading) {
            return;
        }
        let mut backend = None;
        self.store.cluster(backends::cluster_key, |points| {
            backend = Some(B::bulk_load(points.iter().enumerate().map(|(s, &q)| (s as Slot, q)).collect()));
        });
        self.backend = backend.expect("the spatial structure, built beside the arena");
    }

    pub fn new() -> Self {
        Self::bulk_load(std::iter::empty()).0
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn backend_name(&self) -> &'static str {
        B::NAME
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Insert or replace a camera (location, consent, anything). Takes effect for the next query.
    pub fn upsert(&mut self, record: CameraRecord) -> Result<(), IndexError> {
        self.upsert_ref(record.view())
    }

    /// [`upsert`](Self::upsert) of a borrowed record (the index keeps its own copy of the strings).
    pub fn upsert_ref(&mut self, record: CameraRef<'_>) -> Result<(), IndexError> {
        check(&record)?;
        let q = QPoint::from_latlon(record.point());
        match self.store.upsert(&record, q) {
            _ if self.loading => {}
            (slot, None) => self.backend.insert(slot, q),
            (slot, Some(before)) if before != q => {
                self.backend.remove(slot, before);
                self.backend.insert(slot, q);
            }
            _ => {}
        }
        Ok(())
    }

    /// Remove a camera (registry tombstone: removed or opted out). Returns the record it held.
    pub fn remove(&mut self, camera_id: &str) -> Option<CameraRecord> {
        let (slot, q, record) = self.store.remove(camera_id)?;
        if !self.loading {
            self.backend.remove(slot, q);
        }
        Some(record)
    }

    /// Change what an owner consents to, without touching the spatial structure.
    pub fn set_consent(&mut self, camera_id: &str, consent: Consent) -> bool {
        self.store.slot_of(camera_id).map(|s| self.store.set_consent(s, &consent)).is_some()
    }

    pub fn set_online(&mut self, camera_id: &str, online: bool) -> bool {
        self.store.slot_of(camera_id).map(|s| self.store.set_online(s, online)).is_some()
    }

    /// A heartbeat (the status topic): online or not, as of `at`. Touches one bit and one timestamp, and only
    /// if `at` is not older than what the camera's record or last status said.
    pub fn set_status(&mut self, camera_id: &str, online: bool, at: trigger_core::Millis) -> StatusChange {
        let Some(s) = self.store.slot_of(camera_id) else { return StatusChange::UnknownCamera };
        if at < self.store.updated(s) {
            return StatusChange::Stale;
        }
        self.store.set_online(s, online);
        self.store.set_updated(s, at);
        StatusChange::Applied
    }

    pub fn get(&self, camera_id: &str) -> Option<CameraRecord> {
        self.store.slot_of(camera_id).map(|s| self.store.record(s))
    }

    /// The camera id of a slot a query returned.
    pub fn id(&self, slot: Slot) -> &str {
        self.store.id(slot)
    }

    /// Slots within `radius_m` of `center`, nearest first, ties by camera_id, into `out` (cleared first).
    /// No allocation once `out` has grown to a query's size.
    pub fn within_slots(&self, center: LatLon, radius_m: f64, out: &mut Vec<Hit>) {
        assert!(!self.loading, "a query while the index is loading (finish_loading first)");
        out.clear();
        let boxes = bounding_boxes(center, radius_m);
        let from = DistanceFrom::new(center);
        self.backend.candidates(center, radius_m, boxes.as_slice(), &mut |slot, q| {
            let p = q.to_latlon();
            if from.surely_beyond(p, radius_m) {
                return;
            }
            let d = from.to(p);
            if d <= radius_m {
                out.push(Hit { slot, distance_m: d });
            }
        });
        // By distance, then each run of equal distances (a household's cameras share a point) by camera_id: the
        // ids, read from the arena, are compared once per tie rather than at every comparison the sort makes.
        // (A distance is never negative: its bits order as its value does.)
        out.sort_unstable_by_key(|h| h.distance_m.to_bits());
        for tied in out.chunk_by_mut(|a, b| a.distance_m.to_bits() == b.distance_m.to_bits()) {
            if tied.len() > 1 {
                tied.sort_unstable_by(|a, b| self.store.id(a.slot).cmp(self.store.id(b.slot)));
            }
        }
    }

    /// Cameras within `radius_m` of `center`, nearest first, ties by camera_id.
    pub fn within(&self, center: LatLon, radius_m: f64) -> Vec<Candidate<'_>> {
        self.nearest(center, usize::MAX, radius_m)
    }

    /// The `k` nearest cameras within `max_radius_m`, nearest first.
    pub fn nearest(&self, center: LatLon, k: usize, max_radius_m: f64) -> Vec<Candidate<'_>> {
        let mut hits = Vec::new();
        self.within_slots(center, max_radius_m, &mut hits);
        hits.truncate(k);
        hits.into_iter()
            .map(|h| Candidate { camera: Cow::Owned(self.store.record(h.slot)), distance_m: h.distance_m })
            .collect()
    }

    /// Every camera, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = CameraRecord> + '_ {
        self.store.live().map(|s| self.store.record(s))
    }
}

impl<B: SpatialBackend> Default for CameraIndex<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: SpatialBackend> CameraSource for CameraIndex<B> {
    fn within(&self, center: LatLon, radius_m: f64) -> Vec<Candidate<'_>> {
        CameraIndex::within(self, center, radius_m)
    }
    fn get(&self, camera_id: &str) -> Option<Cow<'_, CameraRecord>> {
        CameraIndex::get(self, camera_id).map(Cow::Owned)
    }
}
