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

/// [`distance_m`] from one origin to many points: the same arithmetic as geo's Haversine, operation for
/// operation (so the same bits), with the origin's cosine computed once; and a cheap test that rules out
/// points that are surely beyond a radius before any trigonometry.
#[derive(Debug, Clone, Copy)]
pub struct DistanceFrom {
    origin: LatLon,
    cos_lat: f64,
    /// Metres per degree of longitude at the origin (the equirectangular pre-test).
    m_per_deg_lon: f64,
}

/// The pre-test is used up to this radius and this |latitude|: there the equirectangular distance is within
/// 0.2% of the great-circle one (the cosine of the latitude changes by at most tan(70°) x 5 km / R / 2).
const QUICK_MAX_RADIUS_M: f64 = 5_000.0;
const QUICK_MAX_LAT: f64 = 70.0;

impl DistanceFrom {
    pub fn new(origin: LatLon) -> Self {
        let cos_lat = origin.lat.to_radians().cos();
        let m_per_deg = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        Self { origin, cos_lat, m_per_deg_lon: m_per_deg * cos_lat }
    }

    /// `distance_m(origin, p)`, bit for bit.
    #[inline]
    pub fn to(&self, p: LatLon) -> f64 {
        // geo::HaversineMeasure::distance, with theta1.cos() hoisted.
        let two = 1.0_f64 + 1.0;
        let theta2 = p.lat.to_radians();
        let delta_theta = (p.lat - self.origin.lat).to_radians();
        let delta_lambda = (p.lon - self.origin.lon).to_radians();
        let a = (delta_theta / two).sin().powi(2) + self.cos_lat * theta2.cos() * (delta_lambda / two).sin().powi(2);
        let c = two * a.sqrt().asin();
        EARTH_RADIUS_M * c
    }

    /// True only when `p` is surely farther than `radius_m` (the equirectangular distance exceeds it by more
    /// than 1% + 1 m, five times the approximation's worst error); false means "compute it".
    #[inline]
    pub fn surely_beyond(&self, p: LatLon, radius_m: f64) -> bool {
        if radius_m > QUICK_MAX_RADIUS_M || self.origin.lat.abs() > QUICK_MAX_LAT {
            return false;
        }
        let mut dlon = p.lon - self.origin.lon;
        if dlon > 180.0 {
            dlon -= 360.0;
        } else if dlon < -180.0 {
            dlon += 360.0;
        }
        let dy = (p.lat - self.origin.lat) * (EARTH_RADIUS_M * std::f64::consts::PI / 180.0);
        let dx = dlon * self.m_per_deg_lon;
        let bound = radius_m * 1.01 + 1.0;
        dx * dx + dy * dy > bound * bound
    }
}

/// The H3 cell containing `p` at `res`, as its canonical hex string. Used for coarse areas only.
pub fn h3_cell(p: LatLon, res: h3o::Resolution) -> Option<String> {
    h3o::LatLng::new(p.lat, p.lon).ok().map(|ll| ll.to_cell(res).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn distance_from_is_distance_m_bit_for_bit(
            lat1 in -90.0f64..90.0, lon1 in -180.0f64..180.0, lat2 in -90.0f64..90.0, lon2 in -180.0f64..180.0,
            near in any::<bool>(), dlat in -0.05f64..0.05, dlon in -0.05f64..0.05,
        ) {
            let a = LatLon::new(lat1, lon1);
            let b = if near { LatLon::new((lat1 + dlat).clamp(-90.0, 90.0), lon1 + dlon) } else { LatLon::new(lat2, lon2) };
            prop_assert_eq!(DistanceFrom::new(a).to(b).to_bits(), distance_m(a, b).to_bits());
        }

        #[test]
        fn the_pre_test_never_rules_out_a_point_within_the_radius(
            lat in -70.0f64..70.0, lon in -180.0f64..180.0, r in 0.0f64..5000.0,
            dlat in -0.06f64..0.06, dlon in -0.2f64..0.2,
        ) {
            let a = LatLon::new(lat, lon);
            let mut plon = lon + dlon;
            if plon > 180.0 { plon -= 360.0 } else if plon < -180.0 { plon += 360.0 }
            let b = LatLon::new((lat + dlat).clamp(-90.0, 90.0), plon);
            if distance_m(a, b) <= r {
                prop_assert!(!DistanceFrom::new(a).surely_beyond(b, r), "{a:?} {b:?} within {r} m");
            }
        }
    }
}
