//! Every setting and limit of a running broker, in one place.
//!
//! The flags of `mq-actix` fill [`Config`] and [`Limits`]; the constants
//! below are the tuning values that have no flag, each with the reason for
//! its value. `docs/PROTOCOL.md` refers here rather than repeating numbers.

use std::sync::Arc;
use std::time::Duration;

use crate::security::users::Authenticator;

/// Port when none is given, as the existing servers.
pub const DEFAULT_PORT: u16 = 7000;
/// Messages kept per topic for replay when no size is given, as the existing
/// servers.
pub const DEFAULT_CACHE_SIZE: usize = 100;
/// Longest accepted line: large enough for any reasonable message, small
/// enough that a client cannot make one line cost much memory.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// What one client may owe before it is cut off as a slow consumer: many
/// seconds of traffic for a live reader, a bounded loss for a dead one.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// Open connections before new ones are turned away; the OS's open-file
/// limit is raised to match.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Share of physical memory that `--max-memory` defaults to, in percent:
/// like Redis's advice for `maxmemory`, it leaves room for the OS, the
/// allocator's slack and what the budget cannot see (kernel socket buffers).
pub const DEFAULT_MAX_MEMORY_PERCENT: u64 = 50;
/// How long `SIGINT`/`SIGTERM` wait for clients to be sent what they are
/// owed before the broker exits anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may hold an unfinished line: far more than a person
/// typing in telnet needs, far less than a slow-loris client would like.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pending connections the kernel holds for us; large so that a burst of
/// thousands of clients connecting at once is not refused.
pub const LISTEN_BACKLOG: i32 = 4096;
/// How long a peer may stay silent before keepalive probes start, and how
/// often they are sent: a vanished peer is noticed within a few minutes.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// See [`KEEPALIVE_IDLE`].
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Kernel send buffer per connection. Left to autotuning it grows to
/// megabytes, where a backlog for a slow reader sits out of the broker's
/// sight; kept small, the backlog stays in the outbox, where `max_pending`,
/// `max_memory` and the topics' pacing see it.
pub const SEND_BUFFER: usize = 64 * 1024;
/// Longest pause after an accept error such as EMFILE: the listener retries
/// with a doubling backoff from [`MIN_ACCEPT_BACKOFF`] up to this.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// First pause after an accept error.
pub const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Slots an outbox queue keeps once written out (each slot is one line or
/// handoff, about 70 bytes): enough for a connection's usual turn, so a
/// busy one does not reallocate every time, while a burst's queue shrinks
/// back instead of staying with the connection.
pub const IDLE_QUEUE_SLOTS: usize = 16;
/// Initial read buffer per connection. Small because an idle connection
/// should cost little memory; a connection whose reads fill it gets twice
/// the room for its next read (`codec`), and a longer line grows it too.
pub const READ_BUFFER: usize = 512;
/// Largest read buffer a busy connection's doubling grows to: enough for a
/// read to take many short lines at once, small enough that thousands of
/// busy publishers cost little. Longer lines still fit: the buffer grows
/// past this for a line that needs it, up to `--max-line`.
pub const MAX_READ_BUFFER: usize = 16 * 1024;
/// Slices per `writev`; Linux refuses more than 1024 (`IOV_MAX`) in one call.
pub const MAX_SLICES: usize = 1024;

/// How long a topic must go without a subscriber, a cached message or any
/// command before its actor is retired, leaving only its name and counter
/// in the registry until it is named again. Long enough that a topic used
/// every second or so keeps its actor (reviving one costs a registry round
/// trip); short enough that topics named once soon stop costing an actor.
pub const DORMANT_AFTER: Duration = Duration::from_secs(2);

/// A topic hands its pending `delivery: "all"` lines to the subscribers once
/// they reach this size, even if more sends are waiting, so one batch stays
/// cheap to copy into the socket.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Bytes of sends one topic may have taken and not yet passed on (queued in
/// its mailbox, or held while its subscribers are behind). A publisher
/// whose topic has no credit left is not read until it has: this is the
/// bound that slows publishers to their topic's pace. Four batches' worth
/// keeps a topic busy while its publishers are refilled.
pub const TOPIC_CREDIT: usize = 4 * MAX_BATCH_BYTES;
/// Pacing: when *every* subscriber of a topic owes more than this, and at
/// least one of them is still reading, the topic keeps its credit until one
/// has caught up below it. Twice a batch, so a reader that keeps up is never
/// paced, and a slow one owes little more than this while it is.
pub const PACE_BYTES: usize = 2 * MAX_BATCH_BYTES;
/// A subscriber whose socket took nothing for this long has stopped
/// reading: it never holds its topic back, and is left to `max_pending`.
pub const STALLED_AFTER: Duration = Duration::from_millis(500);
/// While over `max_memory`, the slowest consumers are looked for at most
/// this often, so a flood of refused sends does not scan every connection
/// each time.
pub const RELIEVE_EVERY: Duration = Duration::from_millis(100);
/// After the shutdown deadline, how long writers get to stop and count what
/// they could not write: they stop at once unless the machine is starved.
pub const ABANDON_GRACE: Duration = Duration::from_secs(1);
/// A consumer owing less than this is never cut off to relieve memory:
/// cutting it would free almost nothing.
pub const RELIEVE_MIN_PENDING: usize = PACE_BYTES;
/// Topics `/topics` lists when no `limit` is given: the largest hundred
/// answer "which topics hold the memory" without a body the size of the
/// whole broker.
pub const DEFAULT_TOPICS_LIMIT: usize = 100;

/// `--max-connections-per-ip` is `--max-connections` divided by this unless
/// given: one address (a client, or a host behind one NAT) can then hold a
/// quarter of the slots, so it takes four to lock everyone out, while a
/// gateway or a benchmark host with thousands of clients still fits.
pub const PER_IP_SHARE: usize = 4;
/// ...but never fewer than this (or all of them, if there are fewer), so
/// that a small `--max-connections` does not leave one address a handful.
pub const MIN_CONNECTIONS_PER_IP: usize = 1024;
/// How long a TLS client may take over its handshake before it is dropped:
/// its socket holds a connection slot meanwhile, and a real client needs a
/// few round trips, not seconds.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a wrong password waits for its answer, so that guessing is slow
/// even from many connections; too short for a person to notice.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(500);
/// Failed `auth` commands a connection may send; the last one is answered
/// and the connection closed, so a guesser must reconnect (and is held to
/// `--max-connections-per-ip`).
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Characters of the user name a failed `auth` logs: the client chose it,
/// and a megabyte-long name should not make a megabyte-long log line.
pub const LOGGED_USER_NAME_CHARS: usize = 64;
/// Password checks running at once. Each argon2 check takes about 19 MiB and
/// a core for tens of milliseconds: this bounds what a flood of `auth`
/// commands can cost, while honest logins, rare, do not wait.
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 4;

/// `--data-dir`: indexes a topic reserves on disk at a time. A topic hands
/// out only indexes below a lease that a synced commit holds, so a crash
/// can never make it hand one out twice; the price is a gap of at most this
/// many indexes after a crash (none after a graceful stop), and one synced
/// commit per topic per this many sends, asked for half a lease ahead so a
/// busy topic never waits for it.
pub const LEASE: u64 = 1 << 16;
/// `--fsync batch`: the longest a commit stays unsynced, as Redis's
/// `appendfsync everysec` but tighter: what a power loss or a kill -9 may
/// take back.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// `--fsync never`: redb reuses the space of removed messages only after a
/// synced commit, so even this mode syncs now and then to keep the file the
/// size of the caches.
pub const LAZY_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// `--cluster`: how often a node tells Redis, per topic it has subscribers
/// for, that it is alive and how many subscribers it has there.
pub const CLUSTER_HEARTBEAT: Duration = Duration::from_secs(1);
/// `--cluster`: how long a node's subscriber count counts without a
/// heartbeat; after that (a dead or cut-off node) no `one` message is sent
/// its way. Three heartbeats, so one late heartbeat never drops a node.
pub const CLUSTER_NODE_TTL: Duration = Duration::from_secs(3);
/// `--cluster`: how long connecting to Redis may take before a send is
/// refused with `Cluster unavailable`.
pub const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// `--cluster`: how long a request to Redis may take before it counts as an
/// outage (a stopped or partitioned Redis never answers).
pub const CLUSTER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// `--cluster`: the longest a request to Redis may take in all, retries and
/// reconnections included, before the send (or subscribe) waiting for it is
/// answered `Cluster unavailable`.
pub const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// `--cluster`: the first wait before trying Redis again after an outage;
/// it doubles per failed try, up to [`CLUSTER_MAX_BACKOFF`].
pub const CLUSTER_MIN_BACKOFF: Duration = Duration::from_millis(100);
/// `--cluster`: the longest wait between two tries to reach Redis.
pub const CLUSTER_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Everything a broker needs besides its listening socket.
#[derive(Debug, Clone)]
pub struct Config {
    /// Messages cached per topic; 0 disables the cache.
    pub cache_size: usize,
    /// Threads (actix arbiters) that run sessions and topics.
    pub workers: usize,
    /// The bounds that protect the broker and its clients.
    pub limits: Limits,
    /// `--users`: who may connect and what each may do; `None` lets every
    /// client do everything, as the plain protocol does.
    pub users: Option<Arc<Authenticator>>,
}

/// The bounds that keep one client from hurting the others, or the broker as
/// a whole from outgrowing its machine. Each is a flag of the same name.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest accepted line in bytes, without its line ending; a longer one
    /// is answered with `Line too long` and discarded.
    pub max_line: usize,
    /// Bytes (payload plus per-item bookkeeping) a client may owe before it
    /// is cut off as a slow consumer.
    pub max_pending: usize,
    /// Open connections before new ones are refused with `Too many
    /// connections`.
    pub max_connections: usize,
    /// Bytes of caches, outboxes, topic mailboxes and partial lines before
    /// new `send`s are refused with `Server out of memory`; 0 = no limit.
    pub max_memory: usize,
    /// How long a connection may hold an unfinished line before it is
    /// closed.
    pub line_timeout: Duration,
    /// Open connections from one IP address before new ones from it are
    /// refused with `Too many connections`.
    pub max_connections_per_ip: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_size: DEFAULT_CACHE_SIZE,
            workers: default_workers(),
            limits: Limits::default(),
            users: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_pending: DEFAULT_MAX_PENDING,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_memory: default_max_memory(),
            line_timeout: DEFAULT_LINE_TIMEOUT,
            max_connections_per_ip: default_max_connections_per_ip(DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// `--max-connections-per-ip` when not given: [`PER_IP_SHARE`] of
/// `max_connections`, at least [`MIN_CONNECTIONS_PER_IP`] of them.
pub fn default_max_connections_per_ip(max_connections: usize) -> usize {
    (max_connections / PER_IP_SHARE).max(MIN_CONNECTIONS_PER_IP.min(max_connections))
}

/// One worker per core the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`DEFAULT_MAX_MEMORY_PERCENT`] of physical memory, or no limit where the
/// OS does not say how much there is.
pub fn default_max_memory() -> usize {
    // SAFETY: sysconf only reads system configuration values.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page_size)) {
        (Ok(pages), Ok(page_size)) => {
            let bytes = pages.saturating_mul(page_size) / 100 * DEFAULT_MAX_MEMORY_PERCENT;
            usize::try_from(bytes).unwrap_or(usize::MAX)
        }
        _ => 0,
    }
}
