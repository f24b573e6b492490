//! The `CameraCommand` contract on the wire: domain command (+ its signature) to and from protobuf. The engine
//! writes it; the bridge (and any camera) reads it, so the reader names every way a record can be wrong.

use prost::Message;
use trigger_core::{Action, CameraCommand, Category, CommandSignature, CommandSigner};
use trigger_proto::v1 as pb;

fn action(a: Action) -> pb::CommandAction {
    match a {
        Action::Start => pb::CommandAction::Start,
        Action::Stop => pb::CommandAction::Stop,
    }
}

/// Domain -> wire, signed by `signer` when there is one.
pub fn command_to_pb(c: &CameraCommand, signer: Option<&CommandSigner>) -> pb::CameraCommand {
    let sig = signer.map(|s| s.sign(c));
    pb::CameraCommand {
        command_id: c.command_id.clone(),
        camera_id: c.camera_id.clone(),
        action: action(c.action) as i32,
        incident_ref: c.incident_ref.clone(),
        category: c.category.as_str().to_string(),
        record_seconds: c.record_seconds,
        live_stream: c.live_stream,
        issued_at_ms: c.issued_at,
        expires_at_ms: c.expires_at,
        key_id: sig.as_ref().map(|s| s.key_id.clone()).unwrap_or_default(),
        signature: sig.map(|s| s.signature).unwrap_or_default(),
    }
}

/// A command on the wire that is not one this service could have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCommand {
    #[error("not a CameraCommand: {0}")]
    Malformed(String),
    #[error("command {command_id}: action {action} is neither START nor STOP")]
    Action { command_id: String, action: i32 },
    #[error("command {command_id}: unknown category {category:?}")]
    Category { command_id: String, category: String },
    #[error("a command without command_id or camera_id")]
    MissingId,
}

/// Wire -> domain and the signature it carries (None: unsigned).
pub fn command_from_pb(m: pb::CameraCommand) -> Result<(CameraCommand, Option<CommandSignature>), BadCommand> {
    if m.command_id.is_empty() || m.camera_id.is_empty() {
        return Err(BadCommand::MissingId);
    }
    let signed = !m.signature.is_empty() || !m.key_id.is_empty();
    let sig = signed.then_some(CommandSignature { key_id: m.key_id, signature: m.signature });
    let c = CameraCommand {
        action: match pb::CommandAction::try_from(m.action) {
            Ok(pb::CommandAction::Start) => Action::Start,
            Ok(pb::CommandAction::Stop) => Action::Stop,
            _ => return Err(BadCommand::Action { command_id: m.command_id, action: m.action }),
        },
        category: Category::parse(&m.category)
            .ok_or_else(|| BadCommand::Category { command_id: m.command_id.clone(), category: m.category.clone() })?,
        command_id: m.command_id,
        camera_id: m.camera_id,
        incident_ref: m.incident_ref,
        record_seconds: m.record_seconds,
        live_stream: m.live_stream,
        issued_at: m.issued_at_ms,
        expires_at: m.expires_at_ms,
    };
    Ok((c, sig))
}

/// Bytes of one commands-topic record -> command and signature.
pub fn decode_command(bytes: &[u8]) -> Result<(CameraCommand, Option<CommandSignature>), BadCommand> {
    command_from_pb(pb::CameraCommand::decode(bytes).map_err(|e| BadCommand::Malformed(e.to_string()))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trigger_core::CommandKeys;

    fn command() -> CameraCommand {
        CameraCommand {
            command_id: "c1".into(),
            camera_id: "cam".into(),
            action: Action::Stop,
            incident_ref: "i".into(),
            category: Category::ShotsFired,
            record_seconds: 0,
            live_stream: true,
            issued_at: 5,
            expires_at: 10,
        }
    }

    #[test]
    fn a_signed_command_survives_the_wire_and_verifies() {
        let s = CommandSigner::from_seed("k1", [7; 32]);
        let bytes = command_to_pb(&command(), Some(&s)).encode_to_vec();
        let (c, sig) = decode_command(&bytes).unwrap();
        assert_eq!(c, command());
        let keys = CommandKeys::from_hex([("k1", s.public_key_hex().as_str())]).unwrap();
        assert_eq!(keys.verify(&c, sig.as_ref(), 10), Ok(()));
        // An unsigned record (an old writer) reads back with no signature.
        let (_, none) = decode_command(&command_to_pb(&command(), None).encode_to_vec()).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn bad_records_are_named() {
        assert!(matches!(decode_command(b"\xff\xff"), Err(BadCommand::Malformed(_))));
        let mut m = command_to_pb(&command(), None);
        m.action = 9;
        assert!(matches!(command_from_pb(m.clone()), Err(BadCommand::Action { .. })));
        m.action = 1;
        m.category = "protest".into();
        assert!(matches!(command_from_pb(m.clone()), Err(BadCommand::Category { .. })));
        m.camera_id.clear();
        assert_eq!(command_from_pb(m), Err(BadCommand::MissingId));
    }
}
