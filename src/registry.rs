//! `Registry`: creates each topic's actor on first use and hands out its address.
//!
//! It tells every worker thread of each new topic (`directory`), so sessions
//! find addresses in their own thread and ask here only for topics that do
//! not exist yet: the registry never sits on the per-message path.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Addr, ArbiterHandle, Context, Handler, Message, MessageResult};

use crate::directory;
use crate::topic::TopicActor;

/// The address of the topic named, created if this is its first mention.
#[derive(Debug, Message)]
#[rtype(result = "Addr<TopicActor>")]
pub struct Lookup {
    pub name: Box<str>,
    /// Where to start the topic if it is new: the asking session's own
    /// worker thread. The first to name a topic is usually its subscriber
    /// (or its only one), so deliveries to it then stay on one thread; and
    /// since sessions are spread evenly over the workers, so are topics.
    pub worker: ArbiterHandle,
}

/// Every topic so far, for tests and diagnostics.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Arc<str>, Addr<TopicActor>)>")]
pub struct ListTopics;

/// Owns the name → topic map; the only place topics are created, so a name
/// never gets two actors.
pub struct Registry {
    topics: HashMap<Arc<str>, Addr<TopicActor>>,
    /// Every worker thread, each told of every new topic.
    workers: Vec<ArbiterHandle>,
    cache_size: usize,
}

impl Registry {
    pub fn new(workers: Vec<ArbiterHandle>, cache_size: usize) -> Self {
        Registry {
            topics: HashMap::new(),
            workers,
            cache_size,
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Lookup> for Registry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, lookup: Lookup, _: &mut Self::Context) -> Self::Result {
        if let Some(addr) = self.topics.get(&*lookup.name) {
            return MessageResult(addr.clone());
        }
        let name: Arc<str> = lookup.name.into();
        let cache_size = self.cache_size;
        let topic_name = name.clone();
        let addr = TopicActor::start_in_arbiter(&lookup.worker, move |_| {
            TopicActor::new(topic_name, cache_size)
        });
        // Every worker learns the new address now, so sessions elsewhere find
        // it in their own directory instead of asking here.
        for worker in &self.workers {
            let (name, addr) = (Box::from(&*name), addr.clone());
            worker.spawn(async move { directory::insert(name, addr) });
        }
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
