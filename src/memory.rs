//! The broker-wide memory budget (`--max-memory`), like Redis's `maxmemory`
//! with the `noeviction` policy: when what the broker holds for its clients
//! reaches the budget, new `send`s are refused (`Server out of memory`),
//! nothing already acknowledged is dropped, and the slowest consumers are cut
//! off first to win memory back.
//!
//! What is counted: cached messages, what every connection owes its client
//! (its outbox), sends taken by a topic and not yet passed on (topic
//! credit), and unfinished lines in read buffers. Each holder adds and
//! removes its own bytes, several times per message, from every worker
//! thread. One shared atomic for all of them was a cache line that every
//! core wrote for every message: in `loadgen pairs`, a third of the
//! samples of an outbox push sat on that add. So each thread counts in a
//! shard of its own and passes the sum on to the shared total only once it
//! has moved more than [`SLACK`] bytes either way; the budget is judged on
//! that total, which is then off by at most `SLACK` per thread, and
//! [`Memory::used`] (for the metrics and tests) adds the shards in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::config::{RELIEVE_EVERY, RELIEVE_MIN_PENDING};

/// Something that owes a client bytes and can be cut off to free them: an
/// outbox, seen from here without depending on its type.
pub trait Consumer: Send + Sync {
    /// Bytes it owes now.
    fn pending(&self) -> usize;
    /// Cuts the client off as a slow consumer.
    fn cut_off(&self);
}

/// Bytes a thread may count in its shard, either way, before the shared
/// total hears of them: small beside any budget, large beside a message.
const SLACK: isize = 64 * 1024;

/// Shards of the count; threads beyond this many share them.
const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, the same in every broker of the process.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// A counter alone on its cache line (two, for the adjacent-line
/// prefetcher), so that writing it never slows a reader of another.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicIsize);

/// Shared by every part of one broker.
pub struct Memory {
    limit: usize,
    /// What the shards have passed on.
    total: Padded,
    /// What each thread has counted and not yet passed on.
    shards: [Padded; SHARDS],
    /// Set while over the limit, so the warning is logged once per episode.
    over: AtomicBool,
    /// Every live connection's outbox, to find the slowest.
    consumers: Mutex<HashMap<u64, Weak<dyn Consumer>>>,
    /// When the slowest were last looked for (nanoseconds since `epoch`).
    last_relief: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl Memory {
    /// A budget of `limit` bytes; 0 means none.
    pub fn new(limit: usize) -> Arc<Memory> {
        Arc::new(Memory {
            limit,
            total: Padded::default(),
            shards: Default::default(),
            over: AtomicBool::new(false),
            consumers: Mutex::new(HashMap::new()),
            last_relief: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Bytes counted now, to the byte once every thread's changes are done.
    pub fn used(&self) -> usize {
        let shards: isize = self
            .shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        usize::try_from(self.total.0.load(Ordering::Relaxed) + shards).unwrap_or(0)
    }

    /// What the budget is judged on: [`Memory::used`] give or take
    /// [`SLACK`] per thread, read from one cache line that rarely changes.
    fn used_roughly(&self) -> usize {
        usize::try_from(self.total.0.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The budget in bytes; 0 = none.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn add(&self, bytes: usize) {
        self.change(isize::try_from(bytes).unwrap_or(isize::MAX));
    }

    pub fn sub(&self, bytes: usize) {
        self.change(-isize::try_from(bytes).unwrap_or(isize::MAX));
    }

    fn change(&self, delta: isize) {
        let shard = &self.shards[SHARD.with(|shard| *shard)].0;
        let held = shard
            .fetch_add(delta, Ordering::Relaxed)
            .wrapping_add(delta);
        if held.unsigned_abs() > SLACK.unsigned_abs() {
            // Moved, not copied: shard plus total stays the true count
            // even if another thread shares the shard meanwhile.
            shard.fetch_sub(held, Ordering::Relaxed);
            self.total.0.fetch_add(held, Ordering::Relaxed);
        }
    }

    /// Moves a holder's count from `*held` to `now`.
    pub fn set(&self, held: &mut usize, now: usize) {
        if now > *held {
            self.add(now - *held);
        } else if now < *held {
            self.sub(*held - now);
        }
        *held = now;
    }

    /// Whether a new `send` may be taken. When not, logs the start of the
    /// episode and cuts off the slowest consumers to win memory back.
    pub fn admits_send(&self) -> bool {
        if self.limit == 0 {
            return true;
        }
        let used = self.used_roughly();
        if used < self.limit {
            if self.over.load(Ordering::Relaxed) {
                self.over.store(false, Ordering::Relaxed);
                tracing::warn!(used, limit = self.limit, "memory back under --max-memory");
            }
            return true;
        }
        if !self.over.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                used,
                limit = self.limit,
                "--max-memory reached: refusing sends and cutting off the slowest consumers"
            );
        }
        self.relieve(used);
        false
    }

    /// Cuts off consumers, the one owing most first, until what they owed
    /// would bring the total under the limit. Rate-limited.
    fn relieve(&self, used: usize) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_relief.load(Ordering::Relaxed);
        let every = u64::try_from(RELIEVE_EVERY.as_nanos()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return;
        }
        if self
            .last_relief
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut owing: Vec<(usize, Arc<dyn Consumer>)> = self
            .lock_consumers()
            .values()
            .filter_map(Weak::upgrade)
            .map(|c| (c.pending(), c))
            .filter(|(pending, _)| *pending >= RELIEVE_MIN_PENDING)
            .collect();
        owing.sort_by_key(|(pending, _)| std::cmp::Reverse(*pending));
        let mut projected = used;
        for (pending, consumer) in owing {
            if projected < self.limit {
                break;
            }
            consumer.cut_off();
            projected = projected.saturating_sub(pending);
        }
    }

    /// Lets the budget find `consumer` when it must cut someone off.
    pub fn register(&self, id: u64, consumer: Weak<dyn Consumer>) {
        self.lock_consumers().insert(id, consumer);
    }

    pub fn unregister(&self, id: u64) {
        self.lock_consumers().remove(&id);
    }

    /// Every live consumer, for the shutdown report.
    pub fn consumers(&self) -> Vec<Arc<dyn Consumer>> {
        self.lock_consumers()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Only ever held for a map operation that cannot panic, so a poisoned
    /// lock still holds a sound map.
    fn lock_consumers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<dyn Consumer>>> {
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owing(AtomicUsize, AtomicBool);

    impl Consumer for Owing {
        fn pending(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
        fn cut_off(&self) {
            self.1.store(true, Ordering::Relaxed);
        }
    }

    fn owing(bytes: usize) -> Arc<Owing> {
        Arc::new(Owing(AtomicUsize::new(bytes), AtomicBool::new(false)))
    }

    #[test]
    fn no_limit_admits_everything() {
        let memory = Memory::new(0);
        memory.add(usize::MAX / 2);
        assert!(memory.admits_send());
    }

    #[test]
    fn over_the_limit_cuts_the_largest_first_and_only_as_many_as_needed() {
        let memory = Memory::new(10 * RELIEVE_MIN_PENDING);
        let (small, big, bigger) = (
            owing(RELIEVE_MIN_PENDING),
            owing(3 * RELIEVE_MIN_PENDING),
            owing(5 * RELIEVE_MIN_PENDING),
        );
        for (id, c) in [(1, &small), (2, &big), (3, &bigger)] {
            let c: Arc<dyn Consumer> = c.clone();
            memory.register(id, Arc::downgrade(&c));
        }
        memory.add(12 * RELIEVE_MIN_PENDING);
        assert!(!memory.admits_send());
        assert!(bigger.1.load(Ordering::Relaxed));
        assert!(!big.1.load(Ordering::Relaxed));
        assert!(!small.1.load(Ordering::Relaxed));
        memory.sub(5 * RELIEVE_MIN_PENDING);
        assert!(memory.admits_send());
    }

    #[test]
    fn counts_from_many_threads_add_up_and_the_budget_sees_them_within_the_slack() {
        let memory = Memory::new(0);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let memory = memory.clone();
                std::thread::spawn(move || {
                    for i in 0..100_000 {
                        memory.add(100 + t + i % 7);
                        if i % 3 == 0 {
                            memory.sub(100 + t + i % 7);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let expected: usize = (0..4)
            .map(|t| {
                (0..100_000)
                    .filter(|i| i % 3 != 0)
                    .map(|i| 100 + t + i % 7)
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(memory.used(), expected);
        let slack = 4 * SLACK.unsigned_abs();
        assert!(memory.used_roughly().abs_diff(expected) <= slack);
    }

    #[test]
    fn set_moves_a_holders_count_both_ways() {
        let memory = Memory::new(0);
        let mut held = 0;
        memory.set(&mut held, 100);
        memory.set(&mut held, 40);
        assert_eq!((memory.used(), held), (40, 40));
    }
}
