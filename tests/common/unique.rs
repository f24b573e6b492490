//! The one place a test gets a resource that must be its own: a name (topics, consumer groups, transactional
//! ids, client ids), a folder, a loopback port. Each is unique across the threads of one test binary, across
//! the test binaries `cargo test` runs at once, and across runs on a machine whose brokers and folders outlive
//! them.
//!
//! - [`name`]: a prefix, the process id, the process's start (process ids are reused) and a counter of the
//!   process (tests of one binary run in threads, often in the same millisecond).
//! - [`dir`]: the `tempfile` crate (a random name created exclusively, removed when dropped).
//! - [`port`]: a port outside the kernel's ephemeral range (so no outgoing connection takes it between the
//!   test choosing it and a server binding it, nor while a test's broker is down and restarted on it), held
//!   for the life of the test process by a lock file (another test process cannot pick it) and never handed
//!   out twice by one process.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// When this test process started (Unix ms), once.
fn started_ms() -> i64 {
    static STARTED_MS: OnceLock<i64> = OnceLock::new();
    *STARTED_MS.get_or_init(trigger_kafka::wall_ms)
}

/// `prefix-PID-START-N`: never the same twice in this process, nor in another process now or later.
pub(crate) fn name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{}-{n}", std::process::id(), started_ms())
}

/// A fresh folder named `dt-PREFIX-…` in the system's temporary folder, removed when the guard is dropped.
pub(crate) fn dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("dt-{prefix}-")).tempdir().expect("a fresh temporary folder")
}

/// Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default) and above the
/// ports services are registered on in /etc/services.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port for a server a test starts (the binary, a database, a stand-in peer): free now, not handed
/// to another test of this process or of another test process while this process lives.
pub(crate) fn port() -> u16 {
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let locks = std::env::temp_dir().join("dt-test-ports");
    std::fs::create_dir_all(&locks).expect("the port lock folder");
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let p = rand::Rng::random_range(&mut rng, PORTS);
        let mut given = GIVEN.lock().unwrap();
        if given.contains(&p) {
            continue;
        }
        let Ok(lock) = std::fs::File::create(locks.join(format!("{p}.lock"))) else { continue };
        if lock.try_lock().is_err() {
            continue; // another test process holds it
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
            continue; // something outside the tests holds it
        }
        given.insert(p);
        HELD.lock().unwrap().push(lock);
        return p;
    }
    panic!("no free loopback port in {PORTS:?} after 10,000 tries");
}
