//! The store seam: where a topic's state goes besides the topic's memory.
//!
//! A `TopicActor` keeps its counter and cache in memory and serves every
//! replay from there; its [`Store`] is told, in order, what changed (a
//! message cached, a message gone from the cache, a new index lease) and
//! turns a whole turn's worth of changes into one request to a backend,
//! whose completion may come later. That shape (ordered changes, batched per
//! turn, completed asynchronously) is what a local disk needs for group
//! commit. (`--cluster` keeps the counter and cache themselves in Redis
//! rather than a copy, so it swaps the topic's steps instead: see
//! `crate::cluster`.)
//!
//! - [`Store::Memory`], the default: every call is an inlined no-op, so
//!   memory mode costs one branch per change and nothing else.
//! - [`Store::Disk`]: `--data-dir`, a redb file written by one thread
//!   ([`disk`]).
//!
//! Indexes are never reused because a topic only hands out indexes below a
//! *lease* that is durably on disk: the lease is extended [`LEASE`] indexes
//! at a time, ahead of need, in a synced commit. After a crash the topic
//! resumes at its lease (a gap of at most [`LEASE`] indexes); after a
//! graceful stop the lease is first cut back to the counter, so the topic
//! resumes exactly where it stopped.

pub mod disk;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

pub use crate::config::LEASE;
pub use disk::{Disk, Opened, Recovered};

/// When the disk is synced (`--fsync`); see the README's "Persistence".
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// A `send` is acknowledged only once a synced commit holds it (one
    /// sync for everything that arrived meanwhile).
    Always,
    /// Acknowledged at once; a synced commit at least every
    /// [`crate::config::SYNC_INTERVAL`].
    Batch,
    /// Acknowledged at once; synced only when an index lease, a consumed
    /// `one` message or a graceful stop needs it, and every
    /// [`crate::config::LAZY_SYNC_INTERVAL`] so the file can reuse space.
    Never,
}

/// Where `--data-dir` keeps its state and how often it syncs.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// Created if missing; holds one redb file, locked while a broker runs.
    pub dir: PathBuf,
    pub fsync: Fsync,
}

/// Fired once the change it waits for is committed (durably, in
/// `--fsync always`); dropped unfired only if the store failed.
pub type Committed = oneshot::Sender<()>;

/// One change to a topic's stored state, applied in order.
#[derive(Debug)]
pub enum Op {
    /// A message entered the cache.
    Put { index: u64, line: Bytes, one: bool },
    /// A message left the cache (evicted, or a consumed `one`).
    Remove(u64),
    /// The topic may hand out indexes below this; it resumes here.
    Lease(u64),
}

/// A topic's side of the seam; see the module documentation.
#[derive(Debug)]
pub enum Store {
    /// Nothing besides memory: the default, and the fast path.
    Memory,
    /// `--data-dir`: changes go to the disk thread.
    Disk(DiskTopic),
}

/// What a topic on disk has not yet handed to the disk thread.
#[derive(Debug)]
pub struct DiskTopic {
    name: Arc<str>,
    disk: Disk,
    ops: Vec<Op>,
    waiters: Vec<Committed>,
    /// The commit must be synced whatever `--fsync` says: it carries a
    /// lease or a consumed `one` message.
    must_sync: bool,
    /// The latest lease asked for (not necessarily durable yet).
    lease: u64,
    /// The lease that is durably on disk, set by the disk thread.
    durable_lease: Arc<AtomicU64>,
}

impl Store {
    /// The store of a topic on `disk` that resumes at `lease`.
    pub fn disk(name: Arc<str>, disk: Disk, lease: u64) -> Store {
        Store::Disk(DiskTopic {
            name,
            disk,
            ops: Vec::new(),
            waiters: Vec::new(),
            must_sync: false,
            lease,
            durable_lease: Arc::new(AtomicU64::new(lease)),
        })
    }

    /// Whether changes go anywhere besides memory.
    #[inline]
    pub fn is_disk(&self) -> bool {
        matches!(self, Store::Disk(_))
    }

    /// Whether a `send` must wait for its commit before it is acknowledged.
    #[inline]
    pub fn acks_after_commit(&self) -> bool {
        match self {
            Store::Memory => false,
            Store::Disk(topic) => topic.disk.fsync() == Fsync::Always,
        }
    }

    /// A message entered the cache.
    #[inline]
    pub fn put(&mut self, index: u64, line: &Bytes, one: bool) {
        if let Store::Disk(topic) = self {
            topic.ops.push(Op::Put {
                index,
                line: line.clone(),
                one,
            });
        }
    }

    /// A message left the cache. `consumed`: a `one` message handed to a
    /// subscriber, which must never come back, so the commit is synced.
    #[inline]
    pub fn remove(&mut self, index: u64, consumed: bool) {
        if let Store::Disk(topic) = self {
            topic.ops.push(Op::Remove(index));
            topic.must_sync |= consumed;
        }
    }

    /// Makes sure indexes below `end` may be handed out. `None`: they may,
    /// now (a longer lease may have been asked for ahead of need). `Some`:
    /// the commit of a longer lease has been started; the topic must hand
    /// out nothing until it completes.
    pub fn reserve(&mut self, end: u64) -> Option<oneshot::Receiver<()>> {
        let Store::Disk(topic) = self else {
            return None;
        };
        let durable = topic.durable_lease.load(Ordering::Acquire).min(topic.lease);
        if end.saturating_add(LEASE / 2) > topic.lease {
            topic.lease = end.saturating_add(LEASE);
            topic.ops.push(Op::Lease(topic.lease));
            topic.must_sync = true;
        }
        if end <= durable {
            return None;
        }
        let (done, wait) = oneshot::channel();
        topic.waiters.push(done);
        self.commit();
        Some(wait)
    }

    /// A graceful stop: the lease is cut back to `next_index`, so that the
    /// topic resumes exactly there.
    pub fn close(&mut self, next_index: u64) {
        if let Store::Disk(topic) = self {
            topic.lease = next_index;
            topic.ops.push(Op::Lease(next_index));
            topic.must_sync = true;
        }
    }

    /// Fires `done` once everything recorded so far is committed.
    pub fn notify(&mut self, done: Committed) {
        if let Store::Disk(topic) = self {
            topic.waiters.push(done);
        }
    }

    /// Whether anything waits to be handed to the disk thread.
    #[inline]
    pub fn has_pending(&self) -> bool {
        match self {
            Store::Memory => false,
            Store::Disk(topic) => !topic.ops.is_empty() || !topic.waiters.is_empty(),
        }
    }

    /// Hands everything recorded so far to the disk thread as one request.
    pub fn commit(&mut self) {
        let Store::Disk(topic) = self else {
            return;
        };
        if topic.ops.is_empty() && topic.waiters.is_empty() {
            return;
        }
        let lease = topic
            .ops
            .iter()
            .rev()
            .find_map(|op| match op {
                Op::Lease(lease) => Some(*lease),
                _ => None,
            })
            .map(|lease| (lease, topic.durable_lease.clone()));
        topic.disk.submit(disk::Job {
            topic: topic.name.clone(),
            ops: std::mem::take(&mut topic.ops),
            waiters: std::mem::take(&mut topic.waiters),
            must_sync: std::mem::take(&mut topic.must_sync),
            lease,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> (Store, impl Fn() -> Option<disk::Job>) {
        let (disk, next_job) = Disk::detached(Fsync::Batch);
        (Store::disk("t".into(), disk, 0), next_job)
    }

    /// What the disk thread does once a job's synced commit is done.
    fn complete(job: disk::Job) {
        if let Some((lease, durable)) = job.lease {
            durable.store(lease, Ordering::Release);
        }
        for done in job.waiters {
            let _ = done.send(());
        }
    }

    #[test]
    fn memory_never_waits_and_never_records() {
        let mut store = Store::Memory;
        assert!(store.reserve(u64::MAX).is_none());
        store.put(0, &Bytes::from_static(b"x"), false);
        assert!(!store.has_pending());
    }

    #[test]
    fn no_index_is_handed_out_before_its_lease_is_durable() {
        let (mut store, next_job) = topic();
        let mut wait = store.reserve(10).expect("a new topic has no lease yet");
        let job = next_job().expect("the lease is submitted at once");
        assert!(job.must_sync);
        assert!(matches!(job.ops[..], [Op::Lease(lease)] if lease == 10 + LEASE));
        assert!(wait.try_recv().is_err(), "not before the commit");
        complete(job);
        assert!(wait.try_recv().is_ok());
        assert!(store.reserve(10 + LEASE / 2).is_none());
        assert!(!store.has_pending(), "no new lease while half is left");
    }

    #[test]
    fn a_longer_lease_is_asked_for_half_a_lease_ahead() {
        let (mut store, next_job) = topic();
        store.reserve(1);
        complete(next_job().expect("first lease"));
        assert!(store.reserve(2 + LEASE / 2).is_none(), "still covered");
        assert!(
            store.has_pending(),
            "the next lease rides on the next commit"
        );
        store.commit();
        let job = next_job().expect("the next lease");
        assert!(job.must_sync);
        assert_eq!(job.lease.as_ref().map(|l| l.0), Some(2 + LEASE / 2 + LEASE));
    }

    #[test]
    fn after_a_graceful_stop_the_lease_ends_at_the_counter() {
        let (mut store, next_job) = topic();
        store.reserve(1);
        complete(next_job().expect("first lease"));
        store.close(5);
        store.commit();
        let job = next_job().expect("the cut-back lease");
        assert!(matches!(job.ops[..], [Op::Lease(5)]));
        // Until a new lease is durable, index 5 is not handed out, even
        // though the disk thread has not yet written the cut-back.
        assert!(store.reserve(6).is_some());
    }
}
