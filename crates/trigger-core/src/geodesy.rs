//! Distances and coarse areas. One distance function for the whole system: geo's Haversine on the mean
//! Earth radius, so the index, the engine and the test oracle agree to the last bit.

use crate::types::LatLon;
use geo::{Distance, Haversine, Point};

/// Mean Earth radius used by `geo::Haversine` (IUGG R1), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres.
#[inline]
pub fn distance_m(a: LatLon, b: LatLon) -> f64 {
    Haversine.distance(Point::new(a.lon, a.lat), Point::new(b.lon, b.lat))
}

/// The H3 cell containing `p` at `res`, as its canonical hex string. Used for coarse areas only.
pub fn h3_cell(p: LatLon, res: h3o::Resolution) -> Option<String> {
    h3o::LatLng::new(p.lat, p.lon).ok().map(|ll| ll.to_cell(res).to_string())
}
