//! Wire forms of what crosses Kafka: domain types to and from the protobuf contracts.

use trigger_core::OwnerNotice;
use trigger_proto::v1 as pb;

// The command contract is read by the bridge and by cameras: it lives with the other decoders (trigger-cad, no
// librdkafka), where the fuzzer reaches it.
pub use trigger_cad::commands::{command_from_pb, command_to_pb, decode_command, BadCommand};

/// The audit form of a decision: see `trigger_audit` (conversion and hash chain).
pub use trigger_audit::activation;

pub fn notice(n: &OwnerNotice) -> pb::OwnerNotice {
    pb::OwnerNotice {
        owner_ref: n.owner_ref.clone(),
        camera_id: n.camera_id.clone(),
        category: n.category.as_str().to_string(),
        area_h3: n.area_h3.clone(),
        at_ms: n.at,
        how_to_stop: n.how_to_stop.clone(),
        break_glass: n.break_glass,
    }
}

// The registry record codec is an input format: it lives with the other decoders (trigger-cad, no librdkafka),
// where the fuzzer reaches it.
pub use trigger_cad::registry::{
    camera_from_pb, camera_ref_from_pb, camera_to_pb, status_from_pb, status_to_pb, BadCamera, BadCameraReason,
    CameraStatus,
};

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use trigger_core::{CameraRecord, Category, Consent, MinuteOfDay, QuietHours};

    #[test]
    fn camera_round_trips_and_bad_consent_is_refused() {
        let cam = CameraRecord {
            camera_id: "cam-1".into(),
            owner_ref: "own-1".into(),
            lat: 36.16,
            lon: -86.78,
            consent: Consent {
                categories: [Category::Burglary, Category::Shooting].into_iter().collect(),
                max_radius_m: 250.0,
                quiet_hours: Some(QuietHours {
                    start: MinuteOfDay(22 * 60),
                    end: MinuteOfDay(7 * 60),
                    time_zone: chrono_tz::America::Chicago,
                }),
                daily_cap: 2,
                live_stream_allowed: true,
            },
            online: true,
            updated_at: 5,
        };
        let bytes = camera_to_pb(&cam).encode_to_vec();
        assert_eq!(camera_from_pb(&bytes).unwrap(), cam);

        let mut m = camera_to_pb(&cam);
        m.consent.as_mut().unwrap().categories.push("protest".into());
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().to_string().contains("unknown category"));
        let mut m = camera_to_pb(&cam);
        m.consent.as_mut().unwrap().quiet_hours.as_mut().unwrap().time_zone = "Mars/Olympus".into();
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().to_string().contains("time zone"));
        assert!(camera_from_pb(b"\xff\xff\xff").is_err());
        // What cannot be true is refused on the wire as in files, with the same named reasons.
        let mut m = camera_to_pb(&cam);
        m.consent.as_mut().unwrap().daily_cap = 0;
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().reason.as_str() == "zero_daily_cap");
        let mut m = camera_to_pb(&cam);
        m.location.as_mut().unwrap().lat = 129.95;
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().reason.as_str() == "invalid_coordinates");
        let mut m = camera_to_pb(&cam);
        m.consent.as_mut().unwrap().max_radius_m = -5.0;
        assert!(camera_from_pb(&m.encode_to_vec()).unwrap_err().reason.as_str() == "invalid_radius");
    }
}
