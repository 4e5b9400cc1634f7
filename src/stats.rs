//! Counters a running broker keeps about itself, readable without stopping
//! it, and the admission of connections. `/metrics` exports them
//! (`metrics::Metrics::observe` reads them at each scrape), so admission
//! stays the one place that counts connections.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::security::limits::IpSlot;

/// A connection's place under `max_connections`, given back when dropped (as
/// tokio's mini-redis does with its semaphore), so no path that ends a
/// connection can forget to release it.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    /// Its place under `--max-connections-per-ip`, held as long.
    _ip: Option<IpSlot>,
}

impl Admitted {
    /// Keeps `slot` for as long as this admission lasts.
    pub fn with_ip(self, slot: IpSlot) -> Admitted {
        Admitted {
            _ip: Some(slot),
            ..self
        }
    }
}

/// Shared by every session of one broker; plain atomics, never on a lock.
#[derive(Debug)]
pub struct Stats {
    admission: Arc<Semaphore>,
    max_connections: usize,
    total_sessions: AtomicU64,
    slow_consumers: AtomicU64,
    open_writers: AtomicUsize,
    refused_per_ip: AtomicU64,
}

impl Stats {
    pub fn new(max_connections: usize) -> Stats {
        let max_connections = max_connections.min(Semaphore::MAX_PERMITS);
        Stats {
            admission: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            total_sessions: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            open_writers: AtomicUsize::new(0),
            refused_per_ip: AtomicU64::new(0),
        }
    }

    /// Admits a new connection unless `max_connections` are open: counting at
    /// accept time, not when its session starts, keeps the limit exact.
    pub fn admit(&self) -> Option<Admitted> {
        let permit = self.admission.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _permit: permit,
            _ip: None,
        })
    }

    /// A connection passed every limit and is accepted.
    pub fn accepted(&self) {
        self.total_sessions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn writer_started(&self) {
        self.open_writers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn writer_stopped(&self) {
        self.open_writers.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn refused_per_ip(&self) {
        self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections turned away because their address already held
    /// `--max-connections-per-ip`: one client trying to take every slot.
    pub fn connections_refused_per_ip(&self) -> u64 {
        self.refused_per_ip.load(Ordering::Relaxed)
    }

    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open right now.
    pub fn live_sessions(&self) -> usize {
        self.max_connections - self.admission.available_permits()
    }

    /// Connections accepted since start.
    pub fn total_sessions(&self) -> u64 {
        self.total_sessions.load(Ordering::Relaxed)
    }

    /// Sockets still being written to: a connection is fully closed once its
    /// session has stopped and its writer has flushed.
    pub fn open_writers(&self) -> usize {
        self.open_writers.load(Ordering::Relaxed)
    }

    /// Connections cut off for owing more than their budget.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Ordering::Relaxed)
    }
}
