//! The listening side: binds the port, accepts connections and hands each to
//! a worker thread, where its `SessionActor` lives for the rest of its life.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::cluster::Cluster;
use crate::config::{
    Config, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, LISTEN_BACKLOG, MAX_ACCEPT_BACKOFF,
    MIN_ACCEPT_BACKOFF, SEND_BUFFER,
};
use crate::memory::Memory;
use crate::metrics::http::Observed;
use crate::metrics::{self, Exporter, Refusal};
use crate::protocol::ProtocolError;
use crate::registry::Registry;
use crate::security::limits::PerIp;
use crate::security::tls::{self, Connection};
use crate::session::{self, SessionActor};
use crate::shutdown::{Outcome, Shutdown};
use crate::stats::Stats;
use crate::store;

/// Binds a listening socket without needing a runtime, so the address (and a
/// port-in-use error) is known before anything starts.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Raises the open-file limit as far as the OS allows, since every connection
/// is a file; logs when that is fewer than `wanted`.
pub fn raise_fd_limit(wanted: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            "the OS allows {limit} open files, fewer than the {wanted} that \
             --max-connections asks for: connections beyond that will fail"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit raised"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
}

/// A running broker inside an actix `System`: its workers, its registry and
/// its counters.
pub struct Broker {
    workers: Vec<Arbiter>,
    shared: Arc<session::Shared>,
}

impl Broker {
    /// Starts the worker threads and the registry. Must run inside a System.
    pub fn start(config: &Config) -> Broker {
        Broker::start_with_store(config, None)
    }

    /// As [`Broker::start`], with topics kept in `store` too (`--data-dir`).
    pub fn start_with_store(config: &Config, store: Option<store::Opened>) -> Broker {
        Broker::start_with_backing(config, store, None)
    }

    /// As [`Broker::start`], with every topic shared through `cluster`
    /// (`--cluster`).
    pub fn start_clustered(config: &Config, cluster: Cluster) -> Broker {
        Broker::start_with_backing(config, None, Some(cluster))
    }

    fn start_with_backing(
        config: &Config,
        store: Option<store::Opened>,
        cluster: Option<Cluster>,
    ) -> Broker {
        let workers: Vec<Arbiter> = (0..config.workers.max(1)).map(|_| Arbiter::new()).collect();
        let handles = workers.iter().map(Arbiter::handle).collect();
        let memory = Memory::new(config.limits.max_memory);
        metrics::register();
        let registry = Registry::new(handles, config.cache_size, memory.clone(), store)
            .clustered(cluster)
            .start();
        Broker {
            workers,
            shared: Arc::new(session::Shared {
                registry,
                limits: Arc::new(config.limits.clone()),
                stats: Arc::new(Stats::new(config.limits.max_connections)),
                memory,
                shutdown: Shutdown::default(),
                users: config.users.clone(),
                per_ip: PerIp::new(config.limits.max_connections_per_ip),
            }),
        }
    }

    /// Accepts connections on `listener` until the System stops.
    pub fn serve(&self, listener: std::net::TcpListener) -> io::Result<()> {
        self.accept(listener, None)
    }

    /// Accepts TLS connections on `listener` until the System stops; each
    /// handshake runs on the worker thread that will host the session.
    pub fn serve_tls(&self, listener: std::net::TcpListener, tls: TlsAcceptor) -> io::Result<()> {
        self.accept(listener, Some(tls))
    }

    fn accept(&self, listener: std::net::TcpListener, tls: Option<TlsAcceptor>) -> io::Result<()> {
        let listener = TcpListener::from_std(listener)?;
        let acceptor = Acceptor {
            workers: self.workers.iter().map(Arbiter::handle).collect(),
            shared: self.shared.clone(),
            tls,
        };
        actix::spawn(acceptor.run(listener));
        Ok(())
    }

    /// Serves `/metrics`, `/healthz` and `/topics` until the System stops.
    pub fn serve_metrics(&self, exporter: Exporter) -> io::Result<()> {
        exporter.serve(Observed {
            registry: self.shared.registry.clone(),
            stats: self.shared.stats.clone(),
            memory: self.shared.memory.clone(),
            shutdown: self.shared.shutdown.clone(),
        })
    }

    pub fn registry(&self) -> Addr<Registry> {
        self.shared.registry.clone()
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    pub fn memory(&self) -> Arc<Memory> {
        self.shared.memory.clone()
    }

    /// Stops accepting, delivers everything acknowledged, closes every
    /// connection, and says whether `deadline` passed first.
    pub fn shutdown(&self, deadline: Duration) -> impl std::future::Future<Output = Outcome> {
        let (shutdown, registry) = (self.shared.shutdown.clone(), self.shared.registry.clone());
        async move { shutdown.run(&registry, deadline).await }
    }

    /// Waits for the worker threads to finish after the System stopped.
    pub fn join(self) {
        for worker in self.workers {
            worker.stop();
            let _ = worker.join();
        }
    }
}

struct Acceptor {
    workers: Vec<ArbiterHandle>,
    shared: Arc<session::Shared>,
    /// Set on the TLS listener.
    tls: Option<TlsAcceptor>,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let mut next_worker = 0usize;
        let mut backoff = Duration::ZERO;
        let mut draining = std::pin::pin!(self.shared.shutdown.draining());
        loop {
            let accepted = tokio::select! {
                () = &mut draining => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                Err(error) => {
                    // Out of files or memory: the listener stays, we retry.
                    if backoff.is_zero() {
                        tracing::warn!(%error, "accept failed; retrying with backoff");
                    }
                    backoff = (backoff * 2).clamp(MIN_ACCEPT_BACKOFF, MAX_ACCEPT_BACKOFF);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            // The whole broker's limit first: when both are reached, that
            // is the reason given.
            let Some(admitted) = self.shared.stats.admit() else {
                tracing::warn!(%peer, "connection refused: --max-connections reached");
                metrics::get().refused(Refusal::MaxConnections);
                actix::spawn(turn_away(stream));
                continue;
            };
            let Some(ip_slot) = self.shared.per_ip.admit(peer.ip()) else {
                self.shared.stats.refused_per_ip();
                metrics::get().refused(Refusal::MaxConnectionsPerIp);
                tracing::warn!(%peer, "connection refused: --max-connections-per-ip reached");
                actix::spawn(turn_away(stream));
                continue;
            };
            let admitted = admitted.with_ip(ip_slot);
            self.shared.stats.accepted();
            configure(&stream);
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%peer, %error, "could not hand over a connection");
                    metrics::get().refused(Refusal::SetupFailed);
                    continue;
                }
            };
            let worker = &self.workers[next_worker % self.workers.len()];
            next_worker = next_worker.wrapping_add(1);
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            worker.spawn(async move {
                let stream = match TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "could not register a connection");
                        metrics::get().refused(Refusal::SetupFailed);
                        return;
                    }
                };
                let connection = match tls {
                    None => Connection::Plain(stream),
                    // The slot stays taken during the handshake, which is
                    // bounded in time.
                    Some(tls) => match tls::handshake(&tls, stream).await {
                        Ok(connection) => connection,
                        Err(error) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                    },
                };
                SessionActor::start(connection, peer, admitted, shared);
            });
        }
    }
}

/// Low latency for small lines, and keepalive so dead peers are noticed.
fn configure(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    let socket = SockRef::from(stream);
    let _ = socket.set_tcp_keepalive(&keepalive);
    let _ = socket.set_send_buffer_size(SEND_BUFFER);
}

async fn turn_away(mut stream: TcpStream) {
    let _ = stream
        .write_all(&ProtocolError::TooManyConnections.reply())
        .await;
    let _ = stream.shutdown().await;
}
