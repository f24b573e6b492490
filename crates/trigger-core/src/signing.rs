//! Signed camera commands: the engine signs every `CameraCommand` with Ed25519 so a camera (or the bridge in
//! front of it) can tell a genuine command from a forged or altered one.
//!
//! What is signed is [`canonical`]: a domain tag, then every field of the command in its contract order, then
//! the key id, each string as a 4-byte big-endian length and its UTF-8 bytes (no two different commands share
//! an encoding), integers big-endian in fixed width, the action as `START`/`STOP`, the category by its
//! contract name, `live_stream` as one byte 0/1. Verifiers hold a set of public keys by id ([`CommandKeys`]),
//! so a key can be rotated by adding the new one before the engine signs with it and removing the old one
//! after the last command it signed has expired.
//!
//! The signing key reaches [`CommandSigner`] and nothing else: its `Debug` prints the key id only.

use crate::types::{Action, CameraCommand, Millis};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::collections::{HashMap, HashSet, VecDeque};

/// The domain tag every signed encoding starts with; a new encoding gets a new tag.
pub const COMMAND_SIGNING_TAG: &[u8] = b"dispatch-trigger/camera-command/v1";

/// A command's signature as it travels (protobuf `key_id`, `signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSignature {
    pub key_id: String,
    pub signature: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes a command's signature covers (see the module documentation).
pub fn canonical(c: &CameraCommand, key_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    put_str(&mut out, std::str::from_utf8(COMMAND_SIGNING_TAG).expect("ASCII tag"));
    put_str(&mut out, &c.command_id);
    put_str(&mut out, &c.camera_id);
    put_str(&mut out, if c.action == Action::Start { "START" } else { "STOP" });
    put_str(&mut out, &c.incident_ref);
    put_str(&mut out, c.category.as_str());
    out.extend_from_slice(&c.record_seconds.to_be_bytes());
    out.push(u8::from(c.live_stream));
    out.extend_from_slice(&c.issued_at.to_be_bytes());
    out.extend_from_slice(&c.expires_at.to_be_bytes());
    put_str(&mut out, key_id);
    out
}

/// A key that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {key_id:?}: {what} is not {bytes} bytes of hex")]
    NotHex { key_id: String, what: &'static str, bytes: usize },
    #[error("key {key_id:?}: not a valid Ed25519 public key")]
    BadPublicKey { key_id: String },
    #[error("a key id must be 1 to 64 characters of [A-Za-z0-9._-], got {0:?}")]
    BadKeyId(String),
    #[error("key id {0:?} is listed twice")]
    Duplicate(String),
}

fn check_key_id(id: &str) -> Result<(), KeyError> {
    let ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadKeyId(id.to_string()))
    }
}

fn hex32(key_id: &str, what: &'static str, text: &str) -> Result<[u8; 32], KeyError> {
    let bad = || KeyError::NotHex { key_id: key_id.to_string(), what, bytes: 32 };
    hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(bad)
}

/// The engine's signing key and its id.
pub struct CommandSigner {
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for CommandSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSigner").field("key_id", &self.key_id).field("key", &"<redacted>").finish()
    }
}

impl CommandSigner {
    /// From the 32-byte Ed25519 seed (the secret key) as hex.
    pub fn from_hex(key_id: &str, secret_hex: &crate::Secret) -> Result<Self, KeyError> {
        check_key_id(key_id)?;
        Ok(Self::from_seed(key_id, hex32(key_id, "the signing key", secret_hex.expose())?))
    }

    pub fn from_seed(key_id: &str, seed: [u8; 32]) -> Self {
        Self { key_id: key_id.to_string(), key: SigningKey::from_bytes(&seed) }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half as hex, for the verifiers' key set.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn sign(&self, c: &CameraCommand) -> CommandSignature {
        let sig = self.key.sign(&canonical(c, &self.key_id));
        CommandSignature { key_id: self.key_id.clone(), signature: sig.to_bytes().to_vec() }
    }
}

/// Why a command was refused; `as_str` is the metric label and the log field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    #[error("unsigned: the command carries no signature")]
    Unsigned,
    #[error("unknown_key: no public key with id {0:?}")]
    UnknownKey(String),
    #[error("bad_signature: the signature does not match the command (altered, or signed by another key)")]
    BadSignature,
    #[error("expired: expired at {expires_at} ms, now {now} ms")]
    Expired { expires_at: Millis, now: Millis },
    #[error("replayed: command {0} was already delivered")]
    Replayed(String),
}

impl CommandRefusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::Replayed(_) => "replayed",
        }
    }
}

/// The public keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct CommandKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl CommandKeys {
    /// From (key id, public key hex) pairs; every bad entry is an error.
    pub fn from_hex<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        for (id, public) in pairs {
            check_key_id(id)?;
            let bytes = hex32(id, "the public key", public)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey { key_id: id.into() })?;
            if keys.insert(id.to_string(), key).is_some() {
                return Err(KeyError::Duplicate(id.to_string()));
            }
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Signature, key id and expiry of one command at `now`. Expiry is checked last: an expired forgery is
    /// named a forgery.
    pub fn verify(&self, c: &CameraCommand, sig: Option<&CommandSignature>, now: Millis) -> Result<(), CommandRefusal> {
        let sig = sig.ok_or(CommandRefusal::Unsigned)?;
        let key = self.keys.get(&sig.key_id).ok_or_else(|| CommandRefusal::UnknownKey(sig.key_id.clone()))?;
        let sig_bytes = <[u8; 64]>::try_from(sig.signature.as_slice()).map_err(|_| CommandRefusal::BadSignature)?;
        key.verify(&canonical(c, &sig.key_id), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| CommandRefusal::BadSignature)?;
        if now > c.expires_at {
            return Err(CommandRefusal::Expired { expires_at: c.expires_at, now });
        }
        Ok(())
    }
}

/// The command ids delivered most recently, at most `capacity` of them (oldest forgotten first): a command
/// seen again within the window is a replay. A command older than the window has expired long before (size
/// the window above the commands a bridge sees in one command lifetime).
#[derive(Debug, Clone)]
pub struct SeenWindow {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl SeenWindow {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), order: VecDeque::new(), set: HashSet::new() }
    }

    pub fn contains(&self, command_id: &str) -> bool {
        self.set.contains(command_id)
    }

    /// Remember `command_id`; false if it was already in the window.
    pub fn insert(&mut self, command_id: &str) -> bool {
        if !self.set.insert(command_id.to_string()) {
            return false;
        }
        self.order.push_back(command_id.to_string());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Refuse a command already in the window.
    pub fn check(&self, command_id: &str) -> Result<(), CommandRefusal> {
        if self.contains(command_id) {
            Err(CommandRefusal::Replayed(command_id.to_string()))
        } else {
            Ok(())
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The ids in the order they were seen (oldest first), for persisting the window.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Category;

    fn command() -> CameraCommand {
        CameraCommand {
            command_id: "cmd-1".into(),
            camera_id: "cam-7".into(),
            action: Action::Start,
            incident_ref: "inc-abc".into(),
            category: Category::Burglary,
            record_seconds: 600,
            live_stream: false,
            issued_at: 1_000,
            expires_at: 61_000,
        }
    }

    fn signer(seed: u8) -> CommandSigner {
        CommandSigner::from_seed("engine-1", [seed; 32])
    }

    fn keys(s: &CommandSigner) -> CommandKeys {
        CommandKeys::from_hex([(s.key_id(), s.public_key_hex().as_str())]).unwrap()
    }

    #[test]
    fn a_signed_command_verifies_until_it_expires() {
        let s = signer(1);
        let sig = s.sign(&command());
        assert_eq!(keys(&s).verify(&command(), Some(&sig), 61_000), Ok(()));
        assert_eq!(
            keys(&s).verify(&command(), Some(&sig), 61_001),
            Err(CommandRefusal::Expired { expires_at: 61_000, now: 61_001 })
        );
    }

    #[test]
    fn every_flipped_bit_of_the_signed_bytes_or_the_signature_is_refused() {
        let s = signer(2);
        let k = keys(&s);
        let sig = s.sign(&command());
        for i in 0..sig.signature.len() * 8 {
            let mut bad = sig.clone();
            bad.signature[i / 8] ^= 1 << (i % 8);
            assert_eq!(k.verify(&command(), Some(&bad), 0), Err(CommandRefusal::BadSignature), "signature bit {i}");
        }
        let altered: [fn(&mut CameraCommand); 9] = [
            |c| c.command_id.push('x'),
            |c| c.camera_id = "cam-8".into(),
            |c| c.action = Action::Stop,
            |c| c.incident_ref = "inc-abd".into(),
            |c| c.category = Category::Robbery,
            |c| c.record_seconds ^= 1,
            |c| c.live_stream = true,
            |c| c.issued_at ^= 1,
            |c| c.expires_at ^= 1 << 40,
        ];
        for (i, alter) in altered.iter().enumerate() {
            let mut c = command();
            alter(&mut c);
            assert_eq!(k.verify(&c, Some(&sig), 0), Err(CommandRefusal::BadSignature), "field {i}");
        }
    }

    #[test]
    fn unsigned_wrong_key_and_unknown_key_id_are_refused_by_name() {
        let s = signer(3);
        let k = keys(&s);
        assert_eq!(k.verify(&command(), None, 0), Err(CommandRefusal::Unsigned));
        // Another key under the trusted id: a forgery.
        let forged = signer(4).sign(&command());
        assert_eq!(k.verify(&command(), Some(&forged), 0), Err(CommandRefusal::BadSignature));
        let other = CommandSigner::from_seed("engine-2", [3; 32]).sign(&command());
        assert_eq!(k.verify(&command(), Some(&other), 0), Err(CommandRefusal::UnknownKey("engine-2".into())));
        // The key id is signed: the same key's signature under another trusted id does not verify.
        let both = CommandKeys::from_hex([
            ("engine-1", s.public_key_hex().as_str()),
            ("engine-2", s.public_key_hex().as_str()),
        ]);
        let mut moved = s.sign(&command());
        moved.key_id = "engine-2".into();
        assert_eq!(both.unwrap().verify(&command(), Some(&moved), 0), Err(CommandRefusal::BadSignature));
    }

    #[test]
    fn rotation_old_and_new_keys_both_verify_while_both_are_listed() {
        let old = CommandSigner::from_seed("2026-01", [5; 32]);
        let new = CommandSigner::from_seed("2026-02", [6; 32]);
        let k = CommandKeys::from_hex([
            (old.key_id(), old.public_key_hex().as_str()),
            (new.key_id(), new.public_key_hex().as_str()),
        ])
        .unwrap();
        assert_eq!(k.verify(&command(), Some(&old.sign(&command())), 0), Ok(()));
        assert_eq!(k.verify(&command(), Some(&new.sign(&command())), 0), Ok(()));
    }

    #[test]
    fn a_replayed_command_is_refused_while_in_the_window() {
        let mut w = SeenWindow::new(2);
        assert_eq!(w.check("a"), Ok(()));
        assert!(w.insert("a"));
        assert_eq!(w.check("a"), Err(CommandRefusal::Replayed("a".into())));
        assert!(!w.insert("a"));
        w.insert("b");
        w.insert("c");
        assert!(!w.contains("a") && w.contains("b") && w.contains("c"));
        assert_eq!(w.iter().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(matches!(CommandKeys::from_hex([("k", "zz")]), Err(KeyError::NotHex { .. })));
        assert!(matches!(CommandKeys::from_hex([("bad id", "00")]), Err(KeyError::BadKeyId(_))));
        let p = signer(1).public_key_hex();
        assert!(matches!(CommandKeys::from_hex([("k", p.as_str()), ("k", p.as_str())]), Err(KeyError::Duplicate(_))));
        let e = CommandSigner::from_hex("k", &crate::Secret::new("00ff")).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("00ff"), "the secret stays out of the error");
        assert!(!format!("{:?}", signer(9)).contains(&hex::encode([9u8; 32])));
    }

    #[test]
    fn the_encoding_separates_fields() {
        let mut a = command();
        a.command_id = "ab".into();
        a.camera_id = "c".into();
        let mut b = command();
        b.command_id = "a".into();
        b.camera_id = "bc".into();
        assert_ne!(canonical(&a, "k"), canonical(&b, "k"));
    }
}
