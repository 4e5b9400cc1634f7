//! A topic in `--cluster` mode: its counter and cache live in Redis (see
//! `crate::cluster`); the actor keeps only its own node's subscribers and
//! their round robin, and delivers what arrives on the topic's channel.
//!
//! - A `PublishBatch` becomes one script call; its credit comes back and
//!   its sends are acknowledged (`WhenCommitted`, always asked for in this
//!   mode) when Redis answers, or refused with `Cluster unavailable`.
//! - A `subscribe` listens on the channel first, then registers the
//!   subscriber and takes the replay in one script, while the actor waits
//!   (`ctx.wait`): messages arriving meanwhile queue in the mailbox. Every
//!   message below the topic's counter as the script saw it was either
//!   replayed or sent before the subscription; every one from there on
//!   arrives live. So the subscriber takes live messages from that index on
//!   (`live_from`): no gap, no duplicate.
//! - A `one` message addressed to this node goes to the next local
//!   subscriber; if none can take it, back to Redis (`reroute`).
//! - When the connection to Redis breaks, the topic listens again and then
//!   catches up from the cache on what it missed meanwhile (`catch_up`);
//!   what it hears twice it delivers once (`last_live`).

use std::sync::Arc;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, ResponseFuture, WrapFuture};
use bytes::Bytes;

use super::{Subscribe, Subscriber, TopicActor};
use crate::cluster::{Cluster, Heard, Joined, Keys, Outgoing as Sent};
use crate::config::{CLUSTER_HEARTBEAT, CLUSTER_MAX_BACKOFF, MAX_BATCH_BYTES};
use crate::metrics;
use crate::outbox::Outgoing;
use crate::protocol::{Delivery, ProtocolError, OK};
use crate::store::Committed;

/// What a topic keeps of its cluster side.
#[derive(Debug)]
pub(super) struct ClusterTopic {
    cluster: Cluster,
    keys: Arc<Keys>,
    /// The node listens on the topic's channel (from its first subscribe on,
    /// for the life of the actor).
    listening: bool,
    /// Batches handed to Redis so far; the last one's number.
    sent: u64,
    /// Batches Redis has not answered yet, with the acknowledgements that
    /// wait for them.
    in_flight: Vec<(u64, Vec<Committed>)>,
    /// Whether the last answered batch was taken, for a `WhenCommitted`
    /// that comes after its answer.
    last_taken: bool,
    /// Live `all` messages below this index reach only the subscribers
    /// whose `live_from` is not above it: one of them just replayed them.
    fresh_until: u64,
    /// The last `all` message heard (or caught up on): channel messages
    /// come in index order, so anything at or below it is heard twice.
    last_live: Option<u64>,
    /// A catch-up is under way.
    catching_up: bool,
    /// The last index the channel carried, for this node or not (or that
    /// the node learnt was published before it listened).
    last_heard: Option<u64>,
    /// The topic's next index at the last heartbeat, when the node had not
    /// heard everything below it: if it still has not at the next one,
    /// those messages are lost to the channel and the topic catches up.
    suspect: Option<u64>,
}

impl ClusterTopic {
    pub(super) fn new(cluster: Cluster, name: &str) -> ClusterTopic {
        ClusterTopic {
            cluster,
            keys: Arc::new(Keys::new(name)),
            listening: false,
            sent: 0,
            in_flight: Vec::new(),
            last_taken: true,
            fresh_until: 0,
            last_live: None,
            catching_up: false,
            last_heard: None,
            suspect: None,
        }
    }
}

impl TopicActor {
    /// Starts the heartbeat that keeps this node's subscriber count for the
    /// topic alive in Redis while it has subscribers.
    pub(super) fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(CLUSTER_HEARTBEAT, |topic, ctx| {
            if !topic.subscribers.is_empty() {
                topic.tell_census(ctx);
            }
        });
    }

    /// Tells Redis how many subscribers this node has for the topic now.
    /// Not once shutdown has begun: the node has left the census then.
    pub(super) fn tell_census(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if self.pace.draining {
            return;
        }
        let refresh = cluster
            .cluster
            .refresh(cluster.keys.clone(), self.subscribers.len());
        // A failure is logged by the cluster; the next heartbeat repeats it.
        ctx.spawn(refresh.into_actor(self).map(|next_index, topic, ctx| {
            if let Ok(next_index) = next_index {
                topic.check_heard(next_index, ctx);
            }
        }));
    }

    /// Everything published was heard, or is on its way (heard by the next
    /// heartbeat); otherwise the channel lost messages without saying so
    /// (a subscription dropped on the way) and the topic catches up.
    fn check_heard(&mut self, next_index: u64, ctx: &mut Context<Self>) {
        let subscribed = !self.subscribers.is_empty();
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let heard_below = cluster.last_heard.map_or(0, |last| last + 1);
        if !cluster.listening || !subscribed || heard_below >= next_index {
            cluster.suspect = None;
            return;
        }
        match cluster.suspect {
            Some(suspect) if heard_below < suspect => {
                cluster.suspect = None;
                tracing::warn!(
                    topic = %self.name,
                    heard_below,
                    next_index = suspect,
                    "messages published on the topic's channel were not heard: \
                     catching up from the cache"
                );
                self.catch_up(ctx);
            }
            _ => cluster.suspect = Some(next_index),
        }
    }

    /// Notes that every message below `next_index` was heard or needs no
    /// hearing (it was published before the node listened, or caught up on).
    fn heard_below(&mut self, next_index: u64) {
        if let Some(cluster) = &mut self.cluster {
            if let Some(last) = next_index.checked_sub(1) {
                cluster.last_heard = cluster.last_heard.max(Some(last));
            }
        }
    }

    /// Sends a batch to Redis as one script call.
    pub(super) fn publish_remotely(&mut self, batch: super::PublishBatch, ctx: &mut Context<Self>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let sends = batch
            .publishes
            .into_iter()
            .map(|publish| Sent {
                one: publish.delivery == Delivery::One,
                cache: publish.cache,
                head: publish.template.into_head(),
            })
            .collect();
        cluster.sent += 1;
        let number = cluster.sent;
        cluster.in_flight.push((number, Vec::new()));
        let credit = batch.credit;
        let published = cluster.cluster.publish(cluster.keys.clone(), sends);
        ctx.spawn(published.into_actor(self).map(move |result, topic, _| {
            // Only now may the session hand over more: what a topic has in
            // flight to Redis is bounded by its credit.
            drop(credit);
            topic.published(number, result.is_ok());
        }));
        self.note_activity(ctx);
    }

    fn published(&mut self, number: u64, taken: bool) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if let Some(at) = cluster.in_flight.iter().position(|(n, _)| *n == number) {
            let (_, waiters) = cluster.in_flight.remove(at);
            if taken {
                for done in waiters {
                    let _ = done.send(());
                }
            }
        }
        if number == cluster.sent {
            cluster.last_taken = taken;
        }
    }

    /// Acknowledges the last batch once Redis took it; dropping `done`
    /// makes the session answer `Cluster unavailable`.
    pub(super) fn when_published(&mut self, done: Committed) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        match cluster.in_flight.last_mut() {
            Some((number, waiters)) if *number == cluster.sent => waiters.push(done),
            _ if cluster.last_taken => {
                let _ = done.send(());
            }
            _ => {}
        }
    }

    /// A `subscribe` (see the module documentation for the order of steps).
    pub(super) fn subscribe_remotely(
        &mut self,
        msg: Subscribe,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<bool> {
        self.flush();
        let Some(cluster) = &self.cluster else {
            return Box::pin(std::future::ready(false));
        };
        let connection = msg.outbox.id();
        let existing = self.subscribers.position(|s| s.outbox.id() == connection);
        let covered = existing
            .and_then(|i| self.subscribers.get_mut(i))
            .map(|s| s.covered_from);
        let count = self.subscribers.len() + usize::from(existing.is_none());
        let from = u64::try_from(msg.last_seen.saturating_add(1)).unwrap_or(0);
        let replay =
            (msg.replay && covered.is_none_or(|below| from < below)).then_some((from, covered));
        let listen = (!cluster.listening).then(|| {
            cluster
                .cluster
                .listen(cluster.keys.clone(), ctx.address().recipient())
        });
        let join = cluster.cluster.join(cluster.keys.clone(), count, replay);
        let joined = async move {
            if let Some(listen) = listen {
                listen.await?;
            }
            join.await
        };
        let (finished, done) = tokio::sync::oneshot::channel::<bool>();
        ctx.wait(joined.into_actor(self).map(move |joined, topic, ctx| {
            let took = match joined {
                Ok(joined) => {
                    topic.joined(msg, replay.map(|(from, _)| from), joined, ctx);
                    true
                }
                Err(_) => {
                    msg.outbox.reply(ProtocolError::ClusterUnavailable.reply());
                    false
                }
            };
            let _ = finished.send(took);
        }));
        Box::pin(async move { done.await.unwrap_or(false) })
    }

    /// The subscription took effect: reply, replay, then live messages.
    fn joined(
        &mut self,
        msg: Subscribe,
        replayed_from: Option<u64>,
        joined: Joined,
        ctx: &mut Context<Self>,
    ) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.listening = true;
        cluster.fresh_until = cluster.fresh_until.max(joined.next_index);
        let next_index = joined.next_index;
        let keys = cluster.keys.clone();
        let remote = cluster.cluster.clone();
        msg.outbox.reply(Bytes::from_static(OK));
        let mut gone = false;
        let mut replayed = 0;
        for entry in joined.replay {
            gone = gone || msg.outbox.push(Outgoing::Line(entry.line.clone())).is_err();
            if !gone {
                replayed += 1;
            } else if entry.one {
                // Consumed for a subscriber that left: back to the others.
                let reroute = remote.reroute(keys.clone(), entry.index, entry.line, true);
                ctx.spawn(async move { drop(reroute.await) }.into_actor(self));
            }
        }
        metrics::get().replayed(replayed);
        self.heard_below(next_index);
        let connection = msg.outbox.id();
        match self.subscribers.position(|s| s.outbox.id() == connection) {
            Some(i) => {
                if let (Some(sub), Some(from)) = (self.subscribers.get_mut(i), replayed_from) {
                    sub.covered_from = sub.covered_from.min(from);
                }
            }
            None => self.subscribers.push(Subscriber {
                outbox: msg.outbox,
                covered_from: replayed_from
                    .map_or(joined.next_index, |from| from.min(joined.next_index)),
                live_from: joined.next_index,
            }),
        }
    }

    /// A `one` message no local subscriber could take: to another node, or
    /// into the cache as waiting.
    pub(super) fn reroute(
        &mut self,
        index: u64,
        line: Bytes,
        cache: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let reroute = cluster
            .cluster
            .reroute(cluster.keys.clone(), index, line, cache);
        ctx.spawn(async move { drop(reroute.await) }.into_actor(self));
    }

    /// Leaves the census at a graceful stop, so that no more `one` messages
    /// are sent this way; resolves once Redis took it (or gave up).
    pub(super) fn leave(&mut self) -> Option<impl std::future::Future<Output = ()> + 'static> {
        let cluster = self.cluster.as_ref()?;
        let refresh = cluster.cluster.refresh(cluster.keys.clone(), 0);
        Some(async move { drop(refresh.await) })
    }

    /// After an interruption: listens again, then delivers what the cache
    /// holds beyond the last message heard; retried until Redis is back.
    /// Meanwhile the topic handles nothing else, so what it hears live
    /// queues behind the catch-up, and is delivered once (`last_live`).
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.listening || cluster.catching_up {
            return;
        }
        cluster.catching_up = true;
        let from = cluster.last_live.map_or(0, |last| last + 1);
        let listen = cluster
            .cluster
            .listen(cluster.keys.clone(), ctx.address().recipient());
        let cached = cluster.cluster.cached_from(cluster.keys.clone(), from);
        let caught_up = async move {
            listen.await?;
            cached.await
        };
        ctx.wait(caught_up.into_actor(self).map(|caught_up, topic, ctx| {
            if let Some(cluster) = &mut topic.cluster {
                cluster.catching_up = false;
            }
            match caught_up {
                Ok(caught_up) => {
                    topic.notice_lost_state(caught_up.next_index);
                    topic.heard_below(caught_up.next_index);
                    for entry in caught_up.replay.iter().filter(|entry| !entry.one) {
                        topic.arrived_all(entry.index, &entry.line);
                    }
                    topic.schedule_settle(ctx);
                }
                Err(_) => {
                    ctx.run_later(CLUSTER_MAX_BACKOFF, |topic, ctx| topic.catch_up(ctx));
                }
            }
        }));
    }

    /// A counter below what the topic already heard means Redis lost its
    /// state (restarted without persistence): indexes start again, so the
    /// topic forgets what it heard rather than drop every message as heard
    /// twice.
    fn notice_lost_state(&mut self, next_index: u64) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if cluster.last_live.is_none_or(|last| next_index > last) {
            return;
        }
        tracing::error!(
            topic = %self.name,
            next_index,
            "Redis lost this topic's state (restarted without persistence?): \
             its indexes start again"
        );
        cluster.last_live = None;
        cluster.last_heard = None;
        cluster.suspect = None;
        cluster.fresh_until = 0;
        for i in 0..self.subscribers.len() {
            if let Some(sub) = self.subscribers.get_mut(i) {
                sub.live_from = 0;
                sub.covered_from = 0;
            }
        }
    }

    /// An `all` message heard on the channel, for every local subscriber.
    fn arrived_all(&mut self, index: u64, line: &Bytes) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if cluster.last_live.is_some_and(|last| index <= last) {
            return;
        }
        cluster.last_live = Some(index);
        let fresh_until = cluster.fresh_until;
        if index < fresh_until {
            // Someone just replayed it: only the others take it live.
            self.flush();
            self.subscribers.retain(|sub| {
                sub.live_from > index || sub.outbox.push(Outgoing::Line(line.clone())).is_ok()
            });
            return;
        }
        if self.subscribers.is_empty() {
            return;
        }
        self.batch.lines.extend_from_slice(line);
        self.batch.ends.push((index, self.batch.lines.len(), false));
        if self.batch.lines.len() >= MAX_BATCH_BYTES {
            self.flush();
        }
    }
}

impl Handler<Heard> for TopicActor {
    type Result = ();

    fn handle(&mut self, heard: Heard, ctx: &mut Self::Context) {
        let records = match heard {
            Heard::Records { records, last } => {
                self.heard_below(last.saturating_add(1));
                records
            }
            Heard::Interrupted => return self.catch_up(ctx),
        };
        for record in records {
            match record.target {
                None => self.arrived_all(record.index, &record.line),
                Some(_) => {
                    self.flush();
                    self.send_one(record.index, record.line, record.cache, ctx);
                }
            }
        }
        self.schedule_settle(ctx);
    }
}
