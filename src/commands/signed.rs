//! `commands keygen` and `commands verify`: the signing key of camera commands, and checking commands against
//! the trusted public keys.

use super::kafka_target;
use crate::cli::{CommandsVerifyArgs, KeygenArgs};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use trigger_bridge::Refusal;
use trigger_core::CommandRefusal;

pub(super) fn keygen(a: KeygenArgs) -> Result<()> {
    let public = dispatch_trigger::keys::keygen(&a.key_id, &a.out)?;
    eprintln!("secret key written to {} (serve: [signing] key_id = {:?}, key_file = ...)", a.out.display(), a.key_id);
    println!("[[key]]\nid = {:?}\npublic_key = {public:?}", a.key_id);
    Ok(())
}

/// Every record to check: (where it was, its bytes).
fn records(a: &CommandsVerifyArgs) -> Result<Vec<(String, Vec<u8>)>> {
    if let Some(b) = &a.source.from_kafka {
        let s = kafka_target(a.source.config.as_deref(), b)?;
        let topic = s.topics.commands.clone();
        let got = trigger_kafka::inspect::read_topic(&s, &topic, true, std::time::Duration::from_secs(120))?;
        return Ok(got
            .into_iter()
            .map(|r| (format!("{topic}/{}@{}", r.partition, r.offset), r.payload.unwrap_or_default()))
            .collect());
    }
    let path = a.path.as_ref().expect("clap requires a path without --from-kafka");
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for frame in trigger_proto::framing::frames(&data) {
        let frame = frame.map_err(|(at, e)| anyhow::anyhow!("{}: byte {at}: {e}", path.display()))?;
        out.push((format!("{}@{}", path.display(), frame.at), frame.body.to_vec()));
    }
    Ok(out)
}

/// One record against the keys: signature and key id always, expiry only at a given instant.
fn check(keys: &trigger_core::CommandKeys, bytes: &[u8], at: Option<i64>) -> Result<(), (Refusal, String)> {
    let (c, sig) = trigger_cad::commands::decode_command(bytes).map_err(|e| (Refusal::Malformed, e.to_string()))?;
    let r: Result<(), CommandRefusal> = keys.verify(&c, sig.as_ref(), at.unwrap_or(c.expires_at));
    r.map_err(|r| (Refusal::of(&r), r.to_string()))
}

pub(super) fn verify(a: CommandsVerifyArgs) -> Result<()> {
    let keys = dispatch_trigger::keys::read_keys_file(&a.keys)?;
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    for (at, bytes) in records(&a)? {
        match check(&keys, &bytes, a.at).err() {
            None => ok += 1,
            Some((reason, detail)) => {
                failed += 1;
                *by_reason.entry(reason.as_str()).or_default() += 1;
                if failed <= 20 {
                    println!("{at}: REFUSED {detail}");
                }
            }
        }
    }
    let reasons: String = by_reason.iter().map(|(r, n)| format!("\n  {r}: {n}")).collect();
    if failed > 0 {
        anyhow::bail!("{ok} commands verified, {failed} refused{reasons}");
    }
    println!("{ok} commands verified, 0 refused");
    Ok(())
}
