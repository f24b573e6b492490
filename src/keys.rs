//! Where the engine's command-signing key comes from (`[signing]` of serve.toml) and where verifiers' public
//! keys come from (`[[key]]` tables of a keys file, or the bridge's `[[verify.key]]`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trigger_core::{CommandKeys, CommandSigner, Secret};

/// `[signing]`: the key every camera command is signed with. Set `key_file` (a file holding the 32-byte
/// Ed25519 secret as hex, made by `dispatch-trigger commands keygen`) or `DT_SIGNING__KEY` (the same hex). With
/// neither, `serve` signs with a key made at start-up, logs its public half, and warns: bridges that do not
/// list that key refuse its commands (`unknown_key`), so a forgotten key fails closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSection {
    /// The id verifiers know the key by (carried in every command).
    pub key_id: String,
    pub key_file: Option<PathBuf>,
    /// The secret itself (from the environment: `DT_SIGNING__KEY`); never printed.
    pub key: Option<Secret>,
}

impl Default for SigningSection {
    fn default() -> Self {
        Self { key_id: "engine-1".into(), key_file: None, key: None }
    }
}

impl SigningSection {
    /// The signer this section names (see the type's documentation for the key made at start-up).
    pub fn signer(&self) -> Result<Arc<CommandSigner>> {
        let secret = match (&self.key, &self.key_file) {
            (Some(_), Some(f)) => bail!("signing: both key and key_file ({}) are set; keep one", f.display()),
            (Some(k), None) => k.clone(),
            (None, Some(f)) => Secret::new(
                std::fs::read_to_string(f).with_context(|| format!("signing.key_file {}", f.display()))?.trim(),
            ),
            (None, None) => {
                let s = CommandSigner::from_seed(&format!("ephemeral-{}", std::process::id()), rand::random());
                tracing::warn!(
                    key_id = s.key_id(),
                    public_key = %s.public_key_hex(),
                    "no command signing key configured ([signing] key_file or DT_SIGNING__KEY): signing with a key \
                     made for this run; bridges refuse its commands unless they list this public key"
                );
                return Ok(Arc::new(s));
            }
        };
        Ok(Arc::new(CommandSigner::from_hex(&self.key_id, &secret).context("signing")?))
    }
}

/// One trusted public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    pub id: String,
    /// Ed25519 public key, 32 bytes as hex (`commands keygen` prints it).
    pub public_key: String,
}

/// The verifier's key set from a list of entries.
pub fn command_keys(keys: &[PublicKey]) -> Result<CommandKeys> {
    Ok(CommandKeys::from_hex(keys.iter().map(|k| (k.id.as_str(), k.public_key.as_str())))?)
}

/// A keys file: `[[key]]` tables with `id` and `public_key`.
pub fn read_keys_file(path: &Path) -> Result<CommandKeys> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        key: Vec<PublicKey>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("keys file {}", path.display()))?;
    let f: File = toml::from_str(&text).with_context(|| format!("keys file {}", path.display()))?;
    command_keys(&f.key).with_context(|| format!("keys file {}", path.display()))
}

/// `commands keygen`: a new key, the secret written to `out` (owner-only), the public half returned.
pub fn keygen(key_id: &str, out: &Path) -> Result<String> {
    let seed: [u8; 32] = rand::random();
    let signer = CommandSigner::from_hex(key_id, &Secret::new(hex::encode(seed)))?; // checks the key id
    if out.exists() {
        bail!("{} exists: keygen never overwrites a key", out.display());
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out)?;
    writeln!(f, "{}", hex::encode(seed))?;
    Ok(signer.public_key_hex())
}
