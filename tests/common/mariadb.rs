//! A MariaDB server of a test's own, from Debian's packages (`mariadb-server`): `mariadb-install-db` into a folder
//! of its own, `mariadbd` started on a loopback port of its own (both from `unique`) and a socket in that folder
//! (where the test's `root` connects without a password), killed when dropped. Run as root, the server runs as the `mysql` user the
//! package creates. Without the package the caller skips and says so, unless `MARIADB_REQUIRED=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct MariaDb {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    as_mysql: bool,
    server: Mutex<Option<Child>>,
}

const SERVER: &str = "/usr/sbin/mariadbd";
const INSTALL: &str = "/usr/bin/mariadb-install-db";

impl MariaDb {
    /// A started server, or None (skipped, said on stderr) when the package is missing and not required.
    pub(crate) fn start() -> Option<Self> {
        if super::fast_tier_skips("a MariaDB server of the test's own") {
            return None;
        }
        if !Path::new(SERVER).exists() || !Path::new(INSTALL).exists() {
            assert!(
                std::env::var("MARIADB_REQUIRED").is_err(),
                "MARIADB_REQUIRED is set but MariaDB is not installed (apt-get install mariadb-server)"
            );
            eprintln!("skipped: MariaDB is not installed (Debian's mariadb-server package)");
            return None;
        }
        let (dir, port) = (super::unique::dir("mariadb"), super::unique::port());
        let as_mysql = super::postgres::is_root();
        let db = Self { dir, port, as_mysql, server: Mutex::new(None) };
        let mut install = Command::new(INSTALL);
        install.args(["--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db"]);
        install.arg(format!("--datadir={}", db.data().display()));
        // Its own temporary folder too: servers bootstrapping at once in a shared /tmp lose each other's
        // temporary tables ("Unknown table 'mysql.tmp_user_sys'").
        std::fs::create_dir_all(db.tmp()).unwrap();
        install.arg(format!("--tmpdir={}", db.tmp().display()));
        if as_mysql {
            install.arg("--user=mysql");
            assert!(Command::new("chown").args(["-R", "mysql:mysql"]).arg(db.dir()).status().unwrap().success());
        }
        let out = install.output().unwrap();
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        db.up();
        Some(db)
    }

    fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn tmp(&self) -> PathBuf {
        self.dir().join("tmp")
    }

    /// The socket the test's `root` connects through.
    fn socket(&self) -> PathBuf {
        self.dir().join("mariadb.sock")
    }

    /// Start the server (again, after [`MariaDb::down`]) on the same port and data; returns once it answers.
    pub(crate) fn up(&self) {
        let mut c = Command::new(SERVER);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--tmpdir={}", self.tmp().display()))
            .arg(format!("--pid-file={}", self.dir().join("mariadb.pid").display()))
            .arg(format!("--log-error={}", self.dir().join("server.log").display()))
            .args([&format!("--port={}", self.port), "--bind-address=127.0.0.1", "--skip-log-bin"])
            // Each commit's log written to the OS (2): a killed server keeps what it committed, as a real one
            // does (0 would lose the last second's commits, and the table would go back in time).
            .args(["--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=32M", "--skip-name-resolve"])
            // A server that keeps the CAD's local time, as a city's would: the source must not depend on it.
            .arg("--default-time-zone=-06:00")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.as_mysql {
            c.arg("--user=mysql");
        }
        *self.server.lock().unwrap() = Some(c.spawn().expect("mariadbd starts"));
        let by = Instant::now() + Duration::from_secs(60);
        while mysql::Conn::new(self.root_opts()).is_err() {
            let log = std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default();
            assert!(Instant::now() < by, "MariaDB did not answer within 60 s:\n{log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kill the server (connections cut, as a crashed or unreachable database).
    pub(crate) fn down(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn root_opts(&self) -> mysql::Opts {
        mysql::OptsBuilder::new()
            .socket(Some(self.socket().to_string_lossy()))
            .user(Some("root"))
            .prefer_socket(true)
            .into()
    }

    /// A `root` connection, through the socket.
    pub(crate) fn root(&self) -> mysql::Conn {
        mysql::Conn::new(self.root_opts()).expect("the test's own MariaDB answers")
    }

    /// The URL the source connects to: `user` over TCP, in database `db` (the password comes apart).
    pub(crate) fn url(&self, user: &str, db: &str) -> String {
        format!("mysql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.down();
    }
}
