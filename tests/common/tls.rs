//! Certificates the TLS tests make with `openssl`: a CA, a second CA that the peers do not trust, a server
//! certificate for 127.0.0.1 and localhost, client certificates from each CA, and a server certificate that
//! has expired. Keys are RSA 2048, unencrypted PKCS#8.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files, by role, in one directory.
pub(crate) struct Certs {
    pub(crate) dir: PathBuf,
}

impl Certs {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `ca.pem`, `other-ca.pem`, `server.{crt,key}`, `client.{crt,key}` (signed by `ca`),
    /// `rogue-client.{crt,key}` (signed by `other-ca`), `expired-server.{crt,key}`, `wrong-name-server.{crt,key}`
    /// (issued for elsewhere.example).
    pub(crate) fn make(dir: &Path) -> Certs {
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=test {ca}"));
            openssl(
                dir,
                &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem, "-subj", &subj],
            );
        }
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        sign(dir, "server", "/CN=127.0.0.1", "ca", "server.ext", "2");
        sign(dir, "client", "/CN=dispatch-trigger test client", "ca", "client.ext", "2");
        sign(dir, "rogue-client", "/CN=rogue client", "other-ca", "client.ext", "2");
        sign(dir, "expired-server", "/CN=127.0.0.1", "ca", "server.ext", "-1");
        std::fs::write(dir.join("elsewhere.ext"), "subjectAltName=DNS:elsewhere.example\n").unwrap();
        sign(dir, "wrong-name-server", "/CN=elsewhere.example", "ca", "elsewhere.ext", "2");
        Certs { dir: dir.to_path_buf() }
    }
}

pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// `name.key` and `name.crt` (`subj`, the extensions in `ext`), signed by `ca`, valid for `days` (negative:
/// expired that many days ago).
pub(crate) fn sign(dir: &Path, name: &str, subj: &str, ca: &str, ext: &str, days: &str) {
    let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subj]);
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let mut args = vec!["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial"];
    args.extend(["-out", &crt, "-extfile", ext, "-days", days]);
    openssl(dir, &args);
}
