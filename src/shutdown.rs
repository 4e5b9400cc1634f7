//! Graceful shutdown: stop taking work, deliver what was acknowledged, close,
//! and say what could not be delivered in time.
//!
//! It runs in phases so that no acknowledged message is lost:
//! 1. *draining*: the listener closes and every session stops reading, so no
//!    new command is acknowledged; then each topic handles what is already in
//!    its mailbox, which puts every acknowledged message into its
//!    subscribers' outboxes, and with `--data-dir` the store is synced;
//! 2. *closing*: every session ends, its writer flushes the outbox and closes
//!    the socket; shutdown waits until every session and writer is gone
//!    (a `TaskTracker`, not a poll); a `one` message a writer could not
//!    write goes back to its topic's cache, so the topics settle once more
//!    and the store is synced again;
//! 3. only if the deadline passes first, *abandoning*: every writer stops
//!    and counts the lines it could not write, for the report.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures_util::future::join_all;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::task_tracker::{TaskTrackerToken, TrackedFuture};
use tokio_util::task::TaskTracker;

use crate::config::ABANDON_GRACE;
use crate::registry::{ListTopics, Registry, SyncStore};
use crate::topic::Flush;

/// The phase signals and the tracker, shared by the acceptor, every session
/// and every writer.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    closing: CancellationToken,
    abandoning: CancellationToken,
    tracker: TaskTracker,
    undelivered: Arc<Undelivered>,
}

#[derive(Debug, Default)]
struct Undelivered {
    lines: AtomicU64,
    connections: AtomicU64,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every connection was flushed and closed.
    Flushed,
    /// The deadline passed; `lines` acknowledged lines (deliveries and
    /// replies) were never written, to `connections` connections.
    TimedOut { lines: u64, connections: u64 },
}

/// Has every topic handle what is in its mailbox and hand its changes to
/// the store, then has the store synced. Run once more after the writers
/// are gone: a `one` message a closing connection never wrote came back to
/// its topic's cache meanwhile, and must be on disk before the exit.
async fn settle(registry: &Addr<Registry>) {
    if let Ok(topics) = registry.send(ListTopics).await {
        join_all(topics.iter().map(|(_, topic)| topic.send(Flush))).await;
    }
    let _ = registry.send(SyncStore).await;
}

impl Shutdown {
    /// Resolves when the broker stops taking new commands.
    pub fn draining(&self) -> WaitForCancellationFutureOwned {
        self.draining.clone().cancelled_owned()
    }

    /// Resolves when sessions should flush and close.
    pub fn closing(&self) -> WaitForCancellationFutureOwned {
        self.closing.clone().cancelled_owned()
    }

    /// Cancelled when writers should give up.
    pub fn abandoning(&self) -> CancellationToken {
        self.abandoning.clone()
    }

    /// Keeps shutdown waiting for as long as the token lives.
    pub fn track(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Keeps shutdown waiting until `future` completes.
    pub fn track_future<F: Future>(&self, future: F) -> TrackedFuture<F> {
        self.tracker.track_future(future)
    }

    /// A writer gave up with `lines` unwritten.
    pub fn report_abandoned(&self, lines: usize) {
        if lines > 0 {
            let lines = u64::try_from(lines).unwrap_or(u64::MAX);
            self.undelivered.lines.fetch_add(lines, Ordering::Relaxed);
            self.undelivered.connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs the phases, giving the first two `deadline` in all.
    pub async fn run(&self, registry: &Addr<Registry>, deadline: Duration) -> Outcome {
        let phases = async {
            self.draining.cancel();
            settle(registry).await;
            self.closing.cancel();
            self.tracker.close();
            self.tracker.wait().await;
            settle(registry).await;
        };
        if tokio::time::timeout(deadline, phases).await.is_ok() {
            return Outcome::Flushed;
        }
        self.abandoning.cancel();
        // Writers give up at once; a session may still wait on a topic, and
        // stopping the System ends it anyway.
        let _ = tokio::time::timeout(ABANDON_GRACE, async {
            self.tracker.wait().await;
            settle(registry).await;
        })
        .await;
        Outcome::TimedOut {
            lines: self.undelivered.lines.load(Ordering::Relaxed),
            connections: self.undelivered.connections.load(Ordering::Relaxed),
        }
    }
}
