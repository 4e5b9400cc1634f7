//! What a connection owes its client: replies and deliveries queued for its
//! socket, and the task that writes them.
//!
//! Topics push deliveries straight into a subscriber's [`Outbox`] (a queue
//! plus a byte count), so a delivery costs no actor message. The writer drains
//! everything queued in one go and writes it with one `writev`, so lines are
//! flushed when nothing more is queued, not one syscall per line.
//!
//! The byte count is the per-connection budget (`max_pending`): a client
//! that stops reading is cut off once it owes more, instead of growing the
//! server without bound (a "slow consumer", as NATS calls it). It counts each
//! queued item's own size as well as its payload, so a client owed millions
//! of tiny replies is held to the same budget in real memory.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use actix::{Message, Recipient};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{IDLE_QUEUE_SLOTS, MAX_SLICES, PACE_BYTES};
use crate::memory::{Consumer, Memory};
use crate::metrics;
use crate::protocol::Delivery;

/// Identifies a connection, e.g. to the topics it subscribes to. Taken from
/// a process-wide counter, so two connections never share one.
pub type ConnectionId = u64;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);

/// What one queued item costs besides its payload: counted in `max_pending`
/// and `max_memory`, so that many tiny items cannot hide their real size.
pub const ITEM_OVERHEAD: usize = std::mem::size_of::<Outgoing>();

/// One item on its way to a client.
#[derive(Debug)]
pub enum Outgoing {
    Line(Bytes),
    /// A `delivery: "one"` message, which goes back to its topic if this
    /// connection goes away before its last byte is written.
    Handoff(Handoff),
    /// Everything queued before this is written, then the socket is closed.
    Close,
}

impl Outgoing {
    fn bytes(&self) -> &[u8] {
        match self {
            Outgoing::Line(line) => line,
            Outgoing::Handoff(handoff) => &handoff.line,
            Outgoing::Close => &[],
        }
    }

    /// What the item counts for in the budgets.
    fn cost(&self) -> usize {
        self.bytes().len() + ITEM_OVERHEAD
    }
}

/// Asks a topic to route a `delivery: "one"` message again because the
/// subscriber it was given to left before receiving it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Redeliver {
    pub index: u64,
    pub line: Bytes,
    pub cache: bool,
    /// Held until the topic has handled this message, so that the topic
    /// knows a message is on its way back.
    _returning: ReturnAddress,
}

/// Where a topic's handoffs go back to. Every handoff, and every
/// [`Redeliver`] on its way, holds a share of it, so the topic can tell
/// whether any of its `one` messages may still come back: it must not
/// retire while one can. One `Arc` around the recipient: a handoff costs
/// one count up and one down, not a clone of an actix address.
#[derive(Debug, Clone)]
pub struct ReturnAddress(Arc<Recipient<Redeliver>>);

impl ReturnAddress {
    pub fn new(topic: Recipient<Redeliver>) -> Self {
        ReturnAddress(Arc::new(topic))
    }

    /// Whether a handoff or a redelivery made from this address is alive.
    pub fn outstanding(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

/// Tells a topic that a subscriber it waits for has caught up (owes no more
/// than [`PACE_BYTES`]) or is gone: the topic may take sends again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CaughtUp;

/// A `delivery: "one"` message in flight. Dropping it unwritten (the
/// connection closed with it still queued, or with only part of it written)
/// sends it back to its topic, so a message is never lost to a subscriber
/// that left; once its last byte is in the socket it is delivered and never
/// goes back, so no two subscribers receive it.
#[derive(Debug)]
pub struct Handoff {
    index: u64,
    line: Bytes,
    cache: bool,
    topic: Option<ReturnAddress>,
}

impl Handoff {
    pub fn new(index: u64, line: Bytes, cache: bool, topic: ReturnAddress) -> Self {
        Handoff {
            index,
            line,
            cache,
            topic: Some(topic),
        }
    }

    /// Takes the message back without redelivering it (the topic itself
    /// decides where it goes next).
    pub fn into_parts(mut self) -> (u64, Bytes, bool) {
        self.topic = None;
        (self.index, std::mem::take(&mut self.line), self.cache)
    }

    fn delivered(mut self) {
        self.topic = None;
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(topic) = self.topic.take() {
            let recipient = Recipient::clone(&topic.0);
            recipient.do_send(Redeliver {
                index: self.index,
                line: std::mem::take(&mut self.line),
                cache: self.cache,
                _returning: topic,
            });
        }
    }
}

/// The sending side of a connection's queue; cheap to clone, one per topic
/// the connection subscribes to.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// A plain queue behind a per-connection lock rather than a channel: an idle
/// connection's queue then holds no memory at all (a channel keeps a block
/// of slots allocated), and the writer takes everything queued in one swap.
#[derive(Debug)]
struct Shared {
    id: ConnectionId,
    queue: Mutex<Queue>,
    /// Wakes the writer when the queue stops being empty.
    wake: Notify,
    /// Interrupts the writer, even in the middle of a write the client is
    /// not reading, when the client goes over its budget.
    kick: Notify,
    max_pending: usize,
    memory: Arc<Memory>,
}

/// How far behind a client is: what topics look at to pace publishers.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// Bytes queued or being written, with their items' overhead.
    pub pending: usize,
    /// When a write to the socket last succeeded (or the queue was created).
    pub last_write: Instant,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Bytes queued or being written, with their items' overhead.
    pending: usize,
    last_write: Instant,
    /// The writer has stopped: nothing more is accepted.
    closed: bool,
    /// A push found the client over its budget, or the memory budget chose
    /// it to be cut off.
    over_budget: bool,
    /// Topics waiting for this client to catch up.
    watchers: Vec<Recipient<CaughtUp>>,
}

/// Why a connection's writer stopped.
#[derive(Debug)]
pub enum WriterError {
    /// The client owed more than its budget: it is not reading.
    SlowConsumer {
        pending: usize,
    },
    /// Shutdown gave up waiting: `lines` complete lines were never written.
    Abandoned {
        lines: usize,
    },
    Io(io::Error),
}

impl Queue {
    fn backlog(&self) -> Backlog {
        Backlog {
            pending: self.pending,
            last_write: self.last_write,
        }
    }
}

impl Outbox {
    /// A queue whose client may owe at most `max_pending` bytes, counted in
    /// `memory` as well.
    pub fn new(max_pending: usize, memory: Arc<Memory>) -> (Outbox, Writer) {
        let shared = Arc::new(Shared {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                pending: 0,
                last_write: Instant::now(),
                closed: false,
                over_budget: false,
                watchers: Vec::new(),
            }),
            wake: Notify::new(),
            kick: Notify::new(),
            max_pending,
            memory,
        });
        let weak: Weak<dyn Consumer> = Arc::downgrade(&shared) as Weak<dyn Consumer>;
        shared.memory.register(shared.id, weak);
        let writer = Writer {
            shared: shared.clone(),
        };
        (Outbox { shared }, writer)
    }

    /// The connection this outbox writes to.
    pub fn id(&self) -> ConnectionId {
        self.shared.id
    }

    /// Queues `item` and says what the client now owes, or gives the item
    /// back if the connection is gone or over its budget (in which case its
    /// writer is told to cut it off).
    pub fn push(&self, item: Outgoing) -> Result<Backlog, Outgoing> {
        let cost = item.cost();
        let mut queue = self.shared.lock();
        if queue.closed || queue.over_budget {
            return Err(item);
        }
        if queue.pending + cost > self.shared.max_pending && !matches!(item, Outgoing::Close) {
            queue.over_budget = true;
            drop(queue);
            self.shared.kick_writer();
            return Err(item);
        }
        let was_empty = queue.items.is_empty();
        queue.pending += cost;
        let backlog = queue.backlog();
        if queue.items.capacity() == 0 {
            // One slot, not the four a first push makes: the queue a batch
            // went out in stays with the connection, and an idle
            // subscriber's last batch is its one reply.
            queue.items.reserve_exact(1);
        }
        queue.items.push_back(item);
        drop(queue);
        self.shared.memory.add(cost);
        if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(backlog)
    }

    /// Queues a reply; a reply to a connection that is gone has nowhere to go.
    pub fn reply(&self, line: Bytes) {
        let _ = self.push(Outgoing::Line(line));
    }

    /// Flushes what is queued, then closes the socket.
    pub fn close(&self) {
        let _ = self.push(Outgoing::Close);
    }

    /// What the client owes and when its socket last took some of it.
    pub fn backlog(&self) -> Backlog {
        self.shared.lock().backlog()
    }

    /// Has `topic` told once this client owes at most [`PACE_BYTES`] (at
    /// once if it already does) or its connection ends.
    pub fn notify_caught_up(&self, topic: &Recipient<CaughtUp>) {
        let mut queue = self.shared.lock();
        if queue.pending <= PACE_BYTES || queue.closed {
            drop(queue);
            topic.do_send(CaughtUp);
        } else if !queue.watchers.contains(topic) {
            queue.watchers.push(topic.clone());
        }
    }

    /// Whether both outboxes write to the same connection.
    pub fn same_connection(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Shared {
    /// The queue is only ever held for a push or a swap, and nothing in it
    /// can panic while held, so a poisoned lock still holds a sound queue.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kick_writer(&self) {
        self.wake.notify_one();
        self.kick.notify_one();
    }

    /// `written` bytes of what the client owes reached the socket (`items`
    /// of which finished).
    fn settle(&self, written: usize) {
        let mut queue = self.lock();
        queue.pending -= written;
        queue.last_write = Instant::now();
        let watchers = if queue.pending <= PACE_BYTES && !queue.watchers.is_empty() {
            std::mem::take(&mut queue.watchers)
        } else {
            Vec::new()
        };
        drop(queue);
        self.memory.sub(written);
        for topic in watchers {
            topic.do_send(CaughtUp);
        }
    }
}

impl Consumer for Shared {
    fn pending(&self) -> usize {
        self.lock().pending
    }

    fn cut_off(&self) {
        self.lock().over_budget = true;
        self.kick_writer();
    }
}

/// The receiving side: drains the queue into the socket.
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    /// Writes until [`Outgoing::Close`], a write error, the budget is
    /// exceeded, or `abandon` is cancelled. Whatever is not completely
    /// written when it returns is dropped, which hands `delivery: "one"`
    /// messages back to their topics.
    ///
    /// Every idle connection holds this future for its life, so it is kept
    /// small: an `async` block, not an `async fn` (which keeps a second copy
    /// of its arguments), and the token rather than a future waiting on it
    /// (which the block would keep beside the one `select!` polls).
    #[allow(clippy::manual_async_fn)]
    pub fn run<W: AsyncWrite + Unpin>(
        self,
        mut sink: W,
        abandon: CancellationToken,
    ) -> impl Future<Output = Result<(), WriterError>> {
        async move {
            let mut unwritten = VecDeque::new();
            let result = tokio::select! {
                biased;
                result = self.write_all(&mut sink, &mut unwritten) => result,
                () = abandon.cancelled() => Err(WriterError::Abandoned { lines: 0 }),
            };
            let left = {
                let mut queue = self.shared.lock();
                queue.closed = true;
                // Nothing queued will be written now: none of it is owed.
                self.shared.memory.sub(std::mem::take(&mut queue.pending));
                let watchers = std::mem::take(&mut queue.watchers);
                for topic in watchers {
                    topic.do_send(CaughtUp);
                }
                std::mem::take(&mut queue.items)
            };
            unwritten.extend(left);
            let result = match result {
                Err(WriterError::Abandoned { .. }) => Err(WriterError::Abandoned {
                    lines: unwritten
                        .iter()
                        .map(|item| memchr::memchr_iter(b'\n', item.bytes()).count())
                        .sum(),
                }),
                other => other,
            };
            drop(unwritten);
            match result {
                Ok(()) => sink.shutdown().await.map_err(WriterError::Io),
                Err(error) => Err(error),
            }
        }
    }

    /// An `async` block, like [`Writer::run`], so that its arguments are
    /// not kept twice.
    #[allow(clippy::manual_async_fn)]
    fn write_all<'a, W: AsyncWrite + Unpin>(
        &'a self,
        sink: &'a mut W,
        batch: &'a mut VecDeque<Outgoing>,
    ) -> impl Future<Output = Result<(), WriterError>> + 'a {
        async move {
            loop {
                loop {
                    {
                        let mut queue = self.shared.lock();
                        if queue.over_budget {
                            return Err(WriterError::SlowConsumer {
                                pending: queue.pending,
                            });
                        }
                        if !queue.items.is_empty() {
                            std::mem::swap(batch, &mut queue.items);
                            break;
                        }
                    }
                    self.shared.wake.notified().await;
                    // Let the rest of this thread's ready work run first: more
                    // lines join the queue and go out in the same `writev`.
                    tokio::task::yield_now().await;
                }
                let close = batch
                    .iter()
                    .position(|item| matches!(item, Outgoing::Close));
                if let Some(close) = close {
                    batch.truncate(close);
                }
                tokio::select! {
                    biased;
                    () = self.shared.kick.notified() => {
                        return Err(WriterError::SlowConsumer {
                            pending: self.shared.lock().pending,
                        });
                    }
                    written = self.write_batch(sink, batch) => {
                        written.map_err(WriterError::Io)?;
                    }
                }
                // The queues swap places, so each keeps the largest capacity it
                // ever needed; a burst must not cost a connection for its life.
                batch.shrink_to(IDLE_QUEUE_SLOTS);
                if close.is_some() {
                    return Ok(());
                }
            }
        }
    }

    /// Writes the batch with as few `writev` calls as the kernel allows,
    /// removing each item from the front as its last byte is written, so
    /// that whatever is left (after an error, or when this future is
    /// dropped) is exactly what the client did not receive whole. The
    /// backlog is settled after every call: topics pace publishers by it, so
    /// it must show progress as soon as the socket takes any bytes. An
    /// `async` block, like [`Writer::run`].
    #[allow(clippy::manual_async_fn)]
    fn write_batch<'a, W: AsyncWrite + Unpin>(
        &'a self,
        sink: &'a mut W,
        batch: &'a mut VecDeque<Outgoing>,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        async move {
            // Bytes of the front item already written.
            let mut offset = 0;
            while !batch.is_empty() {
                let n = {
                    let mut slices = Vec::with_capacity(batch.len().min(MAX_SLICES));
                    let mut items = batch.iter().take(MAX_SLICES);
                    if let Some(front) = items.next() {
                        slices.push(IoSlice::new(&front.bytes()[offset..]));
                    }
                    slices.extend(items.map(|item| IoSlice::new(item.bytes())));
                    sink.write_vectored(&slices).await?
                };
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                let mut left = n;
                let mut finished_overhead = 0;
                let mut handed_off = 0;
                while let Some(front) = batch.front() {
                    let rest = front.bytes().len() - offset;
                    if left < rest {
                        offset += left;
                        break;
                    }
                    left -= rest;
                    offset = 0;
                    finished_overhead += ITEM_OVERHEAD;
                    if let Some(Outgoing::Handoff(handoff)) = batch.pop_front() {
                        handoff.delivered();
                        handed_off += 1;
                    }
                }
                self.shared.settle(n + finished_overhead);
                let metrics = metrics::get();
                metrics.sent(n);
                if handed_off > 0 {
                    metrics.messages_out(Delivery::One, handed_off);
                }
            }
            // TLS takes bytes it cannot pass on yet into its own buffer and
            // reports them written; without a flush, the end of a burst would
            // wait there for the next write, which may never come. A no-op on
            // a plain socket.
            sink.flush().await
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.memory.unregister(self.shared.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counts_each_items_overhead() {
        let memory = Memory::new(0);
        let (outbox, _writer) = Outbox::new(usize::MAX, memory.clone());
        for _ in 0..10 {
            outbox.reply(Bytes::from_static(b"ok\r\n"));
        }
        assert_eq!(outbox.backlog().pending, 10 * (4 + ITEM_OVERHEAD));
        assert_eq!(memory.used(), 10 * (4 + ITEM_OVERHEAD));
    }

    #[test]
    fn a_budget_of_tiny_items_is_reached_by_their_overhead() {
        let (outbox, _writer) = Outbox::new(100 * (1 + ITEM_OVERHEAD), Memory::new(0));
        let taken = (0..1000)
            .take_while(|_| {
                outbox
                    .push(Outgoing::Line(Bytes::from_static(b"x")))
                    .is_ok()
            })
            .count();
        assert_eq!(taken, 100);
    }
}
