//! Counters a running broker keeps about itself, readable without stopping it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shared by every session of one broker; plain atomics, never on a lock.
#[derive(Debug, Default)]
pub struct Stats {
    live_sessions: AtomicUsize,
    total_sessions: AtomicU64,
    slow_consumers: AtomicU64,
    open_writers: AtomicUsize,
}

impl Stats {
    /// Counts a new connection unless `max` are already open: counting at
    /// accept time, not when its session starts, keeps the limit exact.
    pub fn try_admit(&self, max: usize) -> bool {
        if self.live_sessions.fetch_add(1, Ordering::Relaxed) >= max {
            self.live_sessions.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.total_sessions.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A connection counted by [`Stats::try_admit`] has closed.
    pub fn session_stopped(&self) {
        self.live_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn writer_started(&self) {
        self.open_writers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn writer_stopped(&self) {
        self.open_writers.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open right now.
    pub fn live_sessions(&self) -> usize {
        self.live_sessions.load(Ordering::Relaxed)
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
