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
    MessageResult, WrapFuture,
};

use crate::directory;
use crate::memory::Memory;
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

/// A topic as the registry knows it.
enum Entry {
    Live(TopicHandle),
    /// Retired while idle: what its next send will be numbered.
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
}

impl Registry {
    pub fn new(workers: Vec<ArbiterHandle>, cache_size: usize, memory: Arc<Memory>) -> Self {
        Registry {
            topics: HashMap::new(),
            workers,
            cache_size,
            memory,
        }
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
        let topic = TopicActor::new(name.clone(), self.cache_size, self.memory.clone())
            .resuming_at(next_index)
            .retiring_to(ctx.address().recipient())
            .start_in(&lookup.worker);
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
