//! Spatial backends. Each proposes a superset of the slots within a radius; `CameraIndex` filters exactly.

use crate::{QPoint, Slot, SpatialBackend};
use h3o::{CellIndex, LatLng, Resolution};
use rstar::primitives::GeomWithData;
use rstar::{RStarInsertionStrategy, RTree, RTreeParams, AABB};
use std::collections::HashMap;
use std::f64::consts::PI;
use trigger_core::geodesy::EARTH_RADIUS_M;
use trigger_core::LatLon;

/// Longitude/latitude boxes (degrees, inclusive) that together cover every point within `radius_m` of
/// `center` on the sphere (Matuschek's bounding coordinates), split at the antimeridian, all longitudes
/// when the cap reaches a pole. Widened by a small margin for rounding.
pub(crate) fn bounding_boxes(center: LatLon, radius_m: f64) -> Vec<[f64; 4]> {
    const MARGIN_DEG: f64 = 1e-6;
    let r = radius_m / EARTH_RADIUS_M;
    if r >= PI {
        return vec![[-180.0, -90.0, 180.0, 90.0]];
    }
    let lat = center.lat.to_radians();
    let (lat_min, lat_max) = (lat - r, lat + r);
    let deg = |x: f64| x.to_degrees();
    if lat_min <= -PI / 2.0 || lat_max >= PI / 2.0 {
        return vec![[
            -180.0,
            deg(lat_min.max(-PI / 2.0)) - MARGIN_DEG,
            180.0,
            deg(lat_max.min(PI / 2.0)) + MARGIN_DEG,
        ]];
    }
    let s = r.sin() / lat.cos();
    if s >= 1.0 {
        return vec![[-180.0, deg(lat_min) - MARGIN_DEG, 180.0, deg(lat_max) + MARGIN_DEG]];
    }
    let dlon = deg(s.asin()) + MARGIN_DEG;
    let (lo, hi) = (deg(lat_min) - MARGIN_DEG, deg(lat_max) + MARGIN_DEG);
    let (lon_min, lon_max) = (center.lon - dlon, center.lon + dlon);
    match (lon_min < -180.0, lon_max > 180.0) {
        (false, false) => vec![[lon_min, lo, lon_max, hi]],
        (true, _) => vec![[lon_min + 360.0, lo, 180.0, hi], [-180.0, lo, lon_max, hi]],
        (_, true) => vec![[lon_min, lo, 180.0, hi], [-180.0, lo, lon_max - 360.0, hi]],
    }
}

/// R-tree node fan-out: larger than rstar's default (6) to spend fewer bytes on inner nodes per camera.
pub(crate) struct Params;
impl RTreeParams for Params {
    const MIN_SIZE: usize = 5;
    const MAX_SIZE: usize = 12;
    const REINSERTION_COUNT: usize = 3;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// A leaf: [lon, lat] as f32 for the tree's geometry, with the slot and the exact quantised point.
///
/// rstar's insertion and bulk-load heuristics square and add coordinates (areas, margins, centres), which
/// overflows i32 at 1e-7 degree resolution; f32 never overflows. Rounding to f32 is monotonic, so a point
/// inside a query box (in degrees) is inside the f32-rounded box too: the tree still never misses a
/// candidate, and the exact filter uses the `QPoint` carried beside it. The leaf (20 bytes) is smaller than
/// an inner node (a Vec and an AABB), so carrying the point costs no memory per camera.
type Item = GeomWithData<[f32; 2], (Slot, QPoint)>;

fn leaf(slot: Slot, q: QPoint) -> Item {
    let p = q.to_latlon();
    GeomWithData::new([p.lon as f32, p.lat as f32], (slot, q))
}

/// rstar R-tree over quantised [lon, lat].
pub struct RTreeBackend {
    tree: RTree<Item, Params>,
}

impl std::fmt::Debug for RTreeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RTreeBackend").field("points", &self.tree.size()).finish()
    }
}

impl SpatialBackend for RTreeBackend {
    const NAME: &'static str = "rstar";

    fn bulk_load(items: Vec<(Slot, QPoint)>) -> Self {
        let items = items.into_iter().map(|(s, q)| leaf(s, q)).collect();
        Self { tree: RTree::bulk_load_with_params(items) }
    }

    fn insert(&mut self, slot: Slot, p: QPoint) {
        self.tree.insert(leaf(slot, p));
    }

    fn remove(&mut self, slot: Slot, p: QPoint) -> bool {
        self.tree.remove(&leaf(slot, p)).is_some()
    }

    fn candidates(&self, center: LatLon, radius_m: f64, out: &mut Vec<(Slot, QPoint)>) {
        for [x0, y0, x1, y1] in bounding_boxes(center, radius_m) {
            let env = AABB::from_corners([x0 as f32, y0 as f32], [x1 as f32, y1 as f32]);
            out.extend(self.tree.locate_in_envelope(env).map(|i| i.data));
        }
    }
}

/// h3o cell map: cameras bucketed by their H3 cell at a fixed resolution.
pub struct H3Backend {
    res: Resolution,
    /// Conservative lower bound of the distance between neighbouring cell centres at `res`, metres.
    step_m: f64,
    cells: HashMap<CellIndex, Vec<(QPoint, Slot)>>,
    /// Above this many cells in the disk, scan the occupied cells instead of walking the disk
    /// (None: when the disk has more cells than are occupied).
    scan_threshold: Option<usize>,
}

impl std::fmt::Debug for H3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Backend").field("res", &self.res).field("step_m", &self.step_m).finish_non_exhaustive()
    }
}

impl H3Backend {
    pub const DEFAULT_RESOLUTION: Resolution = Resolution::Nine;

    pub fn with_resolution(res: Resolution) -> Self {
        // Neighbouring centres are ~sqrt(3) x edge apart; edges vary ~2x across the globe, so 0.75 x the
        // average edge is a safe lower bound on the centre spacing.
        Self { res, step_m: 0.75 * res.edge_length_m(), cells: HashMap::new(), scan_threshold: None }
    }

    /// Disk walks of more than `n` cells scan the occupied cells instead (default: when the disk is larger
    /// than the number of occupied cells). Tests set `usize::MAX` to exercise the disk walk.
    pub fn set_scan_threshold(&mut self, n: usize) {
        self.scan_threshold = Some(n);
    }

    fn cell(&self, p: QPoint) -> CellIndex {
        let ll = p.to_latlon();
        LatLng::new(ll.lat, ll.lon).expect("checked coordinates").to_cell(self.res)
    }

    /// Grid distance that covers a circle of `radius_m` around any point of the centre cell.
    pub fn disk_k(&self, radius_m: f64) -> u32 {
        ((radius_m / self.step_m).ceil() as u32).saturating_add(1)
    }
}

impl Default for H3Backend {
    fn default() -> Self {
        Self::with_resolution(Self::DEFAULT_RESOLUTION)
    }
}

impl SpatialBackend for H3Backend {
    const NAME: &'static str = "h3o";

    fn bulk_load(items: Vec<(Slot, QPoint)>) -> Self {
        let mut b = Self::default();
        for (s, q) in items {
            b.insert(s, q);
        }
        b
    }

    fn insert(&mut self, slot: Slot, p: QPoint) {
        let c = self.cell(p);
        self.cells.entry(c).or_default().push((p, slot));
    }

    fn remove(&mut self, slot: Slot, p: QPoint) -> bool {
        let c = self.cell(p);
        let Some(v) = self.cells.get_mut(&c) else { return false };
        let Some(i) = v.iter().position(|e| e.1 == slot) else { return false };
        v.swap_remove(i);
        if v.is_empty() {
            self.cells.remove(&c);
        }
        true
    }

    fn candidates(&self, center: LatLon, radius_m: f64, out: &mut Vec<(Slot, QPoint)>) {
        let k = self.disk_k(radius_m);
        let disk_cells = 3 * (k as u64) * (k as u64 + 1) + 1;
        let limit = self.scan_threshold.unwrap_or(self.cells.len().max(1)) as u64;
        let Ok(ll) = LatLng::new(center.lat, center.lon) else { return };
        if disk_cells > limit || k > 2000 {
            out.extend(self.cells.values().flatten().map(|e| (e.1, e.0)));
            return;
        }
        for c in ll.to_cell(self.res).grid_disk::<Vec<_>>(k) {
            if let Some(v) = self.cells.get(&c) {
                out.extend(v.iter().map(|e| (e.1, e.0)));
            }
        }
    }
}

/// Every camera is a candidate. The reference implementation and the benches' baseline.
#[derive(Debug, Default)]
pub struct BruteForce {
    items: Vec<(Slot, QPoint)>,
    pos: HashMap<Slot, usize>,
}

impl SpatialBackend for BruteForce {
    const NAME: &'static str = "brute-force";

    fn bulk_load(items: Vec<(Slot, QPoint)>) -> Self {
        let mut b = Self::default();
        for (s, q) in items {
            b.insert(s, q);
        }
        b
    }
    fn insert(&mut self, slot: Slot, p: QPoint) {
        self.pos.insert(slot, self.items.len());
        self.items.push((slot, p));
    }
    fn remove(&mut self, slot: Slot, _: QPoint) -> bool {
        let Some(i) = self.pos.remove(&slot) else { return false };
        self.items.swap_remove(i);
        if let Some(&(moved, _)) = self.items.get(i) {
            self.pos.insert(moved, i);
        }
        true
    }
    fn candidates(&self, _: LatLon, _: f64, out: &mut Vec<(Slot, QPoint)>) {
        out.extend_from_slice(&self.items);
    }
}
