//! Spatial backends. Each proposes a superset of the slots within a radius; `CameraIndex` filters exactly.
//! Each keeps a slot's point beside it, so filtering candidates reads the structure's own memory.

use crate::{QPoint, Slot, SpatialBackend};
use h3o::{CellIndex, LatLng, Resolution};
use rstar::{RStarInsertionStrategy, RTree, RTreeObject, RTreeParams, AABB};
use std::collections::HashMap;
use std::f64::consts::PI;
use std::ops::ControlFlow;
use trigger_core::geodesy::EARTH_RADIUS_M;
use trigger_core::LatLon;

/// Longitude/latitude boxes (degrees, inclusive) that together cover every point within `radius_m` of
/// `center` on the sphere (Matuschek's bounding coordinates), split at the antimeridian, all longitudes
/// when the cap reaches a pole. Widened by a small margin for rounding.
pub(crate) fn bounding_boxes(center: LatLon, radius_m: f64) -> Boxes {
    const MARGIN_DEG: f64 = 1e-6;
    let r = radius_m / EARTH_RADIUS_M;
    if r >= PI {
        return Boxes::one([-180.0, -90.0, 180.0, 90.0]);
    }
    let lat = center.lat.to_radians();
    let (lat_min, lat_max) = (lat - r, lat + r);
    let deg = |x: f64| x.to_degrees();
    if lat_min <= -PI / 2.0 || lat_max >= PI / 2.0 {
        return Boxes::one([
            -180.0,
            deg(lat_min.max(-PI / 2.0)) - MARGIN_DEG,
            180.0,
            deg(lat_max.min(PI / 2.0)) + MARGIN_DEG,
        ]);
    }
    let s = r.sin() / lat.cos();
    if s >= 1.0 {
        return Boxes::one([-180.0, deg(lat_min) - MARGIN_DEG, 180.0, deg(lat_max) + MARGIN_DEG]);
    }
    let dlon = deg(s.asin()) + MARGIN_DEG;
    let (lo, hi) = (deg(lat_min) - MARGIN_DEG, deg(lat_max) + MARGIN_DEG);
    let (lon_min, lon_max) = (center.lon - dlon, center.lon + dlon);
    match (lon_min < -180.0, lon_max > 180.0) {
        (false, false) => Boxes::one([lon_min, lo, lon_max, hi]),
        (true, _) => Boxes { b: [[lon_min + 360.0, lo, 180.0, hi], [-180.0, lo, lon_max, hi]], n: 2 },
        (_, true) => Boxes { b: [[lon_min, lo, 180.0, hi], [-180.0, lo, lon_max - 360.0, hi]], n: 2 },
    }
}

/// One or two boxes (two across the antimeridian), without an allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Boxes {
    b: [[f64; 4]; 2],
    n: usize,
}

impl Boxes {
    fn one(b: [f64; 4]) -> Self {
        Self { b: [b, b], n: 1 }
    }

    pub(crate) fn as_slice(&self) -> &[[f64; 4]] {
        &self.b[..self.n]
    }
}

/// R-tree node fan-out.
pub(crate) struct Params;
impl RTreeParams for Params {
    const MIN_SIZE: usize = 5;
    const MAX_SIZE: usize = 12;
    const REINSERTION_COUNT: usize = 3;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// Side of a bucket's cell, in 1e-7 degree: 0.004° (445 m north-south, ~355 m east-west in the US). At city
/// density (~100 cameras/km²) a bucket holds ~16 cameras and a 250 m query touches ~4-6 buckets. At most
/// 65,535, so a point is stored as two u16 offsets from its cell's corner.
const CELL: i64 = 40_000;

/// Queries whose boxes span at most this many grid cells look the cells up directly; wider ones walk the tree.
const DIRECT_CELLS: i64 = 64;

fn cell_of(p: QPoint) -> (i32, i32) {
    ((p.lon as i64).div_euclid(CELL) as i32, (p.lat as i64).div_euclid(CELL) as i32)
}

/// Row-major order of the bucket grid: cameras near each other get nearby slots when the index is bulk
/// loaded, so a query's records sit close together in memory.
pub(crate) fn cluster_key(p: QPoint) -> u64 {
    let (cx, cy) = cell_of(p);
    ((cy as u32 as u64) << 32) | cx as u32 as u64
}

fn cell_envelope(cx: i32, cy: i32) -> AABB<[f32; 2]> {
    let deg = |c: i32| (c as i64 * CELL) as f64 / 1e7;
    AABB::from_corners([deg(cx) as f32, deg(cy) as f32], [deg(cx + 1) as f32, deg(cy + 1) as f32])
}

/// A leaf of the tree: an occupied cell of the grid (its bucket is the map's entry for it).
///
/// The envelope is the cell's, rounded to f32: rounding is monotonic, so a point inside a query box is inside
/// the rounded box and its cell's rounded envelope intersects it (the tree never misses a candidate). f32
/// because rstar's heuristics square and add coordinates, which would overflow i32 at 1e-7 degree resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    cx: i32,
    cy: i32,
}

impl RTreeObject for Cell {
    type Envelope = AABB<[f32; 2]>;
    fn envelope(&self) -> Self::Envelope {
        cell_envelope(self.cx, self.cy)
    }
}

/// The cameras of one cell, each with its point as offsets from the cell's corner (8 bytes a camera: the
/// exact point, and filtering candidates reads the bucket's own memory instead of one cache miss per
/// candidate in the index's point column).
type Bucket = Vec<(Slot, u16, u16)>;

fn entry(slot: Slot, q: QPoint) -> (Slot, u16, u16) {
    let (cx, cy) = cell_of(q);
    let off = |v: i32, c: i32| u16::try_from(v as i64 - c as i64 * CELL).expect("inside its cell");
    (slot, off(q.lon, cx), off(q.lat, cy))
}

fn point(cx: i32, cy: i32, dx: u16, dy: u16) -> QPoint {
    QPoint { lon: (cx as i64 * CELL + dx as i64) as i32, lat: (cy as i64 * CELL + dy as i64) as i32 }
}

/// A query box in 1e-7 degree units (inclusive, widened outwards).
fn quantised([x0, y0, x1, y1]: [f64; 4]) -> [i64; 4] {
    let q = |d: f64, up: bool| (if up { (d * 1e7).ceil() } else { (d * 1e7).floor() }) as i64;
    [q(x0, false), q(y0, false), q(x1, true), q(y1, true)]
}

/// Cameras in buckets of a fixed lon/lat grid, found two ways: a small query (a few cells: every radius a
/// decision uses) looks its cells up in a hash map; a wide one walks an rstar R-tree of the occupied cells,
/// so its cost follows the cameras, not the area.
///
/// An R-tree with one leaf per camera spends a node entry (40 bytes in rstar) on every camera; here the tree
/// and the map spend theirs per occupied cell (the map holds the bucket itself: a lookup finds the cameras
/// without a second indirection), and a camera costs its 8-byte entry.
pub struct RTreeBackend {
    tree: RTree<Cell, Params>,
    cells: hashbrown::HashMap<(i32, i32), Bucket>,
}

impl std::fmt::Debug for RTreeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RTreeBackend").field("cells", &self.cells.len()).finish()
    }
}

/// The cameras of one cell within `box_` (1e-7 degree, inclusive): the box as offsets from the cell's corner,
/// compared with each entry's own (a cell the box misses gives an empty range).
fn scan_bucket(box_: [i64; 4], (cx, cy): (i32, i32), bucket: &[(Slot, u16, u16)], out: &mut impl FnMut(Slot, QPoint)) {
    let [x0, y0, x1, y1] = box_;
    let (ox, oy) = (cx as i64 * CELL, cy as i64 * CELL);
    let range = |lo: i64, hi: i64| (lo.max(0), hi.min(CELL - 1));
    let ((ax, bx), (ay, by)) = (range(x0 - ox, x1 - ox), range(y0 - oy, y1 - oy));
    if ax > bx || ay > by {
        return;
    }
    let (ax, bx, ay, by) = (ax as u16, bx as u16, ay as u16, by as u16);
    for &(s, dx, dy) in bucket {
        if dx >= ax && dx <= bx && dy >= ay && dy <= by {
            out(s, point(cx, cy, dx, dy));
        }
    }
}

impl RTreeBackend {
    /// Every camera of `box_` (1e-7 degree, inclusive), and perhaps a few more: the box's cells are looked up
    /// (a few: directly in the map; many: through the tree).
    fn scan(&self, box_: [i64; 4], out: &mut impl FnMut(Slot, QPoint)) {
        let [x0, y0, x1, y1] = box_;
        let (cx0, cy0, cx1, cy1) = (x0.div_euclid(CELL), y0.div_euclid(CELL), x1.div_euclid(CELL), y1.div_euclid(CELL));
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > DIRECT_CELLS {
            let deg = |v: i64| (v as f64 / 1e7) as f32;
            let env = AABB::from_corners([deg(x0), deg(y0)], [deg(x1), deg(y1)]);
            let _ = self.tree.locate_in_envelope_intersecting_int(env, |c| {
                scan_bucket(box_, (c.cx, c.cy), &self.cells[&(c.cx, c.cy)], out);
                ControlFlow::<()>::Continue(())
            });
            return;
        }
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                let cell = (cx as i32, cy as i32);
                if let Some(b) = self.cells.get(&cell) {
                    scan_bucket(box_, cell, b, out);
                }
            }
        }
    }
}

impl SpatialBackend for RTreeBackend {
    const NAME: &'static str = "rstar";

    fn bulk_load(mut items: Vec<(Slot, QPoint)>) -> Self {
        // In the store's cluster order (what `finish_loading` passes in is already sorted so: a linear check).
        items.sort_unstable_by_key(|&(s, q)| (cluster_key(q), s));
        let same_cell = |a: &(Slot, QPoint), b: &(Slot, QPoint)| cell_of(a.1) == cell_of(b.1);
        let n = items.chunk_by(same_cell).count();
        let (mut cells, mut leaves) = (hashbrown::HashMap::with_capacity(n), Vec::with_capacity(n));
        for run in items.chunk_by(same_cell) {
            let (cx, cy) = cell_of(run[0].1);
            cells.insert((cx, cy), run.iter().map(|&(s, q)| entry(s, q)).collect::<Bucket>());
            leaves.push(Cell { cx, cy });
        }
        Self { tree: RTree::bulk_load_with_params(leaves), cells }
    }

    fn insert(&mut self, slot: Slot, p: QPoint) {
        let (cx, cy) = cell_of(p);
        match self.cells.entry((cx, cy)) {
            hashbrown::hash_map::Entry::Occupied(mut b) => b.get_mut().push(entry(slot, p)),
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(vec![entry(slot, p)]);
                self.tree.insert(Cell { cx, cy });
            }
        }
    }

    fn remove(&mut self, slot: Slot, p: QPoint) -> bool {
        let (cx, cy) = cell_of(p);
        let Some(v) = self.cells.get_mut(&(cx, cy)) else { return false };
        let Some(i) = v.iter().position(|&(s, ..)| s == slot) else { return false };
        v.swap_remove(i);
        if v.is_empty() {
            self.cells.remove(&(cx, cy));
            self.tree.remove(&Cell { cx, cy });
        } else if v.capacity() > 2 * v.len() + 4 {
            v.shrink_to_fit();
        }
        true
    }

    fn candidates(&self, _: LatLon, _: f64, boxes: &[[f64; 4]], out: &mut impl FnMut(Slot, QPoint)) {
        for &b in boxes {
            self.scan(quantised(b), out);
        }
    }
}

/// h3o cell map: cameras bucketed by their H3 cell at a fixed resolution.
pub struct H3Backend {
    res: Resolution,
    /// Conservative lower bound of the distance between neighbouring cell centres at `res`, metres.
    step_m: f64,
    cells: HashMap<CellIndex, Vec<(Slot, QPoint)>>,
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

    /// Every slot whose cell lies within the grid disk covering `radius_m` around `center`.
    fn disk(&self, center: LatLon, radius_m: f64, out: &mut impl FnMut(Slot, QPoint)) {
        let k = self.disk_k(radius_m);
        let disk_cells = 3 * (k as u64) * (k as u64 + 1) + 1;
        let limit = self.scan_threshold.unwrap_or(self.cells.len().max(1)) as u64;
        let Ok(ll) = LatLng::new(center.lat, center.lon) else { return };
        if disk_cells > limit || k > 2000 {
            self.cells.values().flatten().for_each(|&(s, q)| out(s, q));
            return;
        }
        for c in ll.to_cell(self.res).grid_disk::<Vec<_>>(k) {
            if let Some(v) = self.cells.get(&c) {
                v.iter().for_each(|&(s, q)| out(s, q));
            }
        }
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
        self.cells.entry(c).or_default().push((slot, p));
    }

    fn remove(&mut self, slot: Slot, p: QPoint) -> bool {
        let c = self.cell(p);
        let Some(v) = self.cells.get_mut(&c) else { return false };
        let Some(i) = v.iter().position(|&(s, _)| s == slot) else { return false };
        v.swap_remove(i);
        if v.is_empty() {
            self.cells.remove(&c);
        }
        true
    }

    fn candidates(&self, center: LatLon, radius_m: f64, _: &[[f64; 4]], out: &mut impl FnMut(Slot, QPoint)) {
        self.disk(center, radius_m, out)
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
    fn candidates(&self, _: LatLon, _: f64, _: &[[f64; 4]], out: &mut impl FnMut(Slot, QPoint)) {
        self.items.iter().for_each(|&(s, q)| out(s, q));
    }
}
