//! `--data-dir`: every topic's counter lease and cache in one redb file,
//! written by one thread.
//!
//! Topics never touch the file: each hands its turn's changes to this
//! thread as a [`Job`], and the thread applies everything that queued up
//! meanwhile in one write transaction and one commit (group commit), so an
//! arbiter thread never waits for the disk and a sync is shared by every
//! send that arrived during the previous one.
//!
//! Layout: table `topics` maps a name to the index it resumes at (its
//! lease); table `messages` maps (name, index) to (is a `one` message, the
//! delivered line). A message leaves `messages` when it leaves the cache,
//! so the file grows with what is cached, not with what was ever sent.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, DatabaseError, Durability, ReadableTable, StorageError, TableDefinition};
use tokio::sync::oneshot;

use super::{Committed, Fsync, Op, Persistence};
use crate::config::{LAZY_SYNC_INTERVAL, SYNC_INTERVAL};

/// The file inside `--data-dir`.
pub const FILE_NAME: &str = "mq-actix.redb";
/// Left beside the file when redb had to roll it back to an earlier commit,
/// so that no later start takes that older state (and its older index
/// leases) without an operator saying so.
pub const DAMAGED_MARKER: &str = "mq-actix.damaged";

const TOPICS: TableDefinition<&str, u64> = TableDefinition::new("topics");
const MESSAGES: TableDefinition<(&str, u64), (bool, &[u8])> = TableDefinition::new("messages");

/// The sending side of the disk thread; cheap to clone, one per topic.
#[derive(Debug, Clone)]
pub struct Disk {
    requests: Sender<Request>,
    fsync: Fsync,
}

/// One topic's changes of one turn.
#[derive(Debug)]
pub struct Job {
    pub topic: Arc<str>,
    pub ops: Vec<Op>,
    pub waiters: Vec<Committed>,
    pub must_sync: bool,
    /// The last lease among `ops`, and where to publish it once durable.
    pub lease: Option<(u64, Arc<AtomicU64>)>,
}

#[derive(Debug)]
enum Request {
    Job(Job),
    /// Sync everything submitted before, then fire.
    Sync(Committed),
}

/// What a topic finds on disk at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The first index it may hand out.
    pub resume: u64,
    /// Its cached messages in index order: (index, line, is a `one`).
    pub cached: Vec<(u64, Bytes, bool)>,
}

/// An opened data directory: the thread's handle and every stored topic.
#[derive(Debug)]
pub struct Opened {
    pub disk: Disk,
    /// Every topic the file holds, by name: the registry starts each with
    /// its state when a command first names it.
    pub recovered: HashMap<Box<str>, Recovered>,
}

/// Why a data directory cannot be used; each a one-line message.
#[derive(Debug)]
pub struct OpenError(String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

impl Disk {
    /// Opens (or creates) the store in `persistence.dir`, checks every page
    /// of it, loads what it holds and starts the disk thread. A directory
    /// that another process holds, or a damaged file, is an error: the
    /// broker must not start from zero over state it could not read.
    pub fn open(persistence: &Persistence) -> Result<Opened, OpenError> {
        let dir = &persistence.dir;
        std::fs::create_dir_all(dir).map_err(|error| {
            OpenError(format!(
                "cannot create data directory {}: {error}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let marker = dir.join(DAMAGED_MARKER);
        if marker.exists() {
            return Err(OpenError(format!(
                "{} was damaged and redb rolled it back to an earlier commit, which may hand out indexes again; \
                 move the directory away to start empty, or delete {} to accept the rollback",
                path.display(),
                marker.display()
            )));
        }
        let (db, recovered) = without_panics(&path, || {
            let mut db = Database::create(&path).map_err(|error| open_error(&path, error))?;
            match db.check_integrity() {
                Ok(true) => {}
                Ok(false) => {
                    // redb has already committed the rollback: the marker
                    // keeps the next start from taking it silently.
                    let _ = std::fs::write(&marker, b"");
                    return Err(OpenError(format!(
                        "{} is damaged (a page failed its checksum); restore it from a backup or move the directory away to start empty",
                        path.display()
                    )));
                }
                Err(error) => return Err(open_error(&path, error)),
            }
            let recovered = load(&db)
                .map_err(|error| OpenError(format!("cannot read {}: {error}", path.display())))?;
            Ok((db, recovered))
        })?;
        let (requests, incoming) = mpsc::channel();
        let fsync = persistence.fsync;
        std::thread::Builder::new()
            .name("mq-store".into())
            .spawn(move || run(db, path, fsync, incoming))
            .map_err(|error| OpenError(format!("cannot start the disk thread: {error}")))?;
        Ok(Opened {
            disk: Disk { requests, fsync },
            recovered,
        })
    }

    /// When the disk is synced.
    pub fn fsync(&self) -> Fsync {
        self.fsync
    }

    /// Queues a topic's changes for the next commit.
    pub fn submit(&self, job: Job) {
        // The thread only ends when every sender is gone or the process
        // exits on a disk error: nothing is left to tell then.
        let _ = self.requests.send(Request::Job(job));
    }

    /// Resolves once everything submitted before is synced to disk.
    pub fn sync(&self) -> oneshot::Receiver<()> {
        let (done, synced) = oneshot::channel();
        let _ = self.requests.send(Request::Sync(done));
        synced
    }
}

/// redb asserts (panics) on some damage, such as a file cut short. At start
/// that is bad state on disk like any other: the panic is caught, its
/// message kept for the one-line error instead of printed with a backtrace.
fn without_panics<T>(
    path: &Path,
    open: impl FnOnce() -> Result<T, OpenError>,
) -> Result<T, OpenError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(open));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(OpenError(format!(
            "{} is damaged or cut short (redb: {what}); restore it from a backup or move the directory away to start empty",
            path.display()
        )))
    })
}

fn open_error(path: &Path, error: DatabaseError) -> OpenError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => OpenError(format!(
            "{} is in use by another mq-actix (one data directory per server)",
            path.display()
        )),
        DatabaseError::Storage(StorageError::Corrupted(what)) => OpenError(format!(
            "{} is damaged ({what}); restore it from a backup or move the directory away to start empty",
            path.display()
        )),
        error => OpenError(format!("cannot open {}: {error}", path.display())),
    }
}

/// redb's errors are large; boxed, a `Result` stays small.
fn boxed(error: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(error.into())
}

/// Every stored topic, creating the tables on first use.
fn load(db: &Database) -> Result<HashMap<Box<str>, Recovered>, Box<redb::Error>> {
    let txn = db.begin_write().map_err(boxed)?;
    txn.open_table(TOPICS).map_err(boxed)?;
    txn.open_table(MESSAGES).map_err(boxed)?;
    txn.commit().map_err(boxed)?;
    let txn = db.begin_read().map_err(boxed)?;
    let mut recovered: HashMap<Box<str>, Recovered> = HashMap::new();
    for entry in txn
        .open_table(TOPICS)
        .map_err(boxed)?
        .iter()
        .map_err(boxed)?
    {
        let (name, resume) = entry.map_err(boxed)?;
        recovered.entry(name.value().into()).or_default().resume = resume.value();
    }
    for entry in txn
        .open_table(MESSAGES)
        .map_err(boxed)?
        .iter()
        .map_err(boxed)?
    {
        let (key, value) = entry.map_err(boxed)?;
        let (name, index) = key.value();
        let (one, line) = value.value();
        let topic = recovered.entry(name.into()).or_default();
        // A message is only ever stored below its topic's lease; should
        // the two disagree, the later bound wins so no index is reused.
        topic.resume = topic.resume.max(index.saturating_add(1));
        topic
            .cached
            .push((index, Bytes::copy_from_slice(line), one));
    }
    Ok(recovered)
}

/// The disk thread: applies jobs in arrival order, one commit per wake-up.
fn run(db: Database, path: PathBuf, fsync: Fsync, incoming: Receiver<Request>) {
    let interval = match fsync {
        Fsync::Always => Duration::ZERO,
        Fsync::Batch => SYNC_INTERVAL,
        Fsync::Never => LAZY_SYNC_INTERVAL,
    };
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    loop {
        let first = if unsynced {
            match incoming.recv_timeout(interval.saturating_sub(last_sync.elapsed())) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match incoming.recv() {
                Ok(request) => Some(request),
                Err(_) => break,
            }
        };
        let mut jobs = Vec::new();
        let mut syncs = Vec::new();
        for request in first
            .into_iter()
            .chain(std::iter::from_fn(|| incoming.try_recv().ok()))
        {
            match request {
                Request::Job(job) => jobs.push(job),
                Request::Sync(done) => syncs.push(done),
            }
        }
        let sync = fsync == Fsync::Always
            || !syncs.is_empty()
            || jobs.iter().any(|job| job.must_sync)
            || (unsynced && last_sync.elapsed() >= interval);
        // Jobs with only waiters (sends that stored nothing: delivered
        // live, or not cached) wait for nothing the disk has yet to hold.
        if jobs.iter().all(|job| job.ops.is_empty()) && !(sync && unsynced) {
            for job in jobs {
                fire(job.waiters);
            }
            fire(syncs);
            continue;
        }
        if let Err(error) = commit(&db, &jobs, sync) {
            // The state on disk is no longer what the topics believe: stop
            // before acknowledging anything more.
            eprintln!("mq-actix: cannot write {}: {error}", path.display());
            std::process::exit(1);
        }
        if sync {
            unsynced = false;
            last_sync = Instant::now();
        } else {
            unsynced = true;
        }
        for job in jobs {
            if let Some((lease, durable)) = job.lease {
                durable.store(lease, Ordering::Release);
            }
            fire(job.waiters);
        }
        fire(syncs);
    }
    if unsynced {
        if let Err(error) = commit(&db, &[], true) {
            eprintln!("mq-actix: cannot sync {}: {error}", path.display());
        }
    }
}

/// Tells everyone waiting that their commit is done; one that stopped
/// waiting (its connection closed) needs no telling.
fn fire(waiters: Vec<Committed>) {
    for done in waiters {
        let _ = done.send(());
    }
}

/// Applies `jobs` in one transaction; `sync`: the commit reaches the disk
/// before this returns, otherwise it stays in redb's memory until the next
/// synced commit.
fn commit(db: &Database, jobs: &[Job], sync: bool) -> Result<(), Box<redb::Error>> {
    let mut txn = db.begin_write().map_err(boxed)?;
    txn.set_durability(if sync {
        Durability::Immediate
    } else {
        Durability::None
    });
    let transient = transient(jobs);
    {
        let mut topics = txn.open_table(TOPICS).map_err(boxed)?;
        let mut messages = txn.open_table(MESSAGES).map_err(boxed)?;
        for (j, job) in jobs.iter().enumerate() {
            let name = &*job.topic;
            for (o, op) in job.ops.iter().enumerate() {
                if transient.contains(&(j, o)) {
                    continue;
                }
                match op {
                    Op::Put { index, line, one } => {
                        messages
                            .insert((name, *index), (*one, &line[..]))
                            .map_err(boxed)?;
                    }
                    Op::Remove(index) => {
                        messages.remove((name, *index)).map_err(boxed)?;
                    }
                    Op::Lease(lease) => {
                        topics.insert(name, *lease).map_err(boxed)?;
                    }
                }
            }
        }
    }
    txn.commit().map_err(boxed)?;
    Ok(())
}

/// The ops of `jobs` (by job and position) that need not reach the file: a
/// message put and removed again within one commit, as a busy topic's
/// cache turns over many times between two commits. A topic only puts a
/// message it does not hold, so the key is absent before such a pair and
/// after it. A key put twice without a removal between is left alone.
fn transient(jobs: &[Job]) -> HashSet<(usize, usize)> {
    let mut open: HashMap<(&str, u64), (usize, usize)> = HashMap::new();
    let mut skip = HashSet::new();
    for (j, job) in jobs.iter().enumerate() {
        for (o, op) in job.ops.iter().enumerate() {
            match op {
                Op::Put { index, .. } => {
                    if open.insert((&job.topic, *index), (j, o)).is_some() {
                        open.remove(&(&*job.topic, *index));
                    }
                }
                Op::Remove(index) => {
                    if let Some(put) = open.remove(&(&*job.topic, *index)) {
                        skip.insert(put);
                        skip.insert((j, o));
                    }
                }
                Op::Lease(_) => {}
            }
        }
    }
    skip
}

#[cfg(test)]
impl Disk {
    /// A disk with no thread: the test takes the jobs itself.
    pub(crate) fn detached(fsync: Fsync) -> (Disk, impl Fn() -> Option<Job>) {
        let (requests, incoming) = mpsc::channel();
        let next_job = move || match incoming.try_recv() {
            Ok(Request::Job(job)) => Some(job),
            _ => None,
        };
        (Disk { requests, fsync }, next_job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(topic: &str, ops: Vec<Op>) -> Job {
        Job {
            topic: topic.into(),
            ops,
            waiters: Vec::new(),
            must_sync: false,
            lease: None,
        }
    }

    fn put(index: u64) -> Op {
        Op::Put {
            index,
            line: Bytes::from_static(b"line"),
            one: false,
        }
    }

    #[test]
    fn a_message_put_and_removed_in_one_commit_never_reaches_the_file() {
        let jobs = [
            job("t", vec![put(1), put(2), Op::Lease(100)]),
            job("u", vec![put(1), Op::Remove(1)]),
            job("t", vec![Op::Remove(1), put(3), Op::Remove(0)]),
        ];
        let skip = transient(&jobs);
        let expected: HashSet<(usize, usize)> = [(0, 0), (2, 0), (1, 0), (1, 1)].into();
        assert_eq!(skip, expected);
    }

    #[test]
    fn a_message_put_again_after_its_removal_is_kept() {
        let jobs = [job("t", vec![put(1), Op::Remove(1), put(1)])];
        let skip = transient(&jobs);
        assert_eq!(skip, [(0, 0), (0, 1)].into());
    }

    #[test]
    fn a_key_put_twice_is_left_to_the_file() {
        let jobs = [job("t", vec![put(1), put(1), Op::Remove(1)])];
        assert!(transient(&jobs).is_empty());
    }
}
