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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient};
use bytes::{Bytes, BytesMut};

use crate::outbox::{Backlog, Handoff, Outbox, Outgoing, Redeliver};
use crate::protocol::{DeliveryTemplate, OK};
use crate::session::SessionId;
use crate::subscribers::{Gone, RoundRobin};

/// Batches of sends a topic can have queued before a publisher has to wait:
/// the bound that slows a publisher down to the pace its topic can deliver.
pub const MAILBOX_CAPACITY: usize = 64;

/// A batch of delivered lines is handed out once it reaches this size, even
/// if more sends are waiting, so batches stay cheap to copy and to cache.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Pacing: when *every* subscriber owes more than this, and at least one of
/// them is still reading, the topic stops taking sends until one has caught
/// up. Publishers then wait (their topic's mailbox fills up) instead of
/// piling messages into outboxes faster than subscribers read them, which is
/// what keeps latency low under load.
const PACE_BYTES: usize = 128 * 1024;
/// A subscriber whose socket took nothing for this long has stopped reading:
/// it never holds the topic back, and is left to its `--max-pending` budget.
const STALLED_AFTER: Duration = Duration::from_millis(500);
/// How often a paced topic looks whether its subscribers caught up.
const PACE_POLL: Duration = Duration::from_millis(1);

/// A `send`, already encoded up to its index.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub template: DeliveryTemplate,
    pub one: bool,
    pub cache: bool,
}

/// The sends one session read in one go for this topic, in order: one
/// mailbox message for many sends.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublishBatch(pub Vec<Publish>);

/// Makes a connection a subscriber. The topic itself queues the
/// `{"success": true}` reply and then the replay on the subscriber's outbox,
/// so no live message can overtake either; the session waits for this
/// message to be handled before it answers anything else.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub session: SessionId,
    pub outbox: Outbox,
    pub last_seen: i64,
    pub replay: bool,
}

/// Ends a subscription (an `unsubscribe`, or the connection closing).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session: SessionId,
}

/// Handled after everything queued before it: answering it means the topic
/// has carried out every earlier command (used by graceful shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// How many connections subscribe to the topic; for tests and diagnostics.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct SubscriberCount;

#[derive(Debug)]
struct Subscriber {
    session: SessionId,
    outbox: Outbox,
    /// Every message with this index or above has been replayed or delivered
    /// live to this subscriber (or was gone when it subscribed). A repeated
    /// `subscribe` replays only below it, so it never duplicates a message.
    covered_from: u64,
}

#[derive(Debug)]
struct Cached {
    index: u64,
    line: Bytes,
    /// A `delivery: "one"` message: consumed by the first replay.
    one: bool,
}

/// One topic. Created by the `Registry` on the first command that names it.
pub struct TopicActor {
    name: Arc<str>,
    next_index: u64,
    cache: VecDeque<Cached>,
    cache_size: usize,
    subscribers: RoundRobin<Subscriber>,
    redeliver: Option<Recipient<Redeliver>>,
    batch: Batch,
}

/// `delivery: "all"` lines not yet handed to the subscribers.
#[derive(Debug, Default)]
struct Batch {
    lines: BytesMut,
    /// Per line: its index, where it ends in `lines`, whether to cache it.
    ends: Vec<(u64, usize, bool)>,
    flush_scheduled: bool,
    /// The last flush found every subscriber behind.
    congested: bool,
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
    pub fn new(name: Arc<str>, cache_size: usize) -> Self {
        TopicActor {
            name,
            next_index: 0,
            cache: VecDeque::with_capacity(cache_size.min(128)),
            cache_size,
            subscribers: RoundRobin::default(),
            redeliver: None,
            batch: Batch::default(),
        }
    }

    /// Hands the pending batch to every subscriber and caches its lines.
    /// Runs before anything that changes who subscribes or what they are
    /// sent, so batching never reorders or misroutes a line.
    fn flush(&mut self) {
        self.batch.flush_scheduled = false;
        if self.batch.lines.is_empty() {
            return;
        }
        let lines = self.batch.lines.split().freeze();
        // A subscriber that refuses a batch is gone or over its budget (and
        // being cut off): either way it receives nothing more.
        let now = Instant::now();
        let mut pace = Pace::default();
        self.subscribers
            .retain(|sub| match sub.outbox.push(Outgoing::Line(lines.clone())) {
                Ok(backlog) => {
                    pace.add(backlog, now);
                    true
                }
                Err(_) => false,
            });
        self.batch.congested = pace.congested();
        let mut start = 0;
        let ends = std::mem::take(&mut self.batch.ends);
        for &(index, end, cache) in &ends {
            if cache {
                self.cache_insert(index, lines.slice(start..end), false);
            }
            start = end;
        }
        self.batch.ends = ends;
        self.batch.ends.clear();
    }

    /// Keeps at most `cache_size` messages in index order, evicting the oldest.
    fn cache_insert(&mut self, index: u64, line: Bytes, one: bool) {
        if self.cache_size == 0 {
            return;
        }
        let at = self.cache.partition_point(|c| c.index < index);
        self.cache.insert(at, Cached { index, line, one });
        if self.cache.len() > self.cache_size {
            self.cache.pop_front();
        }
    }

    /// Flushes, then holds the topic back while its subscribers are behind
    /// (see [`PACE_BYTES`]).
    fn flush_and_pace(&mut self, ctx: &mut Context<Self>) {
        self.flush();
        if self.batch.congested {
            self.wait_for_subscribers(ctx);
        }
    }

    fn wait_for_subscribers(&mut self, ctx: &mut Context<Self>) {
        ctx.wait(actix::fut::wrap_future(tokio::time::sleep(PACE_POLL)).map(
            |(), topic: &mut Self, ctx| {
                let now = Instant::now();
                let mut pace = Pace::default();
                for sub in topic.subscribers.iter() {
                    pace.add(sub.outbox.backlog(), now);
                }
                topic.batch.congested = pace.congested();
                if topic.batch.congested {
                    topic.wait_for_subscribers(ctx);
                }
            },
        ));
    }

    fn send_one(&mut self, index: u64, line: Bytes, cache: bool) {
        let Some(topic) = self.redeliver.clone() else {
            return;
        };
        let handoff = Handoff::new(index, line, cache, topic);
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
            if cache {
                self.cache_insert(index, line, true);
            }
        }
    }

    fn replay(&mut self, outbox: &Outbox, from: u64, below: u64) {
        let start = self.cache.partition_point(|c| c.index < from);
        let mut i = start;
        while i < self.cache.len() && self.cache[i].index < below {
            let cached = &self.cache[i];
            if outbox.push(Outgoing::Line(cached.line.clone())).is_err() {
                return;
            }
            if cached.one {
                self.cache.remove(i);
            } else {
                i += 1;
            }
        }
    }
}

impl Actor for TopicActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.redeliver = Some(ctx.address().recipient());
        tracing::debug!(topic = %self.name, "topic created");
    }
}

impl Handler<Publish> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        self.publish(msg, ctx);
    }
}

impl Handler<PublishBatch> for TopicActor {
    type Result = ();

    fn handle(&mut self, PublishBatch(batch): PublishBatch, ctx: &mut Self::Context) {
        for msg in batch {
            self.publish(msg, ctx);
        }
    }
}

impl TopicActor {
    fn publish(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        let index = self.next_index;
        self.next_index += 1;
        if msg.one {
            self.flush();
            self.send_one(index, msg.template.line(index), msg.cache);
            return;
        }
        let cache = msg.cache && self.cache_size > 0;
        if self.subscribers.is_empty() && !cache {
            return;
        }
        msg.template.write_line(index, &mut self.batch.lines);
        self.batch.ends.push((index, self.batch.lines.len(), cache));
        if self.batch.lines.len() >= MAX_BATCH_BYTES {
            self.flush_and_pace(ctx);
        } else if !self.batch.flush_scheduled {
            // Spawned futures run after the mailbox is drained: the batch
            // goes out once every send already queued has joined it.
            self.batch.flush_scheduled = true;
            ctx.spawn(
                actix::fut::ready(()).map(|(), topic: &mut Self, ctx| topic.flush_and_pace(ctx)),
            );
        }
    }
}

impl Handler<Subscribe> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        self.flush();
        msg.outbox.reply(Bytes::from_static(OK));
        let existing = self.subscribers.position(|s| s.session == msg.session);
        let covered_from = match existing {
            Some(i) => self.subscribers.get_mut(i).map_or(0, |s| s.covered_from),
            None => self.next_index,
        };
        let mut now_covered = covered_from;
        if msg.replay {
            let from = u64::try_from(msg.last_seen.saturating_add(1)).unwrap_or(0);
            if from < covered_from {
                self.replay(&msg.outbox, from, covered_from);
                now_covered = from;
            }
        }
        match existing.and_then(|i| self.subscribers.get_mut(i)) {
            Some(sub) => sub.covered_from = now_covered,
            None => self.subscribers.push(Subscriber {
                session: msg.session,
                outbox: msg.outbox,
                covered_from: now_covered,
            }),
        }
    }
}

impl Handler<Unsubscribe> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) {
        self.flush();
        self.subscribers.retain(|s| s.session != msg.session);
    }
}

impl Handler<Redeliver> for TopicActor {
    type Result = ();

    fn handle(&mut self, msg: Redeliver, _: &mut Self::Context) {
        self.flush();
        self.send_one(msg.index, msg.line, msg.cache);
    }
}

impl Handler<Flush> for TopicActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.flush();
    }
}

impl Handler<SubscriberCount> for TopicActor {
    type Result = usize;

    fn handle(&mut self, _: SubscriberCount, _: &mut Self::Context) -> usize {
        self.subscribers.len()
    }
}

#[cfg(test)]
mod tests {
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
        assert!(!congested(&[(10 * PACE_BYTES, 500)]));
        assert!(congested(&[(10 * PACE_BYTES, 500), (PACE_BYTES + 1, 0)]));
    }
}
