//! loadgen over TLS (`--tls-ca`) against the real `mq-actix` binary with a
//! TLS listener beside its plain one, its certificate made here with rcgen:
//! every check passes over TLS as in plain text, and a server loadgen does
//! not trust is never measured.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use rcgen::{CertificateParams, KeyPair};
use support::{loadgen_at, Run};

/// A self-signed certificate for `localhost` and `127.0.0.1` with its key,
/// as PEM files in a directory removed when dropped.
struct Certificate {
    dir: PathBuf,
}

impl Certificate {
    fn new(name: &str) -> Certificate {
        let dir = std::env::temp_dir().join(format!("loadgen-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("certificate params")
            .self_signed(&key)
            .expect("self-signed certificate");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write certificate");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        Certificate { dir }
    }

    fn cert(&self) -> String {
        path_text(&self.dir.join("cert.pem"))
    }

    fn key(&self) -> String {
        path_text(&self.dir.join("key.pem"))
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The `mq-actix` binary, built once per test process into the target
/// directory and profile of this test's loadgen. Cargo builds only the
/// binaries of the package under test, and loadgen's is not the broker's.
///
/// The build runs without the variables cargo sets for this test
/// (`CARGO_PKG_NAME=loadgen`, `CARGO_MANIFEST_DIR`, ...): build scripts
/// such as ring's ask to rerun when those change, so inheriting them would
/// rebuild ring, rustls and the broker here, and again in the next build
/// outside.
fn mq_actix() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let loadgen = Path::new(env!("CARGO_BIN_EXE_loadgen"));
        let profile_dir = loadgen.parent().expect("the profile directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev",
            Some(name) => name,
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let mut cargo = Command::new(env!("CARGO"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                ]
                .contains(&name.as_ref())
                || name == "OUT_DIR"
            {
                cargo.env_remove(name.as_ref());
            }
        }
        let built = cargo
            .current_dir(workspace)
            .args(["build", "--quiet", "-p", "mq-actix", "--bin", "mq-actix"])
            .args(["--profile", profile, "--target-dir"])
            .arg(target_dir)
            .status()
            .expect("run cargo build");
        assert!(built.success(), "cargo build --bin mq-actix failed");
        profile_dir.join("mq-actix")
    })
}

/// The real broker with a plain and a TLS listener on ephemeral ports;
/// killed when dropped.
struct Broker {
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
}

impl Broker {
    fn start(cert: &Certificate) -> Broker {
        let mut child = Command::new(mq_actix())
            .args(["0", "--tls-port", "0", "--tls-cert", &cert.cert()])
            .args(["--tls-key", &cert.key()])
            // Errors only: not the warning about the open-file limit.
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mq-actix");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("read the listening line");
        // mq-actix listening on ADDR and with TLS on ADDR (cache size 100)
        let mut addrs = line.split_whitespace().filter_map(|w| w.parse().ok());
        let (Some(plain), Some(tls)) = (addrs.next(), addrs.next()) else {
            panic!("no plain and TLS address in {line:?}");
        };
        Broker { child, plain, tls }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_clean(run: &Run) {
    assert!(run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/violations"), 0.0, "{}", run.explain());
    assert_eq!(run.num("/connection_errors"), 0.0, "{}", run.explain());
}

const FANOUT: &[&str] = &[
    "fanout",
    "--clients",
    "20",
    "--publishers",
    "2",
    "--messages",
    "2000",
];

#[test]
fn a_fanout_over_tls_passes_every_check_as_in_plain_text() {
    let cert = Certificate::new("fanout");
    let broker = Broker::start(&cert);
    // The certificate names 127.0.0.1, the host part of --addr, which is
    // the name checked when --tls-server-name is not given.
    let tls = loadgen_at(
        &broker.tls.to_string(),
        &[FANOUT, &["--tls-ca", &cert.cert()]].concat(),
    );
    let plain = loadgen_at(&broker.plain.to_string(), FANOUT);
    for (run, over_tls) in [(&tls, true), (&plain, false)] {
        assert_clean(run);
        assert_eq!(run.num("/acked"), 2000.0, "{}", run.explain());
        assert_eq!(run.num("/deliveries"), 40_000.0, "{}", run.explain());
        assert_eq!(run.num("/owed"), 40_000.0, "{}", run.explain());
        assert_eq!(run.report["params"]["tls"], over_tls, "{}", run.explain());
    }
    let table = String::from_utf8_lossy(&tls.output.stdout);
    assert!(table.contains("(mq over TLS)"), "{table}");
}

#[test]
fn the_server_name_can_be_given_and_every_address_speaks_tls() {
    let cert = Certificate::new("named");
    let broker = Broker::start(&cert);
    let twice = format!("{0},{0}", broker.tls);
    let run = loadgen_at(
        &twice,
        &[
            FANOUT,
            &["--tls-ca", &cert.cert(), "--tls-server-name", "localhost"],
        ]
        .concat(),
    );
    assert_clean(&run);
    assert_eq!(run.num("/deliveries"), 40_000.0, "{}", run.explain());
    assert_eq!(run.report["server"], twice.as_str());
}

#[test]
fn a_server_whose_certificate_is_not_trusted_is_not_measured() {
    let cert = Certificate::new("served");
    let stranger = Certificate::new("stranger");
    let broker = Broker::start(&cert);
    let untrusted = loadgen_at(
        &broker.tls.to_string(),
        &[FANOUT, &["--tls-ca", &stranger.cert()]].concat(),
    );
    let misnamed = loadgen_at(
        &broker.tls.to_string(),
        &[
            FANOUT,
            &["--tls-ca", &cert.cert(), "--tls-server-name", "mq.example"],
        ]
        .concat(),
    );
    for run in [untrusted, misnamed] {
        assert_eq!(run.output.status.code(), Some(1), "{}", run.explain());
        let stderr = String::from_utf8_lossy(&run.output.stderr);
        assert!(stderr.contains("TLS handshake"), "{}", run.explain());
        assert!(stderr.contains("certificate"), "{}", run.explain());
    }
}

#[test]
fn tls_is_refused_for_the_other_protocols_as_a_usage_error() {
    let cert = Certificate::new("protocols");
    for proto in ["redis", "nats"] {
        // Refused before any connection: no server listens there.
        let run = loadgen_at("127.0.0.1:9", &["--proto", proto, "--tls-ca", &cert.cert()]);
        assert_eq!(run.output.status.code(), Some(2), "{}", run.explain());
        let stderr = String::from_utf8_lossy(&run.output.stderr);
        assert!(stderr.contains("--tls-ca"), "{}", run.explain());
    }
}
