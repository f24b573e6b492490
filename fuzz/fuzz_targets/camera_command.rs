//! A commands-topic record as the bridge reads it: decoded (or refused by name), verified against a key set;
//! never a panic, and a decoded command survives the wire unchanged (signature included).
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;
use trigger_cad::commands::{command_to_pb, decode_command};
use trigger_core::{CommandKeys, CommandSigner};

fuzz_target!(|data: &[u8]| {
    let Ok((cmd, sig)) = decode_command(data) else { return };
    let signer = CommandSigner::from_seed("fuzz", [3; 32]);
    let keys = CommandKeys::from_hex([("fuzz", signer.public_key_hex().as_str())]).expect("valid key");
    let _ = keys.verify(&cmd, sig.as_ref(), cmd.issued_at);
    // Signed by the trusted key, it verifies until it expires; decoded again, it is the same command.
    let signed = command_to_pb(&cmd, Some(&signer)).encode_to_vec();
    let (again, sig) = decode_command(&signed).expect("a command the engine writes decodes");
    assert_eq!(again, cmd);
    assert_eq!(keys.verify(&again, sig.as_ref(), cmd.expires_at), Ok(()));
});
