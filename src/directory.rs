//! Each worker thread's own copy of the topic name → handle map.
//!
//! Only the `Registry` creates topics, but asking it costs a round trip, and
//! a connection that sends to many topics (each client of `loadgen pairs`
//! sends to hundreds) would ask for every one. The registry tells every
//! worker thread of each topic it starts, and each keeps them in a
//! thread-local map that is read without a lock. The handles are weak, so
//! that an idle topic can retire; a session that finds its topic retired
//! asks the registry, which starts it again. The name is the registry's own
//! `Arc`, so it is stored once however many workers know it.
//!
//! Every `send` looks its topic up here, so the map hashes with foldhash
//! (seeded per map, as hashbrown's own default) rather than SipHash, which
//! cost a few percent of the whole server's CPU in `loadgen pairs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::topic::WeakTopic;

thread_local! {
    static TOPICS: RefCell<HashMap<Arc<str>, WeakTopic, RandomState>> =
        RefCell::new(HashMap::with_hasher(RandomState::default()));
}

/// Runs `f` with the handle of `name`, if this worker knows it.
pub fn with<R>(name: &str, f: impl FnOnce(&WeakTopic) -> R) -> Option<R> {
    TOPICS.with_borrow(|topics| topics.get(name).map(f))
}

/// Remembers what the registry answered for `name`.
pub fn insert(name: Arc<str>, topic: WeakTopic) {
    TOPICS.with_borrow_mut(|topics| topics.insert(name, topic));
}

/// Forgets `name` if its topic has retired (a newer one may be known).
pub fn forget(name: &str) {
    TOPICS.with_borrow_mut(|topics| {
        if topics.get(name).is_some_and(WeakTopic::is_retired) {
            topics.remove(name);
        }
    });
}
