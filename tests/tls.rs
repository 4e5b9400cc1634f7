//! The TLS listener (`--tls-port`), client certificates (`--tls-client-ca`)
//! and their common names standing for users, over real TLS against the
//! real binary; certificates are made here with rcgen.

mod common;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{delivered, send_line, Server, BIN, WAIT};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A certificate authority, and the broker's certificate and key signed by
/// it, written as PEM files into a directory removed when dropped.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("mq-actix-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = named("mq-actix test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let pki = Pki { dir, ca };
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &pki.ca).expect("server certificate");
        pki.write("server.pem", &cert.pem());
        pki.write("server.key", &key.serialize_pem());
        pki.write("ca.pem", &pki.ca.pem());
        pki
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.join(name), contents).expect("write PEM");
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("UTF-8 path").to_owned()
    }

    /// The flags of a TLS listener with this server certificate.
    fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem"),
            "--tls-key".into(),
            self.path("server.key"),
        ]
    }

    /// A client certificate for `common_name`, signed by the CA.
    fn client(&self, common_name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::new()).expect("client params");
        params.distinguished_name = named(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("client certificate");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("client key DER");
        (vec![cert.der().clone()], key)
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> io::Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA root");
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate"),
        };
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let (read, write) = tokio::io::split(tls);
        Ok(TlsClient {
            reader: BufReader::new(read),
            writer: write,
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "mq-actix tests");
    name.push(DnType::CommonName, common_name);
    name
}

fn start(pki: &Pki, extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = pki.flags();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_tls(&args, Stdio::inherit())
}

/// A protocol client over TLS.
struct TlsClient {
    reader: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
}

impl TlsClient {
    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
        self.writer.flush().await.expect("flush");
    }

    /// The next line, or `None` when the connection ended or failed.
    async fn try_recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("timed out waiting for a line")
        {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        let line = line.strip_suffix("\r\n").expect("line ends in \\r\\n");
        Some(serde_json::from_str(line).expect("JSON line"))
    }

    async fn expect(&mut self, want: Value) {
        assert_eq!(self.try_recv().await, Some(want));
    }

    async fn expect_ok(&mut self) {
        self.expect(json!({"success": true})).await;
    }

    async fn subscribe(&mut self, topic: &str) {
        self.send(&json!({"command": "subscribe", "topic": topic}).to_string())
            .await;
        self.expect_ok().await;
    }
}

#[tokio::test]
async fn tls_and_plain_clients_talk_to_each_other() {
    let pki = Pki::new("round-trip");
    let (server, tls) = start(&pki, &[]);
    assert_ne!(server.addr(), tls);
    let mut secure = pki.connect(tls, None).await.expect("TLS connect");
    secure.subscribe("t").await;
    let mut plain = server.client().await;
    plain.subscribe("u").await;

    plain.publish("t", "to TLS", "all").await;
    secure.expect(delivered("t", "to TLS", "all", 0)).await;
    secure.send(&send_line("u", "from TLS", "all")).await;
    secure.expect_ok().await;
    plain.expect(delivered("u", "from TLS", "all", 0)).await;
}

#[tokio::test]
async fn plain_text_to_the_tls_port_is_dropped_and_hurts_no_one() {
    let pki = Pki::new("plain-text");
    let (_server, tls) = start(&pki, &[]);
    let mut secure = pki.connect(tls, None).await.expect("TLS connect");
    secure.subscribe("t").await;

    let mut confused = TcpStream::connect(tls).await.expect("connect");
    confused
        .write_all(b"{\"command\": \"subscribe\", \"topic\": \"t\"}\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = timeout(WAIT, confused.read_to_end(&mut answer))
        .await
        .expect("the plain-text client was never dropped");
    assert!(
        !String::from_utf8_lossy(&answer).contains("success"),
        "a plain-text client got a reply: {answer:?}"
    );

    let mut publisher = pki.connect(tls, None).await.expect("TLS connect");
    publisher.send(&send_line("t", "still here", "all")).await;
    publisher.expect_ok().await;
    secure.expect(delivered("t", "still here", "all", 0)).await;
}

/// A client that connects to the TLS port and says nothing holds its
/// connection slot only until the handshake times out.
#[tokio::test]
async fn a_silent_client_on_the_tls_port_gives_its_slot_back() {
    let pki = Pki::new("silent");
    let (_server, tls) = start(&pki, &["--no-plain", "--max-connections", "1"]);
    let mut silent = TcpStream::connect(tls).await.expect("connect");
    let mut connected = None;
    for _ in 0..300 {
        // Refused while the slot is taken: the refusal is plain text, which
        // the TLS client cannot read as a handshake.
        if let Ok(mut client) = pki.connect(tls, None).await {
            client
                .send(r#"{"command": "subscribe", "topic": "t"}"#)
                .await;
            if client.try_recv().await == Some(json!({"success": true})) {
                connected = Some(client);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(connected.is_some(), "the silent client kept the only slot");
    let mut rest = Vec::new();
    let read = timeout(WAIT, silent.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent client was not dropped: {read:?}"
    );
}

#[tokio::test]
async fn with_no_plain_only_tls_listens() {
    let pki = Pki::new("no-plain");
    let (server, tls) = start(&pki, &["--no-plain"]);
    assert_eq!(server.addr(), tls);
    let mut secure = pki.connect(tls, None).await.expect("TLS connect");
    secure.subscribe("t").await;
}

#[tokio::test]
async fn a_required_client_certificate_is_checked_and_names_the_user() {
    let pki = Pki::new("client-ca");
    let users = pki.dir.join("users.toml");
    std::fs::write(
        &users,
        "[[user]]\nname = \"carol\"\nsubscribe = [\"*\"]\npublish = [\"carol.*\"]\n",
    )
    .expect("users file");
    let ca = pki.path("ca.pem");
    let users = users.to_str().expect("UTF-8 path");
    let (server, tls) = start(&pki, &["--tls-client-ca", &ca, "--users", users]);

    // Without a certificate: the handshake fails, at once or (TLS 1.3) on
    // the first read; either way no command is answered.
    if let Ok(mut anonymous) = pki.connect(tls, None).await {
        anonymous
            .send(r#"{"command": "subscribe", "topic": "t"}"#)
            .await;
        assert_eq!(anonymous.try_recv().await, None);
    }

    // With one, its common name is the user: no `auth` needed.
    let mut carol = pki
        .connect(tls, Some(pki.client("carol")))
        .await
        .expect("TLS connect with a certificate");
    carol.subscribe("news").await;
    carol.send(&send_line("news", "not hers", "all")).await;
    carol
        .expect(json!({"success": false, "reason": "Permission denied"}))
        .await;
    carol.send(&send_line("carol.1", "hers", "all")).await;
    carol.expect_ok().await;

    // A certificate for no user still has to authenticate.
    let mut stranger = pki
        .connect(tls, Some(pki.client("dave")))
        .await
        .expect("TLS connect with a certificate");
    stranger
        .send(r#"{"command": "subscribe", "topic": "news"}"#)
        .await;
    stranger
        .expect(json!({"success": false, "reason": "Authentication required"}))
        .await;

    // The plain port asks for a password as ever.
    let mut plain = server.client().await;
    plain
        .send(r#"{"command": "subscribe", "topic": "news"}"#)
        .await;
    plain.expect_error("Authentication required").await;
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_with_one_line() {
    let pki = Pki::new("bad-files");
    pki.write("garbage.pem", "not a certificate\n");
    pki.write(
        "other.key",
        &KeyPair::generate().expect("key").serialize_pem(),
    );
    let cases = [
        (
            pki.path("missing.pem"),
            pki.path("server.key"),
            "missing.pem",
        ),
        (
            pki.path("garbage.pem"),
            pki.path("server.key"),
            "garbage.pem",
        ),
        (
            pki.path("server.pem"),
            pki.path("missing.key"),
            "missing.key",
        ),
        (pki.path("server.pem"), pki.path("other.key"), "server.pem"),
    ];
    for (cert, key, named) in cases {
        let output = Command::new(BIN)
            .args([
                "0",
                "--tls-port",
                "0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ])
            .output()
            .expect("run mq-actix");
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("mq-actix: "), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(output.stdout.is_empty(), "it listened: {:?}", output.stdout);
    }
}

/// A burst that fills a TLS subscriber's socket: the last part of it may
/// sit in the TLS layer's own buffer rather than the kernel's, and must
/// still reach the subscriber once it reads, with nothing more sent after.
#[tokio::test]
async fn the_end_of_a_burst_reaches_a_tls_subscriber_that_reads_late() {
    let pki = Pki::new("burst");
    let (server, tls) = start(&pki, &[]);
    let text = "x".repeat(1000);
    for round in 0..8 {
        let topic = format!("burst-{round}");
        let mut subscriber = pki.connect(tls, None).await.expect("TLS connect");
        subscriber.subscribe(&topic).await;
        let mut publisher = server.client().await;
        let count = 1500;
        let lines: String = (0..count)
            .map(|_| send_line(&topic, &text, "all") + "\n")
            .collect();
        let sending = tokio::spawn(async move {
            publisher.send_raw(lines.as_bytes()).await;
            for _ in 0..count {
                publisher.expect_ok().await;
            }
        });
        // Let the broker fill the socket before anything is read.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for index in 0..count {
            subscriber
                .expect(delivered(&topic, &text, "all", index))
                .await;
        }
        sending.await.expect("publisher");
    }
}
