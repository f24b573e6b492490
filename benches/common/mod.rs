//! The seeded camera layout the index and registry benches share: `cameras::generate`'s national fleet
//! (cities of 10 km radius at ~100 cameras/km² over the contiguous US, the consent mix of the generator,
//! 15% of owners with a second camera), so local density is the same at every size.

use dispatch_trigger::cameras::{generate, Placement};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use trigger_core::{CameraRecord, LatLon};

/// A point uniformly in the disc of radius `r` metres around `c`.
#[allow(dead_code)] // the index bench's queries; not the registry bench's
pub(crate) fn disc(rng: &mut ChaCha8Rng, c: LatLon, r: f64) -> LatLon {
    let d = r * rng.random::<f64>().sqrt();
    let a = rng.random::<f64>() * std::f64::consts::TAU;
    LatLon::new(c.lat + d * a.cos() / 111_195.0, c.lon + d * a.sin() / (111_195.0 * c.lat.to_radians().cos()))
}

/// `n` cameras (ids `cam-00000000`…), seeded by `n`.
pub(crate) fn layout(n: usize) -> Vec<CameraRecord> {
    generate(n, n as u64, &Placement::Fleet, chrono_tz::America::Chicago).expect("fleet layout")
}
