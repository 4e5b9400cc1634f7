//! `Registry`: creates each topic's actor on first use and hands out its address.
//!
//! Sessions keep the addresses they were given, so the registry is asked once
//! per topic per connection and never sits on the per-message path.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Addr, ArbiterHandle, Context, Handler, Message, MessageResult};

use crate::topic::TopicActor;

/// The address of the topic named, created if this is its first mention.
#[derive(Debug, Message)]
#[rtype(result = "Addr<TopicActor>")]
pub struct Lookup(pub Box<str>);

/// Every topic so far, for tests and diagnostics.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Arc<str>, Addr<TopicActor>)>")]
pub struct ListTopics;

/// Owns the name → topic map. Topics are spread round-robin over the worker
/// threads so that busy topics do not all share one core.
pub struct Registry {
    topics: HashMap<Arc<str>, Addr<TopicActor>>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    cache_size: usize,
}

impl Registry {
    /// `workers` must not be empty; topics are started on them in turn.
    pub fn new(workers: Vec<ArbiterHandle>, cache_size: usize) -> Self {
        assert!(
            !workers.is_empty(),
            "a registry needs a worker to run topics on"
        );
        Registry {
            topics: HashMap::new(),
            workers,
            next_worker: 0,
            cache_size,
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Lookup> for Registry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, Lookup(name): Lookup, _: &mut Self::Context) -> Self::Result {
        if let Some(addr) = self.topics.get(&*name) {
            return MessageResult(addr.clone());
        }
        let name: Arc<str> = name.into();
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let cache_size = self.cache_size;
        let topic_name = name.clone();
        let addr =
            TopicActor::start_in_arbiter(worker, move |_| TopicActor::new(topic_name, cache_size));
        self.topics.insert(name, addr.clone());
        MessageResult(addr)
    }
}

impl Handler<ListTopics> for Registry {
    type Result = MessageResult<ListTopics>;

    fn handle(&mut self, _: ListTopics, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.topics
                .iter()
                .map(|(name, addr)| (name.clone(), addr.clone()))
                .collect(),
        )
    }
}
