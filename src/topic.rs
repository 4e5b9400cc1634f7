//! `TopicActor`: the whole state of one topic, owned by one actor.
//!
//! Its sequence counter, cache, subscribers and round-robin cursor change only
//! inside its handlers, so every rule that relates them (index order, replay
//! then live with no gap and no duplicate, consumption of replayed `one`
//! messages) holds without a lock: the mailbox orders everything.
//!
//! `delivery: "all"` messages are batched: consecutive sends handled in one
//! turn of the actor are appended to one buffer, and each subscriber is handed
//! that buffer once when the mailbox is empty (or before anything else
//! happens to the topic). One push per subscriber per batch instead of one per
//! message is what makes wide fan-out cheap.
//!
//! Backpressure is counted in bytes by the topic's [`Credit`]: a session
//! takes credit for the sends it hands over before it hands them over, and
//! waits (reading nothing more from its client) while there is none. The
//! topic gives the credit back once the sends are passed on to the
//! subscribers, unless every subscriber is behind and one is still reading
//! (see [`PACE_BYTES`]): then it keeps the credit until a subscriber's
//! writer reports that it caught up ([`CaughtUp`]). So what a topic holds in
//! its mailbox and what it lets its readers owe are both bounded.
//!
//! A topic with no subscriber, nothing cached and nothing on its way back
//! retires its actor after [`DORMANT_AFTER`]: it tells the registry it is
//! idle ([`Idle`]), and the registry retires it only if no one else holds
//! its handle (so no send can be on its way) and the topic, asked again in
//! order after everything already sent to it ([`Retire`]), is still idle.
//! The registry then keeps its counter, and the next command that names the
//! topic starts a new actor from there: an index is never handed out twice.
//!
//! With `--cluster` the counter and cache live in Redis instead, shared by
//! every broker, and the actor keeps its own node's subscribers; the steps
//! that differ are in `topic/cluster.rs`.

mod cluster;

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Instant;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler,
    Message, MessageResult, Recipient, ResponseFuture, SpawnHandle, WrapFuture,
};
use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::Cluster;
use crate::config::{DORMANT_AFTER, MAX_BATCH_BYTES, PACE_BYTES, STALLED_AFTER, TOPIC_CREDIT};
use crate::memory::Memory;
use crate::metrics;
use crate::outbox::{
    Backlog, CaughtUp, ConnectionId, Handoff, Outbox, Outgoing, Redeliver, ReturnAddress,
};
use crate::protocol::{Delivery, DeliveryTemplate, ProtocolError, OK};
use crate::store::{Committed, Recovered, Store};
use crate::subscribers::{Gone, RoundRobin};

/// Spare bytes a batch's buffer may have and still be cached as its one
/// line: about what the allocator rounds a line up to anyway.
const SHARED_SLACK: usize = 32;

/// What sessions hold of a topic: its address and its credit. One
/// allocation shared by the registry and every worker's directory, so a
/// topic costs its address once, and handing a handle on costs no
/// allocation.
#[derive(Debug, Clone)]
pub struct TopicHandle(Arc<HandleParts>);

#[derive(Debug)]
struct HandleParts {
    addr: Addr<TopicActor>,
    credit: Arc<Semaphore>,
    acks_after_commit: bool,
    /// What a send that could not be carried out is answered.
    refusal: ProtocolError,
}

impl TopicHandle {
    pub fn addr(&self) -> &Addr<TopicActor> {
        &self.0.addr
    }

    /// Whether a `send` to this topic is acknowledged only once committed
    /// (`--fsync always`): the session then asks with [`WhenCommitted`].
    pub fn acks_after_commit(&self) -> bool {
        self.0.acks_after_commit
    }

    /// The reply to a send the topic took but could not carry out: `Cluster
    /// unavailable` in `--cluster` mode (Redis did not take it), otherwise
    /// `Internal exception` (never expected).
    pub fn refusal(&self) -> ProtocolError {
        self.0.refusal
    }

    /// Whether both handles are of one topic.
    pub fn same(&self, other: &TopicHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A handle that does not keep the topic from retiring, for the
    /// workers' directories.
    pub fn downgrade(&self) -> WeakTopic {
        WeakTopic(Arc::downgrade(&self.0))
    }

    /// The topic's parts if this is its only handle left: from then on no
    /// one can send it anything without asking the registry, which holds
    /// them.
    pub fn try_unshare(self) -> Result<Unshared, TopicHandle> {
        Arc::try_unwrap(self.0).map(Unshared).map_err(TopicHandle)
    }

    /// Takes credit for `bytes` of sends at once if the topic has it.
    pub fn try_credit(&self, bytes: usize, memory: &Arc<Memory>) -> Option<Credit> {
        let permit = self
            .0
            .credit
            .clone()
            .try_acquire_many_owned(credit_permits(bytes))
            .ok()?;
        Some(Credit::new(Some(permit), bytes, memory))
    }

    /// Credit for sends whose session is closing and cannot wait: they go
    /// to the topic beyond its credit, once (at most one read's worth).
    pub fn overdraft(&self, bytes: usize, memory: &Arc<Memory>) -> Credit {
        Credit::new(None, bytes, memory)
    }

    /// Waits until the topic has credit for `bytes` of sends; `None` only if
    /// the topic is gone.
    pub fn credit(
        &self,
        bytes: usize,
        memory: Arc<Memory>,
    ) -> impl std::future::Future<Output = Option<Credit>> + 'static {
        let credit = self.0.credit.clone();
        async move {
            let permit = credit
                .acquire_many_owned(credit_permits(bytes))
                .await
                .ok()?;
            Some(Credit::new(Some(permit), bytes, &memory))
        }
    }
}

/// A topic's handle as the workers' directories keep it: it lets a session
/// find the topic without keeping it from retiring.
#[derive(Debug, Clone)]
pub struct WeakTopic(Weak<HandleParts>);

impl WeakTopic {
    /// The topic's handle, unless it has retired.
    pub fn upgrade(&self) -> Option<TopicHandle> {
        self.0.upgrade().map(TopicHandle)
    }

    /// Whether `handle` is of this topic.
    pub fn is(&self, handle: &TopicHandle) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&handle.0))
    }

    /// Whether the topic has retired.
    pub fn is_retired(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// The only handle of a topic, held by the registry while it asks the topic
/// to retire.
#[derive(Debug)]
pub struct Unshared(HandleParts);

impl Unshared {
    pub fn addr(&self) -> &Addr<TopicActor> {
        &self.0.addr
    }

    /// The topic stays: a handle others may hold again.
    pub fn share(self) -> TopicHandle {
        TopicHandle(Arc::new(self.0))
    }
}

/// A send larger than the whole credit takes all of it, so it still goes
/// through, alone.
fn credit_permits(bytes: usize) -> u32 {
    u32::try_from(bytes.clamp(1, TOPIC_CREDIT)).unwrap_or(u32::MAX)
}

/// Bytes of sends a topic has taken and not yet passed on. Dropping it gives
/// them back to the topic's credit and to the memory budget.
#[derive(Debug)]
pub struct Credit {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    memory: Arc<Memory>,
}

impl Credit {
    fn new(permit: Option<OwnedSemaphorePermit>, bytes: usize, memory: &Arc<Memory>) -> Self {
        memory.add(bytes);
        Credit {
            _permit: permit,
            bytes,
            memory: memory.clone(),
        }
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.memory.sub(self.bytes);
    }
}

/// A `send`, already encoded up to its index.
#[derive(Debug)]
pub struct Publish {
    pub template: DeliveryTemplate,
    pub delivery: Delivery,
    pub cache: bool,
}

impl Publish {
    /// What the send costs while the topic holds it.
    pub fn bytes(&self) -> usize {
        self.template.len() + std::mem::size_of::<Publish>()
    }
}

/// The sends one session read in one go for this topic, in order, with the
/// credit taken for them: one mailbox message for many sends.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublishBatch {
    pub publishes: Vec<Publish>,
    pub credit: Credit,
}

/// Sent right after a [`PublishBatch`] when the topic
/// [acks after commit](TopicHandle::acks_after_commit): fired once the
/// batch's messages are committed, so the session can acknowledge them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WhenCommitted(pub Committed);

/// Makes a connection a subscriber. The topic itself queues the
/// `{"success": true}` reply and then the replay on the subscriber's outbox,
/// so no live message can overtake either; the session waits for this
/// message to be handled (with `--data-dir`, until a replayed `one` message
/// is durably consumed and sent) before it answers anything else. Answers
/// whether the subscription took effect: with `--cluster` it does not when
/// Redis cannot be reached (the topic has replied `Cluster unavailable`).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Subscribe {
    pub outbox: Outbox,
    pub last_seen: i64,
    pub replay: bool,
}

/// Ends a subscription (an `unsubscribe`, or the connection closing).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub connection: ConnectionId,
}

/// Handled after everything queued before it: answering it means the topic
/// has carried out every earlier command. Used by graceful shutdown, so it
/// also ends pacing for good: every session must be able to finish.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Tells the registry that a topic has been idle for [`DORMANT_AFTER`] and
/// may retire.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Idle {
    pub name: Arc<str>,
    pub topic: Addr<TopicActor>,
}

/// Asked by the registry once it holds the topic's only handle: the topic
/// stops and gives its next index if it is still idle, or stays (`None`).
#[derive(Debug, Message)]
#[rtype(result = "Option<u64>")]
pub struct Retire;

/// The registry could not retire the topic because a session held its
/// handle: the topic looks again later.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StillShared;

/// How many connections subscribe to the topic; for tests and diagnostics.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct SubscriberCount;

/// Asks a topic how large it is, for `/topics`: only the topic knows, and
/// asking it costs nothing on the per-message path.
#[derive(Debug, Message)]
#[rtype(result = "TopicSummary")]
pub struct Summarize;

/// One topic's answer to [`Summarize`].
#[derive(Debug, Clone)]
pub struct TopicSummary {
    pub name: Arc<str>,
    /// The index the next message will get: how many it has taken.
    pub next_index: u64,
    /// Messages in its cache.
    pub cached: usize,
    /// What its cache holds, as the memory budget counts it.
    pub cached_bytes: usize,
    pub subscribers: usize,
}

#[derive(Debug)]
struct Subscriber {
    outbox: Outbox,
    /// Every message with this index or above has been replayed or delivered
    /// live to this subscriber (or was gone when it subscribed). A repeated
    /// `subscribe` replays only below it, so it never duplicates a message.
    covered_from: u64,
    /// `--cluster`: live messages below this index were replayed to it or
    /// sent before it subscribed (always 0 otherwise).
    live_from: u64,
}

#[derive(Debug)]
struct Cached {
    index: u64,
    /// Owns its bytes (never a slice of a larger buffer, and never a buffer
    /// with more than [`SHARED_SLACK`] to spare), so what the cache holds is
    /// what it costs.
    line: Bytes,
    /// A `delivery: "one"` message: consumed by the first replay.
    one: bool,
}

impl Cached {
    fn cost(&self) -> usize {
        self.line.len() + std::mem::size_of::<Cached>()
    }
}

/// One topic. Created by the `Registry` on the first command that names it.
pub struct TopicActor {
    name: Arc<str>,
    next_index: u64,
    cache: VecDeque<Cached>,
    cache_size: usize,
    /// Bytes the cache holds, as counted in `memory`.
    cache_bytes: usize,
    memory: Arc<Memory>,
    subscribers: RoundRobin<Subscriber>,
    batch: Batch,
    pace: Pacing,
    /// Where handed-off `one` messages come back, made once first needed.
    redeliver: Option<ReturnAddress>,
    /// Where caught-up subscribers report, made once first needed.
    caught_up: Option<Recipient<CaughtUp>>,
    /// What the topic keeps besides memory (see `store`).
    store: Store,
    /// A commit of the store's pending changes will run once the mailbox
    /// is drained.
    commit_scheduled: bool,
    dormancy: Dormancy,
    /// `--cluster`: the counter and cache live in Redis instead.
    cluster: Option<cluster::ClusterTopic>,
}

/// Whether the topic may retire its actor, and when it looks.
#[derive(Debug, Default)]
struct Dormancy {
    /// Where to say that the topic is idle; a topic started outside a
    /// registry never retires.
    registry: Option<Recipient<Idle>>,
    check_scheduled: bool,
    /// Something happened since the last look.
    active: bool,
}

/// `delivery: "all"` lines not yet handed to the subscribers.
#[derive(Debug, Default)]
struct Batch {
    lines: BytesMut,
    /// Per line: its index, where it ends in `lines`, whether to cache it.
    ends: Vec<(u64, usize, bool)>,
    settle_scheduled: bool,
}

/// The credit of sends handled but not yet settled, and of sends held back
/// while the subscribers catch up.
#[derive(Debug, Default)]
struct Pacing {
    owed: Vec<Credit>,
    held: Vec<Credit>,
    /// A look at the subscribers once the reading ones may have stalled.
    stall_check: Option<SpawnHandle>,
    /// Shutdown has begun: sessions must be able to finish, so nothing is
    /// held back any more.
    draining: bool,
}

/// Whether a topic's subscribers, taken together, are too far behind for it
/// to take more sends.
#[derive(Debug)]
struct Pace {
    all_behind: bool,
    any_reading: bool,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            all_behind: true,
            any_reading: false,
        }
    }
}

impl Pace {
    fn add(&mut self, backlog: Backlog, now: Instant) {
        if backlog.pending <= PACE_BYTES {
            self.all_behind = false;
        } else if now.saturating_duration_since(backlog.last_write) < STALLED_AFTER {
            self.any_reading = true;
        }
    }

    /// Every subscriber is behind and one of them is still reading: the
    /// subscribers as a whole cannot keep up, so publishers must wait. A
    /// subscriber that stopped reading never holds the others back, and one
    /// that keeps up releases the topic at once.
    fn congested(&self) -> bool {
        self.all_behind && self.any_reading
    }
}

impl TopicActor {
    pub fn new(name: Arc<str>, cache_size: usize, memory: Arc<Memory>) -> Self {
        TopicActor {
            name,
            next_index: 0,
            cache: VecDeque::new(),
            cache_size,
            cache_bytes: 0,
            memory,
            subscribers: RoundRobin::default(),
            batch: Batch::default(),
            pace: Pacing::default(),
            redeliver: None,
            caught_up: None,
            store: Store::Memory,
            commit_scheduled: false,
            dormancy: Dormancy::default(),
            cluster: None,
        }
    }

    /// Shares the topic with the other brokers of `cluster` (`--cluster`):
    /// numbered, cached and delivered through Redis.
    pub fn clustered(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster::ClusterTopic::new(cluster, &self.name));
        self
    }

    /// Continues a retired topic's numbering.
    pub fn resuming_at(mut self, next_index: u64) -> Self {
        self.next_index = next_index;
        self
    }

    /// Lets the topic retire when idle, through `registry`.
    pub fn retiring_to(mut self, registry: Recipient<Idle>) -> Self {
        self.dormancy.registry = Some(registry);
        self
    }

    /// Keeps the topic in `store` too, resuming from what it held (a
    /// `Recovered::default()` for a topic with nothing stored). Messages
    /// beyond today's cache size are evicted, on disk too.
    pub fn stored_in(mut self, store: Store, recovered: Recovered) -> Self {
        self.store = store;
        self.next_index = self.next_index.max(recovered.resume);
        for (index, line, one) in recovered.cached {
            if self.cache_size == 0 {
                self.store.remove(index, false);
            } else {
                self.cache_add(index, line, one);
            }
        }
        self
    }

    /// Starts the topic on `worker`'s thread, with a full credit.
    pub fn start_in(self, worker: &ArbiterHandle) -> TopicHandle {
        let clustered = self.cluster.is_some();
        let acks_after_commit = self.store.acks_after_commit() || clustered;
        TopicHandle(Arc::new(HandleParts {
            addr: TopicActor::start_in_arbiter(worker, move |_| self),
            credit: Arc::new(Semaphore::new(TOPIC_CREDIT)),
            acks_after_commit,
            refusal: if clustered {
                ProtocolError::ClusterUnavailable
            } else {
                ProtocolError::Internal
            },
        }))
    }

    /// Hands the pending batch to every subscriber and caches its lines.
    /// Runs before anything that changes who subscribes or what they are
    /// sent, so batching never reorders or misroutes a line. Says how far
    /// behind the subscribers are, if it pushed anything.
    fn flush(&mut self) -> Option<Pace> {
        if self.batch.lines.is_empty() {
            return None;
        }
        // Taken whole, not split off: a split would leave the spare
        // capacity with the topic, sharing one allocation that only grows
        // and that every line still queued anywhere keeps alive. The next
        // batch starts a buffer of its own, sized to what it holds.
        let lines = std::mem::take(&mut self.batch.lines);
        // A batch of one line whose buffer it fills is that line, and the
        // cache can keep the buffer itself instead of a copy (one topic per
        // message, as in `loadgen pairs`, is all such batches).
        let whole = self.batch.ends.len() == 1 && lines.capacity() - lines.len() <= SHARED_SLACK;
        let lines = lines.freeze();
        // A subscriber that refuses a batch is gone or over its budget (and
        // being cut off): either way it receives nothing more.
        let now = Instant::now();
        let mut pace = Pace::default();
        let mut reached = 0;
        self.subscribers
            .retain(|sub| match sub.outbox.push(Outgoing::Line(lines.clone())) {
                Ok(backlog) => {
                    pace.add(backlog, now);
                    reached += 1;
                    true
                }
                Err(_) => false,
            });
        metrics::get().messages_out(Delivery::All, reached * self.batch.ends.len() as u64);
        let mut start = 0;
        let ends = std::mem::take(&mut self.batch.ends);
        for &(index, end, cache) in &ends {
            if cache {
                let line = match whole {
                    true => lines.clone(),
                    false => Bytes::copy_from_slice(&lines[start..end]),
                };
                self.cache_insert(index, line, false);
            }
            start = end;
        }
        self.batch.ends = ends;
        self.batch.ends.clear();
        Some(pace)
    }

    /// Keeps at most `cache_size` messages in index order, evicting the
    /// oldest, and tells the store.
    fn cache_insert(&mut self, index: u64, line: Bytes, one: bool) {
        if self.cache_size == 0 {
            return;
        }
        self.store.put(index, &line, one);
        self.cache_add(index, line, one);
    }

    /// Caches a message the store already holds; only an eviction is news
    /// to the store.
    fn cache_add(&mut self, index: u64, line: Bytes, one: bool) {
        // Almost every message is the newest: a binary search would touch
        // about seven entries of a cache that has gone cold since (pairs:
        // 1,000 topics' caches of 100), the newest entry is one.
        let at = match self.cache.back() {
            Some(newest) if newest.index > index => self.cache.partition_point(|c| c.index < index),
            _ => self.cache.len(),
        };
        let cached = Cached { index, line, one };
        let mut bytes = self.cache_bytes + cached.cost();
        self.cache.insert(at, cached);
        if self.cache.len() > self.cache_size {
            if let Some(evicted) = self.cache.pop_front() {
                bytes -= evicted.cost();
                self.store.remove(evicted.index, false);
            }
        }
        self.memory.set(&mut self.cache_bytes, bytes);
    }

    /// Removes a consumed `one` message, for good.
    fn cache_remove(&mut self, i: usize) {
        if let Some(removed) = self.cache.remove(i) {
            self.store.remove(removed.index, true);
            let bytes = self.cache_bytes - removed.cost();
            self.memory.set(&mut self.cache_bytes, bytes);
        }
    }

    /// Flushes the batch, then gives back the credit of the sends handled
    /// since, or holds it while the subscribers are behind.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        self.batch.settle_scheduled = false;
        let pace = match self.flush() {
            Some(pace) => pace,
            None => self.pace_now(),
        };
        if pace.congested() && !self.pace.draining {
            let owed = std::mem::take(&mut self.pace.owed);
            self.pace.held.extend(owed);
            self.wait_for_subscribers(ctx);
        } else {
            self.pace.owed.clear();
            self.pace.held.clear();
        }
        self.store.commit();
    }

    /// Makes sure what the store was told in this turn is committed once
    /// every message already queued has been handled: one request per turn,
    /// however many messages the turn handled.
    fn schedule_commit(&mut self, ctx: &mut Context<Self>) {
        if self.commit_scheduled || !self.store.has_pending() {
            return;
        }
        self.commit_scheduled = true;
        ctx.spawn(actix::fut::ready(()).map(|(), topic: &mut Self, _| {
            topic.commit_scheduled = false;
            // The batch's lines must be cached (and so told to the store)
            // before anyone waiting for this commit is told it is done.
            topic.flush();
            topic.store.commit();
        }));
    }

    fn pace_now(&self) -> Pace {
        let now = Instant::now();
        let mut pace = Pace::default();
        for sub in self.subscribers.iter() {
            pace.add(sub.outbox.backlog(), now);
        }
        pace
    }

    /// Asks every subscriber's writer to say when it has caught up, and looks
    /// again once the reading ones may have stalled.
    fn wait_for_subscribers(&mut self, ctx: &mut Context<Self>) {
        let caught_up = self
            .caught_up
            .get_or_insert_with(|| ctx.address().recipient());
        for sub in self.subscribers.iter() {
            sub.outbox.notify_caught_up(caught_up);
        }
        if self.pace.stall_check.is_none() {
            self.pace.stall_check = Some(ctx.run_later(STALLED_AFTER, |topic, ctx| {
                topic.pace.stall_check = None;
                topic.repace(ctx);
            }));
        }
    }

    /// Looks whether held credit can go back.
    fn repace(&mut self, ctx: &mut Context<Self>) {
        if self.pace.held.is_empty() {
            return;
        }
        if self.pace_now().congested() {
            self.wait_for_subscribers(ctx);
        } else {
            self.pace.held.clear();
        }
    }

    /// Makes sure the batch goes out and the credit is settled once every
    /// message already queued has been handled.
    fn schedule_settle(&mut self, ctx: &mut Context<Self>) {
        if !self.batch.settle_scheduled {
            // Spawned futures run after the mailbox is drained: the batch
            // goes out once every send already queued has joined it.
            self.batch.settle_scheduled = true;
            ctx.spawn(actix::fut::ready(()).map(|(), topic: &mut Self, ctx| topic.settle(ctx)));
        }
    }

    /// Numbers one send and passes it on; `room` is what the `all` lines
    /// still to come in this batch may take, reserved at once when the
    /// batch buffer first needs to grow.
    fn publish(&mut self, msg: Publish, room: &mut usize, ctx: &mut Context<Self>) {
        let index = self.next_index;
        self.next_index += 1;
        if msg.delivery == Delivery::One {
            self.flush();
            self.send_one(
                index,
                msg.template.into_line(index).freeze(),
                msg.cache,
                ctx,
            );
            return;
        }
        *room = room.saturating_sub(msg.template.max_line_len());
        let cache = msg.cache && self.cache_size > 0;
        if self.subscribers.is_empty() && !cache {
            return;
        }
        if self.batch.lines.is_empty() {
            // The first line of a batch is finished where the session
            // encoded it: no copy, and no allocation.
            self.batch.lines = msg.template.into_line(index);
        } else {
            self.batch
                .lines
                .reserve(msg.template.max_line_len() + *room);
            msg.template.write_line(index, &mut self.batch.lines);
        }
        self.batch.ends.push((index, self.batch.lines.len(), cache));
        if self.batch.lines.len() >= MAX_BATCH_BYTES {
            self.flush();
        }
    }

    fn send_one(&mut self, index: u64, line: Bytes, cache: bool, ctx: &mut Context<Self>) {
        let redeliver = self
            .redeliver
            .get_or_insert_with(|| ReturnAddress::new(ctx.address().recipient()))
            .clone();
        let handoff = Handoff::new(index, line, cache, redeliver);
        let refused = self.subscribers.offer(handoff, |sub, handoff| {
            sub.outbox
                .push(Outgoing::Handoff(handoff))
                .map(drop)
                .map_err(|back| match back {
                    Outgoing::Handoff(h) => (h, Gone(true)),
                    _ => unreachable!("the outbox gives back what it was given"),
                })
        });
        if let Err(handoff) = refused {
            let (index, line, cache) = handoff.into_parts();
            if self.cluster.is_some() {
                return self.reroute(index, line, cache, ctx);
            }
            if cache {
                self.cache_insert(index, line, true);
            }
        }
    }

    /// Nothing would be lost if the actor stopped now: no subscriber,
    /// nothing cached or batched, no `one` message that may come back.
    fn is_idle(&self) -> bool {
        self.subscribers.is_empty()
            && self.cache.is_empty()
            && self.batch.lines.is_empty()
            && !self.commit_scheduled
            && !self.store.has_pending()
            && !self
                .redeliver
                .as_ref()
                .is_some_and(ReturnAddress::outstanding)
    }

    /// Notes that something happened; a topic without subscribers looks
    /// again after [`DORMANT_AFTER`] whether it may retire.
    fn note_activity(&mut self, ctx: &mut Context<Self>) {
        self.dormancy.active = true;
        self.schedule_dormancy_check(ctx);
    }

    fn schedule_dormancy_check(&mut self, ctx: &mut Context<Self>) {
        let dormancy = &mut self.dormancy;
        if dormancy.registry.is_none() || dormancy.check_scheduled || !self.subscribers.is_empty() {
            return;
        }
        dormancy.check_scheduled = true;
        ctx.run_later(DORMANT_AFTER, |topic, ctx| topic.look_at_dormancy(ctx));
    }

    /// A subscriber or a cached message keeps the topic; its departure or
    /// consumption is activity, which looks again.
    fn look_at_dormancy(&mut self, ctx: &mut Context<Self>) {
        self.dormancy.check_scheduled = false;
        if !self.subscribers.is_empty() || !self.cache.is_empty() {
            return;
        }
        if std::mem::take(&mut self.dormancy.active) || !self.is_idle() {
            return self.schedule_dormancy_check(ctx);
        }
        if let Some(registry) = &self.dormancy.registry {
            registry.do_send(Idle {
                name: self.name.clone(),
                topic: ctx.address(),
            });
        }
    }

    fn replay(&mut self, outbox: &Outbox, from: u64, below: u64) {
        let start = self.cache.partition_point(|c| c.index < from);
        let mut i = start;
        let mut replayed = 0;
        while i < self.cache.len() && self.cache[i].index < below {
            let cached = &self.cache[i];
            if outbox.push(Outgoing::Line(cached.line.clone())).is_err() {
                break;
            }
            replayed += 1;
            if cached.one {
                self.cache_remove(i);
            } else {
                i += 1;
            }
        }
        metrics::get().replayed(replayed);
    }
}

impl Actor for TopicActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(topic = %self.name, next_index = self.next_index, "topic started");
        metrics::get().topics(1);
        // Evictions of what the store held beyond today's cache size.
        self.schedule_commit(ctx);
        if self.cluster.is_some() {
            self.start_heartbeat(ctx);
        }
        self.note_activity(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.memory.sub(self.cache_bytes);
        metrics::get().topics(-1);
    }
}

impl Handler<PublishBatch> for TopicActor {
    type Result = ();

    fn handle(&mut self, batch: PublishBatch, ctx: &mut Self::Context) {
        if self.cluster.is_some() {
            return self.publish_remotely(batch, ctx);
        }
        let count = u64::try_from(batch.publishes.len()).unwrap_or(u64::MAX);
        if let Some(leased) = self.store.reserve(self.next_index.saturating_add(count)) {
            // No index may be handed out before a crash could no longer
            // hand it out again: nothing else happens to the topic until
            // the longer lease is on disk.
            ctx.wait(
                leased
                    .into_actor(self)
                    .map(move |_, topic, ctx| topic.publish_batch(batch, ctx)),
            );
            return;
        }
        self.publish_batch(batch, ctx);
    }
}

impl TopicActor {
    fn publish_batch(&mut self, batch: PublishBatch, ctx: &mut Context<Self>) {
        // Growing the batch buffer line by line copied it over and over
        // (3% of the CPU in pairs): it grows once, by what the batch needs.
        let mut room: usize = batch
            .publishes
            .iter()
            .filter(|msg| msg.delivery == Delivery::All)
            .map(|msg| msg.template.max_line_len())
            .sum::<usize>()
            .min(MAX_BATCH_BYTES);
        for msg in batch.publishes {
            self.publish(msg, &mut room, ctx);
        }
        self.pace.owed.push(batch.credit);
        self.schedule_settle(ctx);
        self.note_activity(ctx);
    }

    /// Whether replaying `from..below` consumes a `one` message.
    fn consumes_one(&self, from: u64, below: u64) -> bool {
        let start = self.cache.partition_point(|c| c.index < from);
        self.cache
            .range(start..)
            .take_while(|c| c.index < below)
            .any(|c| c.one)
    }

    /// Takes the replay of `from..below` out of the cache: its `one`
    /// messages are removed now, the rest copied.
    fn take_replay(&mut self, from: u64, below: u64) -> Vec<(u64, Bytes, bool)> {
        let mut taken = Vec::new();
        let mut i = self.cache.partition_point(|c| c.index < from);
        while i < self.cache.len() && self.cache[i].index < below {
            let cached = &self.cache[i];
            taken.push((cached.index, cached.line.clone(), cached.one));
            if cached.one {
                self.cache_remove(i);
            } else {
                i += 1;
            }
        }
        taken
    }

    /// Sends a replay taken out of the cache; if the subscriber is gone
    /// first, its `one` messages go back into the cache for the next one.
    fn send_taken(&mut self, outbox: &Outbox, taken: Vec<(u64, Bytes, bool)>) {
        let mut gone = false;
        for (index, line, one) in taken {
            gone = gone || outbox.push(Outgoing::Line(line.clone())).is_err();
            if gone && one {
                self.cache_insert(index, line, true);
            }
        }
    }

    fn join(&mut self, outbox: Outbox, covered_from: u64) {
        let connection = outbox.id();
        match self.subscribers.position(|s| s.outbox.id() == connection) {
            Some(i) => {
                if let Some(sub) = self.subscribers.get_mut(i) {
                    sub.covered_from = covered_from;
                }
            }
            None => self.subscribers.push(Subscriber {
                outbox,
                covered_from,
                live_from: 0,
            }),
        }
    }
}

impl Handler<WhenCommitted> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: WhenCommitted, ctx: &mut Self::Context) {
        if self.cluster.is_some() {
            return self.when_published(msg.0);
        }
        self.store.notify(msg.0);
        self.schedule_commit(ctx);
    }
}

impl Handler<Subscribe> for TopicActor {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        if self.cluster.is_some() {
            return self.subscribe_remotely(msg, ctx);
        }
        self.flush();
        msg.outbox.reply(Bytes::from_static(OK));
        let connection = msg.outbox.id();
        let existing = self.subscribers.position(|s| s.outbox.id() == connection);
        let covered_from = match existing {
            Some(i) => self.subscribers.get_mut(i).map_or(0, |s| s.covered_from),
            None => self.next_index,
        };
        let mut now_covered = covered_from;
        if msg.replay {
            let from = u64::try_from(msg.last_seen.saturating_add(1)).unwrap_or(0);
            if from < covered_from {
                if self.store.is_disk() && self.consumes_one(from, covered_from) {
                    return self.replay_durably(msg.outbox, from, covered_from, ctx);
                }
                self.replay(&msg.outbox, from, covered_from);
                now_covered = from;
            }
        }
        match existing.and_then(|i| self.subscribers.get_mut(i)) {
            Some(sub) => sub.covered_from = now_covered,
            None => self.subscribers.push(Subscriber {
                outbox: msg.outbox,
                covered_from: now_covered,
                live_from: 0,
            }),
        }
        Box::pin(std::future::ready(true))
    }
}

impl TopicActor {
    /// A replay that consumes `one` messages, with `--data-dir`: they are
    /// sent only once their removal is on disk, so none can come back after
    /// a crash. Until then the topic handles nothing else, so no live
    /// message overtakes the replay; the session waits too, so no later
    /// reply of its overtakes it either.
    fn replay_durably(
        &mut self,
        outbox: Outbox,
        from: u64,
        below: u64,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<bool> {
        let taken = self.take_replay(from, below);
        let (consumed, removed) = tokio::sync::oneshot::channel();
        self.store.notify(consumed);
        self.store.commit();
        let (replayed, done) = tokio::sync::oneshot::channel::<()>();
        ctx.wait(removed.into_actor(self).map(move |_, topic, ctx| {
            topic.send_taken(&outbox, taken);
            topic.join(outbox, from);
            topic.schedule_commit(ctx);
            let _ = replayed.send(());
        }));
        Box::pin(async move { done.await.is_ok() })
    }
}

impl Handler<Unsubscribe> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Self::Context) {
        self.flush();
        let before = self.subscribers.len();
        self.subscribers.retain(|s| s.outbox.id() != msg.connection);
        if self.subscribers.len() != before {
            self.tell_census(ctx);
        }
        self.repace(ctx);
        self.schedule_commit(ctx);
        self.note_activity(ctx);
    }
}

impl Handler<Redeliver> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Redeliver, ctx: &mut Self::Context) {
        self.flush();
        self.send_one(msg.index, msg.line, msg.cache, ctx);
        self.schedule_commit(ctx);
        self.note_activity(ctx);
    }
}

impl Handler<Retire> for TopicActor {
    type Result = MessageResult<Retire>;

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) -> Self::Result {
        if self.is_idle() {
            tracing::debug!(topic = %self.name, next_index = self.next_index, "topic dormant");
            // A dormant topic resumes exactly here, after a restart too.
            self.store.close(self.next_index);
            self.store.commit();
            ctx.stop();
            return MessageResult(Some(self.next_index));
        }
        self.note_activity(ctx);
        MessageResult(None)
    }
}

impl Handler<StillShared> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: StillShared, ctx: &mut Self::Context) {
        self.note_activity(ctx);
    }
}

impl Handler<CaughtUp> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: CaughtUp, ctx: &mut Self::Context) {
        self.repace(ctx);
    }
}

impl Handler<Flush> for TopicActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        self.flush();
        // Resume exactly here after the stop, with no gap.
        self.store.close(self.next_index);
        self.store.commit();
        self.pace.draining = true;
        self.pace.owed.clear();
        self.pace.held.clear();
        if let Some(check) = self.pace.stall_check.take() {
            ctx.cancel_future(check);
        }
        match self.leave() {
            Some(left) => Box::pin(left),
            None => Box::pin(std::future::ready(())),
        }
    }
}

impl Handler<SubscriberCount> for TopicActor {
    type Result = usize;

    fn handle(&mut self, _: SubscriberCount, _: &mut Self::Context) -> usize {
        self.subscribers.len()
    }
}

impl Handler<Summarize> for TopicActor {
    type Result = MessageResult<Summarize>;

    fn handle(&mut self, _: Summarize, _: &mut Self::Context) -> Self::Result {
        // Sends handled before this count as cached, as for a subscriber.
        self.flush();
        MessageResult(TopicSummary {
            name: self.name.clone(),
            next_index: self.next_index,
            cached: self.cache.len(),
            cached_bytes: self.cache_bytes,
            subscribers: self.subscribers.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn backlog(pending: usize, idle_ms: u64, now: Instant) -> Backlog {
        Backlog {
            pending,
            last_write: now - Duration::from_millis(idle_ms),
        }
    }

    fn congested(backlogs: &[(usize, u64)]) -> bool {
        let now = Instant::now() + Duration::from_secs(1);
        let mut pace = Pace::default();
        for &(pending, idle_ms) in backlogs {
            pace.add(backlog(pending, idle_ms, now), now);
        }
        pace.congested()
    }

    #[test]
    fn no_subscriber_never_holds_a_topic_back() {
        assert!(!congested(&[]));
    }

    #[test]
    fn one_subscriber_keeping_up_releases_the_topic() {
        assert!(!congested(&[(10 * PACE_BYTES, 1), (PACE_BYTES, 1)]));
    }

    #[test]
    fn all_behind_and_reading_is_congestion() {
        assert!(congested(&[(PACE_BYTES + 1, 1), (10 * PACE_BYTES, 50)]));
    }

    #[test]
    fn stalled_subscribers_never_hold_it_back() {
        let stalled = u64::try_from(STALLED_AFTER.as_millis()).unwrap_or(u64::MAX);
        assert!(!congested(&[(10 * PACE_BYTES, stalled)]));
        assert!(congested(&[
            (10 * PACE_BYTES, stalled),
            (PACE_BYTES + 1, 0)
        ]));
    }

    #[test]
    fn a_send_larger_than_the_credit_takes_all_of_it() {
        assert_eq!(credit_permits(0), 1);
        assert_eq!(credit_permits(10), 10);
        assert_eq!(credit_permits(10 * TOPIC_CREDIT) as usize, TOPIC_CREDIT);
    }
}
