//! `Registry`: creates each topic's actor on first use and hands out its handle.
//!
//! It tells every worker thread of each new topic (`directory`), so sessions
//! find handles in their own thread and ask here only for topics that do
//! not exist yet: the registry never sits on the per-message path.
//!
//! It also retires idle topics (see `topic`): a dormant topic is only its
//! name and its counter here, until a command names it again.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message,
    MessageResult, ResponseFuture, WrapFuture,
};

use crate::cluster::Cluster;
use crate::directory;
use crate::memory::Memory;
use crate::store::{Opened, Store};
use crate::topic::{Idle, Retire, StillShared, TopicActor, TopicHandle, Unshared};

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

/// Every topic with an actor, for shutdown, tests and diagnostics.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Arc<str>, Addr<TopicActor>)>")]
pub struct ListTopics;

/// Resolves once everything the topics handed to the store so far is
/// synced to disk (at once without `--data-dir`); graceful shutdown sends it
/// after every topic's `Flush`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SyncStore;

/// A topic as the registry knows it.
enum Entry {
    Live(TopicHandle),
    /// Retired while idle, or found on disk with nothing cached: what its
    /// next send will be numbered.
    Dormant {
        next_index: u64,
    },
}

/// Owns the name → topic map; the only place topics are created, so a name
/// never gets two actors.
pub struct Registry {
    topics: HashMap<Arc<str>, Entry>,
    /// Every worker thread, each told of every new topic.
    workers: Vec<ArbiterHandle>,
    cache_size: usize,
    memory: Arc<Memory>,
    /// `--data-dir`: the disk thread, and the topics stored there that no
    /// command has named yet (each is started, with its state, on first use).
    store: Option<Opened>,
    /// `--cluster`: every topic is shared through Redis, and never retires
    /// (its state is in Redis; the actor is its local subscribers).
    cluster: Option<Cluster>,
}

impl Registry {
    pub fn new(
        workers: Vec<ArbiterHandle>,
        cache_size: usize,
        memory: Arc<Memory>,
        mut store: Option<Opened>,
    ) -> Self {
        // A stored topic with nothing cached is a counter, as a dormant
        // one is; only topics with cached messages wait in `recovered`.
        let mut topics = HashMap::new();
        if let Some(opened) = &mut store {
            opened.recovered.retain(|name, recovered| {
                let counter_only = recovered.cached.is_empty();
                if counter_only {
                    let next_index = recovered.resume;
                    topics.insert(Arc::from(&**name), Entry::Dormant { next_index });
                }
                !counter_only
            });
        }
        Registry {
            topics,
            workers,
            cache_size,
            memory,
            store,
            cluster: None,
        }
    }

    /// Shares every topic through `cluster` (`--cluster`).
    pub fn clustered(mut self, cluster: Option<Cluster>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Every worker learns the handle now, so sessions elsewhere find it in
    /// their own directory instead of asking here.
    fn announce(&self, name: &Arc<str>, topic: &TopicHandle) {
        for worker in &self.workers {
            let (name, topic) = (name.clone(), topic.downgrade());
            worker.spawn(async move { directory::insert(name, topic) });
        }
    }

    /// The topic is back (it was not idle after all): handed out again.
    fn keep(&mut self, name: Arc<str>, topic: Unshared) {
        let topic = topic.share();
        self.announce(&name, &topic);
        self.topics.insert(name, Entry::Live(topic));
    }

    fn make_dormant(&mut self, name: Arc<str>, next_index: u64) {
        for worker in &self.workers {
            let name = name.clone();
            worker.spawn(async move { directory::forget(&name) });
        }
        self.topics.insert(name, Entry::Dormant { next_index });
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Lookup> for Registry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, lookup: Lookup, ctx: &mut Self::Context) -> Self::Result {
        let (name, next_index) = match self.topics.get_key_value(&*lookup.name) {
            Some((name, Entry::Live(topic))) => {
                return MessageResult((name.clone(), topic.clone()))
            }
            Some((name, Entry::Dormant { next_index })) => (name.clone(), *next_index),
            None => (Arc::from(lookup.name), 0),
        };
        let mut topic = TopicActor::new(name.clone(), self.cache_size, self.memory.clone())
            .resuming_at(next_index);
        topic = match &self.cluster {
            Some(cluster) => topic.clustered(cluster.clone()),
            None => topic.retiring_to(ctx.address().recipient()),
        };
        if let Some(opened) = &mut self.store {
            let recovered = opened.recovered.remove(&*name).unwrap_or_default();
            let lease = next_index.max(recovered.resume);
            let store = Store::disk(name.clone(), opened.disk.clone(), lease);
            topic = topic.stored_in(store, recovered);
        }
        let topic = topic.start_in(&lookup.worker);
        self.announce(&name, &topic);
        self.topics.insert(name.clone(), Entry::Live(topic.clone()));
        MessageResult((name, topic))
    }
}

impl Handler<Idle> for Registry {
    type Result = ();

    fn handle(&mut self, idle: Idle, ctx: &mut Self::Context) {
        let current = match self.topics.get(&*idle.name) {
            Some(Entry::Live(topic)) => topic.addr() == &idle.topic,
            _ => false,
        };
        if !current {
            return;
        }
        let Some((name, Entry::Live(topic))) = self.topics.remove_entry(&*idle.name) else {
            return;
        };
        let topic = match topic.try_unshare() {
            Ok(topic) => topic,
            Err(shared) => {
                // A session is about to send to it.
                self.topics.insert(name, Entry::Live(shared));
                return idle.topic.do_send(StillShared);
            }
        };
        // Nothing else is handled until the topic answers, so a lookup of
        // this name sees either the dormant counter or the topic kept.
        let retire = topic.addr().send(Retire);
        ctx.wait(
            retire
                .into_actor(self)
                .map(move |answer, registry, _| match answer {
                    Ok(Some(next_index)) => registry.make_dormant(name, next_index),
                    _ => registry.keep(name, topic),
                }),
        );
    }
}

impl Handler<ListTopics> for Registry {
    type Result = MessageResult<ListTopics>;

    fn handle(&mut self, _: ListTopics, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.topics
                .iter()
                .filter_map(|(name, entry)| match entry {
                    Entry::Live(topic) => Some((name.clone(), topic.addr().clone())),
                    Entry::Dormant { .. } => None,
                })
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
