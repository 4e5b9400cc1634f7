//! The TLS listener's side of a connection: the server configuration from
//! `--tls-cert`, `--tls-key` and `--tls-client-ca`, the handshake (bounded
//! in time), and [`Connection`], which lets a session read and write a plain
//! or a TLS socket alike.
//!
//! rustls runs with its `ring` provider: it builds with nothing but a C
//! compiler, where `aws-lc-rs` also wants cmake or a prebuilt NASM.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TLS_HANDSHAKE_TIMEOUT;

/// The TLS server configuration, or a one-line error naming the file at
/// fault: the broker does not start with a certificate it cannot use.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(ring::default_provider());
    let chain = read_certificates(cert, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| format!("cannot read the TLS key {}: {error}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certificates(path, "client CA")? {
                roots
                    .add(ca)
                    .map_err(|error| format!("client CA {}: {error}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| format!("client CA {}: {error}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|error| {
        format!(
            "TLS certificate {} and key do not go together: {error}",
            cert.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in a PEM file; none is an error.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let failed = |error: &dyn std::fmt::Display| {
        format!("cannot read the {what} {}: {error}", path.display())
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| failed(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| failed(&error))?;
    if certificates.is_empty() {
        return Err(failed(&"no PEM certificate in it"));
    }
    Ok(certificates)
}

/// The TLS handshake of an accepted socket, given at most
/// [`TLS_HANDSHAKE_TIMEOUT`]: a peer that speaks plain text, stalls or
/// fails is dropped, with nothing kept of it.
pub async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> io::Result<Connection> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(Connection::Tls(Box::new(tls))),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the TLS handshake took too long",
        )),
    }
}

/// A client's socket, plain or TLS. The plain one splits into tokio's owned
/// halves (no lock between reader and writer); the TLS one, one state
/// machine for both directions, into `tokio::io::split`'s.
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    /// The common name (CN) of the client certificate's subject, when the
    /// client sent one (the handshake checked it against `--tls-client-ca`).
    pub fn client_name(&self) -> Option<String> {
        match self {
            Connection::Plain(_) => None,
            Connection::Tls(tls) => common_name(tls.get_ref().1.peer_certificates()?.first()?),
        }
    }

    pub fn split(self) -> (Source, Sink) {
        match self {
            Connection::Plain(stream) => {
                let (read, write) = stream.into_split();
                (Source::Plain(read), Sink::Plain(write))
            }
            Connection::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (Source::Tls(read), Sink::Tls(write))
            }
        }
    }
}

/// The read half of a [`Connection`].
pub enum Source {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a [`Connection`].
pub enum Sink {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for Source {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Source::Plain(read) => Pin::new(read).poll_read(cx, buf),
            Source::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Sink::Plain(write) => Pin::new(write).poll_write(cx, buf),
            Sink::Tls(write) => Pin::new(write).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Sink::Plain(write) => Pin::new(write).poll_write_vectored(cx, bufs),
            Sink::Tls(write) => Pin::new(write).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Sink::Plain(write) => write.is_write_vectored(),
            Sink::Tls(write) => write.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sink::Plain(write) => Pin::new(write).poll_flush(cx),
            Sink::Tls(write) => Pin::new(write).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sink::Plain(write) => Pin::new(write).poll_shutdown(cx),
            Sink::Tls(write) => Pin::new(write).poll_shutdown(cx),
        }
    }
}

/// One DER element at the start of `input`: its tag, its contents and what
/// follows it; `None` when it is not well formed.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (len, rest) = rest.split_at(octets);
        let len = len
            .iter()
            .fold(0usize, |len, &byte| len << 8 | usize::from(byte));
        (len, rest)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// The OID of `commonName` (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject's common name of an X.509 certificate (already verified by
/// rustls, so only the few fields on the way to the subject are read): the
/// certificate, its to-be-signed part, then after the optional version the
/// serial number, signature algorithm, issuer and validity.
fn common_name(certificate: &[u8]) -> Option<String> {
    let (SEQUENCE, certificate, _) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, mut fields, _) = element(certificate)? else {
        return None;
    };
    if let (VERSION, _, rest) = element(fields)? {
        fields = rest;
    }
    for _ in 0..4 {
        fields = element(fields)?.2;
    }
    let (SEQUENCE, mut subject, _) = element(fields)? else {
        return None;
    };
    while !subject.is_empty() {
        let (SET, mut attributes, rest) = element(subject)? else {
            return None;
        };
        subject = rest;
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, rest) = element(attributes)? else {
                return None;
            };
            attributes = rest;
            let (OID, oid, value) = element(attribute)? else {
                return None;
            };
            if oid == COMMON_NAME {
                // UTF8String, PrintableString or IA5String: all UTF-8.
                let (0x0c | 0x13 | 0x16, text, _) = element(value)? else {
                    return None;
                };
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate(subject: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = subject;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_common_name_is_found_among_other_attributes() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "Example");
        subject.push(DnType::CommonName, "alice");
        subject.push(DnType::CountryName, "DE");
        assert_eq!(common_name(&certificate(subject)).as_deref(), Some("alice"));
    }

    #[test]
    fn no_common_name_and_garbage_give_none() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "Example");
        let der = certificate(subject);
        assert_eq!(common_name(&der), None);
        for len in 0..der.len() {
            assert_eq!(common_name(&der[..len]), None);
        }
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
