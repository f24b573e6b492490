//! A PostgreSQL server of a test's own, from Debian's packages (`postgresql`): initdb into a folder of its own,
//! started on a loopback port of its own (both from `unique`) with trust authentication, stopped (immediately) when dropped. Run as root,
//! the server runs as the `postgres` user the package creates (PostgreSQL refuses to run as root). Without the
//! package the caller skips and says so, unless `POSTGRES_REQUIRED=1` (CI).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug)]
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/N/bin` with initdb.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, b): &(u32, PathBuf)| b.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// A started server, or None (skipped, said on stderr) when the package is missing and not required.
    pub(crate) fn start() -> Option<Self> {
        if super::fast_tier_skips("a PostgreSQL server of the test's own") {
            return None;
        }
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("POSTGRES_REQUIRED").is_err(),
                "POSTGRES_REQUIRED is set but PostgreSQL is not installed (apt-get install postgresql)"
            );
            eprintln!("skipped: PostgreSQL is not installed (Debian's postgresql package)");
            return None;
        };
        let pg = Self { bin, port: super::unique::port(), as_postgres: is_root(), dir: super::unique::dir("postgres") };
        if pg.as_postgres {
            assert!(Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.dir()).status().unwrap().success());
        }
        let data = pg.data();
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        pg.up();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// One of the server's tools, as the user the server runs as.
    fn tool(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.current_dir(self.dir());
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the server (again, after [`Postgres::down`]), on the same port and data.
    pub(crate) fn up(&self) {
        // A server that keeps the CAD's local time, as a city's would: the source must not depend on it.
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c timezone=America/Chicago",
            self.port
        );
        let log = self.dir().join("server.log");
        let data = self.data();
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"]);
    }

    /// Stop the server at once (connections cut, as a crashed or unreachable database).
    pub(crate) fn down(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    /// A client of the `postgres` database.
    pub(crate) fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.connection(), postgres::NoTls).expect("the test's own PostgreSQL answers")
    }

    /// The libpq connection string of the `postgres` database.
    pub(crate) fn connection(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.tool("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
    }
}
