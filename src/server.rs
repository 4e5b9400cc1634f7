//! The listening side: binds the port, accepts connections and hands each to
//! a worker thread, where its `SessionActor` lives for the rest of its life.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle, System};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::config::{Config, Limits};
use crate::protocol::ProtocolError;
use crate::registry::{ListTopics, Registry};
use crate::session::SessionActor;
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::topic::SubscriberCount;

/// Pending connections the kernel holds for us; large so that a burst of
/// thousands of clients connecting at once is not refused.
const LISTEN_BACKLOG: i32 = 4096;
/// How long a peer may stay silent before keepalive probes start.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Kernel send buffer per connection. Left to autotuning it grows to
/// megabytes, where a backlog for a slow reader sits out of the broker's
/// sight; kept small, the backlog stays in the outbox, where `--max-pending`
/// and the topics' pacing see it.
const SEND_BUFFER: usize = 64 * 1024;
/// Longest pause after an accept error such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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
    registry: Addr<Registry>,
    limits: Arc<Limits>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
}

impl Broker {
    /// Starts the worker threads and the registry. Must run inside a System.
    pub fn start(config: &Config) -> Broker {
        let workers: Vec<Arbiter> = (0..config.workers.max(1)).map(|_| Arbiter::new()).collect();
        let handles = workers.iter().map(Arbiter::handle).collect();
        let registry = Registry::new(handles, config.cache_size).start();
        Broker {
            workers,
            registry,
            limits: Arc::new(config.limits.clone()),
            stats: Arc::new(Stats::default()),
            shutdown: Shutdown::default(),
        }
    }

    /// Accepts connections on `listener` until the System stops.
    pub fn serve(&self, listener: std::net::TcpListener) -> io::Result<()> {
        let listener = TcpListener::from_std(listener)?;
        let acceptor = Acceptor {
            workers: self.workers.iter().map(Arbiter::handle).collect(),
            registry: self.registry.clone(),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
        };
        actix::spawn(acceptor.run(listener));
        Ok(())
    }

    pub fn registry(&self) -> Addr<Registry> {
        self.registry.clone()
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Stops accepting, delivers everything acknowledged, closes every
    /// connection. Resolves to false if `deadline` passed first.
    pub fn shutdown(&self, deadline: Duration) -> impl std::future::Future<Output = bool> {
        let (shutdown, registry, stats) = (
            self.shutdown.clone(),
            self.registry.clone(),
            self.stats.clone(),
        );
        async move { shutdown.run(&registry, &stats, deadline).await }
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
    registry: Addr<Registry>,
    limits: Arc<Limits>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let mut next_worker = 0usize;
        let mut backoff = Duration::ZERO;
        let mut draining = std::pin::pin!(self.shutdown.draining());
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
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if !self.stats.try_admit(self.limits.max_connections) {
                tracing::warn!(%peer, "connection refused: --max-connections reached");
                actix::spawn(turn_away(stream));
                continue;
            }
            configure(&stream);
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%peer, %error, "could not hand over a connection");
                    self.stats.session_stopped();
                    continue;
                }
            };
            let worker = &self.workers[next_worker % self.workers.len()];
            next_worker = next_worker.wrapping_add(1);
            let registry = self.registry.clone();
            let limits = self.limits.clone();
            let stats = self.stats.clone();
            let shutdown = self.shutdown.clone();
            worker.spawn(async move {
                match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        SessionActor::start(stream, peer, registry, &limits, stats, shutdown);
                    }
                    Err(error) => {
                        tracing::warn!(%peer, %error, "could not register a connection");
                        stats.session_stopped();
                    }
                }
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

/// A broker on `127.0.0.1` with an ephemeral port, in a thread of its own:
/// for tests and benchmarks that need a real server in-process. Stops when
/// dropped.
pub struct BackgroundServer {
    addr: SocketAddr,
    system: System,
    registry: Addr<Registry>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    pub fn start(config: Config) -> io::Result<BackgroundServer> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mq-actix".into())
            .spawn(move || {
                let system = System::new();
                let broker = system.block_on(async {
                    let broker = Broker::start(&config);
                    let served = broker.serve(listener);
                    let _ = started_tx.send(
                        served.map(|()| (System::current(), broker.registry(), broker.stats())),
                    );
                    broker
                });
                let _ = system.run();
                broker.join();
            })?;
        let (system, registry, stats) = started_rx
            .recv()
            .map_err(|_| io::Error::other("the server thread died while starting"))??;
        Ok(BackgroundServer {
            addr,
            system,
            registry,
            stats,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Every topic with its number of subscribers, asked of the topics
    /// themselves (callable from any async runtime).
    pub async fn topic_subscribers(&self) -> Vec<(Arc<str>, usize)> {
        let Ok(topics) = self.registry.send(ListTopics).await else {
            return Vec::new();
        };
        let mut counts = Vec::with_capacity(topics.len());
        for (name, topic) in topics {
            if let Ok(count) = topic.send(SubscriberCount).await {
                counts.push((name, count));
            }
        }
        counts
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
