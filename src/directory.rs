//! Each worker thread's own copy of the topic name → address map.
//!
//! Only the `Registry` creates topics, but asking it costs a round trip, and
//! a connection that sends to many topics (each client of `loadgen pairs`
//! sends to hundreds) would ask for every one. Topics live as long as the
//! server, so an address once known never goes stale: the registry tells
//! every worker thread of each topic it creates, and each keeps them in a
//! thread-local map that is read without a lock.

use std::cell::RefCell;
use std::collections::HashMap;

use actix::Addr;

use crate::topic::TopicActor;

thread_local! {
    static TOPICS: RefCell<HashMap<Box<str>, Addr<TopicActor>>> = RefCell::new(HashMap::new());
}

/// Runs `f` with the address of `name`, if this worker knows it.
pub fn with<R>(name: &str, f: impl FnOnce(&Addr<TopicActor>) -> R) -> Option<R> {
    TOPICS.with_borrow(|topics| topics.get(name).map(f))
}

/// Remembers what the registry answered for `name`.
pub fn insert(name: Box<str>, topic: Addr<TopicActor>) {
    TOPICS.with_borrow_mut(|topics| topics.insert(name, topic));
}
