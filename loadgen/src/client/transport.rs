//! How a connection reaches a server: plain TCP, or TLS on top of it
//! (`--tls-ca`), and which of `--addr`'s servers each connection goes to.
//!
//! The halves of a connection are enums rather than a type parameter: one
//! branch per read or write of up to 64 KiB costs nothing next to the
//! system call, where a parameter would thread through every peer and
//! scenario. The plain halves are tokio's owned ones, with no lock between
//! reading and writing, exactly as before TLS existed; the TLS stream, one
//! state machine for both directions, is split with `tokio::io::split`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A TLS client that trusts the certificates in the PEM file `ca` and
/// nothing else: a broker under test shows a certificate made for the test
/// (its CA's, or a self-signed one), never one of the web's. rustls with its
/// `ring` provider, as the broker uses.
pub fn connector(ca: &Path) -> anyhow::Result<TlsConnector> {
    let reading = || format!("reading --tls-ca {}", ca.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(reading)? {
        roots
            .add(cert.with_context(reading)?)
            .with_context(|| format!("--tls-ca {}: not a usable certificate", ca.display()))?;
    }
    ensure!(
        !roots.is_empty(),
        "--tls-ca {} holds no PEM certificate",
        ca.display()
    );
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One server to connect to: its address, and over TLS what its
/// certificate is checked against.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Endpoint");
        debug.field("addr", &self.addr);
        if let Some((_, name)) = &self.tls {
            debug.field("tls_name", name);
        }
        debug.finish()
    }
}

impl Endpoint {
    /// A server spoken to in plain text.
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, tls: None }
    }

    /// A server spoken to over TLS, whose certificate must be valid for
    /// `name` and signed by what `connector` trusts.
    pub fn tls(addr: SocketAddr, connector: TlsConnector, name: ServerName<'static>) -> Endpoint {
        Endpoint {
            addr,
            tls: Some((connector, name)),
        }
    }

    /// Opens a connection, over TLS with the handshake done. Nagle is off:
    /// loadgen batches its own writes, and Nagle would add delay to every
    /// partial batch.
    pub async fn connect(&self) -> anyhow::Result<(ReadHalf, WriteHalf)> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let Some((connector, name)) = &self.tls else {
            let (read, write) = stream.into_split();
            return Ok((ReadHalf::Plain(read), WriteHalf::Plain(write)));
        };
        let stream = connector
            .connect(name.clone(), stream)
            .await
            .with_context(|| format!("TLS handshake with {}", name.to_str()))?;
        let (read, write) = tokio::io::split(stream);
        Ok((ReadHalf::Tls(read), WriteHalf::Tls(write)))
    }
}

/// `--addr`'s servers, which the connections of each role take in turn, so
/// that every server gets its share of the receivers and of the publishers.
#[derive(Debug)]
pub struct Servers(Vec<Endpoint>);

impl Servers {
    /// At least one server.
    pub fn new(endpoints: Vec<Endpoint>) -> anyhow::Result<Servers> {
        ensure!(!endpoints.is_empty(), "--addr names no server");
        Ok(Servers(endpoints))
    }

    /// The server of a role's `i`-th connection.
    pub fn for_connection(&self, i: usize) -> &Endpoint {
        &self.0[i % self.0.len()]
    }

    /// The servers as reports name them: comma-separated addresses, one
    /// address alone as before there could be several.
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self.0.iter().map(|e| e.addr.to_string()).collect();
        addrs.join(",")
    }
}

/// A connection's reading half.
#[derive(Debug)]
pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

impl ReadHalf {
    /// Reads into `buf`'s spare capacity; `Ok(0)` means the server closed.
    /// Cancel-safe, as the reads of both kinds of half are.
    pub async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(half) => half.read_buf(buf).await,
            ReadHalf::Tls(half) => half.read_buf(buf).await,
        }
    }
}

/// A connection's writing half.
#[derive(Debug)]
pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl WriteHalf {
    /// Hands all of `bytes` to the kernel. TLS needs the flush: a write
    /// returns once rustls has taken the bytes, and the records the socket
    /// would not take yet wait in rustls until a flush pushes them out.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Plain(half) => half.write_all(bytes).await,
            WriteHalf::Tls(half) => {
                half.write_all(bytes).await?;
                half.flush().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> Endpoint {
        Endpoint::plain(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn ports(servers: &Servers, n: usize) -> Vec<u16> {
        (0..n)
            .map(|i| servers.for_connection(i).addr.port())
            .collect()
    }

    #[test]
    fn connections_take_the_servers_in_turn() {
        let servers = Servers::new(vec![at(1), at(2), at(3)]).unwrap();
        assert_eq!(ports(&servers, 7), [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(servers.describe(), "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
    }

    #[test]
    fn one_server_takes_every_connection() {
        let servers = Servers::new(vec![at(7000)]).unwrap();
        assert_eq!(ports(&servers, 100), [7000; 100]);
        assert_eq!(servers.describe(), "127.0.0.1:7000");
    }

    #[test]
    fn no_server_is_refused() {
        assert!(Servers::new(Vec::new()).is_err());
    }
}
