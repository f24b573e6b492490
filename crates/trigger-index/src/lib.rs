//! trigger-index: the in-memory camera index.
//!
//! One API, [`CameraIndex`], over interchangeable spatial backends:
//! - [`RTreeBackend`]: an rstar R-tree over quantised (lon, lat) points; a radius query becomes one or two
//!   bounding boxes on the sphere (split at the antimeridian, widened to all longitudes near a pole).
//! - [`H3Backend`]: an h3o cell map; a radius query becomes a grid disk of cells sized to cover the circle.
//! - [`BruteForce`]: every camera is a candidate (the reference, and the benches' baseline).
//!
//! A backend only proposes candidates (a superset). `CameraIndex` filters them with the one distance
//! function of the system (`trigger_core::geodesy::distance_m`, geo's Haversine) and sorts by
//! (distance, camera_id), so every backend gives the same answer, bit for bit.
//!
//! Locations are stored quantised to 1e-7 degree (at most 1.1 cm): 8 bytes a point. `get()` returns the
//! record with its quantised coordinates, so what the index answers is what it says it holds.

mod backends;

pub use backends::{BruteForce, H3Backend, RTreeBackend};

use std::collections::HashMap;
use trigger_core::engine::sort_candidates;
use trigger_core::geodesy::distance_m;
use trigger_core::{CameraRecord, CameraSource, Candidate, Consent, LatLon};

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

/// What a spatial structure must do. `candidates` may return extra slots, never miss one.
pub trait SpatialBackend {
    const NAME: &'static str;
    fn bulk_load(items: Vec<(Slot, QPoint)>) -> Self;
    fn insert(&mut self, slot: Slot, p: QPoint);
    fn remove(&mut self, slot: Slot, p: QPoint) -> bool;
    /// Every (slot, point) whose point may lie within `radius_m` of `center`. The point is the one stored for
    /// the slot, so the caller can filter exactly without touching the camera's record.
    fn candidates(&self, center: LatLon, radius_m: f64, out: &mut Vec<(Slot, QPoint)>);
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

struct Entry {
    q: QPoint,
    record: CameraRecord,
}

/// The camera registry in memory: records by id, located by a spatial backend.
pub struct CameraIndex<B> {
    backend: B,
    slots: Vec<Option<Entry>>,
    by_id: HashMap<String, Slot>,
    free: Vec<Slot>,
}

impl<B> std::fmt::Debug for CameraIndex<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.slots.iter().filter(|s| s.is_some()).count();
        f.debug_struct("CameraIndex").field("cameras", &live).field("backend", &std::any::type_name::<B>()).finish()
    }
}

pub type RTreeIndex = CameraIndex<RTreeBackend>;
pub type H3Index = CameraIndex<H3Backend>;
pub type BruteForceIndex = CameraIndex<BruteForce>;

/// The one validation of every camera entry (`trigger_core::camera`): what fails is never indexed.
fn check(rec: &CameraRecord) -> Result<(), IndexError> {
    let problems = trigger_core::camera_problems(rec);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(IndexError::InvalidCamera { camera_id: rec.camera_id.clone(), problems })
    }
}

impl<B: SpatialBackend> CameraIndex<B> {
    /// Load many cameras at once (faster than upserts for a fresh index). Later duplicates of an id win.
    /// Invalid records are returned, not loaded.
    pub fn bulk_load(records: impl IntoIterator<Item = CameraRecord>) -> (Self, Vec<IndexError>) {
        let mut errors = Vec::new();
        let mut slots: Vec<Option<Entry>> = Vec::new();
        let mut by_id: HashMap<String, Slot> = HashMap::new();
        for mut record in records {
            if let Err(e) = check(&record) {
                errors.push(e);
                continue;
            }
            let q = QPoint::from_latlon(record.point());
            (record.lat, record.lon) = (q.to_latlon().lat, q.to_latlon().lon);
            match by_id.get(&record.camera_id) {
                Some(&s) => slots[s as usize] = Some(Entry { q, record }),
                None => {
                    by_id.insert(record.camera_id.clone(), slots.len() as Slot);
                    slots.push(Some(Entry { q, record }));
                }
            }
        }
        let items = slots.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (i as Slot, e.q))).collect();
        let index = Self { backend: B::bulk_load(items), slots, by_id, free: Vec::new() };
        (index, errors)
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
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Insert or replace a camera (location, consent, anything). Takes effect for the next query.
    pub fn upsert(&mut self, mut record: CameraRecord) -> Result<(), IndexError> {
        check(&record)?;
        let q = QPoint::from_latlon(record.point());
        (record.lat, record.lon) = (q.to_latlon().lat, q.to_latlon().lon);
        if let Some(&slot) = self.by_id.get(&record.camera_id) {
            let e = self.slots[slot as usize].as_mut().expect("live slot");
            if e.q != q {
                self.backend.remove(slot, e.q);
                self.backend.insert(slot, q);
            }
            *e = Entry { q, record };
            return Ok(());
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as Slot
        });
        self.backend.insert(slot, q);
        self.by_id.insert(record.camera_id.clone(), slot);
        self.slots[slot as usize] = Some(Entry { q, record });
        Ok(())
    }

    /// Remove a camera (registry tombstone: removed or opted out). Returns the record it held.
    pub fn remove(&mut self, camera_id: &str) -> Option<CameraRecord> {
        let slot = self.by_id.remove(camera_id)?;
        let e = self.slots[slot as usize].take().expect("live slot");
        self.backend.remove(slot, e.q);
        self.free.push(slot);
        Some(e.record)
    }

    /// Change what an owner consents to, without touching the spatial structure.
    pub fn set_consent(&mut self, camera_id: &str, consent: Consent) -> bool {
        self.entry_mut(camera_id).map(|r| r.consent = consent).is_some()
    }

    pub fn set_online(&mut self, camera_id: &str, online: bool) -> bool {
        self.entry_mut(camera_id).map(|r| r.online = online).is_some()
    }

    fn entry_mut(&mut self, camera_id: &str) -> Option<&mut CameraRecord> {
        let slot = *self.by_id.get(camera_id)?;
        self.slots[slot as usize].as_mut().map(|e| &mut e.record)
    }

    pub fn get(&self, camera_id: &str) -> Option<&CameraRecord> {
        let slot = *self.by_id.get(camera_id)?;
        self.slots[slot as usize].as_ref().map(|e| &e.record)
    }

    /// Cameras within `radius_m` of `center`, nearest first, ties by camera_id.
    pub fn within(&self, center: LatLon, radius_m: f64) -> Vec<Candidate<'_>> {
        let mut cands = Vec::new();
        self.backend.candidates(center, radius_m, &mut cands);
        // Filter on the backend's copy of the point first: records are only touched for hits.
        let mut out: Vec<Candidate<'_>> = cands
            .into_iter()
            .map(|(s, q)| (s, distance_m(center, q.to_latlon())))
            .filter(|(_, d)| *d <= radius_m)
            .filter_map(|(s, d)| {
                Some(Candidate { camera: &self.slots.get(s as usize)?.as_ref()?.record, distance_m: d })
            })
            .collect();
        sort_candidates(&mut out);
        out
    }

    /// The `k` nearest cameras within `max_radius_m`, nearest first.
    pub fn nearest(&self, center: LatLon, k: usize, max_radius_m: f64) -> Vec<Candidate<'_>> {
        let mut v = self.within(center, max_radius_m);
        v.truncate(k);
        v
    }

    /// Every camera, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &CameraRecord> {
        self.slots.iter().filter_map(|e| e.as_ref().map(|e| &e.record))
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
    fn get(&self, camera_id: &str) -> Option<&CameraRecord> {
        CameraIndex::get(self, camera_id)
    }
}
