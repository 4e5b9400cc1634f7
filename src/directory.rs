//! Each worker thread's own copy of the topic name → handle map.
//!
//! Only the `Registry` creates topics, but asking it costs a round trip, and
//! a connection that sends to many topics (each client of `loadgen pairs`
//! sends to hundreds) would ask for every one. Topics live as long as the
//! server, so a handle once known never goes stale: the registry tells
//! every worker thread of each topic it creates, and each keeps them in a
//! thread-local map that is read without a lock. The name is the registry's
//! own `Arc`, so it is stored once however many workers know it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::topic::TopicHandle;

thread_local! {
    static TOPICS: RefCell<HashMap<Arc<str>, TopicHandle>> = RefCell::new(HashMap::new());
}

/// Runs `f` with the handle of `name`, if this worker knows it.
pub fn with<R>(name: &str, f: impl FnOnce(&TopicHandle) -> R) -> Option<R> {
    TOPICS.with_borrow(|topics| topics.get(name).map(f))
}

/// Remembers what the registry answered for `name`.
pub fn insert(name: Arc<str>, topic: TopicHandle) {
    TOPICS.with_borrow_mut(|topics| topics.insert(name, topic));
}
