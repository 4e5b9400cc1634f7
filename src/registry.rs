//! `Registry`: creates each topic's actor on first use and hands out its handle.
//!
//! It tells every worker thread of each new topic (`directory`), so sessions
//! find handles in their own thread and ask here only for topics that do
//! not exist yet: the registry never sits on the per-message path.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Addr, ArbiterHandle, Context, Handler, Message, MessageResult, ResponseFuture};

use crate::directory;
use crate::memory::Memory;
use crate::store::{Opened, Recovered, Store};
use crate::topic::{TopicActor, TopicHandle};

/// The handle of the topic named, created if this is its first mention,
/// with the name as the registry stores it.
#[derive(Debug, Message)]
#[rtype(result = "(Arc<str>, TopicHandle)")]
pub struct Lookup {
    pub name: Box<str>,
    /// Where to start the topic if it is new: the asking session's own
    /// worker thread. The first to name a topic is usually its subscriber
    /// (or its only one), so deliveries to it then stay on one thread; and
    /// since sessions are spread evenly over the workers, so are topics.
    pub worker: ArbiterHandle,
}

/// Every topic so far, for shutdown, tests and diagnostics.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Arc<str>, Addr<TopicActor>)>")]
pub struct ListTopics;

/// Resolves once everything the topics handed to the store so far is
/// synced to disk (at once without `--data-dir`); graceful shutdown sends it
/// after every topic's `Flush`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SyncStore;

/// Owns the name → topic map; the only place topics are created, so a name
/// never gets two actors.
pub struct Registry {
    topics: HashMap<Arc<str>, TopicHandle>,
    /// Every worker thread, each told of every new topic.
    workers: Vec<ArbiterHandle>,
    cache_size: usize,
    memory: Arc<Memory>,
    /// `--data-dir`: the disk thread, and the topics stored there that no
    /// command has named yet (each is started, with its state, on first use).
    store: Option<Opened>,
}

impl Registry {
    pub fn new(
        workers: Vec<ArbiterHandle>,
        cache_size: usize,
        memory: Arc<Memory>,
        store: Option<Opened>,
    ) -> Self {
        Registry {
            topics: HashMap::new(),
            workers,
            cache_size,
            memory,
            store,
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Lookup> for Registry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, lookup: Lookup, _: &mut Self::Context) -> Self::Result {
        if let Some((name, topic)) = self.topics.get_key_value(&*lookup.name) {
            return MessageResult((name.clone(), topic.clone()));
        }
        let name: Arc<str> = lookup.name.into();
        let topic = match &mut self.store {
            None => TopicActor::new(name.clone(), self.cache_size, self.memory.clone()),
            Some(opened) => {
                let recovered: Recovered = opened.recovered.remove(&*name).unwrap_or_default();
                let store = Store::disk(name.clone(), opened.disk.clone(), recovered.resume);
                let (cache_size, memory) = (self.cache_size, self.memory.clone());
                TopicActor::with_store(name.clone(), cache_size, memory, store, recovered)
            }
        };
        let topic = topic.start_in(&lookup.worker);
        // Every worker learns the new handle now, so sessions elsewhere find
        // it in their own directory instead of asking here.
        for worker in &self.workers {
            let (name, topic) = (name.clone(), topic.clone());
            worker.spawn(async move { directory::insert(name, topic) });
        }
        self.topics.insert(name.clone(), topic.clone());
        MessageResult((name, topic))
    }
}

impl Handler<ListTopics> for Registry {
    type Result = MessageResult<ListTopics>;

    fn handle(&mut self, _: ListTopics, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.topics
                .iter()
                .map(|(name, topic)| (name.clone(), topic.addr().clone()))
                .collect(),
        )
    }
}

impl Handler<SyncStore> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: SyncStore, _: &mut Self::Context) -> Self::Result {
        let synced = self.store.as_ref().map(|opened| opened.disk.sync());
        Box::pin(async move {
            if let Some(synced) = synced {
                let _ = synced.await;
            }
        })
    }
}
