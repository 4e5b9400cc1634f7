//! Graceful shutdown: stop taking work, deliver what was acknowledged, close.
//!
//! It runs in two phases so that no acknowledged message is lost:
//! 1. *draining*: the listener closes and every session stops reading, so no
//!    new command is acknowledged; then each topic handles what is already in
//!    its mailbox, which puts every acknowledged message into its
//!    subscribers' outboxes;
//! 2. *closing*: every session ends, its writer flushes the outbox and closes
//!    the socket.

use std::time::Duration;

use actix::Addr;
use futures_util::future::join_all;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::registry::{ListTopics, Registry};
use crate::stats::Stats;
use crate::topic::Flush;

/// How often shutdown checks whether every connection has been flushed.
const POLL: Duration = Duration::from_millis(5);

/// The two phase signals, shared by the acceptor and every session.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    closing: CancellationToken,
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

    /// Runs both phases; true if every connection was flushed and closed
    /// within `deadline`.
    pub async fn run(&self, registry: &Addr<Registry>, stats: &Stats, deadline: Duration) -> bool {
        let phases = async {
            self.draining.cancel();
            if let Ok(topics) = registry.send(ListTopics).await {
                join_all(topics.iter().map(|(_, topic)| topic.send(Flush))).await;
            }
            self.closing.cancel();
            while stats.live_sessions() > 0 || stats.open_writers() > 0 {
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::time::timeout(deadline, phases).await.is_ok()
    }
}
