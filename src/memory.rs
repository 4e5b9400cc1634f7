//! The broker-wide memory budget (`--max-memory`), like Redis's `maxmemory`
//! with the `noeviction` policy: when what the broker holds for its clients
//! reaches the budget, new `send`s are refused (`Server out of memory`),
//! nothing already acknowledged is dropped, and the slowest consumers are cut
//! off first to win memory back.
//!
//! What is counted: cached messages, what every connection owes its client
//! (its outbox), sends taken by a topic and not yet passed on (topic
//! credit), and unfinished lines in read buffers. Each holder adds and
//! removes its own bytes; the total is one atomic, so counting costs one
//! uncontended-in-the-common-case add per change, never a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Shared by every part of one broker.
pub struct Memory {
    limit: usize,
    used: AtomicUsize,
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
            used: AtomicUsize::new(0),
            over: AtomicBool::new(false),
            consumers: Mutex::new(HashMap::new()),
            last_relief: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget in bytes; 0 = none.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
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
        let used = self.used();
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
    fn set_moves_a_holders_count_both_ways() {
        let memory = Memory::new(0);
        let mut held = 0;
        memory.set(&mut held, 100);
        memory.set(&mut held, 40);
        assert_eq!((memory.used(), held), (40, 40));
    }
}
