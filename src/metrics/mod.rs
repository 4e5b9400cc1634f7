//! What the broker tells Prometheus about itself (`--metrics ADDR`).
//!
//! Every series is a `metrics` handle, registered once when the broker
//! starts ([`register`]) and kept in one process-wide [`Metrics`], so none
//! is ever looked up by name; without `--metrics` no recorder is installed
//! and every handle is a no-op. Rare events (a refusal, a parse error, a
//! subscription) go straight to their handle. The events of the hot path
//! (sends read, deliveries, bytes written: once per read, topic batch or
//! `writev`) would make every worker thread add to the same few atomics,
//! and the cache line bouncing between cores costs more than the add; so
//! each thread adds to its own `Shard`, uncontended, and a scrape sums
//! the shards into the handles. What is a state rather than an event
//! (connections open, bytes owed, memory used) is likewise read from its
//! owner when `/metrics` is scraped ([`Metrics::observe`]). [`http`] serves
//! `/metrics`, `/healthz` and `/topics`.
//!
//! Like the `metrics` recorder they feed, the counts are process-wide: a
//! process runs one broker, except in tests, which read [`Stats`] instead.

pub mod http;
pub mod names;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge};

use crate::memory::Memory;
use crate::protocol::{Delivery, ProtocolError};
use crate::stats::Stats;

pub use http::Exporter;

/// The `reason` of each parse error, as `mq_parse_errors_total` labels it.
const PARSE_REASONS: [(ProtocolError, &str); 4] = [
    (ProtocolError::NotUtf8, "not_utf8"),
    (ProtocolError::NotJson, "not_json"),
    (ProtocolError::Malformed, "malformed"),
    (ProtocolError::LineTooLong, "line_too_long"),
];

/// Why a connection was turned away, as `mq_connections_refused_total`
/// labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` were open.
    MaxConnections,
    /// `--max-connections-per-ip` were open from the peer's address.
    MaxConnectionsPerIp,
    /// The accepted socket could not be handed to a worker thread.
    SetupFailed,
}

/// One thread's counts of the hot-path events. Only its own thread adds to
/// it, and it fills whole cache lines of its own, so adding never contends
/// with another core.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    received_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    in_all: AtomicU64,
    in_one: AtomicU64,
    out_all: AtomicU64,
    out_one: AtomicU64,
    replayed: AtomicU64,
}

/// Every thread's shard, for the scrape to sum; a shard outlives its
/// thread, so what it counted is never lost.
static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());

thread_local! {
    static SHARD: Arc<Shard> = {
        let shard = Arc::new(Shard::default());
        lock_shards().push(shard.clone());
        shard
    };
}

/// Only held to push or to clone the list, which cannot panic, so a
/// poisoned lock still holds a sound list.
fn lock_shards() -> std::sync::MutexGuard<'static, Vec<Arc<Shard>>> {
    SHARDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds `n` to this thread's count of one event. A thread being torn down
/// has no shard any more; what it would count then is dropped.
fn add(count: impl Fn(&Shard) -> &AtomicU64, n: u64) {
    let _ = SHARD.try_with(|shard| count(shard).fetch_add(n, Ordering::Relaxed));
}

/// A counter per `delivery`.
struct ByDelivery {
    all: Counter,
    one: Counter,
}

impl ByDelivery {
    fn register(name: &'static str) -> ByDelivery {
        ByDelivery {
            all: counter!(name, "delivery" => "all"),
            one: counter!(name, "delivery" => "one"),
        }
    }
}

/// Every series the broker exports, as handles registered once.
pub struct Metrics {
    refused_max_connections: Counter,
    refused_max_connections_per_ip: Counter,
    refused_setup_failed: Counter,
    subscriptions: Gauge,
    topics: Gauge,
    messages_in: ByDelivery,
    messages_out: ByDelivery,
    received_bytes: Counter,
    sent_bytes: Counter,
    replayed: Counter,
    parse_errors: [Counter; PARSE_REASONS.len()],
    connections: Gauge,
    connections_accepted: Counter,
    slow_consumers: Counter,
    outbox_pending: Gauge,
    memory_used: Gauge,
    memory_limit: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::register);

/// The process's metrics; the first call registers every series.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Registers and describes every series with whatever recorder is installed
/// (none without `--metrics`), so that each one, with each of its labels,
/// is exported at 0 from the start: dashboards and alerts never see a
/// series missing.
pub fn register() {
    LazyLock::force(&METRICS);
}

impl Metrics {
    fn register() -> Metrics {
        for &(name, help) in names::HELP {
            if name.ends_with("_total") {
                describe_counter!(name, help);
            } else {
                describe_gauge!(name, help);
            }
        }
        Metrics {
            refused_max_connections: counter!(
                names::CONNECTIONS_REFUSED, "reason" => "max_connections"
            ),
            refused_max_connections_per_ip: counter!(
                names::CONNECTIONS_REFUSED, "reason" => "max_connections_per_ip"
            ),
            refused_setup_failed: counter!(names::CONNECTIONS_REFUSED, "reason" => "setup_failed"),
            subscriptions: gauge!(names::SUBSCRIPTIONS),
            topics: gauge!(names::TOPICS),
            messages_in: ByDelivery::register(names::MESSAGES_IN),
            messages_out: ByDelivery::register(names::MESSAGES_OUT),
            received_bytes: counter!(names::RECEIVED_BYTES),
            sent_bytes: counter!(names::SENT_BYTES),
            replayed: counter!(names::REPLAYED_MESSAGES),
            parse_errors: PARSE_REASONS
                .map(|(_, reason)| counter!(names::PARSE_ERRORS, "reason" => reason)),
            connections: gauge!(names::CONNECTIONS),
            connections_accepted: counter!(names::CONNECTIONS_ACCEPTED),
            slow_consumers: counter!(names::SLOW_CONSUMERS),
            outbox_pending: gauge!(names::OUTBOX_PENDING_BYTES),
            memory_used: gauge!(names::MEMORY_USED_BYTES),
            memory_limit: gauge!(names::MEMORY_LIMIT_BYTES),
        }
    }

    /// A connection was turned away.
    pub fn refused(&self, why: Refusal) {
        match why {
            Refusal::MaxConnections => self.refused_max_connections.increment(1),
            Refusal::MaxConnectionsPerIp => self.refused_max_connections_per_ip.increment(1),
            Refusal::SetupFailed => self.refused_setup_failed.increment(1),
        }
    }

    /// `n` subscriptions began (or, negative, ended).
    pub fn subscriptions(&self, n: isize) {
        self.subscriptions.increment(n as f64);
    }

    /// A topic actor started (`1`) or stopped (`-1`).
    pub fn topics(&self, n: isize) {
        self.topics.increment(n as f64);
    }

    /// `n` sends taken.
    pub fn messages_in(&self, delivery: Delivery, n: u64) {
        match delivery {
            Delivery::All => add(|s| &s.in_all, n),
            Delivery::One => add(|s| &s.in_one, n),
        }
    }

    /// `n` live deliveries.
    pub fn messages_out(&self, delivery: Delivery, n: u64) {
        match delivery {
            Delivery::All => add(|s| &s.out_all, n),
            Delivery::One => add(|s| &s.out_one, n),
        }
    }

    /// Bytes of lines read from clients.
    pub fn received(&self, bytes: u64) {
        add(|s| &s.received_bytes, bytes);
    }

    /// Bytes written to clients.
    pub fn sent(&self, bytes: usize) {
        add(|s| &s.sent_bytes, bytes as u64);
    }

    /// `n` cached messages replayed.
    pub fn replayed(&self, n: u64) {
        add(|s| &s.replayed, n);
    }

    /// A line was refused before it became a command; other errors are not
    /// parse errors and are not counted here.
    pub fn parse_error(&self, error: ProtocolError) {
        if let Some(i) = PARSE_REASONS.iter().position(|(e, _)| *e == error) {
            self.parse_errors[i].increment(1);
        }
    }

    /// Sums the threads' shards into their series, and reads what is a
    /// state, not an event, from its owner: done when `/metrics` is
    /// scraped, so the hot path pays nothing for it. The connection
    /// counters live in [`Stats`], where admission keeps them exact; they
    /// are copied here.
    pub fn observe(&self, stats: &Stats, memory: &Memory) {
        let shards = lock_shards().clone();
        let total = |count: fn(&Shard) -> &AtomicU64| -> u64 {
            shards
                .iter()
                .map(|shard| count(shard).load(Ordering::Relaxed))
                .sum()
        };
        self.received_bytes.absolute(total(|s| &s.received_bytes));
        self.sent_bytes.absolute(total(|s| &s.sent_bytes));
        self.messages_in.all.absolute(total(|s| &s.in_all));
        self.messages_in.one.absolute(total(|s| &s.in_one));
        self.messages_out.all.absolute(total(|s| &s.out_all));
        self.messages_out.one.absolute(total(|s| &s.out_one));
        self.replayed.absolute(total(|s| &s.replayed));
        self.connections.set(stats.live_sessions() as f64);
        self.connections_accepted.absolute(stats.total_sessions());
        self.slow_consumers.absolute(stats.slow_consumers());
        let pending: usize = memory.consumers().iter().map(|c| c.pending()).sum();
        self.outbox_pending.set(pending as f64);
        self.memory_used.set(memory.used() as f64);
        self.memory_limit.set(memory.limit() as f64);
    }
}
